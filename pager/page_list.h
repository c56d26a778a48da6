// The bookkeeping under the eviction policy: every page the policy tracks
// (resident, or remembered as a ghost after eviction) is one 32-byte node
// in an arena, linked into exactly one of a few intrusive doubly linked
// lists (which list means what is EvictionPolicy's business) and into a
// per-region chain, and found by (region, page) through a hash index that
// stores only the 4-byte node id.
//
// Cost per tracked page: the 32-byte node plus one index slot (4 bytes and
// a control byte, at a load factor between 7/16 and 7/8): 37.7 to 43.4
// bytes, ~40 on average. The arena grows in 128 KiB chunks that never move
// (no copy of the whole arena under the caller's lock); nodes freed are
// reused, never returned. Every operation is O(1), amortized only because
// the index rehashes when it doubles (one O(tracked) step per doubling).
//
// Thread-safety: NOT thread-safe. EvictionPolicy guards it with its mutex.
#ifndef UPAGER_PAGER_PAGE_LIST_H_
#define UPAGER_PAGER_PAGE_LIST_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"

namespace upager::internal {

// A page of one region. Region ids are assigned by the runtime; `page` is
// the page's index inside its region (PageIndex::value()).
struct PageRef {
  uint32_t region = 0;
  uint64_t page = 0;

  friend bool operator==(const PageRef&, const PageRef&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const PageRef& p) {
    return H::combine(std::move(h), p.region, p.page);
  }
};

class PageListArena {
 public:
  using NodeId = uint32_t;
  using ListId = uint8_t;
  static constexpr NodeId kNil = ~NodeId{0};
  // Lists 0..kLists-1 are the caller's.
  static constexpr ListId kLists = 7;
  // Pages are stored in 40 bits: far above PageTable::kMaxPages (2^36).
  static constexpr uint64_t kMaxPage = (uint64_t{1} << 40) - 1;
  // Node ids are 32-bit and kNil is reserved.
  static constexpr uint64_t kMaxNodes = kNil;

  // One tracked page. `stamp` and `flags` belong to the caller (the policy
  // keeps a clock reading and a few bits there); the links belong to the
  // arena.
  struct Node {
    uint64_t page : 40;
    uint64_t list : 3;  // ListId, or kFreeList
    uint64_t flags : 21;
    uint32_t region;
    uint32_t stamp;
    NodeId prev;   // towards the list's head (kNil at the head)
    NodeId next;   // towards the list's tail (kNil at the tail); free-list link
    NodeId rprev;  // region chain
    NodeId rnext;
  };
  static_assert(sizeof(Node) == 32);
  static constexpr uint32_t kMaxFlags = (1u << 21) - 1;

  PageListArena();
  PageListArena(const PageListArena&) = delete;
  PageListArena& operator=(const PageListArena&) = delete;

  // The node tracking `p`, or kNil.
  NodeId Find(const PageRef& p) const;

  // Tracks `p` in `list` at its head (or tail), with the given stamp and no
  // flags. Returns kNil, changing nothing, when the arena already holds
  // kMaxNodes nodes. Preconditions: Find(p) == kNil, p.page <= kMaxPage,
  // list < kLists.
  NodeId Insert(const PageRef& p, ListId list, bool at_head, uint32_t stamp);

  // Stops tracking node `id` (unlinks it from its list, its region chain
  // and the index) and recycles it.
  void Erase(NodeId id);

  // Moves node `id` to the head (or tail) of `list` (which may be its own).
  void MoveTo(NodeId id, ListId list, bool at_head);

  const Node& node(NodeId id) const {
    return chunks_[id >> kChunkBits][id & kChunkMask];
  }
  void set_stamp(NodeId id, uint32_t stamp) { at(id).stamp = stamp; }
  void set_flags(NodeId id, uint32_t flags) { at(id).flags = flags; }
  PageRef ref(NodeId id) const {
    return PageRef{node(id).region, node(id).page};
  }
  ListId list_of(NodeId id) const { return node(id).list; }

  NodeId head(ListId list) const { return lists_[list].head; }
  NodeId tail(ListId list) const { return lists_[list].tail; }
  uint64_t size(ListId list) const { return lists_[list].size; }

  // Nodes tracked for `region` (any list), and the first of its chain (then
  // follow node(id).rnext; read it before erasing `id`).
  uint64_t region_size(uint32_t region) const;
  NodeId region_head(uint32_t region) const;

  // Nodes tracked (not free).
  uint64_t tracked() const { return index_.size(); }
  // Bytes held: the arena chunks (including free nodes), the index, the
  // region table.
  size_t MemoryBytes() const;

  // Every list and region chain is well linked and its size is right, every
  // tracked node is in the index under its own key and in exactly one list,
  // the free list holds the rest. O(nodes). Returns the first violation.
  absl::Status CheckInvariants() const;

 private:
  static constexpr ListId kFreeList = kLists;
  static constexpr int kChunkBits = 12;  // 4096 nodes, 128 KiB
  static constexpr NodeId kChunkMask = (NodeId{1} << kChunkBits) - 1;

  struct List {
    NodeId head = kNil;
    NodeId tail = kNil;
    uint64_t size = 0;
  };
  struct RegionChain {
    NodeId head = kNil;
    uint64_t size = 0;
  };

  // The index stores node ids and hashes them by the key held in the node,
  // so a slot costs 4 bytes instead of a 16-byte key plus a value. Lookups
  // by PageRef are heterogeneous (is_transparent). The functors point at
  // the arena, whose nodes never move; a node is written before its id is
  // inserted and removed from the index before it is recycled.
  struct IndexHash {
    using is_transparent = void;
    const PageListArena* arena;
    size_t operator()(const PageRef& p) const {
      return absl::Hash<PageRef>{}(p);
    }
    size_t operator()(NodeId id) const { return (*this)(arena->ref(id)); }
  };
  struct IndexEq {
    using is_transparent = void;
    const PageListArena* arena;
    bool operator()(NodeId a, NodeId b) const { return a == b; }
    bool operator()(NodeId a, const PageRef& b) const {
      return arena->ref(a) == b;
    }
    bool operator()(const PageRef& a, NodeId b) const {
      return a == arena->ref(b);
    }
  };

  Node& at(NodeId id) { return chunks_[id >> kChunkBits][id & kChunkMask]; }

  void Link(NodeId id, ListId list, bool at_head);
  void Unlink(NodeId id);
  absl::Status CheckList(ListId list, std::vector<uint8_t>* seen) const;

  // Node id i lives at chunks_[i >> kChunkBits][i & kChunkMask]. Chunks
  // are default-initialized, so a chunk costs memory only as it fills.
  std::vector<std::unique_ptr<Node[]>> chunks_;
  uint64_t allocated_ = 0;  // ids [0, allocated_) have been handed out
  NodeId free_ = kNil;      // singly linked through Node::next
  uint64_t free_count_ = 0;
  std::array<List, kLists> lists_;
  absl::flat_hash_set<NodeId, IndexHash, IndexEq> index_;
  absl::flat_hash_map<uint32_t, RegionChain> regions_;
};

}  // namespace upager::internal

#endif  // UPAGER_PAGER_PAGE_LIST_H_
