#!/bin/bash
# Makes the golden captures of crates/packet/tests/golden.rs, as root, in a
# network namespace of its own (only its loopback): an HTTP exchange
# (python3 http.server, curl), DNS queries and responses (a tiny responder
# in python, answering A/AAAA/NXDOMAIN), a TLS handshake with SNI and ALPN
# (openssl s_server / s_client -alpn h2,http/1.1). Then what tshark says of
# each packet (`_ws.col.Info`, absolute sequence numbers, no reassembly) into
# NAME.tshark. Run from this directory: sudo ./capture.sh
set -eu
here=$(pwd)
if [ "${1:-}" != inside ]; then
    exec unshare --net bash "$0" inside
fi
ip link set lo up
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
cap() { # NAME FILTER: start tcpdump, wait until it listens
    tcpdump -i lo --immediate-mode -U -s 0 -w "$here/$1.pcap" "$2" 2>"$tmp/$1.err" &
    tcpdump_pid=$!
    until grep -q listening "$tmp/$1.err"; do sleep 0.1; done
}
stop() { sleep 0.5; kill "$tcpdump_pid"; wait "$tcpdump_pid" 2>/dev/null || true; }

# HTTP
mkdir "$tmp/www" && echo hello > "$tmp/www/index.html"
(cd "$tmp/www" && python3 -m http.server 8089 --bind 127.0.0.1 >/dev/null 2>&1) &
until curl -s -o /dev/null http://127.0.0.1:8089/; do sleep 0.1; done
cap http "tcp port 8089"
curl -s -o /dev/null -H 'User-Agent: pidcap-golden' http://127.0.0.1:8089/index.html
curl -s -o /dev/null http://127.0.0.1:8089/missing
stop

# DNS
cat > "$tmp/dns.py" <<'PY'
import socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 53))
for _ in range(3):
    q, a = s.recvfrom(512)
    name_end = q.index(b"\0", 12) + 5
    qtype = struct.unpack("!H", q[name_end - 4:name_end - 2])[0]
    name = q[12:name_end - 4]
    if name.startswith(b"\x04nope"):
        s.sendto(q[:2] + b"\x81\x83" + q[4:6] + b"\0\0\0\0\0\0" + q[12:name_end], a); continue
    if qtype == 1:
        rr = [b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x0e\x10\x00\x04" + bytes([10, 0, 0, i]) for i in (1, 2)]
    else:
        rr = [b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x0e\x10\x00\x10" + bytes(15) + b"\x01"]
    s.sendto(q[:2] + b"\x81\x80" + q[4:6] + struct.pack("!HHH", len(rr), 0, 0) + q[12:name_end] + b"".join(rr), a)
PY
python3 "$tmp/dns.py" & sleep 0.5
cap dns "udp port 53"
python3 - <<'PY'
import socket, struct
def q(i, name, t):
    m = struct.pack("!HHHHHH", i, 0x0100, 1, 0, 0, 0)
    for l in name.split("."): m += bytes([len(l)]) + l.encode()
    return m + b"\0" + struct.pack("!HH", t, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for i, name, t in ((0x1234, "example.com", 1), (0x2345, "example.com", 28), (0x3456, "nope.example", 1)):
    s.sendto(q(i, name, t), ("127.0.0.1", 53)); s.recvfrom(512)
PY
stop

# TLS
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=example.org \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null
for v in tls1_3 tls1_2; do
    sleep 3 | openssl s_server -accept 127.0.0.1:8443 -cert "$tmp/cert.pem" -key "$tmp/key.pem" -alpn h2,http/1.1 -naccept 1 -"$v" >/dev/null 2>&1 &
    sleep 0.5
    cap "$v" "tcp port 8443"
    echo | openssl s_client -connect 127.0.0.1:8443 -servername example.org -alpn h2,http/1.1 -"$v" >/dev/null 2>&1 || true
    stop
done

opts=(-o tcp.relative_sequence_numbers:FALSE -o tcp.analyze_sequence_numbers:FALSE
    -o tcp.desegment_tcp_streams:FALSE -o tls.desegment_ssl_records:FALSE -d tcp.port==8443,tls -d tcp.port==8089,http)
for f in http dns tls1_3 tls1_2; do
    tshark -r "$here/$f.pcap" "${opts[@]}" -T fields -e _ws.col.Info > "$here/$f.tshark" 2>/dev/null
done
# Display filters: the frames tshark selects, one `FILTER<tab>N,N,...` line per filter and file.
: > "$here/filters.tshark"
while read -r filter; do
    for f in http dns tls1_3 tls1_2; do
        frames=$(tshark -r "$here/$f.pcap" "${opts[@]}" -Y "$filter" -T fields -e frame.number 2>/dev/null | paste -sd,)
        printf '%s\t%s\t%s\n' "$f" "$filter" "$frames" >> "$here/filters.tshark"
    done
done <<'FILTERS'
tcp.port == 8089
tcp.srcport == 8443
tcp.flags.syn == 1
tcp.flags.syn == 1 && tcp.flags.ack == 1
tcp.flags.fin == 1 || tcp.flags.reset == 1
tcp.len > 0
tcp.len == 0 && !tcp.flags.syn == 1
ip.len > 100
ip.addr == 127.0.0.0/8
ip.dst == 127.0.0.1 && udp
tcp.port in {8089, 8443}
tcp.window_size_value > 60000
http.request || http.response
http.request.method == "GET"
http.request.uri contains "missing"
http.host contains "127.0.0.1"
http.user_agent == "pidcap-golden"
http.response.code == 404
http.response.code != 404
dns
dns.qry.name == "example.com"
dns.qry.type == 28
dns.flags.response == 1
dns.a == 10.0.0.2
dns.aaaa == ::1
dns.flags.rcode == 3
udp.port == 53 && !(dns.flags.response == 1)
tls.handshake.type == 1
tls.handshake.type == 2
tls.handshake.extensions_server_name == "example.org"
tls.handshake.extensions_alpn_str == "h2"
tls.record.content_type == 23
tls.record.content_type == 20 and tls.record.content_type == 22
frame contains "HTTP/1.0"
tcp.payload contains "index"
FILTERS
