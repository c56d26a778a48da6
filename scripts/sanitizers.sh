#!/usr/bin/env bash
# The sanitizer part of command (2): scripts/test.sh runs this after the main
# suite (UPAGER_SANITIZERS=0 skips it, for quick local runs). Three trees next
# to build/, all built with clang++ (scripts/setup.sh installs it), each
# ending with a summary line:
#
#   build-clang  -Wthread-safety -Werror over every target, benchmarks
#                included; compiled and linked, not run. Keeps the
#                ABSL_GUARDED_BY annotations honest (gcc ignores them).
#   build-asan   -fsanitize=address,undefined, the whole suite with leak
#                checking on.
#   build-tsan   -fsanitize=thread, the whole suite but the tests listed in
#                tsan_tests below. Debian's Abseil is not instrumented:
#                cmake/tsan_absl_mutex.cc makes absl::Mutex visible to TSan
#                (without it every guarded access is reported as a race);
#                scripts/tsan.supp says what is suppressed and why.
#   build-fuzz   the libFuzzer targets (scripts/fuzz.sh), each for a short
#                bounded run from its committed seeds. UPAGER_FUZZ=0 skips
#                them alone.
#
# Every build runs even if an earlier one failed; the exit status is non-zero
# if any did.
# shellcheck disable=SC2317  # the build and test functions are called by step
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
JOBS="$(nproc)"

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

# clang 14's ASan and TSan runtimes cannot lay out their shadow memory when
# the kernel randomizes mmap with more than 28 bits (some distributions set
# vm.mmap_rnd_bits=32): there the suites run without address randomization.
noaslr=()
if (($(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28) > 28)); then
  noaslr=(setarch "$(uname -m)" -R)
fi

summary=()
failed=0

# step NAME FUNCTION: runs FUNCTION, then prints and records one summary line.
step() {
  local name="$1" fn="$2" start=$SECONDS status=PASS
  note=""
  "$fn" || status=FAIL
  local line
  line="$(printf 'sanitizers: %-34s %s in %3ds%s' "$name" "$status" \
    $((SECONDS - start)) "${note:+ ($note)}")"
  echo "$line"
  summary+=("$line")
  [[ "$status" == PASS ]] || failed=1
  [[ "$status" == PASS ]]
}

# configure DIR ARGS...: (re)configures DIR with clang++ (cheap when the
# cache already matches).
configure() {
  local dir="$1"
  shift
  cmake -S "$ROOT" -B "$dir" "${generator[@]}" -DCMAKE_CXX_COMPILER=clang++ \
    "$@" >/dev/null
}

# --- clang -Wthread-safety -Werror. -O0: clang's warnings come from the
# front end, so the optimiser would only cost time; -DNDEBUG keeps the
# Release build's view of the code.
clang_build() {
  configure "$ROOT/build-clang" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CXX_FLAGS_RELEASE="-O0 -DNDEBUG" -DUPAGER_WERROR=ON \
    -DUPAGER_BUILD_TESTS=ON -DUPAGER_BUILD_BENCH=ON -DUPAGER_BUILD_SAMPLES=ON &&
    cmake --build "$ROOT/build-clang" -j "$JOBS"
}

# Sanitizer trees: -O1 keeps the suites fast enough, line tables name the
# line in reports, and warnings do not stop them (the main build and
# build-clang are where warnings fail the run). No benchmarks: nothing runs
# them here.
sanitizer_build() {
  local dir="$1" sanitize="$2"
  configure "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
    -DUPAGER_SANITIZE="$sanitize" -DUPAGER_WERROR=OFF \
    -DUPAGER_BUILD_TESTS=ON -DUPAGER_BUILD_BENCH=OFF \
    -DUPAGER_BUILD_SAMPLES=ON &&
    cmake --build "$dir" -j "$JOBS"
}

# Tests left out of both sanitizer suites: Install.* build a consumer
# without -fsanitize against the installed (instrumented) static libraries,
# which cannot link; the main suite covers the packaging.
common_excludes='^Install\.'

# --- ASan + UBSan.
asan_build() { sanitizer_build "$ROOT/build-asan" address,undefined; }

# LeakSanitizer stops the world with ptrace, so it cannot run under a tracer
# (strace, gdb) or where ptrace is forbidden (some containers), and then
# every test would fail. A program that leaks tells whether it works here.
leak_checking_works() {
  local probe="$ROOT/build-asan/lsan_probe" out
  printf 'int* p;\nint main() { p = new int[4]; p = nullptr; }\n' |
    clang++ -x c++ -fsanitize=address -o "$probe" - || return 1
  if out="$("${noaslr[@]}" "$probe" 2>&1)"; then return 1; fi
  grep -q 'LeakSanitizer: detected memory leaks' <<<"$out"
}

asan_tests() {
  local leaks=1
  if ! leak_checking_works; then
    if [[ "${UPAGER_REQUIRE_FEATURES:-0}" == 1 ]]; then
      note="LeakSanitizer cannot run on this machine"
      return 1
    fi
    leaks=0
    note="leaks NOT checked: LeakSanitizer cannot run here"
  fi
  # handle_sigbus=0: the death tests expect the process to die of the SIGBUS
  # a failed fill delivers; ASan would catch it and exit with its own report.
  local asan="handle_sigbus=0:detect_leaks=$leaks"
  asan+=":detect_stack_use_after_return=1"
  asan+=":check_initialization_order=1:strict_init_order=1"
  (cd "$ROOT/build-asan" &&
    ASAN_OPTIONS="$asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}" \
    UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}" \
      "${noaslr[@]}" ctest --output-on-failure -j 2 --timeout 600 \
      -E "$common_excludes")
}

# --- TSan.
tsan_build() { sanitizer_build "$ROOT/build-tsan" thread; }

tsan_tests() {
  # Left out: a fork() child that destroys the Runtime detaches the parent's
  # service threads, which do not exist in the child; TSan's thread registry
  # cannot follow that and stops with an internal CHECK failure. And the
  # 1 TiB region: TSan's fixed memory layout leaves its application range
  # only ~1.5 TiB, so one mapping of 1 TiB fits or not depending on what
  # else the process mapped first (seen once: ENOMEM). The main and ASan
  # runs cover it.
  local excludes="$common_excludes|^(signal/)?ForkTest\.ChildDestroyingTheRuntime|^(signal/)?LimitsTest\.OneTebibyteRegion"
  (cd "$ROOT/build-tsan" &&
    TSAN_OPTIONS="handle_sigbus=0:second_deadlock_stack=1:suppressions=$ROOT/scripts/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}" \
      "${noaslr[@]}" ctest --output-on-failure -j 2 --timeout 600 \
      -E "$excludes")
}

# --- libFuzzer: builds and runs every target; its own lines say how each
# did.
fuzz() { "$ROOT/scripts/fuzz.sh"; }

step "clang -Wthread-safety -Werror" clang_build || true
if step "asan+ubsan build" asan_build; then
  step "asan+ubsan tests" asan_tests || true
fi
if step "tsan build" tsan_build; then
  step "tsan tests" tsan_tests || true
fi
if [[ "${UPAGER_FUZZ:-1}" != 0 ]]; then
  step "fuzz (libFuzzer, 3 targets)" fuzz || true
fi

echo "sanitizers: summary"
printf '  %s\n' "${summary[@]}"
exit "$failed"
