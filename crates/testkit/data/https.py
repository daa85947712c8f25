#!/usr/bin/env python3
"""HTTPS peers of pidcap's TLS tests (pidcap_testkit::tls), 127.0.0.1 only.

Every server prints `port N` (its listening port) first, flushed.

server CERT KEY [PORT]    keep-alive HTTP/1.1 (http.server) on PORT (0, the
                          default: any); GET /bulk/N answers N bytes, any other
                          path "path=<path>\\n".
client CA PORT PATH       one keep-alive connection (http.client): GETs PATH,
                          prints "got <status> <body>" and "ready", then GETs
                          each path read from stdin on the same connection
                          (printing "got ..."), or on a new connection for a
                          line "new PATH"; exits at EOF.
late CA PORT              maps no TLS library until its first stdin line: prints
                          "started"; at that line imports ssl (dlopen of libssl),
                          prints "imported", then GETs each later line's path on
                          one keep-alive connection, printing "got <status> <body>".
echo-server CERT KEY [LOG]  raw TLS sockets, kept alive: each read is answered
                          200 "echo: <its first line>"; every byte of plaintext
                          received is appended to LOG when given.
raw-client CA PORT [PATH] one kept-alive TLS connection (raw socket), prints
                          "ready"; with PATH: "GET PATH HTTP/1.1" every 200 ms;
                          without: a GET per path read from stdin, printing
                          "got <body>" (the answer's last line).
tls-echo CERT KEY         one request per connection, then close; listens on
                          the same port on ::1 too when it can; one line per
                          event: `conn N` (accepted), `handshake-failed N
                          REASON`, `request N HEX` (what connection N sent, up
                          to the end of the HTTP head or until the client
                          stopped sending); answers `HTTP/1.0 200 OK` with the
                          body `you sent: <request>`.
"""
import sys

if sys.argv[1:2] == ["late"]:
    _, _, ca, port = sys.argv
    print("started", flush=True)
    sys.stdin.readline()
    import http.client  # noqa: E402  (ssl is loaded here, not at start)
    import ssl  # noqa: E402

    print("imported", flush=True)
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx)
    for line in sys.stdin:
        conn.request("GET", line.strip())
        r = conn.getresponse()
        print("got", r.status, r.read().decode().strip(), flush=True)
    sys.exit(0)

import http.client  # noqa: E402
import http.server  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import socketserver  # noqa: E402
import ssl  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/bulk/"):
            n = int(self.path[len("/bulk/"):])
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            chunk = b"x" * 65536
            while n > 0:
                self.wfile.write(chunk[: min(n, len(chunk))])
                n -= len(chunk)
            return
        body = ("path=%s\n" % self.path).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def server_context(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def server(cert, key, port="0"):
    ctx = server_context(cert, key)
    httpd = Server(("127.0.0.1", int(port)), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print("port", httpd.server_address[1], flush=True)
    httpd.serve_forever()


def client(ca, port, path):
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx)
    conn.request("GET", path)
    r = conn.getresponse()
    print("got", r.status, r.read().decode().strip(), flush=True)
    print("ready", flush=True)
    for line in sys.stdin:
        path = line.strip()
        if path.startswith("new "):
            conn.close()
            conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx)
            path = path[4:]
        conn.request("GET", path)
        r = conn.getresponse()
        print("got", r.status, r.read().decode().strip(), flush=True)


def echo_server(cert, key, log=None):
    ctx = server_context(cert, key)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    f = open(log, "ab", buffering=0) if log else None

    def serve(c):
        try:
            with ctx.wrap_socket(c, server_side=True) as t:
                while True:
                    data = t.recv(65535)
                    if not data:
                        return
                    if f:
                        f.write(data)
                    body = b"echo: " + data.split(b"\r\n", 1)[0]
                    t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (OSError, ssl.SSLError):
            return

    print("port", s.getsockname()[1], flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def raw_client(ca, port, path=None):
    port = int(port)
    ctx = ssl.create_default_context(cafile=ca)
    c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
    print("ready", flush=True)
    if path is not None:
        request = b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path.encode(), port)
        while True:
            c.sendall(request)
            c.recv(1000)
            time.sleep(0.2)
    for line in sys.stdin:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (line.strip().encode(), port))
        print("got", c.recv(1000).split(b"\r\n")[-1].decode(), flush=True)


def tls_echo(cert, key):
    ctx = server_context(cert, key)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    listeners = [srv]
    # The same port on ::1 too (when loopback has IPv6), so that `localhost`
    # works whichever address the resolver gives first.
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


MODES = {
    "server": server,
    "client": client,
    "echo-server": echo_server,
    "raw-client": raw_client,
    "tls-echo": tls_echo,
}

if __name__ == "__main__":
    MODES[sys.argv[1]](*sys.argv[2:])
