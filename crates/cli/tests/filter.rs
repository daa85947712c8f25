//! pcap-filter expressions (tcpdump's language, compiled by libpcap) through
//! the real binary, as root, each test in a network namespace of its own: a
//! target that sends UDP to two ports and makes a TCP connection, captured
//! with an expression before `--` (run), after the options (capture), from a
//! file (--filter-file), with -c, over IPv6; kept and dropped packets
//! counted by tshark on the written file and by the summary. A malformed
//! expression is refused before the command runs. `read` selects with an
//! expression in files written by tcpdump (Ethernet frames on lo) and pidcap.

mod common;

use common::*;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The target: three datagrams to port 9001 and two to 9002 (each received
/// by a socket of its own, so each is captured going out and coming in),
/// then a TCP connection carrying "tcp". argv[1]: 4 or 6.
const TRAFFIC: &str = "import socket,sys
v6 = sys.argv[1] == '6'
fam, host = (socket.AF_INET6, '::1') if v6 else (socket.AF_INET, '127.0.0.1')
a = socket.socket(fam, socket.SOCK_DGRAM); a.bind((host, 9001))
b = socket.socket(fam, socket.SOCK_DGRAM); b.bind((host, 9002))
s = socket.socket(fam, socket.SOCK_DGRAM)
for i in range(3): s.sendto(b'one', (host, 9001)); a.recv(100)
for i in range(2): s.sendto(b'two', (host, 9002)); b.recv(100)
l = socket.socket(fam, socket.SOCK_STREAM); l.bind((host, 0)); l.listen()
c = socket.create_connection((host, l.getsockname()[1])); k, _ = l.accept()
c.sendall(b'tcp'); k.recv(10); c.close(); k.recv(10); k.close()
";

/// `pidcap run ARGS -- ip netns exec NS python3 -c TRAFFIC VERSION`.
fn run_traffic(ns: &NetNs, args: &[&str], version: &str) -> Output {
    let out = pidcap()
        .arg("run")
        .args(args)
        .args(["--", "ip", "netns", "exec", &ns.name, "python3", "-c", TRAFFIC, version])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    out
}

/// Frames of `path` that tshark's display filter `filter` shows (all with
/// ""), failing on any warning of tshark's.
fn tshark_count(path: &Path, filter: &str) -> usize {
    let mut c = Command::new("tshark");
    c.arg("-r").arg(path).args(["-T", "fields", "-e", "frame.number"]);
    if !filter.is_empty() {
        c.args(["-Y", filter]);
    }
    let out = c.output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "tshark: {err}");
    assert!(err.lines().all(|l| l.starts_with("Running as user \"root\"")), "tshark warned: {err}");
    text(&out.stdout).lines().filter(|l| !l.is_empty()).count()
}

/// The number N of the summary's "N packets did not match the filter expression".
fn not_matched(stderr: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.ends_with(" packets did not match the filter expression"))
        .unwrap_or_else(|| panic!("no filter line in the summary: {stderr}"));
    line.trim_start_matches("pidcap: ").split(' ').next().unwrap().parse().unwrap()
}

/// The "N packets captured (M written)" of the summary.
fn captured(stderr: &str) -> (u64, u64) {
    let line = stderr.lines().find(|l| l.contains(" packets captured (")).unwrap_or_else(|| panic!("{stderr}"));
    let n = line.trim_start_matches("pidcap: ").split(' ').next().unwrap().parse().unwrap();
    let m = line.split(" packets captured (").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    (n, m)
}

#[test]
fn an_expression_before_the_command_keeps_only_its_packets() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("flt-run");
    let scratch = Scratch::new("flt-run");

    // Without an expression the target's traffic has all three kinds.
    let all = scratch.path("all.pcapng");
    let out = run_traffic(&ns, &["-w", all.to_str().unwrap()], "4");
    assert!(!text(&out.stderr).contains("did not match"), "no expression, no filter line: {}", text(&out.stderr));
    assert_eq!(tshark_count(&all, "udp.dstport == 9001"), 6, "3 datagrams, out and in");
    assert_eq!(tshark_count(&all, "udp.dstport == 9002"), 4);
    let tcp = tshark_count(&all, "tcp");
    assert!(tcp >= 6, "a TCP connection: {tcp} frames");

    // The expression as three words (tcpdump joins them), before `--`.
    let kept = scratch.path("kept.pcapng");
    let out = run_traffic(&ns, &["-w", kept.to_str().unwrap(), "udp", "port", "9001"], "4");
    let err = text(&out.stderr);
    assert_eq!(tshark_count(&kept, ""), 6, "{err}");
    assert_eq!(tshark_count(&kept, "udp.dstport == 9001"), 6);
    assert_eq!(captured(&err), (6, 6), "{err}");
    let dropped = not_matched(&err);
    assert!(dropped >= 4 + 6, "the 9002 datagrams and the TCP connection did not match: {dropped}\n{err}");
    // The process is still on every kept packet (its interface's description, issue 13).
    let described = Command::new("tshark")
        .arg("-r")
        .arg(&kept)
        .args(["-T", "fields", "-e", "frame.interface_description"])
        .output()
        .unwrap();
    let described = text(&described.stdout);
    assert_eq!(described.lines().count(), 6, "{described}");
    assert!(described.lines().all(|c| c.contains("pid=")), "{described}");

    // In one word, on the text lines: only the 9001 datagrams are printed.
    let out = run_traffic(&ns, &["-n", "tcp or udp dst port 9002"], "4");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert!(lines.iter().any(|l| l.contains(" TCP ")), "{lines:?}");
    assert_eq!(lines.iter().filter(|l| l.contains(" UDP ")).count(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains(":9001")), "{lines:?}");
}

#[test]
fn count_counts_the_packets_that_match() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("flt-count");
    let scratch = Scratch::new("flt-count");
    let f = scratch.path("two.pcapng");
    // The TCP connection comes last: -c 2 with `tcp` waits for it, past all the UDP.
    let out = run_traffic(&ns, &["-c", "2", "-w", f.to_str().unwrap(), "tcp"], "4");
    let err = text(&out.stderr);
    assert_eq!(tshark_count(&f, ""), 2, "{err}");
    assert_eq!(tshark_count(&f, "tcp.flags.syn == 1"), 2, "the SYN, out and in: {err}");
    let (received, written) = captured(&err);
    assert_eq!(written, 2, "{err}");
    assert!(received >= 2, "{err}");
    assert!(not_matched(&err) >= 10, "the ten UDP packets before: {err}");
}

#[test]
fn a_bad_expression_is_refused_before_anything_runs() {
    require!(Root);
    let scratch = Scratch::new("flt-bad");
    let ran = scratch.path("the-command-ran");
    let file = scratch.path("never.pcapng");
    let out =
        pidcap().args(["run", "-w"]).arg(&file).args(["tcp", "prot", "80", "--", "touch"]).arg(&ran).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end(), "pidcap: invalid filter expression \"tcp prot 80\": syntax error");
    assert!(!ran.exists(), "the command ran although its filter expression was refused");
    assert!(!file.exists(), "the output was created");

    // libpcap's own words for what raw IP cannot have.
    let out = pidcap().args(["run", "ether host 1:2:3:4:5:6", "--", "touch"]).arg(&ran).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("invalid filter expression \"ether host 1:2:3:4:5:6\": ethernet addresses"), "{err}");
    assert!(!ran.exists());

    // capture: refused before the target is even looked at.
    let out = pidcap().args(["capture", "--pid", "1", "udp", "port", "x"]).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.starts_with("pidcap: invalid filter expression \"udp port x\": "), "{err}");

    // A filter file that is not there, and an expression given both ways.
    let out = pidcap().args(["run", "--filter-file", "/no/such/filter", "--", "touch"]).arg(&ran).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot read the filter file /no/such/filter: No such file or directory"), "{err}");
    let ff = scratch.path("filter");
    std::fs::write(&ff, "# the secret port\nudp port 7777 and\n").unwrap();
    let out = pidcap().args(["run", "--filter-file"]).arg(&ff).args(["--", "touch"]).arg(&ran).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end(), format!("pidcap: invalid filter expression in {}: syntax error", ff.display()));
    std::fs::write(&ff, "udp\n").unwrap();
    let out = pidcap().args(["run", "--filter-file"]).arg(&ff).args(["tcp", "--", "touch"]).arg(&ran).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("'--filter-file <FILE>' cannot be used with '[EXPRESSION]...'"), "{err}");
    assert!(!ran.exists());
}

#[test]
fn filter_file_and_capture_take_the_expression_too() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("flt-file");
    let scratch = Scratch::new("flt-file");
    let ff = scratch.path("filter");
    std::fs::write(&ff, "# the second port only\nudp   # datagrams\n  and port 9002\n").unwrap();
    let f = scratch.path("file.pcapng");
    let out = run_traffic(&ns, &["-w", f.to_str().unwrap(), "--filter-file", ff.to_str().unwrap()], "4");
    let err = text(&out.stderr);
    assert_eq!(tshark_count(&f, ""), 4, "{err}");
    assert_eq!(tshark_count(&f, "udp.dstport == 9002"), 4, "{err}");

    // `capture --pid N EXPRESSION`: a target that waits for a go, then sends.
    let go = scratch.path("go");
    let script =
        format!("import os,time\nwhile not os.path.exists({:?}): time.sleep(0.01)\n{TRAFFIC}", go.to_str().unwrap());
    let mut target = ns.command("python3").args(["-c", &script, "4"]).stdin(Stdio::null()).spawn().unwrap();
    let cap = scratch.path("cap.pcapng");
    let (pidcap_run, _lines) = start_pidcap(
        pidcap()
            .args(["capture", "--pid", &target.id().to_string(), "-w"])
            .arg(&cap)
            .args(["udp", "dst", "port", "9002"]),
    );
    std::fs::write(&go, b"").unwrap();
    assert!(target.wait().unwrap().success());
    let out = pidcap_run.wait_with_output();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(tshark_count(&cap, ""), 4);
    assert_eq!(tshark_count(&cap, "udp.dstport == 9002"), 4);
}

#[test]
fn ipv6_packets_match_ip6_and_not_ip() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("flt-v6");
    let scratch = Scratch::new("flt-v6");
    let f = scratch.path("v6.pcapng");
    let out = run_traffic(&ns, &["-w", f.to_str().unwrap(), "ip6 and udp"], "6");
    let err = text(&out.stderr);
    assert_eq!(tshark_count(&f, ""), 10, "{err}");
    assert_eq!(tshark_count(&f, "ipv6 && udp"), 10);
    assert!(not_matched(&err) >= 6, "the TCP connection: {err}");

    let f4 = scratch.path("v4only.pcapng");
    let out = run_traffic(&ns, &["-w", f4.to_str().unwrap(), "ip"], "6");
    assert_eq!(tshark_count(&f4, ""), 0, "{}", text(&out.stderr));
    assert!(not_matched(&text(&out.stderr)) >= 16);

    // `host ::1` and `len`: the whole IPv6 packet's length (40 + 8 + 3 bytes for a datagram).
    let out = run_traffic(&ns, &["-q", "host ::1 and udp and len == 51"], "6");
    assert_eq!(captured(&text(&out.stderr)).0, 10, "{}", text(&out.stderr));
}

#[test]
fn read_selects_with_an_expression_in_tcpdump_and_pidcap_files() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"), Tool("tcpdump"));
    let ns = NetNs::new("flt-read");
    let scratch = Scratch::new("flt-read");
    // tcpdump on lo writes Ethernet frames (classic pcap).
    let td = scratch.path("td.pcap");
    let mut tcpdump = ns
        .command("tcpdump")
        .args(["-i", "lo", "-U", "-Z", "root", "-w"])
        .arg(&td)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = StderrLines::new(tcpdump.stderr.take().unwrap());
    lines.wait_for("listening on lo", Duration::from_secs(30));
    run_ok(ns.command("python3").args(["-c", TRAFFIC, "4"]));
    // tcpdump sees every datagram once on lo: wait until the file holds all five, then stop it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let udp = |p: &pidcap_packet::CapturedPacket| p.decoded.protocol == pidcap_packet::Protocol::Udp;
    while packets_so_far(&td).iter().filter(|p| udp(p)).count() < 5 {
        assert!(std::time::Instant::now() < deadline, "tcpdump never wrote the datagrams");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) on the tcpdump this test started and has not reaped.
    unsafe { libc::kill(tcpdump.id() as libc::pid_t, libc::SIGINT) };
    assert!(tcpdump.wait().unwrap().success());

    let out = pidcap().arg("read").arg(&td).args(["udp", "port", "9001"]).output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    let got: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(got.len(), tshark_count(&td, "udp.port == 9001"), "{got:?}\n{err}");
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|l| l.contains(" UDP ") && l.contains(":9001")), "{got:?}");
    let others = tshark_count(&td, "") - 3;
    assert_eq!(not_matched(&err), others as u64, "{err}");

    // tcpdump's fingers: -r, and -w keeps the selection for tshark.
    let sel = scratch.path("tcp.pcapng");
    let out = pidcap().arg("-r").arg(&td).arg("-w").arg(&sel).arg("tcp").output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tcp = tshark_count(&td, "tcp");
    assert!(tcp >= 6, "{tcp}");
    assert_eq!(tshark_count(&sel, ""), tcp);
    assert_eq!(tshark_count(&sel, "tcp"), tcp);

    // A pidcap file, with --filter-file, and with --pid beside the expression.
    let pc = scratch.path("pidcap.pcapng");
    run_traffic(&ns, &["-w", pc.to_str().unwrap()], "4");
    let ff = scratch.path("filter");
    std::fs::write(&ff, "udp dst port 9002\n").unwrap();
    let out = pidcap().arg("read").arg(&pc).arg("--filter-file").arg(&ff).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), tshark_count(&pc, "udp.dstport == 9002"));
    assert_eq!(text(&out.stdout).lines().count(), 4);
    let out = pidcap().arg("read").arg(&pc).args(["--pid", "1", "udp"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 0, "no packet of pid 1");

    // A bad expression: refused before the output is created.
    let never = scratch.path("never.pcapng");
    let out = pidcap().arg("read").arg(&pc).arg("-w").arg(&never).arg("udp prot 1").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stderr).trim_end(), "pidcap: invalid filter expression \"udp prot 1\": syntax error");
    assert!(!never.exists());
}

#[test]
fn an_expression_after_the_command_is_the_commands_with_a_warning() {
    require!(Root);
    let scratch = Scratch::new("flt-after");
    let args = scratch.path("args");
    let out = pidcap()
        .args(["run", "-q", "--", "sh", "-c", "printf '%s\\n' \"$@\" > \"$0\""])
        .arg(&args)
        .args(["http://127.0.0.1:1/", "tcp port 80"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(std::fs::read_to_string(&args).unwrap(), "http://127.0.0.1:1/\ntcp port 80\n", "unchanged");
    assert!(
        err.contains("warning: the command's last arguments \"tcp port 80\" read like a filter expression"),
        "{err}"
    );
    assert!(!err.contains("did not match"), "no filter: {err}");

    // Typed unquoted, as tcpdump takes it: the same.
    let out = pidcap().args(["run", "-q", "--", "sh", "-c", "true", "udp", "and", "port", "53"]).output().unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("last arguments \"udp and port 53\" read like a filter expression"), "{err}");

    // An argument that only looks like words is not warned about.
    let out = pidcap().args(["run", "-q", "--", "sh", "-c", "true", "hello world"]).output().unwrap();
    assert!(out.status.success());
    assert!(!text(&out.stderr).contains("warning"), "{}", text(&out.stderr));
}

#[test]
fn a_tls_plaintext_record_is_matched_as_a_tcp_packet_of_its_connection() {
    require!(Root, Tool("ip"), Tool("curl"), Tool("openssl"), Tool("python3"));
    use pidcap_testkit::tls::{Certs, HttpsServer};
    let ns = NetNs::new("flt-tls");
    let certs = Certs::new("flt-tls");
    let server = HttpsServer::http(ns.command("python3"), &certs);
    let url = server.url("/filtered-path");
    // TCP packets whose payload starts with "GET ": on the wire the request
    // is encrypted, so only the plaintext record of curl's request matches.
    let expression = format!("tcp port {} and tcp[((tcp[12] & 0xf0) >> 2):4] = 0x47455420", server.port);
    let out = pidcap()
        .args(["run", "-n", &expression, "--", "ip", "netns", "exec", &ns.name])
        .args(["curl", "-s", "--cacert", certs.ca.to_str().unwrap(), &url])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.contains("path=/filtered-path")).collect();
    assert_eq!(lines.len(), 1, "{stdout}\n{stderr}");
    assert!(lines[0].contains(" out TLS ") && lines[0].contains(": GET /filtered-path HTTP/1.1"), "{stdout}");
    assert!(not_matched(&stderr) >= 10, "the encrypted packets and the response: {stderr}");
    assert_eq!(captured(&stderr).0, 1, "{stderr}");
}
