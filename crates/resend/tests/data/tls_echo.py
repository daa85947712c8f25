"""HTTPS echo peer for the TLS replay tests (pidcap-resend, pidcap send).

Usage: tls_echo.py CERT KEY. Listens on 127.0.0.1 (a free port; the same
port on ::1 when it can), prints
`port N`, then one line per event, flushed, so that a test waits for states:
  `conn N`              connection N accepted (TCP)
  `handshake-failed N REASON`
  `request N HEX`       what connection N sent (up to the end of the HTTP
                        head, or until the client stopped sending), in hex
Each request is answered with `HTTP/1.0 200 OK` and a body that repeats the
request (`you sent: ...`), then the connection is closed.
"""
import select
import socket
import ssl
import sys

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
port = srv.getsockname()[1]
listeners = [srv]
# The same port on ::1 too (when loopback has IPv6), so that `localhost` works
# whichever address the resolver gives first.
try:
    srv6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    srv6.bind(("::1", port))
    srv6.listen(16)
    listeners.append(srv6)
except OSError:
    pass
print("port", port, flush=True)
n = 0
while True:
    ready, _, _ = select.select(listeners, [], [])
    raw, _ = ready[0].accept()
    n += 1
    print("conn", n, flush=True)
    raw.settimeout(5)
    try:
        tls = ctx.wrap_socket(raw, server_side=True)
    except (ssl.SSLError, OSError) as e:
        print("handshake-failed", n, str(e).replace("\n", " "), flush=True)
        raw.close()
        continue
    got = b""
    try:
        while b"\r\n\r\n" not in got and len(got) < 65536:
            chunk = tls.recv(65536)
            if not chunk:
                break
            got += chunk
    except (ssl.SSLError, OSError):
        pass
    print("request", n, got.hex(), flush=True)
    body = b"you sent: " + got
    head = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body)
    try:
        tls.sendall(head + body)
        tls.unwrap()
    except (ssl.SSLError, OSError):
        pass
    tls.close()
