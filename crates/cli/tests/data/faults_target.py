#!/usr/bin/env python3
"""Target for pidcap's fault tests (tests/faults.rs).

  faults_target.py ALLOWED_PORT BLOCKED_PORT

Prints {"pid": PID} once started. A background thread keeps making TCP
connections to 127.0.0.1:ALLOWED_PORT (traffic for the capture file). Each
line read on stdin is a probe: one connect to 127.0.0.1:BLOCKED_PORT,
answered with {"probe": N, "ok": true} or {"probe": N, "ok": false,
"errno": E} (EPERM = 1 while a block rule is in force). Exits at the end
of stdin.
"""
import json
import os
import socket
import sys
import threading
import time


def say(**kw):
    # One write for the line and its newline: its stdout is often pidcap
    # run's, shared with pidcap's own lines, and print() writes the text and
    # the newline apart when unbuffered (PYTHONUNBUFFERED=1, as on the CI
    # machines), so a pidcap line could land between the two.
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def traffic(port):
    n = 0
    while True:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=2)
            c.sendall(b"traffic %d\n" % n)
            while c.recv(65536):
                pass
            c.close()
        except OSError:
            pass
        n += 1
        time.sleep(0.01)


def probe(n, port):
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=2)
        c.sendall(b"probe %d\n" % n)
        while c.recv(65536):
            pass
        c.close()
        say(probe=n, ok=True)
    except OSError as e:
        say(probe=n, ok=False, errno=e.errno)


def main(argv):
    allowed, blocked = int(argv[1]), int(argv[2])
    say(pid=os.getpid())
    threading.Thread(target=traffic, args=(allowed,), daemon=True).start()
    n = 0
    for _ in sys.stdin:
        probe(n, blocked)
        n += 1


if __name__ == "__main__":
    main(sys.argv)
