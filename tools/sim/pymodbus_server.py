#!/usr/bin/python3
"""A Modbus server built on pymodbus, an implementation independent of the gateway's own
(libmodbus) stack, serving register values a test chose.

    pymodbus_server.py --values FILE [--port N] [--port-file FILE] [--bind ADDR]
                       [--serial PATH [--baud 9600] [--parity N|E|O] [--stopbits 1|2]
                        [--ready-file FILE]]
                       [--unit ID ...] [--sparse] [--verbose]

--values FILE is JSON: {"holding": {"0": 1234, "0x5000": 7}, "input": {...},
                        "coils": {"3": true}, "discrete": {...}}
  Keys are zero-based addresses as sent in the frame (decimal, or hex with 0x). Register values
  are 0..65535 (or -32768..-1, stored as their two's complement). Every other address of a
  table reads 0, unless --sparse: then only the listed addresses exist and a read touching any
  other one gets exception 02 (illegal data address), as a real meter would answer.

--port N serves Modbus TCP on ADDR:N (ADDR default 127.0.0.1); N = 0 picks a free port. The
  port is printed on stdout as "listening tcp ADDR PORT" and, with --port-file, written to FILE
  (via FILE.tmp + rename, so a reader never sees half a line).
--serial PATH serves Modbus RTU on a serial device or pseudo-terminal; "ready serial PATH" is
  printed once it is open, and --ready-file FILE is written then.
Both can be given at once. --unit limits the answering unit ids (default: any unit id).
SIGTERM or SIGINT stops the server and exits 0.

Exit codes: 0 stopped by a signal; 78 bad arguments or values file; 69 a port or device that
cannot be opened (or pymodbus missing).

Written against Debian 12's python3-pymodbus 3.0.0 (it reports itself as 3.0.0.rc1). Things
about that version this file relies on or works around:
  - pymodbus.server.async_io imports pyserial and serial_asyncio at module level, so even a
    TCP-only server needs python3-serial-asyncio (only a Recommends of python3-pymodbus).
  - ModbusSlaveContext defaults to zero_mode=False, which adds 1 to every request address before
    the data block lookup; zero_mode=True makes the values file's addresses the wire addresses.
  - StartAsyncSerialServer() defaults to the *ASCII* framer; the RTU framer must be passed
    explicitly (done here with ModbusSerialServer(framer=ModbusRtuFramer)).
  - The Start*Server() helpers neither report the bound port nor stop cleanly from a signal, so
    ModbusTcpServer is driven directly; the port of a --port 0 listener is read from
    server.server.sockets after `serving` resolves.
  - With a multi-unit context (--unit), a request for another unit id gets no answer at all,
    like a silent RS-485 device.
  - pymodbus.constants calls logging.basicConfig() on import.
  - The client API takes the unit id as `slave=` (read_holding_registers(0, 2, slave=1)).
  - Some kernels (the one this was written on among them) reject parity E/O on a pty with EINVAL
    from tcsetattr: use --parity N on pseudo-terminals.
"""
import argparse
import asyncio
import json
import logging
import os
import signal
import sys

try:
    from pymodbus.datastore import (ModbusSequentialDataBlock, ModbusServerContext,
                                    ModbusSlaveContext, ModbusSparseDataBlock)
    from pymodbus.server.async_io import ModbusSerialServer, ModbusTcpServer
    from pymodbus.transaction import ModbusRtuFramer, ModbusSocketFramer
    from pymodbus.version import version as pymodbus_version
except ImportError as exc:  # a clear message instead of a traceback
    print(f"pymodbus_server: cannot import pymodbus ({exc}); install python3-pymodbus and "
          "python3-serial-asyncio (tools/install-deps.sh does)", file=sys.stderr)
    sys.exit(69)

TABLES = {"holding": "hr", "input": "ir", "coils": "co", "discrete": "di"}


def fail(msg, code=78):
    """78: bad arguments or values file; 69: a device or port that cannot be opened."""
    print(f"pymodbus_server: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_values(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as exc:
        fail(f"{path}: {exc}")
    if not isinstance(doc, dict):
        fail(f"{path}: expected a JSON object with holding/input/coils/discrete")
    out = {}
    for table, entries in doc.items():
        if table not in TABLES:
            fail(f"{path}: unknown table '{table}' (expected one of {', '.join(TABLES)})")
        if not isinstance(entries, dict):
            fail(f"{path}: {table}: expected an object of address: value")
        values = {}
        for key, value in entries.items():
            try:
                address = int(key, 0)
            except ValueError:
                fail(f"{path}: {table}: address '{key}' is not a number")
            if not 0 <= address <= 65535:
                fail(f"{path}: {table}: address {address} is outside 0..65535")
            if table in ("coils", "discrete"):
                if not isinstance(value, (bool, int)):
                    fail(f"{path}: {table}[{key}]: expected true/false")
                values[address] = bool(value)
            else:
                if isinstance(value, bool) or not isinstance(value, int) or \
                        not -32768 <= value <= 65535:
                    fail(f"{path}: {table}[{key}]: expected a register value -32768..65535")
                values[address] = value & 0xFFFF
        out[table] = values
    return out


def build_context(values, sparse, units):
    blocks = {}
    for table, kw in TABLES.items():
        entries = values.get(table, {})
        bits = table in ("coils", "discrete")
        if sparse:
            # An empty sparse block would reject everything; one that holds nothing is the point.
            block = ModbusSparseDataBlock(dict(entries)) if entries else ModbusSparseDataBlock({})
        else:
            block = ModbusSequentialDataBlock(0, [False if bits else 0] * 65536)
            for address, value in entries.items():
                block.setValues(address, [value])
        blocks[kw] = block
    # zero_mode=True: the address in the request is the block address. With pymodbus' default
    # (zero_mode=False) every request address is shifted by +1 before the block lookup.
    slave = ModbusSlaveContext(zero_mode=True, **blocks)
    if not units:
        return ModbusServerContext(slaves=slave, single=True)
    return ModbusServerContext(slaves={u: slave for u in units}, single=False)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


async def serve(args, context):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    servers = []
    tasks = []
    if args.port is not None:
        tcp = ModbusTcpServer(context, framer=ModbusSocketFramer, address=(args.bind, args.port),
                              allow_reuse_address=True, loop=loop)
        tasks.append(asyncio.create_task(tcp.serve_forever()))
        await asyncio.wait_for(tcp.serving, 10)
        port = tcp.server.sockets[0].getsockname()[1]
        servers.append(tcp)
        print(f"listening tcp {args.bind} {port}", flush=True)
        if args.port_file:
            write_atomic(args.port_file, f"{port}\n")
    if args.serial:
        parity = {"N": "N", "E": "E", "O": "O"}[args.parity]
        rtu = ModbusSerialServer(context, framer=ModbusRtuFramer, port=args.serial,
                                 baudrate=args.baud, parity=parity, stopbits=args.stopbits,
                                 bytesize=8, timeout=0)
        try:
            await rtu.start()  # opens the device (pyserial-asyncio)
        except Exception as exc:  # pylint: disable=broad-except
            fail(f"cannot open serial device {args.serial}: {exc}", 69)
        if rtu.transport is None:  # pymodbus logged why (run with --verbose to see it)
            fail(f"cannot open serial device {args.serial} (on a pty, try --parity N: some "
                 "kernels reject parity settings on pseudo-terminals)", 69)
        servers.append(rtu)
        print(f"ready serial {args.serial}", flush=True)
        if args.ready_file:
            write_atomic(args.ready_file, f"{args.serial}\n")

    await stop.wait()
    if not args.verbose:
        # pymodbus logs every cancelled connection handler at ERROR while shutting down.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    for server in servers:
        await server.shutdown()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--values", required=True, help="JSON file of register values")
    ap.add_argument("--port", type=int, help="Modbus TCP port; 0 = pick a free one")
    ap.add_argument("--bind", default="127.0.0.1", help="TCP address (default 127.0.0.1)")
    ap.add_argument("--port-file", help="write the TCP port to this file")
    ap.add_argument("--serial", help="serve Modbus RTU on this serial device / pty")
    ap.add_argument("--baud", type=int, default=9600)
    ap.add_argument("--parity", choices=["N", "E", "O"], default="N")
    ap.add_argument("--stopbits", type=int, choices=[1, 2], default=1)
    ap.add_argument("--ready-file", help="written once the serial device is open")
    ap.add_argument("--unit", type=int, action="append", default=[],
                    help="answer only this unit id (repeatable; default: any)")
    ap.add_argument("--sparse", action="store_true",
                    help="only the listed addresses exist; others answer exception 02")
    ap.add_argument("--verbose", action="store_true", help="pymodbus debug logging")
    ap.add_argument("--version", action="version",
                    version=f"pymodbus_server (pymodbus {pymodbus_version.short()})")
    args = ap.parse_args()
    if args.port is None and not args.serial:
        fail("give --port (Modbus TCP) and/or --serial PATH (Modbus RTU)")
    if args.port is not None and not 0 <= args.port <= 65535:
        fail("--port must be 0..65535")
    for unit in args.unit:
        if not 0 <= unit <= 247:
            fail("--unit must be 0..247")

    # pymodbus 3.0.0's pymodbus.constants calls logging.basicConfig() when imported, so the root
    # logger already has a handler: set its level and format instead of calling basicConfig.
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    for handler in root.handlers:
        handler.setFormatter(logging.Formatter("pymodbus_server: %(levelname)s %(module)s: %(message)s"))
    context = build_context(parse_values(args.values), args.sparse, args.unit)
    try:
        asyncio.run(serve(args, context))
    except OSError as exc:
        print(f"pymodbus_server: {exc}", file=sys.stderr)
        return 69
    return 0


if __name__ == "__main__":
    sys.exit(main())
