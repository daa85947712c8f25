#!/usr/bin/env bash
# bpf_stats benchmark: what pidcap's kernel programs cost a process that is NOT a
# target, per program run, as the kernel itself counts it (kernel.bpf_stats_enabled:
# each program's run_cnt and run_time_ns). These figures do not need a quiet
# machine: they are the programs' own time, not the workload's rate.
#
#   sudo bench/bpf-stats-bench.sh                # old = /tmp/pidcap-old, new = this tree (release)
#   OLD=/path/to/pidcap NEW=/path/to/pidcap bench/bpf-stats-bench.sh
#   SECS=3 REPS=5 WORKLOADS="udp64 udpu" bench/bpf-stats-bench.sh
#   BINS=new bench/bpf-stats-bench.sh            # one binary only
#   SKIP_BUILD=1 ...                             # do not run cargo build --release first
#   RENDER_ONLY=/tmp/pidcap-bpfstats/stats.tsv bench/bpf-stats-bench.sh
#
# For each repetition, each binary in turn (old new, then new old, ...) runs
# `pidcap capture -q --pid <an idle sleep>`: the bystander case, its programs on
# the cgroup2 root and none of the workloads a target. Each workload runs under
# it, and that pidcap's own programs (by id, from the bpf-prog descriptors in
# /proc/PID/fdinfo) are read before and after it. Workloads (all bystanders):
#   udp64    flood udp --size 64 --senders 1: connected sendmmsg (egress, ingress)
#   udp64x2  the same with 2 senders
#   early    the udp64 flood started BEFORE pidcap (its sockets older than the
#            capture, never seeded: no owner known), measured for SECS once pidcap
#            has attached
#   udpu     64 B datagrams sent with sendto on an unconnected socket to a socket
#            that reads them with recvfrom (python3): sendmsg4, egress, ingress, recvmsg4
#   tcp      flood tcp: one bulk connection (egress, ingress; sockops at the start)
#   sockets  UDP sockets made, bound, connected and closed (sock_create, post_bind4,
#            connect4, sock_release), and TCP connections accepted (sockops) (python3)
#   procs    processes forked and reaped (the fork and exit raw tracepoints) (python3)
# floor: an empty cgroup_skb program (`return 1`) attached alone on egress and
# ingress during the udp64 flood, no pidcap running: what bpf_stats itself adds to
# every run (two clock reads around the program) plus the least a program costs.
# "above floor" = ns per run - floor: the programs' own work.
# rates (RATES=1, the default): with bpf_stats OFF, the udp64 flood's own rate
# alone, under the empty programs, and under each binary's capture of an idle
# process: what any program body can at best give back (alone vs empty) and what
# these do. Rates need a quiet machine; the ns per run above do not.
#
# Printed: per workload and program, runs per workload unit (datagram, socket,
# process...) and ns per run, old and new (medians over the reps), and the total
# per unit: the sum over the hooks one datagram passes. `uptime` at the start and
# the end. Needs root, bpftool, clang (the floor program), python3, cargo.
# kernel.bpf_stats_enabled is restored to its value before the run, whatever
# happens; no pidcap is left running.
set -euo pipefail

SECS=${SECS:-3}
REPS=${REPS:-3}
WORKLOADS=${WORKLOADS:-"udp64 udp64x2 early udpu tcp sockets procs"}
BINS=${BINS:-"old new"}
FLOOR=${FLOOR:-1}
RATES=${RATES:-1}
OUTDIR=${OUTDIR:-/tmp/pidcap-bpfstats}
PORT_BASE=${PORT_BASE:-21600} # ports PORT_BASE .. +4000, below the ephemeral range

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FLOOD=$HERE/flood/target/release/flood
OLD=${OLD:-/tmp/pidcap-old}
NEW=${NEW:-$ROOT/target/release/pidcap}

die() { echo "bpf-stats-bench: $*" >&2; exit 1; }

RESULTS=${RENDER_ONLY:-$OUTDIR/stats.tsv}
if [ -z "${RENDER_ONLY:-}" ]; then
[ "$(id -u)" = 0 ] || die "run as root (bpf_stats, eBPF programs)"
command -v bpftool >/dev/null || die "bpftool not found"
command -v python3 >/dev/null || die "python3 not found"
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "== building (cargo build --release -p pidcap-cli, flood) ==" >&2
    (cd "$ROOT" && cargo build --release -q -p pidcap-cli) || die "building pidcap failed"
    cargo build --release -q --manifest-path "$HERE/flood/Cargo.toml" || die "building flood failed"
fi
for b in $BINS; do
    case $b in old) [ -x "$OLD" ] || die "OLD=$OLD missing (copy main's release build there)" ;;
        new) [ -x "$NEW" ] || die "NEW=$NEW missing" ;;
        *) die "BINS: old and/or new" ;; esac
done
[ -x "$FLOOD" ] || die "$FLOOD missing"
CGROOT=$(awk '$9 == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
[ -n "$CGROOT" ] || [ "$FLOOR" = 0 ] || die "no cgroup2 mount for the floor program (FLOOR=0 to skip it)"

mkdir -p "$OUTDIR"
STATS_WAS=$(sysctl -n kernel.bpf_stats_enabled)
PIN=/sys/fs/bpf/pidcap-bench-floor
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    for p in "${BG_PIDS[@]:-}"; do [ -n "$p" ] && wait "$p" 2>/dev/null || true; done
    if [ -d "$PIN" ]; then
        bpftool cgroup detach "$CGROOT" egress pinned "$PIN/bench_floor_eg" 2>/dev/null || true
        bpftool cgroup detach "$CGROOT" ingress pinned "$PIN/bench_floor_in" 2>/dev/null || true
        rm -rf "$PIN"
    fi
    sysctl -qw kernel.bpf_stats_enabled="$STATS_WAS" || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The bpf-prog descriptors of process $1: "id run_cnt run_time_ns" per program.
prog_stats() {
    local fd
    for fd in /proc/"$1"/fd/*; do
        [ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:bpf-prog" ] || continue
        awk '$1 == "prog_id:" { id = $2 } $1 == "run_cnt:" { c = $2 } $1 == "run_time_ns:" { t = $2 }
             END { if (id != "") print id, c + 0, t + 0 }' /proc/"$1"/fdinfo/"${fd##*/}"
    done | sort
}
# id -> name of every loaded program
prog_names() {
    bpftool -j prog show | python3 -c '
import json, sys
for p in json.load(sys.stdin):
    print(p["id"], p.get("name", "?"))'
}

# Wait until pidcap (pid $1, stderr $2) has attached (it says so and holds bpf_link descriptors).
wait_capturing() {
    local pid=$1 err=$2 i
    for i in $(seq 1 400); do
        grep -q '^pidcap: capturing' "$err" 2>/dev/null && ls -l /proc/"$pid"/fd 2>/dev/null | grep -q bpf_link && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

UDPU_PY='
import socket, sys, time
secs = float(sys.argv[1])
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 0))
r.setblocking(False)
addr = r.getsockname()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
payload = b"x" * 64
sent = got = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    for _ in range(32):
        s.sendto(payload, addr)
    sent += 32
    for _ in range(32):
        try:
            r.recvfrom(128)
            got += 1
        except BlockingIOError:
            break
print(sent, got)
'
SOCKETS_PY='
import socket, sys, time
secs = float(sys.argv[1])
l = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
l.bind(("127.0.0.1", 0))
l.listen(128)
dst = l.getsockname()
udp = tcp = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    for _ in range(20):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.connect(dst)
        s.close()
    udp += 20
    c = socket.create_connection(dst)
    a, _ = l.accept()
    c.close()
    a.close()
    tcp += 1
print(udp, tcp)
'
PROCS_PY='
import os, sys, time
secs = float(sys.argv[1])
n = 0
end = time.monotonic() + secs
while time.monotonic() < end:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    n += 1
print(n)
'

# A port in PORT_BASE .. PORT_BASE+4000 that nothing has bound (TCP or UDP) now.
free_port() {
    python3 -c '
import random, socket, sys
base = int(sys.argv[1])
for _ in range(200):
    p = base + random.randrange(4000)
    try:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", p))
            s.close()
    except OSError:
        continue
    print(p)
    break' "$PORT_BASE"
}

# run_workload NAME PORT: runs it, prints "units unit-name"
run_workload() {
    local w=$1 port=$2 out=$OUTDIR/w.out
    case $w in
        udp64) "$FLOOD" udp --size 64 --senders 1 --secs "$SECS" --port "$port" >"$out"
            echo "$(sed -n 's/.*"sent_packets":\([0-9]*\).*/\1/p' "$out") datagrams" ;;
        udp64x2) "$FLOOD" udp --size 64 --senders 2 --secs "$SECS" --port "$port" >"$out"
            echo "$(sed -n 's/.*"sent_packets":\([0-9]*\).*/\1/p' "$out") datagrams" ;;
        udpu) python3 -c "$UDPU_PY" "$SECS" >"$out"; echo "$(cut -d' ' -f1 "$out") datagrams" ;;
        tcp) "$FLOOD" tcp --secs "$SECS" --port "$port" >"$out"
            echo "$(($(sed -n 's/.*"sent_bytes":\([0-9]*\).*/\1/p' "$out") / 1048576)) MiB" ;;
        sockets) python3 -c "$SOCKETS_PY" "$SECS" >"$out"; echo "$(cut -d' ' -f1 "$out") udp-sockets" ;;
        procs) python3 -c "$PROCS_PY" "$SECS" >"$out"; echo "$(cat "$out") processes" ;;
        *) die "unknown workload $w" ;;
    esac
}

# delta BEFORE AFTER REP BIN WORKLOAD UNITS: appends per-program deltas to $RESULTS
delta() {
    local before=$1 after=$2 rep=$3 bin=$4 w=$5 units=$6
    join "$before" "$after" | while read -r id c0 t0 c1 t1; do
        [ $((c1 - c0)) -gt 0 ] || continue
        printf 'run\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$bin" "$w" "$(awk -v id="$id" '$1 == id { print $2 }' "$OUTDIR/names")" \
            $((c1 - c0)) $((t1 - t0)) "$units" >>"$RESULTS"
    done
}

run_bin() { # run_bin REP BIN
    local rep=$1 bin=$2 exe err=$OUTDIR/pidcap.err w units port
    exe=$OLD; [ "$bin" = new ] && exe=$NEW
    local early=
    if [[ " $WORKLOADS " == *" early "* ]]; then
        # Its sockets made before pidcap starts; it runs on while pidcap attaches.
        port=$(free_port)
        "$FLOOD" udp --size 64 --senders 1 --secs "$((SECS + 20))" --port "$port" >"$OUTDIR/early.out" &
        early=$!
        sleep 0.3
    fi
    sleep 3600 &
    local idle=$!
    "$exe" capture -q --pid "$idle" 2>"$err" &
    local pc=$!
    BG_PIDS=("$pc" "$idle" $early)
    wait_capturing "$pc" "$err" || die "$bin pidcap did not attach: $(cat "$err")"
    prog_names >"$OUTDIR/names"
    if [ -n "$early" ]; then
        prog_stats "$pc" >"$OUTDIR/before"
        sleep "$SECS"
        prog_stats "$pc" >"$OUTDIR/after"
        units=$(join "$OUTDIR/before" "$OUTDIR/after" | while read -r id c0 t0 c1 t1; do
            if [ "$(awk -v id="$id" '$1 == id { print $2 }' "$OUTDIR/names")" = pidcap_egress ]; then echo $((c1 - c0)); fi
        done)
        kill -INT "$early"; wait "$early" || true
        delta "$OUTDIR/before" "$OUTDIR/after" "$rep" "$bin" early "${units:-0}"
        printf '  rep %s %-3s %-8s %s egress runs\n' "$rep" "$bin" early "$units" >&2
        printf 'unit\t%s\t%s\t%s\t%s egress-runs\n' "$rep" "$bin" early "$units" >>"$RESULTS"
        BG_PIDS=("$pc" "$idle")
    fi
    for w in $WORKLOADS; do
        [ "$w" = early ] && continue
        port=$(free_port)
        prog_stats "$pc" >"$OUTDIR/before"
        units=$(run_workload "$w" "$port")
        prog_stats "$pc" >"$OUTDIR/after"
        delta "$OUTDIR/before" "$OUTDIR/after" "$rep" "$bin" "$w" "${units%% *}"
        printf '  rep %s %-3s %-8s %s\n' "$rep" "$bin" "$w" "$units" >&2
        printf 'unit\t%s\t%s\t%s\t%s\n' "$rep" "$bin" "$w" "$units" >>"$RESULTS"
    done
    kill -INT "$pc"; wait "$pc" || true
    kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null || true
    BG_PIDS=()
}

attach_floor() { # load and attach the empty programs (egress, ingress) to the cgroup2 root
    local obj=$OUTDIR/floor.bpf.o
    if [ ! -f "$obj" ]; then
        cat >"$OUTDIR/floor.bpf.c" <<'EOF'
#include <linux/bpf.h>
#define SEC(n) __attribute__((section(n), used))
char LICENSE[] SEC("license") = "GPL";
SEC("cgroup_skb/egress") int bench_floor_eg(struct __sk_buff *skb) { return 1; }
SEC("cgroup_skb/ingress") int bench_floor_in(struct __sk_buff *skb) { return 1; }
EOF
        clang -O2 -target bpf -I"/usr/include/$(uname -m)-linux-gnu" -c "$OUTDIR/floor.bpf.c" -o "$obj" || die "compiling the floor program"
    fi
    rm -rf "$PIN"
    bpftool prog loadall "$obj" "$PIN" type cgroup/skb || die "loading the floor program"
    bpftool cgroup attach "$CGROOT" egress pinned "$PIN/bench_floor_eg" multi
    bpftool cgroup attach "$CGROOT" ingress pinned "$PIN/bench_floor_in" multi
}
detach_floor() {
    bpftool cgroup detach "$CGROOT" egress pinned "$PIN/bench_floor_eg"
    bpftool cgroup detach "$CGROOT" ingress pinned "$PIN/bench_floor_in"
    rm -rf "$PIN"
}

run_rates() { # run_rates REP: udp64 pps with bpf_stats off: alone, empty programs, each binary
    local rep=$1 cfg exe pc idle err=$OUTDIR/pidcap.err out=$OUTDIR/rate.out order="base empty $BINS" pps
    [ $((rep % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$order" | tac | tr '\n' ' ')
    sysctl -qw kernel.bpf_stats_enabled=0
    for cfg in $order; do
        case $cfg in
            empty) attach_floor ;;
            old | new)
                exe=$OLD; [ "$cfg" = new ] && exe=$NEW
                sleep 3600 &
                idle=$!
                "$exe" capture -q --pid "$idle" 2>"$err" &
                pc=$!
                BG_PIDS=("$pc" "$idle")
                wait_capturing "$pc" "$err" || die "$cfg pidcap did not attach: $(cat "$err")" ;;
        esac
        "$FLOOD" udp --size 64 --senders 1 --secs "$SECS" --port "$(free_port)" >"$out"
        case $cfg in
            empty) detach_floor ;;
            old | new)
                kill -INT "$pc"; wait "$pc" || true
                kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null || true
                BG_PIDS=() ;;
        esac
        pps=$(sed -n 's/.*"pps":\([0-9.]*\).*/\1/p' "$out")
        printf 'rate\t%s\t%s\t%s\n' "$rep" "$cfg" "$pps" >>"$RESULTS"
        printf '  rep %s rate %-5s %s pps\n' "$rep" "$cfg" "$pps" >&2
    done
    sysctl -qw kernel.bpf_stats_enabled=1
}

run_floor() { # run_floor REP: the empty program's ns per run during udp64
    local rep=$1
    attach_floor
    local p before after
    before=$(for p in eg in; do bpftool -j prog show pinned "$PIN/bench_floor_$p"; echo; done)
    run_workload udp64 $(free_port) >/dev/null
    after=$(for p in eg in; do bpftool -j prog show pinned "$PIN/bench_floor_$p"; echo; done)
    detach_floor
    python3 -c '
import json, sys
rep, before, after = sys.argv[1], sys.argv[2].split("\n"), sys.argv[3].split("\n")
for b, a in zip([l for l in before if l.strip()], [l for l in after if l.strip()]):
    b, a = json.loads(b), json.loads(a)
    c = a.get("run_cnt", 0) - b.get("run_cnt", 0)
    t = a.get("run_time_ns", 0) - b.get("run_time_ns", 0)
    if c > 0:
        print("floor\t%s\t-\t-\t%s\t%d\t%d\t-" % (rep, a["name"], c, t))
' "$rep" "$before" "$after" >>"$RESULTS"
    printf '  rep %s floor    %s\n' "$rep" "$(tail -2 "$RESULTS" | awk -F'\t' '{ printf "%s %.1f ns/run  ", $5, $7 / $6 }')" >&2
}

others=$(bpftool -j prog show 2>/dev/null | python3 -c '
import json, sys
print(sum(1 for p in json.load(sys.stdin) if str(p.get("name", "")).startswith("pidcap_")))' || echo 0)
[ "$others" = 0 ] || echo "!! $others programs named pidcap_* are already loaded (another pidcap): they run on the same packets (more load, and cache misses); the figures below are this script's pidcaps' own programs only" >&2
: >"$RESULTS"
printf 'meta\tstart\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(nproc)" "$(uname -r)" "$(uptime | sed 's/.*load average: //')" "$REPS" "$SECS" "$OLD" "$NEW" >>"$RESULTS"
echo "== $(nproc) CPUs, kernel $(uname -r), $(uptime) ==" >&2
sysctl -qw kernel.bpf_stats_enabled=1
for rep in $(seq 1 "$REPS"); do
    order=$BINS
    [ $((rep % 2)) = 0 ] && order=$(tr ' ' '\n' <<<"$BINS" | tac | tr '\n' ' ')
    [ "$FLOOR" = 1 ] && run_floor "$rep"
    for bin in $order; do run_bin "$rep" "$bin"; done
    [ "$RATES" = 1 ] && run_rates "$rep"
done
printf 'meta\tend\t%s\t%s\t%s\n' "$(nproc)" "$(uname -r)" "$(uptime | sed 's/.*load average: //')" >>"$RESULTS"
echo "== done; raw figures in $RESULTS ==" >&2
fi

python3 - "$RESULTS" <<'EOF'
import sys, statistics
from collections import defaultdict
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
meta = {r[1]: r for r in rows if r[0] == "meta"}
runs = defaultdict(list)    # (bin, workload, prog) -> [(cnt, ns, units)]
units = {}                  # workload -> unit name
floor = defaultdict(list)   # prog -> [ns/run]
for r in rows:
    if r[0] == "run":
        _, rep, b, w, prog, c, t, u = r
        runs[b, w, prog].append((int(c), int(t), int(u or 0)))
    elif r[0] == "unit":
        units[r[3]] = r[4].split(" ", 1)[1] if " " in r[4] else "units"
    elif r[0] == "floor":
        floor[r[4]].append(int(r[6]) / int(r[5]))
med = statistics.median
rates = defaultdict(list)   # cfg -> [pps]
for r in rows:
    if r[0] == "rate" and len(r) > 3 and r[3]:
        rates[r[2]].append(float(r[3]))
fl = {k: med(v) for k, v in floor.items()}
fl_all = med([x for v in floor.values() for x in v]) if floor else None
s = meta.get("start", [""] * 7)
e = meta.get("end", [""] * 5)
print()
print("== bpf-stats-bench: %s CPUs, kernel %s, %s reps of %s s; load average %s at the start, %s at the end ==" % (s[2], s[3], s[5], s[6], s[4], e[4] if len(e) > 4 else "?"))
print("Per program of the capturing pidcap (pidcap capture --pid <idle sleep>; every workload is a bystander):")
print("cnt = run_cnt during the workload, /unit = runs per datagram (socket, process...), ns/run = run_time_ns / run_cnt;")
print("medians of the reps; old = OLD (%s), new = NEW (%s)." % (meta.get("start", [""] * 9)[7] if len(meta.get("start", [])) > 7 else "?",
                                                              meta.get("start", [""] * 9)[8] if len(meta.get("start", [])) > 8 else "?"))
if fl:
    print("floor: an empty cgroup_skb program, same flood: %s ns per run (bpf_stats' own clock reads + the least a run costs)"
          % ", ".join("%s %.1f" % (k.replace("bench_floor_", ""), v) for k, v in sorted(fl.items())))
workloads = []
for (b, w, p) in runs:
    if w not in workloads:
        workloads.append(w)
order = ["udp64", "udp64x2", "early", "udpu", "tcp", "sockets", "procs"]
workloads.sort(key=lambda w: order.index(w) if w in order else 99)
# the hooks one unit passes, for the per-unit total
path = {
    "udp64": ["pidcap_egress", "pidcap_ingress"],
    "udp64x2": ["pidcap_egress", "pidcap_ingress"],
    "early": ["pidcap_egress", "pidcap_ingress"],
    "udpu": ["pidcap_sendmsg4", "pidcap_egress", "pidcap_ingress", "pidcap_recvmsg4"],
    "tcp": ["pidcap_egress", "pidcap_ingress"],
    "sockets": ["pidcap_sock_create", "pidcap_post_bind4", "pidcap_connect4", "pidcap_sock_release"],
    "procs": ["pidcap_fork", "pidcap_exit"],
}
unit_of = {"udp64": "datagram", "udp64x2": "datagram", "early": "egress run", "udpu": "datagram", "tcp": "MiB written", "sockets": "UDP socket", "procs": "process"}
bins = sorted({b for (b, _, _) in runs}, key=lambda b: ["old", "new"].index(b) if b in ("old", "new") else 9)
def ns(b, w, p):
    v = runs.get((b, w, p))
    return med([t / c for c, t, _ in v]) if v else None
def per_unit(b, w, p):
    v = runs.get((b, w, p))
    v = [c / u for c, t, u in (v or []) if u]
    return med(v) if v else None
def cnt(b, w, p):
    v = runs.get((b, w, p))
    return med([c for c, t, _ in v]) if v else None
def si(x):
    if x is None:
        return "-"
    for d, u in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= d:
            return "%.2f%s" % (x / d, u)
    return "%d" % x
def f(x, fmt="%.1f"):
    return "-" if x is None else fmt % x
for w in workloads:
    progs = sorted({p for (b, ww, p) in runs if ww == w})
    print()
    hdr = "%-20s" % ("[%s]" % w)
    for b in bins:
        hdr += " | %8s %7s %9s" % (b + " cnt", "/" + unit_of.get(w, "unit").split()[0][:6], b + " ns/run")
    if len(bins) == 2:
        hdr += " | %8s %7s" % ("new-old", "new/old")
    print(hdr)
    for p in progs:
        line = "%-20s" % p
        for b in bins:
            line += " | %8s %7s %9s" % (si(cnt(b, w, p)), f(per_unit(b, w, p), "%.3f"), f(ns(b, w, p)))
        if len(bins) == 2:
            o, n = ns(bins[0], w, p), ns(bins[1], w, p)
            line += " | %8s %7s" % (f(n - o if o is not None and n is not None else None, "%+.1f"),
                                   f(n / o if o and n is not None else None, "%.2f"))
        print(line)
    if w in path:
        tot = []
        for b in bins:
            vals = [ns(b, w, p) for p in path[w]]
            if all(v is not None for v in vals):
                t = sum(vals)
                above = t - fl_all * len(vals) if fl_all is not None else None
                tot.append("%s %.1f ns%s" % (b, t, "" if above is None else " (%.1f above the floor)" % above))
        if w == "tcp":
            label = "per packet, one egress and one ingress"
        elif w == "early":
            label = "per datagram (egress + ingress)"
        else:
            label = "per %s (%s)" % (unit_of[w], " + ".join(p.replace("pidcap_", "") for p in path[w]))
        print("  total %s: %s" % (label, "; ".join(tot) if tot else "-"))
    ucounts = {b: med([u for (bb, ww, p), v in runs.items() if bb == b and ww == w for _, _, u in v] or [0]) for b in bins}
    print("  %s: %s (the workload's own rate on this machine; noisy)" % (units.get(w, "units"), ", ".join("%s %d in %s s" % (b, ucounts[b], s[6]) for b in bins)))
if rates:
    base = med(rates["base"]) if rates.get("base") else None
    print()
    print("udp64 flood rate with bpf_stats off (medians; these need a quiet machine, the ns per run above do not):")
    for cfg, what in (("base", "alone"), ("empty", "empty programs on egress + ingress"),
                      ("old", "old pidcap capturing an idle process"), ("new", "new pidcap capturing an idle process")):
        if rates.get(cfg):
            m = med(rates[cfg])
            print("  %-38s %10.0f pps  %s" % (what, m, "" if not base else "%.3f of alone (runs: %s)" % (m / base, " ".join("%.0f" % x for x in rates[cfg]))))
EOF
