#!/usr/bin/env bash
# The main job, end to end: build pidcap, start a local web server, run curl
# under `pidcap run` into demo.pcapng, and show the capture with tshark,
# the process on every packet. Needs root (sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p pidcap-cli
python3 -m http.server 18080 --bind 127.0.0.1 >/dev/null 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18080/ && break; sleep 0.1; done
target/release/pidcap run -w demo.pcapng -- curl -s -o /dev/null http://127.0.0.1:18080/
tshark -r demo.pcapng -T fields -e frame.number -e ip.src -e tcp.srcport -e ip.dst -e tcp.dstport -e tcp.flags.str -e frame.comment 2>/dev/null
echo "wrote demo.pcapng (open it in Wireshark: the process is in each packet's comment)"
