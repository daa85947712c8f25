#!/usr/bin/env bash
# Capture benchmark: pidcap vs tcpdump on a loopback flood, side by side in one run.
#
#   sudo bench/capture-bench.sh            # whole run, about 6 minutes
#   SECS=5 REPS=7 bench/capture-bench.sh   # longer, steadier (REPS: repetitions of everything)
#   SCENARIOS="udp64 tcp" bench/capture-bench.sh
#   FORCE=1 bench/capture-bench.sh         # run although another pidcap is attached (figures taxed)
#   RENDER_ONLY=/tmp/pidcap-bench/results.tsv bench/capture-bench.sh   # table of an earlier run
#
# For each scenario, every configuration runs REPS (3) times, interleaved
# (A B C D, then D C B A, ...), and the table shows the median of each figure:
#   base     the flood alone (no capture, no eBPF program of ours attached)
#   hooks    the BYSTANDER case: pidcap captures another, idle process
#            (`pidcap capture --pid <idle sleep>`); the flood is not a target
#            and pays only for pidcap's cgroup programs (goal: >= 0.98 of base).
#            Here the sleep is in the root cgroup, so the programs attach at
#            the root (the common cgroup of the targets) and every packet runs them
#   hooks-run  the bystander while `pidcap run -q -- sleep 600` captures an idle
#            command in a cgroup of its own (the programs attach there)
#   hooks-cg the bystander while `pidcap capture --pid <idle sleep>` captures a
#            sleep first moved into a cgroup of its own (as systemd puts every
#            service): the programs attach at that cgroup
#   hooks-iso the bystander while `pidcap capture --isolate --pid <idle sleep>`
#            captures the same idle sleep in the root cgroup as `hooks`, moved by
#            pidcap into a cgroup of its own below it (the programs attach there)
#   pidcap   pidcap run -q --no-follow -s SNAP -w FILE -- flood ...   (the flood is the target, not its sink)
#   tcpdump  tcpdump -i lo -w FILE -B 4096 -s 1514 'udp|tcp port P', started before the flood
# Scenarios: udp64, udp64x2 (64 B UDP, 1 and 2 senders), udp1400x2 (1400 B,
# 2 senders), udp1400x2s128 (the same with a 128-byte snap length: pidcap -s 128,
# tcpdump -s 142 = the same 128 bytes from the IP header), tcp (one bulk connection).
# Besides (once per repetition, interleaved with the scenarios):
#   startup  `pidcap run -q -- true` under /usr/bin/time -v: peak RSS and wall time; and how long
#            the command takes to start: `pidcap run -q [--no-tls] -- sh -c 'date +%s%N'`, the
#            command's clock reading less the one taken just before pidcap was started
#   fs       the file system's write bandwidth where the captures write ($OUTDIR):
#            dd of DD_MB MiB, through the page cache and with conv=fdatasync
# The hooks configurations run pidcap with -v: its count of the packets its programs saw
# where they are attached says whether the bystander flood ran them at all (a table of
# its own; a bystander goal whose ratio misses while they saw nothing says "noise").
# Everything ends up in one block of tables (and $OUTDIR/results.tsv), with the
# goals of issue 13 checked against this run's figures.
#
# Refuses to run (exit 1) while another pidcap is attached: its cgroup programs
# would tax every configuration, base included. Found by: `bpftool prog show`
# listing loaded BPF programs named pidcap_* (when bpftool is installed), the
# processes holding bpf-prog or bpf_link file descriptors (/proc/*/fd; all of
# them when bpftool saw pidcap's programs, else those whose command or
# executable says pidcap), and `pgrep -x pidcap`. Checked again before every
# `base` run (a pidcap started mid-run is reported in the table).
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
SCENARIOS=${SCENARIOS:-"udp64 udp64x2 udp1400x2 udp1400x2s128 tcp"}
CONFIGS=${CONFIGS:-"base hooks hooks-run hooks-cg hooks-iso pidcap tcpdump"}
OUTDIR=${OUTDIR:-/tmp/pidcap-bench}
PORT_BASE=${PORT_BASE:-42100}
TCPDUMP_SNAPLEN=${TCPDUMP_SNAPLEN:-1514}
TCPDUMP_BUFFER_KIB=${TCPDUMP_BUFFER_KIB:-4096}
EXTRAS=${EXTRAS-"startup fs"} # the once-per-repetition measurements (EXTRAS="" for none)
DD_MB=${DD_MB:-1024}
FORCE=${FORCE:-0}

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
fi
BG_PIDS=()
IDLE_CG= # hooks-cg's cgroup while it exists
cleanup() {
    local p
    for p in "${BG_PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
    [ -n "$IDLE_CG" ] && remove_idle_cg
    rm -f "$OUTDIR"/*.pcap "$OUTDIR"/*.pcapng 2>/dev/null || true
}
trap cleanup EXIT

# scenario -> flood arguments (without --port/--secs) and the capture filter's protocol
flood_args() {
    case $1 in
        udp64) echo "udp --size 64 --senders 1" ;;
        udp64x2) echo "udp --size 64 --senders 2" ;;
        udp1400) echo "udp --size 1400 --senders 1" ;;
        udp1400x2 | udp1400x2s128) echo "udp --size 1400 --senders 2" ;;
        tcp) echo "tcp" ;;
        *) die "unknown scenario $1" ;;
    esac
}
proto_of() { case $1 in tcp*) echo tcp ;; *) echo udp ;; esac; }

json_field() { # json_field FILE KEY
    sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1" | tail -1
}

wait_file_has() { # wait_file_has FILE REGEX
    local i
    for i in $(seq 1 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.05; done
    return 1
}

# Another pidcap attached? Prints one line per finding (empty: none). Ours
# (pidcap processes this script started) are not running when it is called.
other_pidcaps() {
    local n=0 pid comm exe holders=""
    if command -v bpftool >/dev/null; then
        # Loaded programs named pidcap_*: a live pidcap (programs go with their last fd).
        n=$(bpftool -j prog show 2>/dev/null | python3 -c '
import json, sys
try:
    progs = json.load(sys.stdin)
except ValueError:
    progs = []
print(sum(1 for p in progs if str(p.get("name", "")).startswith("pidcap_")))
' || echo 0)
    fi
    # The processes holding BPF programs or links: all of them when bpftool saw
    # pidcap's programs (a test binary holds them under its own name), else
    # those whose command or executable says pidcap.
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        [ "$pid" = $$ ] && continue
        ls -l "/proc/$pid/fd" 2>/dev/null | grep -qE 'anon_inode:(bpf-prog|bpf_link)' || continue
        comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null || true)
        case "$comm $exe" in
            *pidcap*) holders+="pid $pid ($comm, $exe) holds BPF programs or links"$'\n' ;;
            *) [ "$n" -gt 0 ] && holders+="pid $pid ($comm, $exe) holds BPF programs or links"$'\n' ;;
        esac
    done
    [ "$n" -gt 0 ] && echo "$n BPF programs named pidcap_* are loaded (bpftool prog show)"
    printf '%s' "$holders"
    pgrep -a -x pidcap 2>/dev/null | cut -c1-160 | sed 's/^/pidcap process: /' || true
}

# The cgroup2 mount (a mount of the hierarchy's root), for hooks-cg.
cgroup2_mount() {
    awk '{ for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i + 1) == "cgroup2" && $4 == "/") print $5; break } }' \
        /proc/self/mountinfo | head -1
}
# hooks-cg's cgroup: its processes back to the root cgroup, then removed (a
# process that just exited can keep it busy for a moment).
remove_idle_cg() {
    local i p root
    root=$(dirname "$IDLE_CG")
    for i in $(seq 1 100); do
        for p in $(cat "$IDLE_CG/cgroup.procs" 2>/dev/null); do echo "$p" >"$root/cgroup.procs" 2>/dev/null || true; done
        rmdir "$IDLE_CG" 2>/dev/null && break
        [ -d "$IDLE_CG" ] || break
        sleep 0.02
    done
    IDLE_CG=
}

# Wait until pidcap (pid $1, stderr $2) says it captures: its programs are attached.
wait_capturing() {
    local pid=$1 err=$2 i
    for i in $(seq 1 400); do
        grep -q '^pidcap: capturing' "$err" 2>/dev/null && ls -l /proc/"$pid"/fd 2>/dev/null | grep -q bpf_link && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# scenario -> snap length, pidcap's (from the IP header) and tcpdump's (lo's 14-byte Ethernet header included)
snap_of() { case $1 in *s128) echo 128 ;; *) echo 1500 ;; esac; }
td_snap_of() { case $1 in *s128) echo 142 ;; *) echo "$TCPDUMP_SNAPLEN" ;; esac; }

# The packets pidcap's programs saw where they are attached, from the -v summary of a
# hooks configuration: the bystander flood's datagrams run them only when this counts them.
seen_by_programs() {
    local n
    n=$(sed -n "s/.*not the targets': \([0-9]*\) packets seen by the kernel layer.*/\1/p" "$1" | tail -1)
    echo "${n:--}"
}

# run_one SCENARIO CONFIG REP PORT: appends one line to $RESULTS
run_one() {
    local sc=$1 cfg=$2 rep=$3 port=$4
    local args proto out=$OUTDIR/flood.json err=$OUTDIR/tool.err
    args=$(flood_args "$sc")
    proto=$(proto_of "$sc")
    rm -f "$out" "$err" "$OUTDIR"/*.pcap "$OUTDIR"/*.pcapng
    local pc_cap=- pc_wr=- pc_drop=- pc_unattr=- td_cap=- td_drop=- file_bytes=- taxed=0 hk_seen=-
    local snap td_snap
    snap=$(snap_of "$sc")
    td_snap=$(td_snap_of "$sc")
    case $cfg in
        base)
            local seen
            seen=$(other_pidcaps)
            if [ -n "$seen" ]; then
                taxed=1
                echo "  !! another pidcap is attached during this base run: $(head -1 <<<"$seen")" >&2
            fi
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            ;;
        hooks)
            sleep 600 &
            local idle=$!
            "$PIDCAP" capture -q -v --pid "$idle" 2>"$err" &
            local pc=$!
            BG_PIDS=("$idle" "$pc")
            wait_capturing "$pc" "$err" || die "pidcap did not attach: $(cat "$err")"
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            kill -INT "$pc"; wait "$pc" || true
            hk_seen=$(seen_by_programs "$err")
            kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null || true
            BG_PIDS=()
            ;;
        hooks-run)
            # The idle command in run's own cgroup; SIGINT makes run stop it and end.
            "$PIDCAP" run -q -v --no-tls -- sleep 600 >/dev/null 2>"$err" &
            local pc=$!
            BG_PIDS=("$pc")
            wait_capturing "$pc" "$err" || die "pidcap run did not attach: $(cat "$err")"
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            kill -INT "$pc"; wait "$pc" || true
            hk_seen=$(seen_by_programs "$err")
            BG_PIDS=()
            ;;
        hooks-cg)
            local cg2
            cg2=$(cgroup2_mount)
            [ -n "$cg2" ] || die "no cgroup2 mount for hooks-cg"
            IDLE_CG=$cg2/pidcap-bench-idle-$$
            mkdir "$IDLE_CG" || die "cannot make $IDLE_CG"
            sleep 600 &
            local idle=$!
            echo "$idle" >"$IDLE_CG/cgroup.procs" || die "cannot move the idle sleep into $IDLE_CG"
            "$PIDCAP" capture -q -v --pid "$idle" 2>"$err" &
            local pc=$!
            BG_PIDS=("$idle" "$pc")
            wait_capturing "$pc" "$err" || die "pidcap did not attach: $(cat "$err")"
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            kill -INT "$pc"; wait "$pc" || true
            hk_seen=$(seen_by_programs "$err")
            kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null || true
            BG_PIDS=()
            remove_idle_cg
            ;;
        hooks-iso)
            # The idle sleep of `hooks` (root cgroup), moved by pidcap into
            # <its cgroup>/pidcap-iso-<pid> for the capture and back at its end.
            sleep 600 &
            local idle=$!
            "$PIDCAP" capture -q -v --isolate --pid "$idle" 2>"$err" &
            local pc=$!
            BG_PIDS=("$idle" "$pc")
            wait_capturing "$pc" "$err" || die "pidcap --isolate did not attach: $(cat "$err")"
            grep -q "pidcap-iso-$pc" "/proc/$idle/cgroup" || die "the idle sleep was not isolated: $(cat "$err")"
            # shellcheck disable=SC2086
            "$FLOOD" $args --secs "$SECS" --port "$port" >"$out"
            kill -INT "$pc"; wait "$pc" || true
            hk_seen=$(seen_by_programs "$err")
            kill "$idle" 2>/dev/null; wait "$idle" 2>/dev/null || true
            BG_PIDS=()
            ;;
        pidcap)
            # shellcheck disable=SC2086
            "$PIDCAP" run -q --no-follow -s "$snap" -w "$OUTDIR/x.pcapng" -- "$FLOOD" $args --secs "$SECS" --port "$port" >"$out" 2>"$err" \
                || die "pidcap run failed: $(cat "$err")"
            local line
            line=$(grep '^pidcap: .* packets captured' "$err" | tail -1)
            pc_cap=$(sed -n 's/^pidcap: \([0-9]*\) packets captured.*/\1/p' <<<"$line")
            pc_wr=$(sed -n 's/.*(\([0-9]*\) written).*/\1/p' <<<"$line")
            pc_drop=$(sed -n 's/.*, \([0-9]*\) dropped in the kernel ring.*/\1/p' <<<"$line")
            pc_unattr=$(sed -n 's/.*, \([0-9]*\) not attributed.*/\1/p' <<<"$line")
            ;;
        tcpdump)
            tcpdump -i lo -n -w "$OUTDIR/y.pcap" -B "$TCPDUMP_BUFFER_KIB" -s "$td_snap" "$proto port $port" 2>"$err" &
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
    local cap_bytes=- secs_run
    secs_run=$(json_field "$out" secs)
    [ "$cfg" = pidcap ] && file_bytes=$(stat -c %s "$OUTDIR/x.pcapng" 2>/dev/null || echo -)
    [ "$cfg" = tcpdump ] && file_bytes=$(stat -c %s "$OUTDIR/y.pcap" 2>/dev/null || echo -)
    if [ "$proto" = tcp ] && { [ "$cfg" = pidcap ] || [ "$cfg" = tcpdump ]; }; then
        local f=$OUTDIR/x.pcapng
        [ "$cfg" = tcpdump ] && f=$OUTDIR/y.pcap
        cap_bytes=$(tshark -r "$f" -Y "tcp.dstport==$port" -T fields -e tcp.len 2>/dev/null | awk '{s += $1} END {printf "%.0f\n", s}')
    fi
    # Columns 14-16 (issue 13): capture file size, the flood's own duration, another pidcap seen;
    # 17: packets the programs saw during a hooks configuration (-v).
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$sc" "$cfg" "$rep" "$sent" "$pps" "$bps" "$pc_cap" "$pc_drop" "$td_cap" "$td_drop" "$pc_wr" "$sent_bytes" "$cap_bytes" \
        "$file_bytes" "$secs_run" "$taxed" "$hk_seen" >>"$RESULTS"
    printf '  %-10s %-8s rep %s: sent %s pkts %s B, %s pps, %s B/s%s%s%s\n' "$sc" "$cfg" "$rep" "$sent" "$sent_bytes" "$pps" "$bps" \
        "$([ "$pc_cap" != - ] && echo ", pidcap captured $pc_cap (written $pc_wr), ring drops $pc_drop, not attributed $pc_unattr")" \
        "$([ "$td_cap" != - ] && echo ", tcpdump captured $td_cap, dropped $td_drop")" \
        "$([ "$cap_bytes" != - ] && echo ", payload bytes to the sink in the file $cap_bytes")" >&2
}

# run_startup REP: `pidcap run -q -- true` under /usr/bin/time -v (peak RSS, wall time)
run_startup() {
    local rep=$1 t=$OUTDIR/time.err rss wall
    /usr/bin/time -v "$PIDCAP" run -q -- true >/dev/null 2>"$t" || die "pidcap run -q -- true failed: $(cat "$t")"
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): *\([0-9]*\).*/\1/p' "$t")
    wall=$(sed -n 's/.*Elapsed (wall clock) time[^:]*: *\(.*\)$/\1/p' "$t" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; print s }')
    local t0 t1 start notls
    t0=$(date +%s%N); t1=$("$PIDCAP" run -q -- sh -c 'date +%s%N' 2>/dev/null) || die "pidcap run -q -- sh failed"
    start=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
    t0=$(date +%s%N); t1=$("$PIDCAP" run -q --no-tls -- sh -c 'date +%s%N' 2>/dev/null) || die "pidcap run -q --no-tls -- sh failed"
    notls=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", (b - a) / 1e9 }')
    printf 'startup\trun-true\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$rss" "$wall" "$start" "$notls" >>"$RESULTS"
    printf '  %-10s %-8s rep %s: peak RSS %s kB, wall %s s; the command started after %s s (--no-tls %s s)\n' \
        startup run-true "$rep" "$rss" "$wall" "$start" "$notls" >&2
}

# run_fs REP: write bandwidth of $OUTDIR's file system, page cache and fdatasync
run_fs() {
    local rep=$1 how conv bps
    for how in cache sync; do
        conv=; [ "$how" = sync ] && conv=conv=fdatasync
        # shellcheck disable=SC2086
        bps=$(LC_ALL=C dd if=/dev/zero of="$OUTDIR/dd.bin" bs=1M count="$DD_MB" $conv 2>&1 |
            sed -n 's/^\([0-9]*\) bytes .* copied, \([0-9.]*\) s.*/\1 \2/p' | awk '{ printf "%.0f", $1 / $2 }')
        rm -f "$OUTDIR/dd.bin"
        printf 'fs\tdd-%s\t%s\t-\t-\t%s\n' "$how" "$rep" "$bps" >>"$RESULTS"
        printf '  %-10s %-8s rep %s: %s B/s\n' fs "dd-$how" "$rep" "$bps" >&2
    done
}

if [ "$render_only" = 0 ]; then
others=$(other_pidcaps)
echo "== machine: $(nproc) CPUs, kernel $(uname -r), $(uptime | sed 's/.*load/load/') ==" >&2
if [ -n "$others" ]; then
    {
        echo "!! ANOTHER PIDCAP IS ATTACHED: its cgroup programs run on every packet of this machine, so every"
        echo "!! configuration (the baseline too) pays for them and the ratios mean little:"
        sed 's/^/!!   /' <<<"$others"
    } >&2
    [ "$FORCE" = 1 ] || die "refusing to run; stop it, or FORCE=1 to run anyway"
    echo "!! FORCE=1: running anyway" >&2
fi
: >"$RESULTS" # only now: a refused run leaves the last results in place
printf 'meta\tstart\t0\t%s\t%s\t%s\t%s\t%s\n' "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" \
    "$([ -n "$others" ] && echo forced || echo clean)" "$REPS" "$SECS" >>"$RESULTS"
echo "== $SECS s per run, $REPS reps, scenarios: $SCENARIOS; extras: $EXTRAS ==" >&2

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
    for ex in $EXTRAS; do "run_$ex" "$rep"; done
done
printf 'meta\tend\t0\t%s\t%s\t%s\n' "$(nproc)" "$(cut -d' ' -f1 /proc/loadavg)" "$(uname -r)" >>"$RESULTS"
echo "== done in $(($(date +%s) - start)) s; raw results in $RESULTS ==" >&2
fi

# Tables: medians over reps per scenario/config; throughput is pps for UDP, bytes/s for TCP.
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
function lo(key,   n, i, m) {
    n = cnt[key]; if (n == 0) return "-";
    m = val[key, 1]; for (i = 2; i <= n; i++) if (val[key, i] + 0 < m + 0) m = val[key, i];
    return m;
}
function put(sc, cfg, f, v) { if (v == "-" || v == "") return; k = sc SUBSEP cfg SUBSEP f; cnt[k]++; val[k, cnt[k]] = v }
function get(sc, cfg, f) { return med(sc SUBSEP cfg SUBSEP f) }
function pct(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "-" : sprintf("%.1f%%", 100 * a / b) }
function ratio(a, b) { return (a == "-" || b == "-" || b + 0 == 0) ? "-" : a / b }
function r2(x) { return x == "-" ? "-" : sprintf("%.2f", x) }
function si(x) { if (x == "-") return x; if (x >= 1e9) return sprintf("%.2fG", x / 1e9); if (x >= 1e6) return sprintf("%.2fM", x / 1e6); if (x >= 1e3) return sprintf("%.1fk", x / 1e3); return sprintf("%d", x) }
function span(key,   a, b) { a = lo(key); b = worst(key); return a == "-" ? "-" : sprintf("%.0f-%.0f MB/s", a / 1e6, b / 1e6) }
function mbs(x) { return x == "-" ? "-" : sprintf("%.0f MB/s", x / 1e6) }
function verdict(ok) { return ok == "-" ? "-" : (ok ? "met" : "MISSED") }
function goal(what, sc, measured, want, ok) {
    printf "%-34s %-14s %-40s %-22s %s\n", what, sc, measured, want, verdict(ok)
}
# A bystander goal: the ratio, and whether the programs ran for the flood at all (seen: their -v count).
function bgoal(what, sc, name, r, seen,   ok) {
    ok = r == "-" ? "-" : r >= 0.98
    if (ok == 0 && seen != "-" && seen + 0 == 0)
        printf "%-34s %-14s %-40s %-22s %s\n", what, sc, name "/base " r2(r) ", 0 program runs", ">= 0.98", \
            "noise: no program ran"
    else
        goal(what, sc, name "/base " r2(r) (seen == "-" ? "" : ", " si(seen) " seen"), ">= 0.98", ok)
}
$1 == "meta" { meta[$2, "cpus"] = $4; meta[$2, "load"] = $5; meta[$2, "x"] = $6; if ($7 != "") { reps = $7; secs = $8 }; next }
$1 == "startup" { put("startup", "run", "rss", $4); put("startup", "run", "wall", $5); put("startup", "run", "start", $6); put("startup", "run", "notls", $7); next }
$1 == "fs" { put("fs", $2, "bps", $6); next }
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
    # issue 13: the capture file written per second of flood; base runs taxed by another pidcap
    if ($14 != "" && $14 != "-" && $15 + 0 > 0) put(sc, cfg, "wrate", $14 / $15)
    if ($16 == 1) taxed++
    if ($17 != "" && $17 != "-") put(sc, cfg, "seen", $17)
}
END {
    printf "\n== capture-bench: %s CPUs, load average %s at the start and %s at the end; %d reps of %s s ==\n", \
        meta["start", "cpus"] == "" ? "?" : meta["start", "cpus"], meta["start", "load"] == "" ? "?" : meta["start", "load"], \
        meta["end", "load"] == "" ? "?" : meta["end", "load"], reps, secs
    if (meta["start", "x"] == "forced") printf "!! RUN WITH FORCE=1 WHILE ANOTHER PIDCAP WAS ATTACHED: every figure pays for its programs\n"
    if (taxed) printf "!! another pidcap was attached during %d base run(s): those ratios are taxed\n", taxed
    printf "Medians of the reps, except ringdr, td-drop and the two loss columns: the WORST run.\n"
    printf "Throughput: packets/s for UDP, bytes/s for TCP. pkts = UDP datagrams the flood sent in the pidcap (pc) and tcpdump (td) run.\n"
    printf "hooks = the bystander: pidcap captures an idle process, the flood is not a target (more in the bystanders table below).\n\n"
    printf "%-13s | %9s %9s %6s %7s | %9s %9s %9s %7s | %8s %8s %8s %8s | %7s %7s %7s %6s\n", \
        "scenario", "pkts(pc)", "pidcap", "ringdr", "loss", "pkts(td)", "tcpdump", "td-drop", "loss", \
        "base", "hooks", "pidcap", "tcpdump", "hooks/b", "pidc/b", "tcpd/b", "pc/td"
    for (i = 1; i <= nsc; i++) {
        sc = order[i]; tcp = (sc ~ /^tcp/); tf = tcp ? "bps" : "pps"
        ppk = get(sc, "pidcap", "pkts"); pc = get(sc, "pidcap", "pcap"); pd = worst(sc SUBSEP "pidcap" SUBSEP "pdrop")
        tpk = get(sc, "tcpdump", "pkts"); tc = get(sc, "tcpdump", "tcap")
        b = get(sc, "base", tf); h = get(sc, "hooks", tf); p = get(sc, "pidcap", tf); t = get(sc, "tcpdump", tf)
        pl = worst(sc SUBSEP "pidcap" SUBSEP "ploss"); PL[sc] = pl; PLMIN[sc] = lo(sc SUBSEP "pidcap" SUBSEP "ploss")
        # (TCP: retransmitted segments count twice in the file; a small negative is not a second process)
        if (PLMIN[sc] != "-" && PLMIN[sc] < ((sc ~ /^tcp/) ? -0.5 : 0)) bogus = bogus " " sc; pl = (pl == "-") ? pl : sprintf("%.2f%%", pl)
        tl = worst(sc SUBSEP "tcpdump" SUBSEP "tloss"); TL[sc] = tl; tl = (tl == "-") ? tl : sprintf("%.2f%%", tl)
        td = worst(sc SUBSEP "tcpdump" SUBSEP "tdrop")
        if (tcp) { tb = worst(sc SUBSEP "tcpdump" SUBSEP "tbloss"); if (tb != "-") tl = tl "/" sprintf("%.2f%%", tb) }
        if (tcp) { ppk = "-"; tpk = "-" }
        HB[sc] = ratio(h, b); PB[sc] = ratio(p, b); TB[sc] = ratio(t, b)
        printf "%-13s | %9s %9s %6s %7s | %9s %9s %9s %7s | %8s %8s %8s %8s | %7s %7s %7s %6s\n", \
            sc, si(ppk), si(pc), pd, pl, si(tpk), si(tc), si(td), tl, \
            si(b), si(h), si(p), si(t), pct(h, b), pct(p, b), pct(t, b), r2(ratio(p, t))
    }
    printf "\nloss, UDP: (sent - captured) / sent in that tool'\''s own run, for both (the filter keeps exactly the flood'\''s datagrams);\n"
    printf "           td-drop is tcpdump'\''s own \"dropped by kernel\" count (may include lo traffic from before its filter was set).\n"
    printf "loss, TCP: pidcap = (bytes written - payload bytes toward the sink in the file) / bytes written (includes up to a\n"
    printf "           socket buffer never sent when the flood stops); tcpdump = its summary'\''s drop rate / the same byte measure.\n"
    if (bogus != "")
        printf "!! pidcap captured MORE than the flood sent in:%s (another process captured too: the sink followed as a child?)\n", bogus
    printf "pc/td: the target'\''s rate under pidcap / under tcpdump (>= 1: pidcap costs the target no more than tcpdump).\n"

    # The bystander, by where pidcap attaches its programs.
    printf "\nBystanders (the flood is not a target; medians): hooks = capture --pid <idle sleep in the root cgroup> (programs on\n"
    printf "the root); hooks-run = run -q -- sleep (programs on run'\''s own cgroup); hooks-cg = capture --pid <idle sleep in a\n"
    printf "cgroup of its own> (programs on that cgroup); hooks-iso = capture --isolate --pid <the idle sleep in the root cgroup>\n"
    printf "(moved into a pidcap-iso cgroup below the root; programs there).\n"
    printf "%-13s | %8s %8s %9s %8s %9s | %7s %7s %7s %7s\n", "scenario", "base", "hooks", "hooks-run", "hooks-cg", "hooks-iso", \
        "hooks/b", "run/b", "cg/b", "iso/b"
    for (i = 1; i <= nsc; i++) {
        sc = order[i]; tf = (sc ~ /^tcp/) ? "bps" : "pps"
        b = get(sc, "base", tf); h = get(sc, "hooks", tf); hr = get(sc, "hooks-run", tf); hc = get(sc, "hooks-cg", tf)
        hi = get(sc, "hooks-iso", tf)
        HR[sc] = ratio(hr, b); HC[sc] = ratio(hc, b); HI[sc] = ratio(hi, b)
        printf "%-13s | %8s %8s %9s %8s %9s | %7s %7s %7s %7s\n", sc, si(b), si(h), si(hr), si(hc), si(hi), \
            pct(h, b), pct(hr, b), pct(hc, b), pct(hi, b)
    }
    # Whether the bystander ran pidcap'\''s programs at all: what they counted where they are attached (-v).
    printf "\nPackets pidcap'\''s programs saw during the bystander flood (the -v count where they are attached, medians;\n"
    printf "0 = the flood ran none of them, and its rate ratio above is the flood'\''s own run-to-run noise):\n"
    printf "%-13s | %10s %10s %10s %10s\n", "scenario", "hooks", "hooks-run", "hooks-cg", "hooks-iso"
    for (i = 1; i <= nsc; i++) {
        sc = order[i]
        SH[sc] = get(sc, "hooks", "seen"); SR[sc] = get(sc, "hooks-run", "seen")
        SC[sc] = get(sc, "hooks-cg", "seen"); SI[sc] = get(sc, "hooks-iso", "seen")
        printf "%-13s | %10s %10s %10s %10s\n", sc, si(SH[sc]), si(SR[sc]), si(SC[sc]), si(SI[sc])
    }

    # The file written, against what the file system takes.
    dc = get("fs", "dd-cache", "bps"); ds = get("fs", "dd-sync", "bps")
    printf "\nWrite rates (capture file bytes / flood seconds, medians) against the file system'\''s, measured in this run\n"
    printf "(dd, medians: page cache %s, conv=fdatasync %s; ranges %s and %s):\n", \
        mbs(dc), mbs(ds), span("fs" SUBSEP "dd-cache" SUBSEP "bps"), span("fs" SUBSEP "dd-sync" SUBSEP "bps")
    printf "%-13s | %12s %12s | %14s %14s\n", "scenario", "pidcap", "tcpdump", "pidcap/cache", "pidcap/fdsync"
    for (i = 1; i <= nsc; i++) {
        sc = order[i]; pw = get(sc, "pidcap", "wrate"); tw = get(sc, "tcpdump", "wrate")
        printf "%-13s | %12s %12s | %14s %14s\n", sc, mbs(pw), mbs(tw), pct(pw, dc), pct(pw, ds)
        PW[sc] = pw; TW[sc] = tw
    }

    rss = get("startup", "run", "rss"); wall = get("startup", "run", "wall")
    if (rss != "-")
        printf "\npidcap run -q -- true (/usr/bin/time -v, %d runs): peak RSS median %.1f MiB (%.1f-%.1f), wall median %.3f s (%.3f-%.3f)\n", \
            cnt["startup" SUBSEP "run" SUBSEP "rss"], rss / 1024, lo("startup" SUBSEP "run" SUBSEP "rss") / 1024, \
            worst("startup" SUBSEP "run" SUBSEP "rss") / 1024, wall, lo("startup" SUBSEP "run" SUBSEP "wall"), \
            worst("startup" SUBSEP "run" SUBSEP "wall")
    st = get("startup", "run", "start"); nt = get("startup", "run", "notls")
    if (st != "-")
        printf "the command starts (run -q -- sh -c date): median %.3f s (%.3f-%.3f); with --no-tls %.3f s (%.3f-%.3f)\n", \
            st, lo("startup" SUBSEP "run" SUBSEP "start"), worst("startup" SUBSEP "run" SUBSEP "start"), \
            nt, lo("startup" SUBSEP "run" SUBSEP "notls"), worst("startup" SUBSEP "run" SUBSEP "notls")

    printf "\nGoals of issue 13, in this run:\n"
    printf "%-34s %-14s %-40s %-22s %s\n", "goal", "scenario", "measured", "wanted", "result"
    for (i = 1; i <= nsc; i++) {
        sc = order[i]
        if (sc == "udp64" || sc == "udp64x2" || sc == "tcp") {
            bgoal("bystander keeps its rate", sc, "hooks", HB[sc], SH[sc])
            bgoal("  ... beside run'\''s own cgroup", sc, "hooks-run", HR[sc], SR[sc])
            bgoal("  ... beside the target'\''s cgroup", sc, "hooks-cg", HC[sc], SC[sc])
            bgoal("  ... beside capture --isolate", sc, "hooks-iso", HI[sc], SI[sc])
        }
    }
    for (i = 1; i <= nsc; i++) {
        sc = order[i]; want = (sc == "tcp") ? 0.95 : (sc ~ /^udp64/) ? 0.90 : 0
        m = "pidcap/base " r2(PB[sc]) ", tcpdump/base " r2(TB[sc])
        ok = (PB[sc] == "-" || TB[sc] == "-") ? "-" : (PB[sc] >= want && PB[sc] >= TB[sc])
        goal("target keeps its rate", sc, m, (want ? ">= " sprintf("%.2f", want) " and " : "") ">= tcpdump", ok)
    }
    for (i = 1; i <= nsc; i++) {
        sc = order[i]
        # A negative loss: pidcap wrote more packets than the flood sent (it captured another process too).
        if (sc == "udp1400x2s128")
            goal("nothing lost, snap 128", sc, sprintf("pidcap %s, tcpdump %s", PL[sc] == "-" ? "-" : sprintf("%.2f%%", PL[sc]), \
                TL[sc] == "-" ? "-" : sprintf("%.2f%%", TL[sc])), "pidcap 0 lost", \
                (PL[sc] == "-" || PLMIN[sc] < 0) ? "-" : PL[sc] == 0)
        if (sc == "udp1400x2")
            goal("fewer lost than tcpdump, full snap", sc, sprintf("pidcap %s, tcpdump %s", PL[sc] == "-" ? "-" : sprintf("%.2f%%", PL[sc]), \
                TL[sc] == "-" ? "-" : sprintf("%.2f%%", TL[sc])), "pidcap < tcpdump", \
                (PL[sc] == "-" || TL[sc] == "-" || PLMIN[sc] < 0) ? "-" : (PL[sc] <= 0 || PL[sc] < TL[sc]))
        if (sc == "udp1400x2")
            goal("  its limit: the file system", sc, sprintf("pidcap %s, tcpdump %s", mbs(PW[sc]), mbs(TW[sc])), \
                "fs " mbs(dc) " / " mbs(ds), "-")
    }
    if (rss != "-") {
        goal("run -q -- true: peak memory", "startup", sprintf("%.1f MiB", rss / 1024), "<= 64 MiB", rss / 1024 <= 64)
        goal("run -q -- true: wall time", "startup", sprintf("%.3f s", wall), "<= 0.15 s", wall <= 0.15)
        if (st != "-")
            goal("the command starts within", "startup", sprintf("%.3f s (--no-tls %.3f s)", st, nt), "<= 0.15 s", st <= 0.15)
    }
}' "$RESULTS"
