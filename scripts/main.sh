#!/usr/bin/env bash
# Command (1): install what is missing, build, run the main job.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
exec "${UPAGER_BUILD_DIR:-$ROOT/build}/bin/upager" tour "$@"
