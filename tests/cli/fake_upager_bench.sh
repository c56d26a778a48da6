#!/bin/sh
# A stand-in for upager_bench in the Cli.Bench* tests: fast and
# deterministic. Prints its arguments (upager bench sends them to stderr,
# where a test can check them), then copies canned Google Benchmark JSON to
# the --benchmark_out= path, like the real program.
#   FAKE_BENCH_JSON  the JSON to copy (default: bench_canned.json beside this)
#   FAKE_BENCH_EXIT  exit with this code instead, writing nothing
echo "fake_upager_bench $*"
if [ -n "$FAKE_BENCH_EXIT" ]; then
  exit "$FAKE_BENCH_EXIT"
fi
out=
for arg in "$@"; do
  case "$arg" in
    --benchmark_out=*) out="${arg#--benchmark_out=}" ;;
  esac
done
if [ -z "$out" ]; then
  echo "fake_upager_bench: no --benchmark_out= argument" >&2
  exit 1
fi
exec cp "${FAKE_BENCH_JSON:-$(dirname "$0")/bench_canned.json}" "$out"
