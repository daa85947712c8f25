#!/usr/bin/env python3
"""Processes for the pid reuse tests (tests/pidreuse.rs): a target that
exits when told, a successor that is given the target's pid once it is free,
and a parent whose child exits.

Each mode prints JSON lines on stdout and takes commands, one per line, on
stdin. Lines are read byte by byte (no buffering), so that a forked child
reads the commands its parent has not.

  pidreuse.py target HOST TCP_PORT UDP_PORT [COMM]
      {"ready", "pid"}; "go": connect to TCP_PORT, then a datagram
      "from-target" to UDP_PORT and its echo -> {"pid", "connect", "udp_port"};
      "exit" (or end of input): exit.
  pidreuse.py successor PID HOST TCP_PORT UDP_PORT COUNT [COMM]
      {"ready"}; "go": fork until a child is given PID (writing PID-1 to
      /proc/sys/kernel/ns_last_pid before each fork) -> {"pid", "forks"} from
      the child, or {"error"} and exit status 3; "connect": COUNT connections
      to TCP_PORT and a datagram "from-successor" -> {"pid", "connected",
      "errors", "ports", "udp_port"}; "exit": exit.
  pidreuse.py parent HOST UDP_PORT
      {"ready", "pid"}; "fork": a child sends "from-child" to UDP_PORT, gets
      its echo and exits; the parent reaps it -> {"child"}; "exit": exit.

COMM, when given, becomes the process's name (/proc/self/comm).
"""
import errno
import json
import os
import socket
import sys
import time


def say(**kw):
    os.write(1, (json.dumps(kw) + "\n").encode())


def command():
    """The next line of stdin, read without buffering ("" at the end)."""
    line = b""
    while True:
        b = os.read(0, 1)
        if not b or b == b"\n":
            return line.decode().strip()
        line += b


def set_comm(comm):
    if comm:
        with open("/proc/self/comm", "w") as f:
            f.write(comm)


def connect(host, port):
    """("ok", local port) or (errno name, None)."""
    try:
        c = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno)), None
    local = c.getsockname()[1]
    c.sendall(b"tcp-hello\n")
    while c.recv(65536):
        pass
    c.close()
    return "ok", local


def datagram(host, port, payload):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.sendto(payload, (host, port))
    s.recvfrom(65536)
    local = s.getsockname()[1]
    s.close()
    return local


def target(host, tcp_port, udp_port, comm):
    set_comm(comm)
    say(ready=True, pid=os.getpid())
    while True:
        cmd = command()
        if cmd == "go":
            result, _ = connect(host, tcp_port)
            say(pid=os.getpid(), connect=result, udp_port=datagram(host, udp_port, b"from-target"))
        else:
            return


def take_pid(want, deadline_s=20.0):
    """Fork until the child is given `want`. Returns in the child (its fork
    count); the parent waits for that child and exits with its status."""
    sys.stdout.flush()
    forks = 0
    end = time.time() + deadline_s
    while time.time() < end:
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(want - 1))
        forks += 1
        pid = os.fork()
        if pid == 0:
            if os.getpid() != want:
                os._exit(0)
            return forks
        _, status = os.waitpid(pid, 0)
        if pid == want:
            os._exit(os.waitstatus_to_exitcode(status))
    say(error="could not get pid %d in %d forks: other processes took it" % (want, forks))
    os._exit(3)


def successor(want, host, tcp_port, udp_port, count, comm):
    say(ready=True)
    while True:
        cmd = command()
        if cmd == "go":
            forks = take_pid(want)
            set_comm(comm)
            say(pid=os.getpid(), forks=forks)
        elif cmd == "connect":
            connected, errors, ports = 0, [], []
            for _ in range(count):
                result, local = connect(host, tcp_port)
                if result == "ok":
                    connected += 1
                    ports.append(local)
                else:
                    errors.append(result)
            udp = datagram(host, udp_port, b"from-successor")
            say(pid=os.getpid(), connected=connected, errors=errors, ports=ports, udp_port=udp)
        else:
            os._exit(0)


def parent(host, udp_port):
    say(ready=True, pid=os.getpid())
    while True:
        cmd = command()
        if cmd == "fork":
            child = os.fork()
            if child == 0:
                try:
                    datagram(host, udp_port, b"from-child")
                finally:
                    os._exit(0)
            os.waitpid(child, 0)
            say(child=child)
        else:
            return


def main(argv):
    mode = argv[1]
    if mode == "target":
        target(argv[2], int(argv[3]), int(argv[4]), argv[5] if len(argv) > 5 else None)
    elif mode == "successor":
        successor(int(argv[2]), argv[3], int(argv[4]), int(argv[5]), int(argv[6]), argv[7] if len(argv) > 7 else None)
    elif mode == "parent":
        parent(argv[2], int(argv[3]))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main(sys.argv)
