#include "pager/page_list.h"

#include <cassert>

#include "absl/strings/str_cat.h"

namespace upager::internal {

PageListArena::PageListArena() : index_(0, IndexHash{this}, IndexEq{this}) {}

PageListArena::NodeId PageListArena::Find(const PageRef& p) const {
  auto it = index_.find(p);
  return it == index_.end() ? kNil : *it;
}

PageListArena::NodeId PageListArena::Insert(const PageRef& p, ListId list,
                                            bool at_head, uint32_t stamp) {
  assert(p.page <= kMaxPage);
  assert(list < kLists);
  NodeId id;
  if (free_ != kNil) {
    id = free_;
    free_ = at(id).next;
    --free_count_;
  } else {
    if (allocated_ >= kMaxNodes) return kNil;
    id = static_cast<NodeId>(allocated_);
    if ((id & kChunkMask) == 0) {
      chunks_.emplace_back(new Node[size_t{1} << kChunkBits]);
    }
    ++allocated_;
  }
  Node& n = at(id);
  n.page = p.page;
  n.list = kFreeList;  // Link sets it
  n.flags = 0;
  n.region = p.region;
  n.stamp = stamp;
  Link(id, list, at_head);
  // The key is in the node now, so the index can hash the id.
  index_.insert(id);
  RegionChain& r = regions_[p.region];
  n.rprev = kNil;
  n.rnext = r.head;
  if (r.head != kNil) at(r.head).rprev = id;
  r.head = id;
  ++r.size;
  return id;
}

void PageListArena::Erase(NodeId id) {
  Node& n = at(id);
  // Out of the index first: erasing compares against the node's key.
  index_.erase(id);
  Unlink(id);
  auto it = regions_.find(n.region);
  assert(it != regions_.end());
  RegionChain& r = it->second;
  if (n.rprev != kNil) {
    at(n.rprev).rnext = n.rnext;
  } else {
    r.head = n.rnext;
  }
  if (n.rnext != kNil) at(n.rnext).rprev = n.rprev;
  // Dropping empty chains keeps regions_ bounded by the live regions.
  if (--r.size == 0) regions_.erase(it);
  n.list = kFreeList;
  n.prev = n.rprev = n.rnext = kNil;
  n.next = free_;
  free_ = id;
  ++free_count_;
}

void PageListArena::MoveTo(NodeId id, ListId list, bool at_head) {
  assert(list < kLists);
  Unlink(id);
  Link(id, list, at_head);
}

uint64_t PageListArena::region_size(uint32_t region) const {
  auto it = regions_.find(region);
  return it == regions_.end() ? 0 : it->second.size;
}

PageListArena::NodeId PageListArena::region_head(uint32_t region) const {
  auto it = regions_.find(region);
  return it == regions_.end() ? kNil : it->second.head;
}

size_t PageListArena::MemoryBytes() const {
  // flat_hash_set: one slot plus one control byte per bucket.
  return chunks_.size() * (sizeof(Node) << kChunkBits) +
         chunks_.capacity() * sizeof(chunks_[0]) +
         index_.bucket_count() * (sizeof(NodeId) + 1) +
         regions_.bucket_count() *
             (sizeof(std::pair<uint32_t, RegionChain>) + 1);
}

void PageListArena::Link(NodeId id, ListId list, bool at_head) {
  Node& n = at(id);
  List& l = lists_[list];
  n.list = list;
  if (at_head) {
    n.prev = kNil;
    n.next = l.head;
    if (l.head != kNil) {
      at(l.head).prev = id;
    } else {
      l.tail = id;
    }
    l.head = id;
  } else {
    n.next = kNil;
    n.prev = l.tail;
    if (l.tail != kNil) {
      at(l.tail).next = id;
    } else {
      l.head = id;
    }
    l.tail = id;
  }
  ++l.size;
}

void PageListArena::Unlink(NodeId id) {
  Node& n = at(id);
  assert(n.list < kLists);
  List& l = lists_[n.list];
  if (n.prev != kNil) {
    at(n.prev).next = n.next;
  } else {
    l.head = n.next;
  }
  if (n.next != kNil) {
    at(n.next).prev = n.prev;
  } else {
    l.tail = n.prev;
  }
  --l.size;
  n.prev = n.next = kNil;
}

absl::Status PageListArena::CheckList(ListId list,
                                      std::vector<uint8_t>* seen) const {
  const List& l = lists_[list];
  uint64_t count = 0;
  NodeId prev = kNil;
  for (NodeId id = l.head; id != kNil; id = node(id).next) {
    if (id >= allocated_) {
      return absl::InternalError(
          absl::StrCat("page list ", list, ": node id ", id, " out of range"));
    }
    const Node& n = node(id);
    if (n.list != list || n.prev != prev || (*seen)[id] != 0) {
      return absl::InternalError(absl::StrCat(
          "page list ", list, ": node ", id, " (list ", n.list, ", prev ",
          n.prev, ", expected prev ", prev, ", seen ", (*seen)[id], ")"));
    }
    (*seen)[id] = 1;
    if (++count > allocated_) break;
    prev = id;
  }
  if (count != l.size || l.tail != prev) {
    return absl::InternalError(absl::StrCat(
        "page list ", list, ": walked ", count, " nodes, size says ", l.size,
        "; tail ", l.tail, " != last ", prev));
  }
  return absl::OkStatus();
}

absl::Status PageListArena::CheckInvariants() const {
  std::vector<uint8_t> seen(allocated_, 0);
  uint64_t listed = 0;
  for (ListId l = 0; l < kLists; ++l) {
    absl::Status s = CheckList(l, &seen);
    if (!s.ok()) return s;
    listed += lists_[l].size;
  }
  if (listed != index_.size()) {
    return absl::InternalError(absl::StrCat("page lists hold ", listed,
                                            " nodes, index ", index_.size()));
  }
  uint64_t free_count = 0;
  for (NodeId id = free_; id != kNil; id = node(id).next) {
    if (id >= allocated_ || seen[id] != 0 || node(id).list != kFreeList) {
      return absl::InternalError(
          absl::StrCat("free list: bad or reused node ", id));
    }
    seen[id] = 2;
    if (++free_count > allocated_) break;
  }
  if (free_count != free_count_ || listed + free_count != allocated_) {
    return absl::InternalError(absl::StrCat(
        "free list: ", free_count, " nodes (count says ", free_count_, "), ",
        listed, " listed, arena ", allocated_));
  }
  for (NodeId id : index_) {
    if (id >= allocated_ || seen[id] != 1) {
      return absl::InternalError(
          absl::StrCat("index holds node ", id, " that is not listed"));
    }
    if (Find(ref(id)) != id) {
      return absl::InternalError(absl::StrCat(
          "index: node ", id, " (region ", node(id).region, " page ",
          static_cast<uint64_t>(node(id).page), ") not found by its key"));
    }
  }
  uint64_t chained = 0;
  for (const auto& [region, chain] : regions_) {
    uint64_t count = 0;
    NodeId prev = kNil;
    for (NodeId id = chain.head; id != kNil; id = node(id).rnext) {
      if (id >= allocated_ || seen[id] != 1 || node(id).region != region ||
          node(id).rprev != prev) {
        return absl::InternalError(
            absl::StrCat("region ", region, " chain: bad node ", id));
      }
      prev = id;
      if (++count > allocated_) break;
    }
    if (count != chain.size || count == 0) {
      return absl::InternalError(
          absl::StrCat("region ", region, " chain: ", count,
                       " nodes, size says ", chain.size));
    }
    chained += count;
  }
  if (chained != index_.size()) {
    return absl::InternalError(absl::StrCat("region chains hold ", chained,
                                            " nodes, index ", index_.size()));
  }
  return absl::OkStatus();
}

}  // namespace upager::internal
