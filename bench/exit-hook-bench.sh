#!/bin/sh
# What pidcap's process hooks cost every process on the machine: N fork+exec
# of /bin/true, N fork+_exit, and 10*N unconnected UDP sends, timed without pidcap, with pidcap attached
# (capturing an idle sleep: the hooks run on every fork and exit, none of
# them a target's), and with an older pidcap binary if PIDCAP_OLD is given
# (e.g. one without the exit hook). Interleaved repetitions; on a shared,
# noisy machine the fastest repetition says more than the median.
# The kernel's own per-program counters (bpf_stats) give the time per run
# of each hook; the script turns them on for its run and restores the setting.
#
#   sudo bench/exit-hook-bench.sh      # ~3 min
#   N=10000 REPS=5 PIDCAP=target/release/pidcap PIDCAP_OLD=/tmp/pidcap-old sudo -E bench/exit-hook-bench.sh
set -eu
N=${N:-10000}
REPS=${REPS:-5}
PIDCAP=${PIDCAP:-target/release/pidcap}
PIDCAP_OLD=${PIDCAP_OLD:-}
WORK=$(mktemp -d /tmp/pidcap-exitbench.XXXXXX)
STATS_WAS=$(cat /proc/sys/kernel/bpf_stats_enabled)
cleanup() {
    echo "$STATS_WAS" > /proc/sys/kernel/bpf_stats_enabled
    [ -n "${CAP:-}" ] && kill "$CAP" 2>/dev/null || true
    [ -n "${SLEEPER:-}" ] && kill "$SLEEPER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ -x "$PIDCAP" ] || cargo build --release -p pidcap-cli
cat > "$WORK/forker.c" <<'EOF'
/* forker N exec|exit|udp: N times fork, the child execs /bin/true or
 * _exits, the parent waits; or 10*N sendto() of 16 bytes on one unconnected
 * UDP socket to 127.0.0.1:9 (the sendmsg hook runs on each). Prints the
 * seconds it took. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    int do_exec = strcmp(argv[2], "exec") == 0;
    struct timespec a, b;
    if (strcmp(argv[2], "udp") == 0) {
        int s = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(9) };
        to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        clock_gettime(CLOCK_MONOTONIC, &a);
        for (long i = 0; i < 10 * n; i++)
            sendto(s, "pidcap-bench....", 16, 0, (struct sockaddr *)&to, sizeof(to));
        clock_gettime(CLOCK_MONOTONIC, &b);
        printf("%.3f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        pid_t p = fork();
        if (p == 0) {
            if (do_exec) { execl("/bin/true", "true", (char *)0); }
            _exit(0);
        }
        waitpid(p, 0, 0);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f\n", (b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) / 1e9);
    return 0;
}
EOF
cc -O2 -o "$WORK/forker" "$WORK/forker.c"
echo 1 > /proc/sys/kernel/bpf_stats_enabled

attach() { # $1: pidcap binary
    sleep 600 & SLEEPER=$!
    "$1" capture -q --pid "$SLEEPER" 2> "$WORK/cap.err" & CAP=$!
    while ! grep -q "pidcap: capturing" "$WORK/cap.err" 2>/dev/null; do sleep 0.05; done
}
detach() {
    # bpf_stats of the hooks of this pidcap (its programs: the prog_id of
    # its descriptors), before they go away.
    python3 - "$CAP" >> "$WORK/stats.$2" <<'PY' || true
import json, os, subprocess, sys
pid = sys.argv[1]
ids = set()
for fd in os.listdir(f"/proc/{pid}/fdinfo"):
    try:
        for line in open(f"/proc/{pid}/fdinfo/{fd}"):
            if line.startswith("prog_id:"):
                ids.add(int(line.split()[1]))
    except OSError:
        pass
for pid_id in sorted(ids):
    p = json.loads(subprocess.run(["bpftool", "--json", "prog", "show", "id", str(pid_id)],
                                  capture_output=True, text=True, check=True).stdout)
    if p["name"] in ("pidcap_fork", "pidcap_exit", "pidcap_sendmsg4", "pidcap_connect4", "pidcap_sock_create") and p.get("run_cnt"):
        print("%-18s %8d runs %6.0f ns/run" % (p["name"], p["run_cnt"], p["run_time_ns"] / p["run_cnt"]))
PY
    kill "$CAP"; wait "$CAP" 2>/dev/null || true; CAP=
    kill "$SLEEPER"; wait "$SLEEPER" 2>/dev/null || true; SLEEPER=
}

CONFIGS="base pidcap"
[ -n "$PIDCAP_OLD" ] && CONFIGS="$CONFIGS old"
for rep in $(seq "$REPS"); do
    order=$CONFIGS
    [ $((rep % 2)) -eq 0 ] && order=$(echo "$CONFIGS" | tr ' ' '\n' | tac | tr '\n' ' ')
    for c in $order; do
        case $c in
            pidcap) attach "$PIDCAP" ;;
            old) attach "$PIDCAP_OLD" ;;
        esac
        for mode in exec exit udp; do
            "$WORK/forker" "$N" "$mode" >> "$WORK/$c.$mode"
        done
        [ "$c" != base ] && detach "$c" "$c"
    done
done

median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fastest() { sort -n "$1" | head -1; }
echo "$N fork+exec of /bin/true, $N fork+_exit, $((10 * N)) UDP sendto; median and fastest of $REPS (seconds; us per process or send, of the fastest):"
for c in $CONFIGS; do
    for mode in exec exit udp; do
        m=$(median "$WORK/$c.$mode")
        per=$N
        [ "$mode" = udp ] && per=$((10 * N))
        f=$(fastest "$WORK/$c.$mode")
        printf '  %-7s %-5s median %7s s  fastest %7s s  %7.2f us  (all: %s)\n' "$c" "$mode" "$m" "$f" \
            "$(echo "$f * 1000000 / $per" | bc -l)" "$(tr '\n' ' ' < "$WORK/$c.$mode")"
    done
done
for c in $CONFIGS; do
    [ -f "$WORK/stats.$c" ] && { echo "bpf_stats ($c, every repetition):"; sed 's/^/  /' "$WORK/stats.$c"; }
done
