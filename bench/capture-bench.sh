#!/usr/bin/env bash
# Capture benchmark: pidcap vs tcpdump on a loopback flood, side by side in one run.
#
#   sudo bench/capture-bench.sh            # whole run, about 3-4 minutes
#   SECS=5 REPS=3 bench/capture-bench.sh   # longer, steadier
#   SCENARIOS="udp64 tcp" bench/capture-bench.sh
#   RENDER_ONLY=/tmp/pidcap-bench/results.tsv bench/capture-bench.sh   # table of an earlier run
#
# For each scenario, every configuration runs REPS (3) times, interleaved
# (A B C D, then D C B A, ...), and the table shows the median of each figure:
#   base     the flood alone (no capture, no eBPF program of ours attached)
#   hooks    pidcap attached to another process (`pidcap capture --pid <idle sleep>`):
#            the cost of pidcap's cgroup programs on traffic it does not capture
#   pidcap   pidcap run -w FILE -- flood ...   (the flood is the target)
#   tcpdump  tcpdump -i lo -w FILE -B 4096 -s 1514 'udp|tcp port P', started before the flood
#
# Like with like: pidcap sees the target's sockets (UDP: its sends; TCP: its
# data segments and the ACKs it receives); tcpdump on lo sees every packet once,
# and its capture filter on the flood's port keeps exactly those same packets
# (the UDP sink never answers; the TCP sink's ACKs are the target's received
# segments). Both keep at most 1500 bytes from the IP header (pidcap's default
# snap length; tcpdump's -s 1514 includes lo's 14-byte Ethernet header).
#
# Needs root, cargo, tcpdump. Writes only under $OUTDIR (deleted after each run).
set -euo pipefail

SECS=${SECS:-3}
REPS=${REPS:-3}
SCENARIOS=${SCENARIOS:-"udp64 udp64x2 udp1400x2 tcp"}
CONFIGS=${CONFIGS:-"base hooks pidcap tcpdump"}
OUTDIR=${OUTDIR:-/tmp/pidcap-bench}
PORT_BASE=${PORT_BASE:-42100}
TCPDUMP_SNAPLEN=${TCPDUMP_SNAPLEN:-1514}
TCPDUMP_BUFFER_KIB=${TCPDUMP_BUFFER_KIB:-4096}

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
FLOOD=$HERE/flood/target/release/flood
PIDCAP=${PIDCAP:-$ROOT/target/release/pidcap}

die() { echo "capture-bench: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (pidcap loads eBPF programs, tcpdump opens lo)"
command -v tcpdump >/dev/null || die "tcpdump not found"

if [ -n "${RENDER_ONLY:-}" ]; then # print the table of an earlier run: RENDER_ONLY=/tmp/pidcap-bench/results.tsv
    RESULTS=$RENDER_ONLY
    render_only=1
else
    render_only=0
fi
if [ "$render_only" = 0 ] && [ "${SKIP_BUILD:-0}" != 1 ]; then
    echo "== building (cargo build --release) ==" >&2
    (cd "$ROOT" && cargo build --release -q -p pidcap-cli) || die "building pidcap failed"
    cargo build --release -q --manifest-path "$HERE/flood/Cargo.toml" || die "building flood failed"
fi
[ "$render_only" = 1 ] || [ -x "$PIDCAP" ] || die "$PIDCAP missing"
[ "$render_only" = 1 ] || [ -x "$FLOOD" ] || die "$FLOOD missing"

mkdir -p "$OUTDIR"
if [ "$render_only" = 0 ]; then
    RESULTS=$OUTDIR/results.tsv
    : >"$RESULTS"
fi
BG_PIDS=()
cleanup() {
    local p
    for p in "${BG_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    rm -f "$OUTDIR"/*.pcap "$OUTDIR"/*.pcapng 2>/dev/null || true
}
trap cleanup EXIT

# scenario -> flood arguments (without --port/--secs) and the capture filter's protocol
flood_args() {
    case $1 in
        udp64) echo "udp --size 64 --senders 1" ;;
        udp64x2) echo "udp --size 64 --senders 2" ;;
        udp1400) echo "udp --size 1400 --senders 1" ;;
        udp1400x2) echo "udp --size 1400 --senders 2" ;;
        tcp) echo "tcp" ;;
        *) die "unknown scenario $1" ;;
    esac
}
proto_of() { case $1 in tcp*) echo tcp ;; *) echo udp ;; esac; }

json_field() { # json_field FILE KEY
    sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1" | tail -1
}

# Wait until process $1 holds at least $2 BPF links (pidcap has attached its programs).
wait_links() {
    local pid=$1 want=$2 i n
    for i in $(seq 1 200); do
        n=$(ls -l /proc/"$pid"/fd 2>/dev/null | grep -c 'bpf_link' || true)
        [ "$n" -ge "$want" ] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
wait_file_has() { # wait_file_has FILE REGEX
    local i
    for i in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}

NLINKS=14 # programs pidcap attaches (crates/engine/src/ebpf/mod.rs PROGRAM_NAMES)

# run_one SCENARIO CONFIG REP PORT: appends one line to $RESULTS
run_one() {
    local sc=$1 cfg=$2 rep=$3 port=$4
    local args proto out=$OUTDIR/flood.json err=$OUTDIR/tool.err
    args=$(flood_args "$sc")
    proto=$(proto_of "$sc")
    rm -f "$out" "$err" "$OUTDIR"/*.pcap "$OUTDIR"/*.pcapng
    local pc_cap=- pc_wr=- pc_drop=- pc_unattr=- td_cap=- td_drop=-
    case $cfg in
        base)
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            ;;
        hooks)
            sleep 600 &
            local idle=$!
            "$PIDCAP" capture -q --pid "$idle" 2>"$err" &
            local pc=$!
            BG_PIDS=("$idle" "$pc")
            wait_links "$pc" "$NLINKS" || die "pidcap did not attach (see $err)"
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            kill -INT "$pc"; wait "$pc" || true
            kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null || true
            BG_PIDS=()
            ;;
        pidcap)
            # shellcheck disable=SC2086
            "$PIDCAP" run -q -w "$OUTDIR/x.pcapng" -- "$FLOOD" $args --secs "$SECS" --port "$port" >"$out" 2>"$err" \
                || die "pidcap run failed: $(cat "$err")"
            local line
            line=$(grep '^pidcap: .* packets captured' "$err" | tail -1)
            pc_cap=$(sed -n 's/^pidcap: \([0-9]*\) packets captured.*/\1/p' <<<"$line")
            pc_wr=$(sed -n 's/.*(\([0-9]*\) written).*/\1/p' <<<"$line")
            pc_drop=$(sed -n 's/.*, \([0-9]*\) dropped in the kernel ring.*/\1/p' <<<"$line")
            pc_unattr=$(sed -n 's/.*, \([0-9]*\) not attributed.*/\1/p' <<<"$line")
            ;;
        tcpdump)
            tcpdump -i lo -n -w "$OUTDIR/y.pcap" -B "$TCPDUMP_BUFFER_KIB" -s "$TCPDUMP_SNAPLEN" "$proto port $port" 2>"$err" &
            local td=$!
            BG_PIDS=("$td")
            wait_file_has "$err" "listening on" || die "tcpdump did not start: $(cat "$err")"
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            sleep 0.2 # let tcpdump read what is still in its buffer
            kill -INT "$td"; wait "$td" || true
            BG_PIDS=()
            td_cap=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$err")
            td_drop=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$err")
            ;;
    esac
    local sent pps bps sent_bytes
    sent=$(json_field "$out" sent_packets)
    sent_bytes=$(json_field "$out" sent_bytes)
    pps=$(json_field "$out" pps)
    bps=$(json_field "$out" bytes_per_sec)
    [ -n "$sent" ] || die "flood printed no result ($sc/$cfg)"
    # TCP: count the payload bytes toward the sink in the capture file (packets
    # cannot be compared: loopback sends up-to-64 KiB GSO packets whose number
    # depends on timing; TCP_INFO segs_out counts MSS units, not packets).
    local cap_bytes=-
    if [ "$proto" = tcp ] && { [ "$cfg" = pidcap ] || [ "$cfg" = tcpdump ]; }; then
        local f=$OUTDIR/x.pcapng
        [ "$cfg" = tcpdump ] && f=$OUTDIR/y.pcap
        cap_bytes=$(tshark -r "$f" -Y "tcp.dstport==$port" -T fields -e tcp.len 2>/dev/null | awk '{s += $1} END {print s + 0}')
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$sc" "$cfg" "$rep" "$sent" "$pps" "$bps" "$pc_cap" "$pc_drop" "$td_cap" "$td_drop" "$pc_wr" "$sent_bytes" "$cap_bytes" >>"$RESULTS"
    printf '  %-10s %-8s rep %s: sent %s pkts %s B, %s pps, %s B/s%s%s%s\n' "$sc" "$cfg" "$rep" "$sent" "$sent_bytes" "$pps" "$bps" \
        "$([ "$pc_cap" != - ] && echo ", pidcap captured $pc_cap (written $pc_wr), ring drops $pc_drop, not attributed $pc_unattr")" \
        "$([ "$td_cap" != - ] && echo ", tcpdump captured $td_cap, dropped $td_drop")" \
        "$([ "$cap_bytes" != - ] && echo ", payload bytes to the sink in the file $cap_bytes")" >&2
}

if [ "$render_only" = 0 ]; then
others=$(pgrep -x pidcap | wc -l || true)
echo "== machine: $(nproc) CPUs, kernel $(uname -r); other pidcap processes running: $others ==" >&2
[ "$others" -eq 0 ] || echo "   (their programs are attached to the root cgroup too: the baseline includes their cost)" >&2
echo "== $SECS s per run, $REPS reps, scenarios: $SCENARIOS ==" >&2

port=$PORT_BASE
start=$(date +%s)
for rep in $(seq 1 "$REPS"); do
    order=$CONFIGS
    if [ $((rep % 2)) = 0 ]; then order=$(tr ' ' '\n' <<<"$CONFIGS" | tac | tr '\n' ' '); fi
    for sc in $SCENARIOS; do
        for cfg in $order; do
            port=$((port + 1))
            run_one "$sc" "$cfg" "$rep" "$port"
        done
    done
done
echo "== done in $(($(date +%s) - start)) s; raw results in $RESULTS ==" >&2
fi

# Table: medians over reps per scenario/config; throughput is pps for UDP, bytes/s for TCP.
awk -F'\t' -v secs="$SECS" -v reps="$REPS" '
function med(key,   n, i, j, t, a) {
    n = cnt[key]; if (n == 0) return "-";
    for (i = 1; i <= n; i++) a[i] = val[key, i];
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2;
}
function worst(key,   n, i, m) {
    n = cnt[key]; if (n == 0) return "-";
    m = val[key, 1]; for (i = 2; i <= n; i++) if (val[key, i] + 0 > m + 0) m = val[key, i];
    return m;
}
function put(sc, cfg, f, v) { if (v == "-" || v == "") return; k = sc SUBSEP cfg SUBSEP f; cnt[k]++; val[k, cnt[k]] = v }
function get(sc, cfg, f) { return med(sc SUBSEP cfg SUBSEP f) }
function pct(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.1f%%", 100 * a / b) }
function si(x) { if (x == "-") return x; if (x >= 1e9) return sprintf("%.2fG", x / 1e9); if (x >= 1e6) return sprintf("%.2fM", x / 1e6); if (x >= 1e3) return sprintf("%.1fk", x / 1e3); return sprintf("%d", x) }
{
    sc = $1; cfg = $2
    if (!(sc in seen)) { seen[sc] = 1; order[++nsc] = sc }
    put(sc, cfg, "pkts", $4); put(sc, cfg, "pps", $5); put(sc, cfg, "bps", $6)
    put(sc, cfg, "pcap", $7); put(sc, cfg, "pdrop", $8); put(sc, cfg, "tcap", $9); put(sc, cfg, "tdrop", $10)
    # losses per run (the median of ratios, not the ratio of medians)
    tcp = (sc ~ /^tcp/)
    if (!tcp && $7 != "-" && $4 > 0) put(sc, cfg, "ploss", 100 * ($4 - $7) / $4)
    if (tcp && cfg == "pidcap" && $13 != "-" && $12 > 0) put(sc, cfg, "ploss", 100 * ($12 - $13) / $12)
    if (!tcp && $9 != "-" && $4 > 0) put(sc, cfg, "tloss", 100 * ($4 - $9) / $4)
    if (tcp && $9 != "-" && $10 != "-" && $9 + $10 > 0) put(sc, cfg, "tloss", 100 * $10 / ($9 + $10))
    if (tcp && cfg == "tcpdump" && $13 != "-" && $12 > 0) put(sc, cfg, "tbloss", 100 * ($12 - $13) / $12)
}
END {
    printf "\nMedians of %d runs of %s s each, except ringdr, td-drop and the two loss columns: the WORST run.\n", reps, secs
    printf "Throughput: packets/s for UDP, bytes/s for TCP.\n"
    printf "pkts = UDP datagrams the flood sent in the pidcap run (pc) and in the tcpdump run (td).\n\n"
    printf "%-10s | %9s %9s %6s %7s | %9s %9s %9s %7s | %8s %8s %8s %8s | %7s %7s %7s\n", \
        "scenario", "pkts(pc)", "pidcap", "ringdr", "loss", "pkts(td)", "tcpdump", "td-drop", "loss", \
        "base", "hooks", "pidcap", "tcpdump", "hooks/b", "pidc/b", "tcpd/b"
    for (i = 1; i <= nsc; i++) {
        sc = order[i]; tcp = (sc ~ /^tcp/); tf = tcp ? "bps" : "pps"
        ppk = get(sc, "pidcap", "pkts"); pc = get(sc, "pidcap", "pcap"); pd = worst(sc SUBSEP "pidcap" SUBSEP "pdrop")
        tpk = get(sc, "tcpdump", "pkts"); tc = get(sc, "tcpdump", "tcap"); td = get(sc, "tcpdump", "tdrop")
        b = get(sc, "base", tf); h = get(sc, "hooks", tf); p = get(sc, "pidcap", tf); t = get(sc, "tcpdump", tf)
        # tcpdump loss: its own kernel drop count against what it saw (captured + dropped)
        pl = worst(sc SUBSEP "pidcap" SUBSEP "ploss"); pl = (pl == "-") ? pl : sprintf("%.2f%%", pl)
        tl = worst(sc SUBSEP "tcpdump" SUBSEP "tloss"); tl = (tl == "-") ? tl : sprintf("%.2f%%", tl)
        td = worst(sc SUBSEP "tcpdump" SUBSEP "tdrop")
        if (tcp) { tb = worst(sc SUBSEP "tcpdump" SUBSEP "tbloss"); if (tb != "-") tl = tl "/" sprintf("%.2f%%", tb) }
        if (tcp) { ppk = "-"; tpk = "-" }
        printf "%-10s | %9s %9s %6s %7s | %9s %9s %9s %7s | %8s %8s %8s %8s | %7s %7s %7s\n", \
            sc, si(ppk), si(pc), pd, pl, si(tpk), si(tc), si(td), tl, \
            si(b), si(h), si(p), si(t), pct(h, b), pct(p, b), pct(t, b)
    }
    printf "\nloss, UDP: (sent - captured) / sent in that tool'\''s own run, for both (the filter keeps exactly the flood'\''s datagrams);\n"
    printf "           td-drop is tcpdump'\''s own \"dropped by kernel\" count (may include lo traffic from before its filter was set).\n"
    printf "loss, TCP: pidcap = (bytes written - payload bytes toward the sink in the file) / bytes written (includes up to a\n"
    printf "           socket buffer never sent when the flood stops); tcpdump = its summary'\''s drop rate / the same byte measure.\n"
    printf "Goals: pidcap loses nothing where tcpdump drops; pidc/b >= 95%% for tcp, >= 85%% for udp64.\n"
}' "$RESULTS"
