#!/usr/bin/env bash
# Command (2): install what is missing, build, run the whole test suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
cd "${UPAGER_BUILD_DIR:-$ROOT/build}"
# Tests share two cores and real kernel paths; two at a time keeps the run
# short without starving the fault-service threads.
exec ctest --output-on-failure -j 2 --timeout 600 "$@"
