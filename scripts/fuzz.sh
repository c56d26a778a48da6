#!/usr/bin/env bash
# The fuzzing part of command (2) (README, "Reliability"): builds the
# libFuzzer targets of tests/fuzz/ in build-fuzz/ (clang, ASan + UBSan,
# coverage on our libraries) and runs each for a bounded time from its
# committed seeds (tests/fuzz/corpus/<name>/ for <name>_fuzzer), leak
# checking on. New inputs go to a temporary directory, never into the
# committed corpus.
# One summary line per target; the exit status is non-zero if the build
# fails or any target finds a crash, a leak, undefined behavior or a broken
# contract check. The input that did it is kept in build-fuzz/artifacts/.
#
# scripts/sanitizers.sh runs this (UPAGER_SANITIZERS=0 skips both,
# UPAGER_FUZZ=0 this alone). By hand:
#   scripts/fuzz.sh                              # every target, 15 s each
#   scripts/fuzz.sh snapshot_chain_fuzzer        # one of them
#   UPAGER_FUZZ_SECONDS=3600 scripts/fuzz.sh     # an hour each
#   UPAGER_FUZZ_KEEP=/tmp/found scripts/fuzz.sh  # keep the new inputs
# Reproduce a finding: build-fuzz/bin/<target> build-fuzz/artifacts/<file>.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-fuzz"
SECONDS_PER_TARGET="${UPAGER_FUZZ_SECONDS:-15}"
ALL_TARGETS=(snapshot_file_fuzzer snapshot_chain_fuzzer options_fuzzer)

if [[ "${UPAGER_FUZZ:-1}" == 0 ]]; then
  echo "fuzz: skipped (UPAGER_FUZZ=0)"
  exit 0
fi
targets=("$@")
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

# As in scripts/sanitizers.sh: clang 14's ASan cannot lay out its shadow
# memory when mmap randomization has more than 28 bits.
noaslr=()
if (($(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28) > 28)); then
  noaslr=(setarch "$(uname -m)" -R)
fi

start=$SECONDS
mkdir -p "$BUILD"
# Asserts stay on (no -DNDEBUG): they are contract checks too. The build's
# output is shown only when it fails.
if ! { cmake -S "$ROOT" -B "$BUILD" "${generator[@]}" \
         -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
         -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
         -DUPAGER_SANITIZE=address,undefined -DUPAGER_FUZZ=ON \
         -DUPAGER_WERROR=OFF -DUPAGER_BUILD_TESTS=ON \
         -DUPAGER_BUILD_BENCH=OFF -DUPAGER_BUILD_SAMPLES=OFF &&
       cmake --build "$BUILD" -j "$(nproc)" --target "${targets[@]}"; \
     } >"$BUILD/fuzz_build.log" 2>&1; then
  tail -40 "$BUILD/fuzz_build.log" >&2
  echo "fuzz: build FAIL in $((SECONDS - start))s (log: $BUILD/fuzz_build.log)"
  exit 1
fi
printf 'fuzz: %-24s built in %3ds\n' "${#targets[@]} target(s)" \
  $((SECONDS - start))

# LeakSanitizer needs ptrace (it stops the world); where that is refused
# every run would fail, so a leaking probe decides (as in sanitizers.sh).
leaks=1
probe="$BUILD/lsan_probe"
printf 'int* p;\nint main() { p = new int[4]; p = nullptr; }\n' |
  clang++ -x c++ -fsanitize=address -o "$probe" -
if out="$("${noaslr[@]}" "$probe" 2>&1)" ||
   ! grep -q 'LeakSanitizer: detected memory leaks' <<<"$out"; then
  if [[ "${UPAGER_REQUIRE_FEATURES:-0}" == 1 ]]; then
    echo "fuzz: LeakSanitizer cannot run on this machine"
    exit 1
  fi
  leaks=0
  echo "fuzz: leaks NOT checked: LeakSanitizer cannot run here"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/upager-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
failed=0
for t in "${targets[@]}"; do
  seeds="$ROOT/tests/fuzz/corpus/${t%_fuzzer}"
  mkdir -p "$work/$t" "$BUILD/artifacts"
  log="$work/$t.log"
  start=$SECONDS
  status=PASS
  # -timeout: one input taking this long is a hang, reported as a failure.
  # TMPDIR: the chain target's scratch files go with the rest, even when a
  # crash skips its own clean-up.
  if ! TMPDIR="$work" ASAN_OPTIONS="detect_leaks=$leaks${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
       UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
       "${noaslr[@]}" "$BUILD/bin/$t" -max_total_time="$SECONDS_PER_TARGET" \
       -rss_limit_mb=2048 -timeout=20 -detect_leaks="$leaks" \
       -print_final_stats=1 -print_funcs=0 -artifact_prefix="$BUILD/artifacts/$t-" \
       "$work/$t" "$seeds" >"$log" 2>&1; then
    status=FAIL
    failed=1
  fi
  # (A run that fails on a seed prints no coverage.)
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)"
  seed_count="$(find "$seeds" -type f | wc -l)"
  new="$(find "$work/$t" -type f | wc -l)"
  printf 'fuzz: %-24s %s in %3ds: %s runs, coverage %s, %s seeds + %s new inputs\n' \
    "$t" "$status" $((SECONDS - start)) "${runs:-?}" "${cov:-?}" \
    "$seed_count" "$new"
  if [[ "$status" == FAIL ]]; then
    # The report: the contract message or sanitizer trace, and the input.
    grep -v -E '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|INITED|RELOAD)' "$log" |
      tail -60 | sed "s/^/  $t: /" >&2
  fi
  if [[ -n "${UPAGER_FUZZ_KEEP:-}" ]]; then
    mkdir -p "$UPAGER_FUZZ_KEEP/$t"
    cp -n "$work/$t"/* "$UPAGER_FUZZ_KEEP/$t/" 2>/dev/null || true
  fi
done
exit "$failed"
