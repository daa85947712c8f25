#!/usr/bin/env python3
"""UI e2e target and peer (loopback of the test's network namespace only).

  target.py listen TCP_PORT UDP_PORT LOG   TCP echo server + UDP receiver; each datagram is a line of LOG
  target.py talk TCP_PORT UDP_PORT STATUS  every 200 ms: a TCP connect + "ping N" (ok/fail line in STATUS)
                                           and a UDP "hello N" from one socket
  target.py flood UDP_PORT RATE SECONDS    UDP datagrams at RATE per second
  target.py http-server PORT LOG           HTTP server: every byte received is appended to LOG, each read answered 200
  target.py http-client PORT               one kept-alive connection: "GET / HTTP/1.1" every 200 ms
(The TLS peers are pidcap-testkit's data/https.py.)
"""
import os, socket, sys, threading, time

def listen(tcp_port, udp_port, log):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", tcp_port)); s.listen(64)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", udp_port))
    def tcp():
        while True:
            c, _ = s.accept()
            try:
                c.sendall(c.recv(1000))
            finally:
                c.close()
    threading.Thread(target=tcp, daemon=True).start()
    print("ready", flush=True)
    with open(log, "ab", buffering=0) as f:
        while True:
            data, _ = u.recvfrom(65535)
            f.write(data.replace(b"\n", b"\\n") + b"\n")

def talk(tcp_port, udp_port, status):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    n = 0
    with open(status, "a", buffering=1) as f:
        while True:
            n += 1
            try:
                c = socket.create_connection(("127.0.0.1", tcp_port), timeout=1)
                c.sendall(b"ping %d\n" % n); c.recv(100); c.close()
                f.write("ok %d\n" % n)
            except OSError as e:
                f.write("fail %d %s\n" % (n, e.errno))
            u.sendto(b"hello %d" % n, ("127.0.0.1", udp_port))
            time.sleep(0.2)

def flood(udp_port, rate, seconds):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    start = time.monotonic(); n = 0
    while time.monotonic() - start < seconds:
        n += 1
        u.sendto(b"flood %d" % n, ("127.0.0.1", udp_port))
        target = start + n / rate
        d = target - time.monotonic()
        if d > 0:
            time.sleep(d)

def http_server(port, log):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(16)
    f = open(log, "ab", buffering=0)
    def serve(c):
        with c:
            while True:
                data = c.recv(65535)
                if not data:
                    return
                f.write(data)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    print("ready", flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()

def http_client(port):
    c = socket.create_connection(("127.0.0.1", port))
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % port
    while True:
        c.sendall(request); c.recv(1000)
        time.sleep(0.2)

if __name__ == "__main__":
    m = sys.argv[1]
    if m == "listen": listen(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif m == "talk": talk(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif m == "flood": flood(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    elif m == "http-server": http_server(int(sys.argv[2]), sys.argv[3])
    elif m == "http-client": http_client(int(sys.argv[2]))
