#!/usr/bin/env bash
# README command (1): installs what is missing, builds, and runs the gateway on a simulated
# building — three energy meters, a card reader, a door controller with its event log and a
# camera's alert stream, all simulated, and a local mosquitto, all on loopback ports picked now —
# and shows the events as a central subscriber decodes them. Stops after DEMO_SECONDS
# (default 30) or on Ctrl-C, then prints what arrived.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${DEMO_SECONDS:-30}
bash "$root/tools/install-deps.sh"
echo "demo: building (the first time takes a few minutes)..." >&2
bash "$root/tools/build.sh" >/tmp/gw-demo-build.log 2>&1 || {
  tail -50 /tmp/gw-demo-build.log; echo "demo: build failed (log: /tmp/gw-demo-build.log)" >&2; exit 1; }
build=${BUILD_DIR:-$root/build}

run=$(mktemp -d /tmp/gw-demo-XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "demo: logs are in $run" >&2
}
trap cleanup EXIT
trap 'exit 0' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "demo: port $1 never opened" >&2; exit 1; }

broker_port=$(free_port)
cat >"$run/mosquitto.conf" <<CONF
listener $broker_port 127.0.0.1
allow_anonymous true
CONF
mosquitto -c "$run/mosquitto.conf" 2>"$run/mosquitto.log" & pids+=($!)
wait_port "$broker_port"

"$build/tools/sim/modbus_tcp_sim" --devices 3 --tick-ms 1000 --ports-file "$run/ports.txt" \
  >"$run/sim.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do [ -s "$run/ports.txt" ] && [ "$(wc -l <"$run/ports.txt")" -ge 3 ] && break; sleep 0.1; done

# sim_port LOG PATTERN FIELD: the port a simulator printed (that field of its first matching line).
sim_port() {
  for _ in $(seq 100); do
    p=$(awk -v pat="$2" -v f="$3" '$0 ~ pat {print $f; exit}' "$1" 2>/dev/null)
    [ -n "$p" ] && { echo "$p"; return 0; }; sleep 0.1
  done
  echo "demo: simulator log $1 never said where it listens" >&2; exit 1
}
# A card reader behind a serial-to-Ethernet converter: a swipe every 3 s.
"$build/tools/sim/card_reader_sim" --tcp --port 0 --framing line --format decimal --seed 4200100 \
  --rate 0.33 --count 100000 >"$run/reader.log" 2>&1 & pids+=($!)
# A UHPPOTE door controller: a passage every 4 s (every 10th denied), kept in its event log.
"$build/tools/sim/gate_sim" --gates uhppote --uhppote-port 0 --serial-number 405419896 --rate 0.25 \
  </dev/null >"$run/gate.log" 2>&1 & pids+=($!)
# A Hikvision camera's alert stream (digest login): motion on and off, a line crossing.
camera_password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
"$build/tools/sim/camera_sim" stream --vendor hikvision --port 0 --auth digest --user gateway \
  --password "$camera_password" --heartbeat 10 --start-delay 3 --interval 4 \
  --sequence 'VMD@1=active*3,VMD@1=inactive,linedetection@2=active,linedetection@2=inactive,VMD@1=active*2,VMD@1=inactive' \
  >"$run/camera.log" 2>&1 & pids+=($!)
reader_port=$(sim_port "$run/reader.log" '^listening ' 2)
gate_port=$(sim_port "$run/gate.log" '^uhppote ' 3)
camera_port=$(sim_port "$run/camera.log" '^listening ' 3)
[ -n "$reader_port" ] && [ -n "$gate_port" ] && [ -n "$camera_port" ] || exit 1

# The demo config: deploy/demo/gateway.yaml with this run's ports filled in, plus the secrets it
# names: the card-id HMAC key and the camera password, each readable only by its owner.
(umask 077; head -c 32 /dev/urandom >"$run/card.key"; printf '%s\n' "$camera_password" >"$run/camera.pass")
mapfile -t ports < <(awk '{print $NF}' "$run/ports.txt")
metrics_port=$(free_port)
sed -e "s/@BROKER_PORT@/$broker_port/" -e "s/@METRICS_PORT@/$metrics_port/" -e "s/@METER0_PORT@/${ports[0]}/" \
    -e "s/@METER1_PORT@/${ports[1]}/" -e "s/@METER2_PORT@/${ports[2]}/" \
    -e "s/@READER_PORT@/$reader_port/" -e "s/@GATE_PORT@/$gate_port/" -e "s/@CAMERA_PORT@/$camera_port/" \
    "$root/deploy/demo/gateway.yaml" >"$run/gateway.yaml"

"$build/tools/central/central_subscriber" --uri "tcp://127.0.0.1:$broker_port" \
  --client-id demo-central --report "$run/report.json" & pids+=($!)
sleep 0.5
"$build/gateway/gatewayd" --config "$run/gateway.yaml" 2>"$run/gatewayd.log" & pids+=($!)
gw_pid=$!
echo "demo: gateway running (config $run/gateway.yaml, log $run/gatewayd.log); showing events for ${seconds}s, Ctrl-C to stop" >&2
echo "demo: meanwhile, in another terminal:  $build/tools/gatewayctl/gatewayctl --config $run/gateway.yaml status" >&2
echo "demo:                                   curl -s http://127.0.0.1:$metrics_port/metrics" >&2
sleep "$seconds"
kill -TERM "$gw_pid"; wait "$gw_pid" || true
sleep 1
echo >&2
echo "demo: what the central subscriber received:" >&2
python3 - "$run/report.json" "$seconds" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for gw, g in r.get("gateways", {}).items():
    print(f"  gateway {gw}: {g['received']} events, {g['distinct']} distinct seqs "
          f"{g['first_seq']}..{g['last_seq']}, duplicates {g['duplicates']}, gaps {g['gaps']}, "
          f"by class {g['by_class']}")
PY
