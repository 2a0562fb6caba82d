#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz, clang with ASan+UBSan) into build-fuzz/ and runs
# each one for a while: 20 s each by default (the CI smoke run); `tools/fuzz.sh --seconds 600`
# for a real session. Only some targets: `tools/fuzz.sh --seconds 60 dlt645 card_reader`.
#
# Each target starts from its committed seeds and crashers (tests/fuzz/<target>/) plus what
# earlier runs found (build-fuzz/corpus/<target>/, kept between runs). A crashing input is copied
# to tests/fuzz/<target>/crashers/ to be fixed and committed; the script then exits 1.
# Executions per target go to build-fuzz/fuzz-report.txt. `--seed N` fixes libFuzzer's random
# seed (0, the default, lets it pick): CI uses a fixed one, so that a CI run explores what the
# same run explored before it landed, and new ground is broken by long runs, not by chance in CI.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-$root/build-fuzz}
seconds=20
seed=0
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --seed) seed=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(register_map modbus_rtu modbus_tcp dlt645 card_reader camera_alert xml_reader http_auth
     uhppote control_protocol config)
((${#targets[@]})) || targets=("${all[@]}")

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DGW_FUZZ=ON "${launcher[@]}" >/dev/null
cmake --build "$build" --parallel 2 --target $(printf 'fuzz_%s ' "${targets[@]}")

report=$build/fuzz-report.txt
printf '%-18s %8s %12s %10s %8s  %s\n' target seconds executions exec/s corpus result >"$report"
failed=0
for t in "${targets[@]}"; do
  corpus=$build/corpus/$t
  artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  dirs=("$corpus" "$root/tests/fuzz/$t/seeds")
  [ -d "$root/tests/fuzz/$t/crashers" ] && dirs+=("$root/tests/fuzz/$t/crashers")
  log=$build/fuzz-$t.log
  echo "== fuzz $t for ${seconds}s"
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$build/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -seed="$seed" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${dirs[@]}" >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  size=$(find "$corpus" -type f | wc -l)
  result=ok
  if ((rc != 0)); then
    result="FAILED (exit $rc)"
    failed=1
    mkdir -p "$root/tests/fuzz/$t/crashers"
    for a in "$artifacts"/*; do
      [ -f "$a" ] && cp "$a" "$root/tests/fuzz/$t/crashers/" && result+=" $(basename "$a")"
    done
    grep -m1 -E 'ERROR: |runtime error|fuzz check failed|deadly signal' "$log" >&2 || true
    echo "   log: $log" >&2
  fi
  printf '%-18s %8s %12s %10s %8s  %s\n' "$t" "$seconds" "${execs:-0}" "${rate:-0}" "$size" "$result" >>"$report"
done
cat "$report"
exit $failed
