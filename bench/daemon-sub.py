#!/usr/bin/env python3
"""A minimal pidcap daemon subscriber for bench/daemon-bench.sh.

    daemon-sub.py SOCKET [--stall SECS]

Subscribes (protocol version 2), reads the event lines in big chunks and counts
packet events and the packets `missed` events say were skipped; never parses a
packet. --stall SECS: read nothing for SECS seconds after subscribing (a slow
subscriber). On SIGTERM/SIGINT prints one JSON line
{"packets":N,"missed":M,"lines":L,"bytes":B} and exits.
"""
import json
import re
import signal
import socket
import sys
import time

MISSED = re.compile(rb'"event":"missed","count":(\d+)')
PACKET = b'"event":"packet"'


def main():
    path = sys.argv[1]
    stall = float(sys.argv[sys.argv.index("--stall") + 1]) if "--stall" in sys.argv else 0.0
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(b'{"v":2,"id":1,"op":"subscribe"}\n')
    counts = {"packets": 0, "missed": 0, "lines": 0, "bytes": 0}

    def done(*_):
        print(json.dumps(counts), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, done)
    signal.signal(signal.SIGINT, done)
    first = s.recv(65536)
    if b'"subscribed":true' not in first:
        print("daemon-sub: not subscribed: %r" % first[:200], file=sys.stderr)
        sys.exit(1)
    print("subscribed", file=sys.stderr, flush=True)
    if stall > 0:
        time.sleep(stall)
    rest = first[first.index(b"\n") + 1:]
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            done()
        counts["bytes"] += len(chunk)
        data = rest + chunk
        cut = data.rfind(b"\n") + 1
        whole, rest = data[:cut], data[cut:]
        counts["lines"] += whole.count(b"\n")
        counts["packets"] += whole.count(PACKET)
        if b'"missed"' in whole:
            counts["missed"] += sum(int(m.group(1)) for m in MISSED.finditer(whole))


if __name__ == "__main__":
    main()
