#!/usr/bin/env bash
# Command (2): install what is missing, build, run the whole test suite, then
# the sanitizer builds and suites (scripts/sanitizers.sh; UPAGER_SANITIZERS=0
# skips them for a quick local run). Arguments go to the main suite's ctest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
start=$SECONDS
"$ROOT/scripts/setup.sh"
echo "test: setup and build done in $((SECONDS - start))s"
start=$SECONDS
cd "${UPAGER_BUILD_DIR:-$ROOT/build}"
# Tests share two cores and real kernel paths; two at a time keeps the run
# short without starving the fault-service threads.
ctest --output-on-failure -j 2 --timeout 600 "$@"
echo "test: main suite PASS in $((SECONDS - start))s"
if [[ "${UPAGER_SANITIZERS:-1}" != 0 ]]; then
  "$ROOT/scripts/sanitizers.sh"
fi
