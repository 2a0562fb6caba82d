"""A meter that answers garbage ten times a second for 8 seconds: the log gets about one line a
second for it, plus a summary of what was held back — not eighty lines — and the daemon stays
up and keeps polling its healthy neighbour."""
import argparse
import os
import re
import sys
import time

from harness import Broker, Gatewayd, Workdir, wait_for

RUN_S = 8.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", required=True)
    args = ap.parse_args()
    with Workdir("log-flood") as work:
        broker = Broker(work).start()
        link = work.file("line")
        work.spawn("rs485-sim", [os.path.join(args.build_dir, "tools/sim/rs485_sim"),
                                 "--create-pty", link, "--units", "1-2", "--baud", "38400",
                                 "--fault", "1:garbage"])
        wait_for(lambda: os.path.exists(link), 10, "the line")
        config = work.file("gateway.yaml")
        with open(config, "w") as f:
            f.write(f"""gateway: {{ id: flood-gw, site: s, building: b, data_dir: data }}
control: {{ socket: gatewayd.sock }}
mqtt: {{ uri: "{broker.uri}" }}
buses: [ {{ id: line-1, port: "{link}", baud: 38400 }} ]
devices:
  - {{ id: noisy, kind: energy_meter, driver: modbus_rtu, bus: line-1, unit_id: 1, poll: 100ms,
      timeout: 50ms, offline_after: 100, points: [ {{ name: e, address: 0, type: uint32 }} ] }}
  - {{ id: quiet, kind: energy_meter, driver: modbus_rtu, bus: line-1, unit_id: 2, poll: 100ms,
      timeout: 50ms, points: [ {{ name: e, address: 0, type: uint32 }} ] }}
""")
        gw = Gatewayd(work, args.build_dir, config)
        time.sleep(RUN_S + 3)  # +3 s: the 10 s summary tick falls inside the run
        assert gw.proc.poll() is None, "gatewayd must stay up"
        assert gw.stop() == 0
        log = gw.stderr()
        lines = [l for l in log.splitlines() if "bad frame device=noisy" in l]
        held = sum(int(m) for m in re.findall(r"\((\d+) more like it not logged\)", log))
        summaries = [l for l in log.splitlines() if "summary device=noisy" in l]
        summed = sum(int(m) for m in re.findall(r"device=noisy bad_frames_not_logged=(\d+)", log))
        bad_frames = len(lines) + held + summed
        assert bad_frames >= 50, f"expected a flood, saw {bad_frames} bad frames"
        assert len(lines) <= RUN_S + 4, f"{len(lines)} lines for one noisy meter:\n" + "\n".join(lines)
        assert summaries, "a periodic summary of what was held back"
        assert "quiet online" in log
        print(f"log flood: {bad_frames} bad frames in {RUN_S + 3:.0f}s -> {len(lines)} log lines "
              f"+ {len(summaries)} summary line(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
