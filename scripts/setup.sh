#!/usr/bin/env bash
# Installs what is missing (Debian 12 packages only) and builds upager into
# build/. Sourced by scripts/main.sh and scripts/test.sh; safe to run alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${UPAGER_BUILD_DIR:-$ROOT/build}"

PKGS=(cmake make g++ pkg-config liburing-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
      clang llvm libclang-rt-dev)
# clang: the sanitizer and fuzzing builds (scripts/sanitizers.sh,
# scripts/fuzz.sh); llvm: llvm-symbolizer; libclang-rt-dev: the sanitizer
# runtimes and libFuzzer, which clang only recommends.
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "upager: missing packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "upager: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" -j "$(nproc)"
