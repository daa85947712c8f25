//! TLS in clear through the real `pidcap` binary, as root against the real
//! kernel: each test makes a certificate and a Python HTTPS server
//! (pidcap-testkit's https.py) in a network namespace of its own, and checks what
//! pidcap prints and what tshark finds in its file: the HTTP inside, from
//! the keys pidcap folded in (`run` gives its command a private
//! SSLKEYLOGFILE) or from the plaintext records alone.

mod common;

use common::*;
use pidcap_packet::Direction;
use pidcap_testkit::tls::{self, Certs, HttpsServer};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(30);

macro_rules! require_tls {
    ($($more:tt)*) => {
        require!(Root, Tool("ip"), Tool("curl"), Tool("tshark"), Tool("openssl"), Tool("python3") $($more)*)
    };
}

/// A test's namespace, scratch directory, certificates and HTTPS server (`https.py server`, in the namespace).
struct Setup {
    ns: NetNs,
    scratch: Scratch,
    certs: Certs,
    server: HttpsServer,
}

fn setup(tag: &str) -> Setup {
    let ns = NetNs::new(tag);
    let scratch = Scratch::new(tag);
    let certs = Certs::new(tag);
    let server = HttpsServer::http(ns.command("python3"), &certs);
    Setup { ns, scratch, certs, server }
}

/// `https.py client` in `ns`: a keep-alive connection to `server` that GETs `first`; returns once it is `ready`.
fn keep_alive_client(ns: &NetNs, server: &HttpsServer, ca: &Path, first: &str, env: &[(&str, &Path)]) -> tls::Peer {
    let mut python3 = ns.command("python3");
    python3.envs(env.iter().copied());
    let port = server.port.to_string();
    let client = tls::Peer::https(python3, "client", &[ca.to_str().unwrap(), &port, first]);
    client.wait_for("ready");
    client
}

/// `tshark -r file args`; fails on a tshark error or warning.
fn tshark(file: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("tshark").arg("-r").arg(file).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tshark {args:?}: {stderr}");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with("Running as user \"root\""), "tshark {args:?} warned: {line}");
    }
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn uris(file: &Path) -> Vec<String> {
    tshark(file, &["-Y", "http.request", "-T", "fields", "-e", "http.request.uri"])
}

/// `pidcap run ARGS -- ip netns exec NS CMD...`
fn run_in(ns: &NetNs, args: &[&str], cmd: &[&str]) -> Command {
    let mut c = pidcap();
    c.arg("run").args(args).arg("--").args(["ip", "netns", "exec", &ns.name]).args(cmd);
    c
}

fn curl_args<'a>(cert: &'a Path, url: &'a str) -> Vec<&'a str> {
    vec!["curl", "-s", "--cacert", cert.to_str().unwrap(), url]
}

#[test]
fn run_curl_writes_keys_tshark_decrypts_and_the_key_log_is_gone() {
    require_tls!();
    let Setup { ns, scratch, certs, server } = setup("tlsrun");
    let cert = &certs.ca;
    let file = scratch.path("curl.pcapng");
    let url = server.url("/some-path");
    // The command says where its key log is, then is curl.
    let script = format!("echo \"keylog=$SSLKEYLOGFILE\"; exec curl -s --cacert '{}' '{url}'", cert.display());
    let out = run_in(&ns, &["-w", file.to_str().unwrap()], &["sh", "-c", &script]).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "pidcap run failed: {stderr}");
    assert!(stdout.contains("path=/some-path"), "curl's answer: {stdout}");

    // Plain tshark, no option: the request, once (the records on the keyed connection are not shown as HTTP again).
    assert_eq!(uris(&file), ["/some-path"], "{stderr}");
    assert_eq!(tshark(&file, &["-Y", "http.response.code == 200"]).len(), 1);
    // The records are in the file too, on their own interface, read back by pidcap.
    let records: Vec<_> = read_capture(&file).into_iter().filter(|p| p.is_tls()).collect();
    assert!(
        records.iter().any(|r| r.direction == Direction::Outbound && r.payload().starts_with(b"GET /some-path ")),
        "records: {records:?}"
    );
    assert!(!tshark(&file, &["-Y", "frame.comment contains \"tls=openssl\""]).is_empty());
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o600);

    // The private key log, and its directory, are gone.
    let keylog = stdout.lines().find_map(|l| l.strip_prefix("keylog=")).expect("the command saw SSLKEYLOGFILE");
    let keylog = Path::new(keylog);
    assert!(keylog.is_absolute() && keylog.to_string_lossy().contains("pidcap-keylog-"), "{}", keylog.display());
    assert!(!keylog.exists() && !keylog.parent().unwrap().exists(), "{} is still there", keylog.display());
    assert!(stderr.contains("pidcap: TLS: pid") && stderr.contains("openssl (/"), "coverage: {stderr}");
    let keys = stderr.lines().find(|l| l.starts_with("pidcap: TLS keys: ")).unwrap_or_else(|| panic!("{stderr}"));
    let n: u64 = keys["pidcap: TLS keys: ".len()..].split(' ').next().unwrap().parse().unwrap();
    assert!(n >= 5, "TLS 1.3 logs 5 lines: {keys}");
    assert!(stderr.contains("TLS plaintext records (0 dropped)"), "summary: {stderr}");
}

#[test]
fn run_prints_the_decrypted_request_as_a_line_and_as_json() {
    require_tls!();
    let Setup { ns, scratch: _scratch, certs, server } = setup("tlslines");
    let cert = &certs.ca;
    let url = server.url("/line-path");
    let out = run_in(&ns, &[], &curl_args(cert, &url)).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = stdout
        .lines()
        .find(|l| l.contains(" out TLS ") && l.contains("decrypted openssl"))
        .unwrap_or_else(|| panic!("no decrypted line in {stdout}"));
    assert!(line.contains(&format!("> 127.0.0.1:{}", server.port)), "{line}");
    assert!(line.contains(": GET /line-path HTTP/1.1\\r\\nHost: 127.0.0.1:"), "{line}");
    assert!(
        stdout.lines().any(|l| l.contains(" in  TLS ") && l.contains(": HTTP/1.1 200 OK\\r\\n")),
        "the response: {stdout}"
    );

    let out = run_in(&ns, &["--json"], &curl_args(cert, &url)).output().unwrap();
    assert!(out.status.success());
    let objects: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let rec = objects
        .iter()
        .find(|o| o["tls"]["library"] == "openssl" && o["direction"] == "outbound")
        .unwrap_or_else(|| panic!("no TLS record in {objects:?}"));
    assert!(rec["tls"]["tid"].as_u64().unwrap() > 0);
    assert_eq!(rec["remote_port"].as_u64(), Some(u64::from(server.port)));
    assert!(objects.iter().any(|o| o.get("tls").is_none()), "packets have no tls field");

    // --no-tls: the encrypted packets only, and nothing said about TLS.
    let out = run_in(&ns, &["--no-tls"], &curl_args(cert, &url)).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(" out TCP ") && !stdout.contains(" TLS "), "{stdout}");
    assert!(!stderr.contains("TLS"), "{stderr}");
}

#[test]
fn without_keys_the_records_alone_show_the_http_in_tshark() {
    require_tls!();
    let Setup { ns, scratch, certs, server } = setup("tlsnokeys");
    let cert = &certs.ca;

    // curl with the key log turned off.
    let file = scratch.path("nokeys.pcapng");
    let url = server.url("/no-keys");
    let out = run_in(&ns, &["--no-keylog", "-w", file.to_str().unwrap()], &curl_args(cert, &url)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("TLS keys"), "{stderr}");
    let contents =
        pidcap_pcapfile::PacketReader::new(std::fs::File::open(&file).unwrap()).unwrap().read_to_end().unwrap();
    assert!(contents.keylog.is_empty(), "no keys in the file");
    assert_eq!(uris(&file), ["/no-keys"], "the request, from its record");
    let on_iface =
        tshark(&file, &["-Y", "frame.interface_name == \"pidcap-tls-plaintext\" && http.response.code == 200"]);
    assert_eq!(on_iface.len(), 1, "the response, from its record");
    let by_comment = tshark(&file, &["-Y", "frame.comment contains \"tls=openssl\" && http"]);
    assert_eq!(by_comment.len(), 2);

    // A keep-alive connection opened before `pidcap capture --pid`: the requests sent afterwards.
    let mut client = keep_alive_client(&ns, &server, cert, "/before", &[]);
    let file = scratch.path("keepalive.pcapng");
    let (pidcap, mut err) =
        start_pidcap(pidcap().args(["capture", "--pid", &client.pid().to_string(), "-w"]).arg(&file));
    err.wait_for("openssl (/", LONG);
    assert_eq!(client.ask("/after-capture"), "got 200 path=/after-capture");
    wait_for_capture(&file, "the answer's record", |ps| {
        ps.iter().any(|p| p.is_tls() && p.direction == Direction::Inbound && p.payload().ends_with(b"/after-capture\n"))
    });
    pidcap.signal(libc::SIGINT);
    let status = pidcap.wait();
    assert!(status.success(), "{status:?}");
    client.finish();
    assert_eq!(uris(&file), ["/after-capture"]);
    // The answer (its headers and its body may be records of their own).
    let answer = tshark(&file, &["-Y", "frame.comment contains \"tls=\" && frame contains \"path=/after-capture\""]);
    assert!(!answer.is_empty(), "the answer's body: {answer:?}");
    assert_eq!(tshark(&file, &["-Y", "http.response.code == 200"]).len(), 1);
}

#[test]
fn gnutls_cli_is_decrypted_too() {
    require_tls!(, Tool("gnutls-cli"));
    let Setup { ns, scratch, certs, server } = setup("tlsgnutls");
    let cert = &certs.ca;
    let port = server.port.to_string();
    for keylog in [true, false] {
        let file = scratch.path(&format!("gnutls-{keylog}.pcapng"));
        let mut args = vec!["-w", file.to_str().unwrap()];
        if !keylog {
            args.push("--no-keylog");
        }
        let ca = format!("--x509cafile={}", cert.display());
        let mut child = run_in(&ns, &args, &["gnutls-cli", "--crlf", &ca, "--port", &port, "127.0.0.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // HTTP/1.0: the server answers and closes, and gnutls-cli exits.
        child.stdin.as_mut().unwrap().write_all(b"GET /gnutls-path HTTP/1.0\nHost: 127.0.0.1\n\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("path=/gnutls-path"), "gnutls-cli's answer: {stdout} {stderr}");
        assert!(stderr.contains("gnutls (/"), "coverage: {stderr}");
        assert_eq!(uris(&file), ["/gnutls-path"], "keys: {keylog}: {stderr}");
        let records = read_capture(&file).into_iter().filter(|p| p.is_tls()).count();
        assert!(records >= 2, "request and answer records: {records}");
        let keys = stderr.lines().find(|l| l.starts_with("pidcap: TLS keys: "));
        assert_eq!(keys.is_some(), keylog, "{stderr}");
    }
}

/// The uprobes `pid` holds, as the kernel lists them: BPF links of type
/// `perf_event` (`bpftool link show`) running its TLS probe programs
/// (`pidcap_tls_ent`/`pidcap_tls_ret`; the perf event behind each link is
/// held by the link alone, so `bpftool perf` does not list it), and its
/// uprobe_multi links (`bpftool` 7.1 shows them as type 12 only). Their ids,
/// and how many functions they probe (a perf link one, a multi link its
/// offsets).
fn uprobe_links_of(progs: &[(u64, String)]) -> (Vec<u64>, u32) {
    let tls_progs: Vec<u64> = progs.iter().filter(|(_, n)| n.starts_with("pidcap_tls_")).map(|(id, _)| *id).collect();
    let mut ids: Vec<u64> = bpftool_json(&["link", "show"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["type"] == "perf_event" && l["prog_id"].as_u64().is_some_and(|id| tls_progs.contains(&id)))
        .filter_map(|l| l["id"].as_u64())
        .collect();
    let mut probes = ids.len() as u32;
    for l in pidcap_ebpf::uprobe_multi::uprobe_multi_links().unwrap() {
        if tls_progs.contains(&u64::from(l.prog_id)) {
            ids.push(u64::from(l.id));
            probes += l.count;
        }
    }
    (ids, probes)
}

#[test]
fn sigkill_of_run_mid_capture_leaves_no_uprobe_and_no_program() {
    require_tls!(, Tool("bpftool"));
    let Setup { ns, scratch, certs, server } = setup("tlskill");
    let cert = &certs.ca;
    let file = scratch.path("kill.pcapng");
    let port = server.port.to_string();
    let script = tls::https_py();
    let client = ["python3", script.to_str().unwrap(), "client", cert.to_str().unwrap(), &port, "/first"];
    let mut cmd = run_in(&ns, &["-w", file.to_str().unwrap()], &client);
    let (pidcap, mut err) = start_pidcap(cmd.stdin(Stdio::piped()).stdout(Stdio::piped()));
    err.wait_for("openssl (/", LONG);
    wait_for_capture(&file, "the first request's record", |ps| {
        ps.iter().any(|p| p.is_tls() && p.payload().starts_with(b"GET /first "))
    });
    let pid = pidcap.id();
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let command: u32 = children.split_whitespace().next().expect("run's command").parse().unwrap();
    let keylog = keylog_of(command);
    let held = programs_held_by(pid);
    let names: Vec<&str> = held.iter().map(|(_, n)| n.as_str()).collect();
    assert!(names.contains(&"pidcap_tls_ent") && names.contains(&"pidcap_tls_ret"), "{names:?}");
    let (links, probes) = uprobe_links_of(&held);
    // Entry and return probes on libssl's four functions at least.
    assert!(probes >= 8, "pidcap's uprobe links: {links:?} ({probes} probes)");
    let progs: std::collections::HashSet<u64> = held.iter().map(|(id, _)| *id).collect();

    pidcap.signal(libc::SIGKILL);
    let status = pidcap.wait();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    let deadline = Instant::now() + LONG;
    loop {
        let loaded: std::collections::HashSet<u64> =
            all_program_ids().union(&attached_program_ids()).copied().collect();
        let left: Vec<_> = progs.intersection(&loaded).collect();
        let (links_left, _) = uprobe_links_of(&held);
        if left.is_empty() && links_left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "programs {left:?} and uprobe links {links_left:?} outlived the SIGKILLed pidcap"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // No perf event is left running one of its programs either (`bpftool perf`: perf event fds of any process).
    let perf: Vec<_> = bpftool_json(&["perf"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["prog_id"].as_u64().is_some_and(|id| progs.contains(&id)))
        .cloned()
        .collect();
    assert!(perf.is_empty(), "{perf:?}");
    // SIGKILL is the one end that leaves run's private key log behind (in its 0700 directory): remove it.
    let dir = keylog.parent().unwrap();
    assert!(dir.to_string_lossy().contains("pidcap-keylog-"), "{}", dir.display());
    std::fs::remove_dir_all(dir).unwrap();
}

/// The SSLKEYLOGFILE in the environment of process `pid`.
fn keylog_of(pid: u32) -> PathBuf {
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let var = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(b"SSLKEYLOGFILE=")).expect("SSLKEYLOGFILE is set");
    PathBuf::from(String::from_utf8_lossy(var).into_owned())
}

#[test]
fn a_users_key_log_is_read_and_kept_and_a_pcap_file_says_what_it_left_out() {
    require_tls!();
    let Setup { ns, scratch, certs, server } = setup("tlsmine");
    let cert = &certs.ca;
    let url = server.url("/mine");
    let mine = scratch.path("my-keys.log");
    let file = scratch.path("mine.pcapng");
    let out = run_in(&ns, &["-w", file.to_str().unwrap()], &curl_args(cert, &url))
        .env("SSLKEYLOGFILE", &mine)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let (lines, bad) = pidcap_pcapfile::keylog::parse_text(&std::fs::read(&mine).expect("the user's key log is kept"));
    assert!(lines.len() >= 5 && bad == 0, "{lines:?}");
    assert!(stderr.contains(&format!("from {} written into", mine.display())), "{stderr}");
    assert_eq!(uris(&file), ["/mine"]);

    // Classic pcap: the packets, no records, and one line saying how many were left out.
    let file = scratch.path("old.pcap");
    let out = run_in(&ns, &["-w", file.to_str().unwrap()], &curl_args(cert, &url)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let left = stderr.lines().filter(|l| l.contains("TLS plaintext records left out of")).collect::<Vec<_>>();
    assert_eq!(left.len(), 1, "{stderr}");
    assert!(left[0].contains("pcapng keeps them"), "{left:?}");
    let packets = read_capture(&file);
    assert!(!packets.is_empty() && packets.iter().all(|p| !p.is_tls()));
    let written = format!("({} written)", packets.len());
    assert!(stderr.contains(&written), "records are not counted as written: {stderr}");
    assert!(!stderr.contains("TLS keys"), "no keys for a pcap file: {stderr}");
}

#[test]
fn capture_reads_a_targets_own_key_log_for_its_new_connections() {
    require_tls!();
    let Setup { ns, scratch, certs, server } = setup("tlsenv");
    let cert = &certs.ca;
    let keys = scratch.path("client-keys.log");
    let mut client = keep_alive_client(&ns, &server, cert, "/before", &[("SSLKEYLOGFILE", &keys)]);
    let file = scratch.path("env.pcapng");
    let (pidcap, mut err) =
        start_pidcap(pidcap().args(["capture", "--pid", &client.pid().to_string(), "-w"]).arg(&file));
    assert!(err.seen.iter().any(|l| l.contains("from its SSLKEYLOGFILE")), "{:?}", err.seen);
    err.wait_for("openssl (/", LONG);
    // A request on the connection opened before (records only), then one on a new connection (keys too).
    client.send("/old-connection\nnew /new-connection");
    for want in ["got 200 path=/old-connection", "got 200 path=/new-connection"] {
        assert_eq!(client.line(), want);
    }
    wait_for_capture(&file, "the second answer's record", |ps| {
        ps.iter()
            .any(|p| p.is_tls() && p.direction == Direction::Inbound && p.payload().ends_with(b"/new-connection\n"))
    });
    pidcap.signal(libc::SIGINT);
    assert!(pidcap.wait().success());
    client.finish();
    let mut got = uris(&file);
    got.sort();
    assert_eq!(got, ["/new-connection", "/old-connection"], "each request once");
    // The new connection is decrypted from its packets: its request is not on the plaintext interface as HTTP.
    let from_packets = tshark(
        &file,
        &[
            "-Y",
            "http.request && !(frame.interface_name == \"pidcap-tls-plaintext\")",
            "-T",
            "fields",
            "-e",
            "http.request.uri",
        ],
    );
    assert_eq!(from_packets, ["/new-connection"]);
    let contents =
        pidcap_pcapfile::PacketReader::new(std::fs::File::open(&file).unwrap()).unwrap().read_to_end().unwrap();
    let (all, _) = pidcap_pcapfile::keylog::parse_text(&std::fs::read(&keys).unwrap());
    assert!(!contents.keylog.is_empty() && contents.keylog.len() < all.len(), "only the new connection's keys go in");
}

#[test]
fn the_private_key_log_goes_on_an_error_and_on_a_signal() {
    require_tls!();
    let ns = NetNs::new("tlsgone");
    let scratch = Scratch::new("tlsgone");
    let tmp = scratch.path("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let leftovers = || std::fs::read_dir(&tmp).unwrap().count();
    let file = scratch.path("gone.pcapng");
    // The command cannot run.
    let out =
        pidcap().arg("run").arg("-w").arg(&file).args(["--", "/nonexistent/cmd"]).env("TMPDIR", &tmp).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(leftovers(), 0);
    // The file cannot be created.
    let out = run_in(&ns, &["-w", "/nonexistent/dir/f.pcapng"], &["true"]).env("TMPDIR", &tmp).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(leftovers(), 0);
    // SIGINT while the command runs: pidcap passes it on, the command ends, the key log goes.
    let mut cmd = run_in(&ns, &["-w", file.to_str().unwrap()], &["sleep", "60"]);
    let (pidcap, _err) = start_pidcap(cmd.env("TMPDIR", &tmp));
    assert_eq!(leftovers(), 1, "the private directory exists while the command runs");
    pidcap.signal(libc::SIGINT);
    let status = pidcap.wait();
    assert!(status.code().is_some(), "pidcap ended by itself, not by the signal: {status:?}");
    assert_eq!(leftovers(), 0, "removed after the signal");
}

#[test]
fn capturing_the_https_server_shows_the_requests_it_reads() {
    require_tls!();
    let Setup { ns, scratch, certs, server } = setup("tlsserver");
    let cert = &certs.ca;
    let file = scratch.path("server.pcapng");
    let (pidcap, mut err) =
        start_pidcap(pidcap().args(["capture", "--pid", &server.pid().to_string(), "-w"]).arg(&file));
    err.wait_for("openssl (/", LONG);
    let url = server.url("/server-side");
    let out = run_ok(ns.command("curl").args(["-s", "--cacert", cert.to_str().unwrap(), &url]));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "path=/server-side\n");
    wait_for_capture(&file, "the request the server read", |ps| {
        ps.iter()
            .any(|p| p.is_tls() && p.direction == Direction::Inbound && p.payload().starts_with(b"GET /server-side "))
    });
    pidcap.signal(libc::SIGINT);
    assert!(pidcap.wait().success());
    assert_eq!(uris(&file), ["/server-side"]);
    let answers = tshark(&file, &["-Y", "frame.comment contains \"tls=openssl\" && http.response.code == 200"]);
    assert_eq!(answers.len(), 1, "the answer the server wrote");
}
