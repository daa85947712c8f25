#!/usr/bin/env python3
"""Test peer for pidcap's integration tests: small TCP/UDP servers and clients.

Every mode prints one JSON line describing itself on stdout (pid, ports),
so tests can check what pidcap attributed. Servers print {"ready": ...}
once they listen, and run until killed. Traffic only goes where told
(the tests use loopback inside their own network namespaces).

  peer.py tcp-server HOST PORT
  peer.py tcp-client HOST PORT COUNT [MESSAGE]
  peer.py tcp-client-loop HOST PORT SECONDS      (connect repeatedly)
  peer.py tcp-hold HOST PORT                     (connect, wait for a line on stdin, send it)
  peer.py udp-server HOST PORT                   (echoes each datagram)
  peer.py udp-client HOST PORT COUNT [MESSAGE]
"""
import json
import os
import socket
import sys
import time


def family(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def say(**kw):
    # One write for the line and its newline: its stdout is often pidcap
    # run's, shared with pidcap's own lines, and print() writes the text and
    # the newline apart when unbuffered (PYTHONUNBUFFERED=1, as on the CI
    # machines), so a pidcap line could land between the two.
    sys.stdout.write(json.dumps(kw) + "\n")
    sys.stdout.flush()


def read_to_end(c):
    """Everything the peer sends until it closes."""
    reply = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            return reply
        reply += chunk


def tcp_server(host, port):
    s = socket.socket(family(host), socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    say(ready=True, pid=os.getpid(), port=s.getsockname()[1])
    while True:
        c, _ = s.accept()
        with c:
            data = b""
            while not data.endswith(b"\n"):
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            c.sendall(b"echo:" + data)


def tcp_client(host, port, count, message):
    ports = []
    for i in range(count):
        c = socket.create_connection((host, port), timeout=5)
        ports.append(c.getsockname()[1])
        c.sendall(message.encode() + b" %d\n" % i)
        read_to_end(c)
        c.close()
    say(pid=os.getpid(), ports=ports)


def tcp_client_loop(host, port, seconds):
    ports = []
    end = time.time() + seconds
    while time.time() < end:
        try:
            c = socket.create_connection((host, port), timeout=5)
            ports.append(c.getsockname()[1])
            c.sendall(b"other\n")
            while c.recv(65536):
                pass
            c.close()
        except OSError:
            pass
        time.sleep(0.02)
    say(pid=os.getpid(), ports=ports)


def tcp_hold(host, port):
    c = socket.create_connection((host, port), timeout=10)
    say(ready=True, pid=os.getpid(), port=c.getsockname()[1])
    line = sys.stdin.readline()
    c.sendall(line.encode())
    say(pid=os.getpid(), reply=read_to_end(c).decode())


def udp_server(host, port):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.bind((host, port))
    say(ready=True, pid=os.getpid(), port=s.getsockname()[1])
    while True:
        data, addr = s.recvfrom(65536)
        s.sendto(b"echo:" + data, addr)


def udp_client(host, port, count, message):
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.settimeout(5)
    for i in range(count):
        s.sendto(message.encode() + b" %d" % i, (host, port))
        s.recvfrom(65536)
    say(pid=os.getpid(), ports=[s.getsockname()[1]])


def main(argv):
    mode = argv[1]
    host, port = argv[2], int(argv[3])
    if mode == "tcp-server":
        tcp_server(host, port)
    elif mode == "tcp-client":
        tcp_client(host, port, int(argv[4]), argv[5] if len(argv) > 5 else "hello")
    elif mode == "tcp-client-loop":
        tcp_client_loop(host, port, float(argv[4]))
    elif mode == "tcp-hold":
        tcp_hold(host, port)
    elif mode == "udp-server":
        udp_server(host, port)
    elif mode == "udp-client":
        udp_client(host, port, int(argv[4]), argv[5] if len(argv) > 5 else "hello")
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main(sys.argv)
