//! tcpdump's habits (issue 12, items 3, 5 and 9), through the real binary:
//! `run` follows the command's process tree unless `--no-follow` (and a
//! capture with no packet says why), `-v` is decoding (golden text, from a
//! file made here, in fixed time zones), logging is `--log-level` /
//! `PIDCAP_LOG` with no ANSI codes into a pipe, times are local, the
//! summary puts the targets' counters first and the system-wide count only
//! under `-v`, `-w x.pcap` warns once, and `PIDCAP_SOCKET` names the
//! daemon's socket.

mod common;

use common::*;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_pcapfile::{Format, PacketWriter};
use std::collections::HashSet;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// The pids of the packets of `run --json`'s stdout.
fn packet_pids(stdout: &[u8]) -> Vec<u64> {
    text(stdout)
        .lines()
        .filter(|l| l.contains("\"timestamp_ns\""))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["pid"].as_u64().unwrap())
        .collect()
}

/// The stderr line that starts with `prefix`.
fn line_of<'a>(stderr: &'a str, prefix: &str) -> &'a str {
    stderr.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no line {prefix:?} in: {stderr}"))
}

#[test]
fn run_captures_a_shell_s_child_without_f_and_no_follow_says_why_it_has_none() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("sh"));
    let ns = NetNs::new("habits-follow");
    let server = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    // Two commands, so that sh forks (a lone command it would exec in place);
    // the sleep keeps a child alive while pidcap looks.
    let script = format!("python3 {} tcp-client 127.0.0.1 {} 1 hello; sleep 0.5", peer_script().display(), server.port);
    let run = |extra: &[&str]| -> Output {
        let out = pidcap()
            .args(["run", "--json"])
            .args(extra)
            .args(["--", "ip", "netns", "exec", &ns.name, "sh", "-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        out
    };

    // No -f: the client, a child of sh, is captured.
    let out = run(&[]);
    let report =
        text(&out.stdout).lines().find(|l| l.starts_with("{\"pid\"")).map(str::to_owned).expect("the client reports");
    let client = serde_json::from_str::<serde_json::Value>(&report).unwrap()["pid"].as_u64().unwrap();
    let pids: HashSet<u64> = packet_pids(&out.stdout).into_iter().collect();
    assert_eq!(pids, HashSet::from([client]), "the child's packets, and only its own: {}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(!stderr.contains("pidcap: no packets"), "{stderr}");
    assert!(stderr.contains("child processes followed"), "{stderr}");

    // --no-follow: nothing, and the summary says why.
    let out = run(&["--no-follow"]);
    assert_eq!(packet_pids(&out.stdout), Vec::<u64>::new());
    let stderr = text(&out.stderr);
    assert!(line_of(&stderr, "pidcap: 0 packets captured (0 written)").contains("0 dropped in the kernel ring"));
    let why: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pidcap: no packets: ")).collect();
    assert!(why.iter().any(|l| l.contains("no packet of the targets crossed the kernel's hooks")), "{stderr}");
    assert!(why.iter().any(|l| l.contains("exited with status 0")), "{stderr}");
    assert!(
        why.iter().any(|l| l.contains("the command started child processes, and --no-follow leaves them out")),
        "{stderr}"
    );
    // `ip netns exec` put sh in the test's namespace: said, and said not to be the reason.
    assert!(why.iter().any(|l| l.contains("(sh) ran in another network namespace")), "{stderr}");

    // -f and --no-follow contradict each other.
    let bad = pidcap().args(["run", "-f", "--no-follow", "--", "true"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("cannot be used with"), "{}", text(&bad.stderr));
}

#[test]
fn a_command_that_uses_only_unix_sockets_is_told_apart() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("habits-unix");
    let py = "import socket,time\na,b=socket.socketpair()\na.send(b'x')\nb.recv(1)\ntime.sleep(0.5)";
    let out = pidcap().args(["run", "--", "ip", "netns", "exec", &ns.name, "python3", "-c", py]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    line_of(&stderr, "pidcap: 0 packets captured (0 written)");
    assert!(stderr.contains("it was seen with Unix sockets only"), "{stderr}");
}

/// 2023-11-14 22:13:20.000001 UTC, plus `i` microseconds.
fn ts(i: u64) -> u64 {
    1_700_000_000_000_000_000 + i * 1000
}

fn dns_name(m: &mut Vec<u8>, name: &str) {
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
}

/// A query (id 0xbeef, RD) for `example.com` A; with `answers`, its response.
fn dns(answers: &[[u8; 4]]) -> Vec<u8> {
    let flags: [u8; 2] = if answers.is_empty() { [0x01, 0x00] } else { [0x81, 0x80] };
    let mut m = vec![0xbe, 0xef, flags[0], flags[1], 0, 1, 0, answers.len() as u8, 0, 0, 0, 0];
    dns_name(&mut m, "example.com");
    m.extend_from_slice(&[0, 1, 0, 1]);
    for a in answers {
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        m.extend_from_slice(a);
    }
    m
}

/// A pidcap pcapng made here: curl's SYN (Linux's options), its HTTP
/// request and the response's status line; dig's DNS query and response.
fn decoding_file(path: &Path) {
    use etherparse::{PacketBuilder, TcpOptionElement as O};
    let mut w = PacketWriter::new(Format::Pcapng, Vec::new(), &Default::default()).unwrap();
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let mut packets: Vec<(u32, &str, Direction, Vec<u8>)> = Vec::new();
    let mut syn = Vec::new();
    PacketBuilder::ipv4(c, s, 64)
        .tcp(40000, 80, 1000, 64240)
        .syn()
        .options(&[
            O::MaximumSegmentSize(1460),
            O::SelectiveAcknowledgementPermitted,
            O::Timestamp(7, 0),
            O::Noop,
            O::WindowScale(7),
        ])
        .unwrap()
        .write(&mut syn, &[])
        .unwrap();
    packets.push((100, "curl", Direction::Outbound, syn));
    let mut get = Vec::new();
    PacketBuilder::ipv4(c, s, 64)
        .tcp(40000, 80, 1001, 502)
        .psh()
        .ack(5001)
        .write(&mut get, b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")
        .unwrap();
    packets.push((100, "curl", Direction::Outbound, get));
    let mut ok = Vec::new();
    PacketBuilder::ipv4(s, c, 63)
        .tcp(80, 40000, 5001, 509)
        .psh()
        .ack(1048)
        .write(&mut ok, b"HTTP/1.1 200 OK\r\n\r\n")
        .unwrap();
    packets.push((100, "curl", Direction::Inbound, ok));
    let (dig, ns) = ([10, 0, 0, 1], [10, 0, 0, 53]);
    let mut query = Vec::new();
    PacketBuilder::ipv4(dig, ns, 64).udp(5353, 53).write(&mut query, &dns(&[])).unwrap();
    packets.push((200, "dig", Direction::Outbound, query));
    let mut answer = Vec::new();
    PacketBuilder::ipv4(ns, dig, 64)
        .udp(53, 5353)
        .write(&mut answer, &dns(&[[93, 184, 215, 14], [93, 184, 215, 15]]))
        .unwrap();
    packets.push((200, "dig", Direction::Inbound, answer));
    for (i, (pid, comm, dir, data)) in packets.into_iter().enumerate() {
        let len = data.len() as u32;
        let i = i as u64 + 1;
        w.write_packet(&CapturedPacket::new(i, ts(i), pid, comm.into(), 7, dir, Verdict::Pass, len, data)).unwrap();
    }
    std::fs::write(path, w.into_inner().unwrap()).unwrap();
}

/// `pidcap read FILE ARGS` in time zone `tz`: its stdout lines.
fn read_in(tz: &str, file: &Path, args: &[&str]) -> Vec<String> {
    let out = pidcap().env("TZ", tz).arg("read").arg(file).args(args).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_owned).collect()
}

const PLAIN: [&str; 5] = [
    "100/curl out TCP 10.0.0.1:40000 > 10.0.0.2:80 [S] len 0",
    "100/curl out TCP 10.0.0.1:40000 > 10.0.0.2:80 [P.] len 47",
    "100/curl in  TCP 10.0.0.1:40000 < 10.0.0.2:80 [P.] len 19",
    "200/dig out UDP 10.0.0.1:5353 > 10.0.0.53:53 len 29",
    "200/dig in  UDP 10.0.0.1:5353 < 10.0.0.53:53 len 61",
];

/// What -v adds to each of [`PLAIN`]. Checked against `tcpdump -v -n -r` (4.99) on the
/// same packets: the same ttl, id, lengths, seq/ack/win, options, and DNS summary
/// (`48879+ A? example.com.`, `48879 2/0/0 ... A 93.184.215.14, ...`); pidcap's
/// sequence numbers stay absolute (tcpdump makes them relative after a SYN).
const VERBOSE: [&str; 5] = [
    "(ttl 64, id 0, length 60) seq 1000, win 64240, options [mss 1460,sackOK,TS val 7 ecr 0,nop,wscale 7]",
    "(ttl 64, id 0, length 87) seq 1001, ack 5001, win 502: HTTP GET /index.html HTTP/1.1",
    "(ttl 63, id 0, length 59) seq 5001, ack 1048, win 509: HTTP HTTP/1.1 200 OK",
    "(ttl 64, id 0, length 57) udp length 37: DNS 48879+ A? example.com.",
    "(ttl 64, id 0, length 89) udp length 69: DNS 48879 A? example.com. 2/0/0 A 93.184.215.14, A 93.184.215.15",
];

#[test]
fn v_decodes_tcp_options_udp_dns_and_http_as_golden_text() {
    let dir = Scratch::new("habits-v");
    let file = dir.path("decoding.pcapng");
    decoding_file(&file);
    let stamp = |i: u64| format!("22:13:20.{i:06}");
    let plain: Vec<String> = PLAIN.iter().enumerate().map(|(i, l)| format!("{} {l}", stamp(i as u64 + 1))).collect();
    assert_eq!(read_in("UTC", &file, &[]), plain);
    let want: Vec<String> = plain.iter().zip(VERBOSE).map(|(p, v)| format!("{p} {v}")).collect();
    assert_eq!(read_in("UTC", &file, &["-v"]), want);
    // tcpdump's fingers: -v before -r, and --verbose.
    let out = pidcap().env("TZ", "UTC").args(["-v", "-r"]).arg(&file).output().unwrap();
    assert_eq!(text(&out.stdout).lines().collect::<Vec<_>>(), want);
    assert_eq!(read_in("UTC", &file, &["--verbose"]), want);
    // -vv: more of the IP header, the checksums; -v leaves the dumps in place.
    let vv = read_in("UTC", &file, &["-vv"]);
    assert!(vv[0].contains("(tos 0x0, flags [DF], ttl 64, id 0, length 60, proto 6, cksum 0x"), "{}", vv[0]);
    assert!(vv[3].contains("udp length 37, cksum 0x"), "{}", vv[3]);
    let va = read_in("UTC", &file, &["-v", "-A", "-c", "2"]);
    assert_eq!(va[1], want[1]);
    assert_eq!(va[2], "GET /index.html HTTP/1.1");
    // JSON is unchanged by -v.
    assert_eq!(read_in("UTC", &file, &["--json", "-v"]), read_in("UTC", &file, &["--json"]));
}

#[test]
fn v_decodes_a_live_capture_a_syn_s_options_and_a_dns_query() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("habits-live-v");
    let tcp = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let _dns = ns.server(&["udp-server", "127.0.0.1", "53"]);
    let query = dns(&[]).iter().map(|b| format!("\\x{b:02x}")).collect::<String>();
    let py = format!(
        "import socket\nc=socket.create_connection(('127.0.0.1',{}))\nc.sendall(b'hi')\nc.close()\n\
         u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nu.settimeout(5)\nu.sendto(b'{query}',('127.0.0.1',53))\nu.recv(512)",
        tcp.port
    );
    let out =
        pidcap().args(["run", "-v", "--", "ip", "netns", "exec", &ns.name, "python3", "-c", &py]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let syn =
        stdout.lines().find(|l| l.contains(" out TCP ") && l.contains(" [S] ")).unwrap_or_else(|| panic!("{stdout}"));
    // Linux's SYN on loopback: MSS 65495, SACK permitted, timestamps, window scale.
    assert!(syn.contains(" (ttl 64, id "), "{syn}");
    assert!(syn.contains(", win 65495, options [mss 65495,sackOK,TS val "), "{syn}");
    assert!(syn.contains(",nop,wscale "), "{syn}");
    let q = stdout.lines().find(|l| l.contains(" out UDP ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(q.ends_with(" udp length 37: DNS 48879+ A? example.com."), "{q}");
}

#[test]
fn times_are_local_as_tcpdump_s_and_tz_is_respected() {
    let dir = Scratch::new("habits-tz");
    let file = dir.path("decoding.pcapng");
    decoding_file(&file);
    let first = |tz: &str, args: &[&str]| read_in(tz, &file, &[args, &["-c", "1"]].concat()).remove(0);
    let line = PLAIN[0];
    assert_eq!(first("UTC", &[]), format!("22:13:20.000001 {line}"));
    // POSIX zone strings: no time zone database needed. IST is 5:30 east, past midnight.
    assert_eq!(first("IST-5:30", &[]), format!("03:43:20.000001 {line}"));
    assert_eq!(first("IST-5:30", &["-tttt"]), format!("2023-11-15 03:43:20.000001 {line}"));
    assert_eq!(first("EST5", &["-tttt"]), format!("2023-11-14 17:13:20.000001 {line}"));
    // Epoch seconds and deltas do not depend on the zone.
    assert_eq!(first("IST-5:30", &["-tt"]), first("UTC", &["-tt"]));
    assert_eq!(first("IST-5:30", &["-ttt"]), format!("00:00:00.000000 {line}"));
}

#[test]
fn logging_is_log_level_or_pidcap_log_and_has_no_ansi_in_a_pipe() {
    require!(Root);
    let ns = NetNs::new("habits-log");
    let logged = |cmd: &mut std::process::Command| -> String {
        let out = cmd
            .args(["run", "-q", "--", "ip", "netns", "exec", &ns.name, "true"])
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    for err in [logged(pidcap().args(["--log-level", "debug"])), logged(pidcap().env("PIDCAP_LOG", "debug"))] {
        let debug = err.lines().find(|l| l.contains(" DEBUG ") && l.contains("target added"));
        assert!(debug.is_some(), "a debug line: {err}");
        assert!(!err.contains('\x1b'), "no ANSI codes into a pipe: {err:?}");
    }
    // --log-level wins over PIDCAP_LOG; -v is no longer logging; the default is warnings only.
    for err in [
        logged(pidcap().env("PIDCAP_LOG", "debug").args(["--log-level", "warn"])),
        logged(pidcap().arg("-v")),
        logged(&mut pidcap()),
    ] {
        assert!(!err.contains(" DEBUG ") && !err.contains(" INFO "), "{err}");
    }
    // A level that is not one is refused before anything runs.
    let bad = pidcap().args(["--log-level", "loud=[", "read", "/dev/null"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("--log-level"), "{}", text(&bad.stderr));
}

#[test]
fn the_summary_puts_the_targets_first_and_the_others_count_where_the_programs_are_only_with_v() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("habits-sum");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let run = |extra: &[&str]| -> (Vec<String>, String) {
        let out = pidcap()
            .args(["run", "-q"])
            .args(extra)
            .args(["--", "ip", "netns", "exec", &ns.name, "python3"])
            .arg(peer_script())
            .args(["udp-client", "127.0.0.1", &server.port.to_string(), "3"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        let pidcap_lines = err.lines().filter(|l| l.starts_with("pidcap: ")).map(str::to_owned).collect();
        (pidcap_lines, err)
    };
    let (lines, err) = run(&[]);
    let at = lines.iter().position(|l| l.contains(" packets captured (")).unwrap_or_else(|| panic!("{err}"));
    let summary = &lines[at];
    // Three datagrams out, their echoes in (at least the datagrams: the server answers each).
    let n: u64 = summary["pidcap: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(n >= 3, "{summary}");
    assert!(
        summary.starts_with(&format!("pidcap: {n} packets captured ({n} written), 0 dropped in the kernel ring")),
        "{summary}"
    );
    assert!(
        !err.contains("not attributed") && !err.contains("not the targets'"),
        "no count of others without -v: {err}"
    );
    assert!(!err.contains("pidcap: no packets"), "{err}");

    let (lines, err) = run(&["-v"]);
    let at = lines.iter().position(|l| l.contains(" packets captured (")).unwrap_or_else(|| panic!("{err}"));
    let wide = lines.get(at + 1).unwrap_or_else(|| panic!("{err}"));
    // `run` attaches at its command's own cgroup: the count is of that cgroup's packets, and says so.
    assert!(
        wide.starts_with("pidcap: in cgroup ")
            && wide.contains("/pidcap-run-")
            && wide.contains(" (where the programs are attached), not the targets': "),
        "the targets' line first, then: {wide}"
    );
    for part in [" packets seen by the kernel layer: ", " of other processes, ", " of sockets with no known owner"] {
        assert!(wide.contains(part), "{wide}");
    }
    let seen: u64 = wide.split("not the targets': ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(seen >= n, "the kernel layer saw at least the targets' packets: {wide}");
}

#[test]
fn classic_pcap_warns_once_that_it_loses_the_process() {
    require!(Root);
    let ns = NetNs::new("habits-pcap");
    let dir = Scratch::new("habits-pcap");
    let warning = "is classic pcap: it loses each packet's process";
    let run = |file: &Path, extra: &[&str]| -> String {
        let out = pidcap()
            .args(["run", "-q"])
            .args(extra)
            .arg("-w")
            .arg(file)
            .args(["--", "ip", "netns", "exec", &ns.name, "true"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let by_name = dir.path("x.pcap");
    let err = run(&by_name, &[]);
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(err.contains(&format!("pidcap: warning: {} {warning}", by_name.display())), "{err}");
    assert_eq!(run(&dir.path("y.cap"), &["-F", "pcap"]).matches(warning).count(), 1);
    assert_eq!(run(&dir.path("z.pcapng"), &[]).matches(warning).count(), 0);
    // read -w too.
    let file = dir.path("decoding.pcapng");
    decoding_file(&file);
    let out = pidcap().arg("read").arg(&file).arg("-w").arg(dir.path("copy.pcap")).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stderr).matches(warning).count(), 1, "{}", text(&out.stderr));
}

#[test]
fn pidcap_socket_names_the_daemon_s_socket() {
    require!(Root);
    let dir = Scratch::new("habits-sock");
    let sock = dir.path("elsewhere.sock");
    // The daemon listens where PIDCAP_SOCKET says (no --socket).
    let mut daemon = pidcap().arg("daemon").env("PIDCAP_SOCKET", &sock).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "the daemon never made its socket at PIDCAP_SOCKET");
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = pidcap().args(["ctl", "--json", "state"]).env("PIDCAP_SOCKET", &sock).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["running"], false, "{state}");
    // --socket wins over it.
    let out = pidcap()
        .args(["ctl", "--json", "--socket"])
        .arg(dir.path("nothing-here.sock"))
        .arg("state")
        .env("PIDCAP_SOCKET", &sock)
        .output()
        .unwrap();
    assert!(!out.status.success(), "--socket to nothing fails: {}", text(&out.stdout));
    let _ = daemon.kill();
    let _ = daemon.wait();
    // Without a daemon there, the error names the socket PIDCAP_SOCKET gave.
    let gone = dir.path("gone.sock");
    let out = pidcap().args(["ctl", "state"]).env("PIDCAP_SOCKET", &gone).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains(&gone.display().to_string()), "{}", text(&out.stderr));
    // Every command that talks to the daemon documents it.
    for cmd in [&["ctl"][..], &["send"], &["lib", "save"], &["ui"], &["daemon"]] {
        let out = pidcap().args(cmd).arg("--help").output().unwrap();
        assert!(text(&out.stdout).contains("PIDCAP_SOCKET"), "{cmd:?}: {}", text(&out.stdout));
    }
}
