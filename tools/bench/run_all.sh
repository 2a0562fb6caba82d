#!/usr/bin/env bash
# Runs every benchmark and prints their tables and BENCH lines (README: "Performance").
#
#   tools/bench/run_all.sh [--smoke] [--long] [--build-dir DIR]
#
#   --smoke      tiny sizes, a couple of minutes in all (CI: asserts completion and figures only)
#   --long       60 s polling windows instead of 20 s
#   --build-dir  the CMake build folder (default $GW_BUILD_DIR, else ./build); the bench targets
#                are built in it first when it is a configured build folder
#
# Every server listens on 127.0.0.1 on a free port; every process a benchmark starts is stopped
# when it ends, fails or is interrupted.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${GW_BUILD_DIR:-$root/build}
mode=()
poll_mode=()
while (($#)); do
  case $1 in
    --smoke) mode=(--smoke); poll_mode+=(--smoke) ;;
    --long) poll_mode+=(--long) ;;
    --build-dir) build=$2; shift ;;
    --build-dir=*) build=${1#*=} ;;
    -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "run_all.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
build=$(cd "$build" 2>/dev/null && pwd) ||
  { echo "run_all.sh: no build folder $build" >&2; exit 2; }
export GW_BUILD_DIR=$build

if [ -f "$build/build.ninja" ] || [ -f "$build/Makefile" ]; then
  cmake --build "$build" -j2 --target gatewayd modbus_tcp_sim fill_buffer e2e_bench bare_poll \
    || { echo "run_all.sh: building the bench targets failed" >&2; exit 1; }
fi

child=
on_signal() {
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
  exit 130
}
trap on_signal INT TERM

failed=()
run() {
  local name=$1; shift
  echo "### $name: $*"
  local start=$SECONDS
  python3 "$@" &
  child=$!
  if wait "$child"; then
    echo "### $name done in $((SECONDS - start)) s"
  else
    echo "### $name FAILED (exit $?) after $((SECONDS - start)) s"
    failed+=("$name")
  fi
  child=
}

echo "### host: $(nproc) cores, $(uname -r), $(date -u +%FT%TZ), build $build"
run e2e "$here/e2e.py" "${mode[@]}"
run backlog "$here/backlog.py" "${mode[@]}"
run polling "$here/polling.py" "${poll_mode[@]}"

if ((${#failed[@]})); then
  echo "### failed: ${failed[*]}"
  exit 1
fi
echo "### all benchmarks completed"
