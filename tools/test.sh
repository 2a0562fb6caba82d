#!/usr/bin/env bash
# README command (2): installs what is missing, builds, and runs the whole test suite (unit and
# integration; integration tests start their own mosquitto and simulators on loopback ports).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/tools/install-deps.sh"
bash "$root/tools/build.sh"
cd "${BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 300 "$@"
