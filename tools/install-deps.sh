#!/usr/bin/env bash
# Installs every Debian 12 package the build, the demo and the tests need. Idempotent: packages
# already present are skipped, and apt is only touched when something is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config ninja-build
  libboost-dev libboost-system-dev
  libmodbus-dev
  libpaho-mqttpp-dev libpaho-mqtt-dev
  libsqlite3-dev sqlite3
  libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev
  catch2
  libssl-dev
  nlohmann-json3-dev
  mosquitto mosquitto-clients
  socat procps python3 tmux
  python3-pymodbus python3-serial-asyncio
  clang libclang-rt-14-dev clang-tidy cppcheck ccache   # fuzzing, sanitizers, static checks
  libpq-dev postgresql-15    # central_consumer's PostgreSQL store (and its test's server)
  systemd dpkg-dev adduser   # systemd-analyze (unit test), cpack's dpkg-shlibdeps, postinst
  libmosquitto-dev           # tools/bench/bare_poll: the polling floor
)
# tools/bench's Node-RED comparison needs node and npm. A machine may already have Node.js from
# elsewhere (NodeSource's nodejs ships npm, and conflicts with Debian's npm): then keep it.
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -qq
  "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The packaged mosquitto service would hold port 1883; tests and the demo run their own brokers.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto || true
fi
exit 0
