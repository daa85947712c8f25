#!/usr/bin/env bash
# Soak test of the daemon (not part of `cargo test`; needs root for eBPF).
#
# A `pidcap daemon` captures one target that sends UDP at RATE packets/s for
# SOAK_MINUTES minutes, with two subscribers on its socket (and, when
# chromium is installed, a `pidcap ui` tab opened with chromium --headless).
# Every minute it samples the daemon's RSS (VmRSS) and open descriptors and
# the capture's counters; at the end it prints one verdict per check:
#   no drop:   the kernel lost nothing (ring_full, load_failed 0), the daemon
#              received every packet the target sent, and each subscriber got
#              every one of them with no `missed` event;
#   no growth: RSS at the end within 16 MB (or 10%, if more) of the sample after the
#              first minute; descriptors at the end equal to that sample.
# Exit status 0 when every verdict is PASS.
#
#   sudo scripts/soak.sh                     # 30 minutes at 20,000 packets/s
#   sudo SOAK_MINUTES=2 scripts/soak.sh      # a short run
# Environment: SOAK_MINUTES (30), RATE (20000), PIDCAP (target/release/pidcap
# if built, else target/debug/pidcap), SAMPLE_SECONDS (60), SOAK_UI (1: open
# the UI tab when chromium is there; 0: never).
set -euo pipefail

MINUTES=${SOAK_MINUTES:-30}
RATE=${RATE:-20000}
SAMPLE=${SAMPLE_SECONDS:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [[ -z "${PIDCAP:-}" ]]; then
    PIDCAP=$ROOT/target/release/pidcap
    [[ -x $PIDCAP ]] || PIDCAP=$ROOT/target/debug/pidcap
fi
[[ -x $PIDCAP ]] || { echo "soak: no pidcap binary at $PIDCAP (cargo build -p pidcap-cli)" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "soak: needs root (the daemon loads eBPF)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "soak: needs python3" >&2; exit 2; }

WORK=$(mktemp -d /tmp/pidcap-soak.XXXXXX)
SOCK=$WORK/run/pidcap.sock
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

ctl() { "$PIDCAP" ctl --socket "$SOCK" "$@"; }

echo "soak: $PIDCAP, $MINUTES min at $RATE packets/s, samples every ${SAMPLE}s, in $WORK"
"$PIDCAP" daemon --socket "$SOCK" --group root 2>"$WORK/daemon.log" &
DAEMON=$!
PIDS+=("$DAEMON")
for _ in $(seq 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || { cat "$WORK/daemon.log" >&2; echo "soak: the daemon did not start" >&2; exit 2; }

# A subscriber: counts packet and missed events until told to stop (SIGTERM), then
# prints them. It reads in large chunks and counts without parsing: a slow reader
# would be told `missed` by the daemon, which is what this checks for.
cat >"$WORK/subscriber.py" <<'EOF'
import json, re, signal, socket, sys
out = sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.sendall(b'{"v":1,"id":1,"op":"subscribe"}\n')
packets = missed = 0
tail = b""
MISSED = re.compile(rb'"event":"missed","count":(\d+)')
def done(*_):
    with open(out, "w") as o:
        json.dump({"packets": packets, "missed": missed}, o)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
while True:
    chunk = s.recv(4 << 20)
    if not chunk:
        done()
    buf = tail + chunk
    cut = buf.rfind(b"\n") + 1
    whole, tail = buf[:cut], buf[cut:]
    packets += whole.count(b'"event":"packet"')
    missed += sum(int(n) for n in MISSED.findall(whole))
EOF
# The target: UDP to a receiver in another (uncaptured) process, paced in 1 ms steps.
cat >"$WORK/target.py" <<'EOF'
import os, signal, socket, sys, time
rate, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"soak" * 16
sent = 0
go = False
def start(*_):
    global go; go = True
def stop(*_):
    with open(out, "w") as o: o.write(str(sent))
    sys.exit(0)
signal.signal(signal.SIGUSR1, start); signal.signal(signal.SIGTERM, stop)
print(os.getpid(), flush=True)
while not go: signal.pause()
t0 = time.perf_counter()
while True:
    due = int((time.perf_counter() - t0) * rate)
    while sent < due:
        try:
            s.sendto(payload, ("127.0.0.1", port)); sent += 1
        except BlockingIOError:
            break
    time.sleep(0.001)
EOF
cat >"$WORK/receiver.py" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
print(s.getsockname()[1], flush=True)
while True: s.recv(65536)
EOF

coproc RECV { exec python3 "$WORK/receiver.py"; }
PIDS+=("$RECV_PID")
read -r PORT <&"${RECV[0]}"
python3 "$WORK/target.py" "$RATE" "$PORT" "$WORK/sent" >"$WORK/target.pid" &
PIDS+=("$!")
for _ in $(seq 50); do [[ -s $WORK/target.pid ]] && break; sleep 0.1; done
TARGET=$(cat "$WORK/target.pid")

for i in 1 2; do
    python3 "$WORK/subscriber.py" "$SOCK" "$WORK/sub$i.json" &
    PIDS+=("$!")
    eval "SUB$i=$!"
done
UI_NOTE="no UI tab (chromium not found)"
if [[ ${SOAK_UI:-1} == 1 ]] && command -v chromium >/dev/null; then
    "$PIDCAP" ui --socket "$SOCK" >"$WORK/ui.out" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 100); do grep -qo 'http://[^ ]*' "$WORK/ui.out" && break; sleep 0.1; done
    URL=$(grep -o 'http://[^ ]*' "$WORK/ui.out" | head -1 || true)
    if [[ -n $URL ]]; then
        chromium --headless=new --no-sandbox --disable-gpu --user-data-dir="$WORK/chromium" \
            --remote-debugging-port=0 "$URL" >"$WORK/chromium.log" 2>&1 &
        PIDS+=("$!")
        UI_NOTE="UI tab: pidcap ui + chromium --headless on $URL"
    else
        UI_NOTE="no UI tab (pidcap ui printed no URL: $(head -c 200 "$WORK/ui.out"))"
    fi
fi
echo "soak: $UI_NOTE"
# Both subscribers are in before the first packet.
for _ in $(seq 100); do
    [[ $(ctl --json state | python3 -c 'import json,sys; print(json.load(sys.stdin)["subscribers"])') -ge 2 ]] && break
    sleep 0.1
done

ctl start --pid "$TARGET" >/dev/null
kill -USR1 "$TARGET"

sample() { # minute label
    local rss fds state
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status")
    fds=$(ls "/proc/$DAEMON/fd" | wc -l)
    state=$(ctl --json state)
    python3 - "$1" "$rss" "$fds" "$state" <<'EOF'
import json, sys
m, rss, fds, st = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
k = st["stats"]["kernel"]
print(f"{m:>6} rss_kb={rss} fds={fds} captured={k['captured']} received={st['stats']['received']} "
      f"ring_full={k['ring_full']} load_failed={k['load_failed']} subscribers={st['subscribers']}", flush=True)
EOF
}

echo "minute rss/fds/counters:"
sample 0 | tee "$WORK/samples"
END=$((SECONDS + MINUTES * 60))
m=0
while ((SECONDS < END)); do
    sleep $((SAMPLE < END - SECONDS ? SAMPLE : END - SECONDS))
    m=$((m + 1))
    sample "$m" | tee -a "$WORK/samples"
done

kill -TERM "$TARGET"
for _ in $(seq 50); do [[ -s $WORK/sent ]] && break; sleep 0.1; done
SENT=$(cat "$WORK/sent")
# Everything sent reaches the daemon and the subscribers (wait for the state, at most 30 s).
for _ in $(seq 300); do
    REC=$(ctl --json state | python3 -c 'import json,sys; print(json.load(sys.stdin)["stats"]["received"])')
    ((REC >= SENT)) && break
    sleep 0.1
done
sleep 2 # the subscribers read what is already written to them
kill -TERM "$SUB1" "$SUB2"
for _ in $(seq 50); do [[ -s $WORK/sub1.json && -s $WORK/sub2.json ]] && break; sleep 0.1; done
sample end | tee -a "$WORK/samples"
STATE=$(ctl --json state)

python3 - "$SENT" "$WORK/samples" "$WORK/sub1.json" "$WORK/sub2.json" "$STATE" "$MINUTES" "$RATE" <<'EOF'
import json, re, sys
sent, samples, s1, s2, st, minutes, rate = sys.argv[1:8]
sent = int(sent)
rows = [dict(re.findall(r"(\w+)=(\d+)", l)) for l in open(samples)]
rows = [{k: int(v) for k, v in r.items()} for r in rows]
k = json.loads(st)["stats"]
subs = [json.load(open(s1)), json.load(open(s2))]
ok = True
def verdict(name, good, detail):
    global ok
    ok &= good
    print(f"{'PASS' if good else 'FAIL'}  {name}: {detail}")
print(f"sent {sent} packets in {minutes} min ({sent / (int(minutes) * 60):.0f}/s, asked {rate}/s)")
verdict("no drop in the kernel", k["kernel"]["ring_full"] == 0 and k["kernel"]["load_failed"] == 0,
        f"ring_full={k['kernel']['ring_full']} load_failed={k['kernel']['load_failed']}")
verdict("the daemon received every packet", k["received"] >= sent and k["kernel"]["captured"] >= sent,
        f"sent={sent} captured={k['kernel']['captured']} received={k['received']}")
for i, s in enumerate(subs, 1):
    verdict(f"subscriber {i} got every packet", s["missed"] == 0 and s["packets"] >= sent,
            f"packets={s['packets']} missed={s['missed']}")
base = rows[1] if len(rows) > 2 else rows[0]
last = rows[-1]
growth = last["rss_kb"] - base["rss_kb"]
verdict("no RSS growth", growth <= max(base["rss_kb"] // 10, 0) or growth <= 16 * 1024,
        f"{base['rss_kb'] // 1024} MB after minute 1, {last['rss_kb'] // 1024} MB at the end "
        f"(max {max(r['rss_kb'] for r in rows) // 1024} MB)")
verdict("no descriptor growth", last["fds"] <= base["fds"],
        f"{base['fds']} after minute 1, {last['fds']} at the end (the subscribers gone: fewer)")
sys.exit(0 if ok else 1)
EOF
