// Built against an installed upager (find_package or pkg-config): maps a
// region, writes every byte, reads them back, and prints OK only if all of
// them match.
#include <cstdio>

#include "upager/upager.h"

int main() {
  auto rt = upager::Runtime::Create({});
  if (!rt.ok()) {
    std::fprintf(stderr, "Runtime::Create: %s\n",
                 rt.status().ToString().c_str());
    return 1;
  }
  const size_t size = 256 * (*rt)->page_size();
  auto region = (*rt)->Map({.size = size, .name = "consumer"});
  if (!region.ok()) {
    std::fprintf(stderr, "Map: %s\n", region.status().ToString().c_str());
    return 1;
  }
  std::byte* p = (*region)->data();
  for (size_t i = 0; i < size; ++i) p[i] = std::byte(i % 251);
  size_t bad = 0;
  for (size_t i = 0; i < size; ++i) bad += p[i] != std::byte(i % 251);
  const upager::Stats s = (*rt)->stats();
  if (bad != 0 || s.faults_missing_write == 0) {
    std::fprintf(stderr, "%zu bytes wrong, %llu write faults\n", bad,
                 static_cast<unsigned long long>(s.faults_missing_write));
    return 1;
  }
  std::printf("OK: %zu bytes written and read back through upager (%llu "
              "faults)\n",
              size, static_cast<unsigned long long>(s.faults_missing_write));
  return (*rt)->Unmap(*region).ok() ? 0 : 1;
}
