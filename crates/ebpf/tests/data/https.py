#!/usr/bin/env python3
"""HTTPS peers of crates/ebpf/tests/tls.rs and bench/tls-bench.sh.

server CERT KEY [PORT]  keep-alive HTTP/1.1 over TLS on 127.0.0.1 (PORT 0: any);
                        prints the port, then serves: GET /bulk/N answers N bytes,
                        any other path answers "path=<path>\\n".
client CA PORT PATH     opens one keep-alive connection, GETs PATH, prints the
                        answer's first line and "ready", then for every line read
                        from stdin GETs that path on the same connection and prints
                        "got <status> <body>"; exits at EOF.
late CA PORT             maps no TLS library until its first stdin line: then
                        imports ssl (dlopen of libssl), prints "imported", and
                        GETs each later line's path on one keep-alive connection,
                        printing "got <status> <body>".
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
import socketserver  # noqa: E402
import ssl  # noqa: E402


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


def server(cert, key, port="0"):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd = Server(("127.0.0.1", int(port)), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print(httpd.server_address[1], flush=True)
    httpd.serve_forever()


def client(ca, port, path):
    ctx = ssl.create_default_context(cafile=ca)
    conn = http.client.HTTPSConnection("127.0.0.1", int(port), context=ctx)
    conn.request("GET", path)
    r = conn.getresponse()
    print("got", r.status, r.read().decode().strip(), flush=True)
    print("ready", flush=True)
    for line in sys.stdin:
        conn.request("GET", line.strip())
        r = conn.getresponse()
        print("got", r.status, r.read().decode().strip(), flush=True)


if __name__ == "__main__":
    {"server": server, "client": client}[sys.argv[1]](*sys.argv[2:])
