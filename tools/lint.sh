#!/usr/bin/env bash
# Static checks over the project's own sources: clang-tidy with the curated .clang-tidy, then
# cppcheck. Both must be clean (a finding is fixed, or suppressed inline with its reason).
# Needs a configured build dir for compile_commands.json and the generated protobuf header:
# BUILD_DIR (default build/, as tools/build.sh leaves it). Build dirs and generated code are
# never checked. `tools/lint.sh tidy`, `tools/lint.sh cppcheck` or `tools/lint.sh no-exec` runs
# one of them (no-exec: daemon code calls no system/popen/fork/exec*).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build}
what=${1:-all}
cd "$root"
[ -f "$build/compile_commands.json" ] || { echo "lint: no $build/compile_commands.json; build first" >&2; exit 2; }

# The sources: product code and the fuzz targets; not the Catch2 tests, not build dirs.
mapfile -t sources < <(git ls-files --cached --others --exclude-standard -- 'protocols/*.cpp' 'storage/*.cpp' 'drivers/*.cpp' \
  'gateway/*.cpp' 'tools/*.cpp' 'tests/fuzz/*.cpp' 2>/dev/null ||
  find protocols storage drivers gateway tools tests/fuzz -name '*.cpp')
# Only what this build compiles (a file another engineer has not wired in yet is skipped).
mapfile -t sources < <(for f in "${sources[@]}"; do
  grep -q "\"file\": \"$root/$f\"" "$build/compile_commands.json" && echo "$f"; done)
echo "lint: ${#sources[@]} files"
status=0

if [[ $what == all || $what == tidy ]]; then
  echo "== clang-tidy ($(clang-tidy --version | grep -o 'version [0-9.]*'))"
  start=$SECONDS
  # compile_commands.json comes from GCC: clang needs Asio's C++20 coroutines switched on and
  # must not stop at GCC-only warning flags.
  # A file found clean is remembered (like ccache does for objects) under a key made of the file,
  # every project header, .clang-tidy and the tool's version: change any of them and it is
  # checked again. Parsing Boost takes ~20 s per file; the cache keeps CI reruns short.
  cache=${GW_TIDY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gw-clang-tidy}
  mkdir -p "$cache"
  common=$( { clang-tidy --version; cat .clang-tidy
              git ls-files --cached --others --exclude-standard -- '*.h' | sort | xargs cat; } | sha256sum | cut -c1-64)
  todo=()
  for f in "${sources[@]}"; do
    key=$( { echo "$common"; cat "$f"; } | sha256sum | cut -c1-64)
    [ -e "$cache/$key" ] || todo+=("$f")
  done
  echo "clang-tidy: ${#todo[@]} files to check, $((${#sources[@]} - ${#todo[@]})) unchanged since a clean check"
  if ((${#todo[@]})) && ! printf '%s\n' "${todo[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p "$build" --quiet \
      --extra-arg=-DBOOST_ASIO_HAS_CO_AWAIT=1 --extra-arg=-Wno-unknown-warning-option \
      -header-filter="^$root/(protocols|storage|drivers|gateway|tools|tests/fuzz)/" \
      >"$build/clang-tidy.log" 2>&1; then
    grep -E 'error:|warning:' "$build/clang-tidy.log" | sort -u || true
    echo "clang-tidy: findings above (full output: $build/clang-tidy.log)"
    status=1
  else
    # Only a wholly clean run marks its files clean (a finding fails the whole batch above).
    for f in "${todo[@]}"; do
      : >"$cache/$( { echo "$common"; cat "$f"; } | sha256sum | cut -c1-64)"
    done
    echo "clang-tidy: clean ($((SECONDS - start)) s)"
  fi
fi

if [[ $what == all || $what == cppcheck ]]; then
  echo "== cppcheck ($(cppcheck --version))"
  start=$SECONDS
  # System and library headers are not given to cppcheck: it checks our code, not Boost's.
  if ! cppcheck --quiet --std=c++20 --language=c++ --enable=warning,performance,portability \
      --inline-suppr --error-exitcode=1 -j "$(nproc)" -I "$root" -I "$build/protocols/gen" \
      --suppress=missingIncludeSystem --suppress='*:*/gen/*' \
      --template='{file}:{line}: {severity}: {message} [{id}]' \
      "${sources[@]}" 2>"$build/cppcheck.log"; then
    cat "$build/cppcheck.log"
    echo "cppcheck: findings above"
    status=1
  else
    echo "cppcheck: clean ($((SECONDS - start)) s)"
  fi
fi
if [[ $what == all || $what == no-exec ]]; then
  # Least privilege: the daemon never starts a program or a shell (README, Security).
  echo "== no program execution in daemon code"
  if grep -rnE '(^|[^a-zA-Z0-9_:.>])(::)?(system|popen|fork|vfork|execv|execvp|execve|execl|execlp|execle|posix_spawnp?)[[:space:]]*\(' \
      --include='*.cpp' --include='*.h' protocols storage drivers gateway; then
    echo "no-exec: the daemon must not execute programs (calls above)"
    status=1
  else
    echo "no-exec: clean"
  fi
fi
exit $status
