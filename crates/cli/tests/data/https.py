#!/usr/bin/env python3
"""HTTPS peers of crates/cli/tests/tls.rs.

server CERT KEY       keep-alive HTTP/1.1 over TLS on 127.0.0.1, any port; prints
                      {"pid": .., "port": ..}, then answers every GET with
                      "path=<path>\\n".
client CA PORT PATH   one keep-alive connection: GETs PATH, prints "got <status>
                      <body>" and "ready", then GETs each path read from stdin on
                      the same connection (printing "got ..."), or on a new
                      connection for a line "new PATH"; exits at EOF.
"""
import http.client
import http.server
import json
import os
import socketserver
import ssl
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
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


def server(cert, key):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    print(json.dumps({"pid": os.getpid(), "port": httpd.server_address[1]}), flush=True)
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


if __name__ == "__main__":
    {"server": server, "client": client}[sys.argv[1]](*sys.argv[2:])
