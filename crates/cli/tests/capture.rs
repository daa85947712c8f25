//! Privileged integration tests of `pidcap run` and `pidcap capture` against
//! the real kernel: each test makes its own network namespace, starts real
//! servers and clients (tests/data/peer.py) and checks what pidcap wrote.
//! They need root and tools (`require!`): without them they skip, saying
//! so, or fail under CI=true.

mod common;

use common::*;
use pidcap_packet::{Direction, Protocol};
use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

const TCP_SYN: u8 = 0x02;
const TCP_ACK: u8 = 0x10;

#[test]
fn run_captures_only_the_target_from_its_first_syn_and_tshark_agrees() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("tcp");
    let scratch = Scratch::new("tcp");
    let server = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let port = server.port.to_string();

    // Another process talks to the same server at the same time: it must be absent.
    let other = ns.peer(&["tcp-client-loop", "127.0.0.1", &port, "2"]).stdout(Stdio::piped()).spawn().unwrap();

    let file = scratch.path("tcp.pcapng");
    let out = pidcap()
        .args(["run", "-w"])
        .arg(&file)
        .arg("--")
        .args(["ip", "netns", "exec", &ns.name, "python3"])
        .arg(peer_script())
        .args(["tcp-client", "127.0.0.1", &port, "5", "target-says-hi"])
        .output()
        .unwrap();
    assert!(out.status.success(), "pidcap run failed: {}", String::from_utf8_lossy(&out.stderr));
    let client = peer_report(&out.stdout);
    let client_pid = client["pid"].as_u64().unwrap() as u32;
    let client_ports: HashSet<u16> =
        client["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u16).collect();
    let other_report = peer_report(&other.wait_with_output().unwrap().stdout);
    assert!(!other_report["ports"].as_array().unwrap().is_empty(), "the other client made connections");

    let packets = read_capture(&file);
    // 5 connections of at least SYN, SYN-ACK, ACK, data, FIN each.
    assert!(packets.len() >= 25, "only {} packets", packets.len());
    for p in &packets {
        assert_eq!(p.pid, client_pid, "packet {} attributed to pid {} ({})", p.id, p.pid, p.comm);
        assert_eq!(p.comm, "python3");
        assert_eq!(p.decoded.protocol, Protocol::Tcp);
        assert_eq!(p.decoded.remote_port, server.port);
        assert!(client_ports.contains(&p.decoded.local_port), "port {} is not the target's", p.decoded.local_port);
    }
    // The very first packet is the command's first SYN, outbound.
    let first = &packets[0];
    assert_eq!(first.direction, Direction::Outbound);
    assert_eq!(first.decoded.tcp_flags.map(|f| f & (TCP_SYN | TCP_ACK)), Some(TCP_SYN));
    // Both directions, and the payload the client sent.
    assert!(packets.iter().any(|p| p.direction == Direction::Inbound));
    assert!(packets.iter().any(|p| p.payload().starts_with(b"target-says-hi 0")));
    assert!(packets.iter().any(|p| p.payload().starts_with(b"echo:target-says-hi 4")));

    assert_eq!(tshark_frames(&file), packets.len(), "tshark reads every packet pidcap wrote");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("pidcap: {} packets captured", packets.len())), "summary: {stderr}");
    assert!(stderr.contains("0 dropped in the kernel ring"), "summary: {stderr}");
}

#[test]
fn udp_over_ipv6_in_both_directions_as_json() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("udp6");
    let server = ns.server(&["udp-server", "::1", "0"]);
    let port = server.port.to_string();
    let out = pidcap()
        .args(["run", "--json", "--", "ip", "netns", "exec", &ns.name, "python3"])
        .arg(peer_script())
        .args(["udp-client", "::1", &port, "3", "dgram"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let packets: Vec<serde_json::Value> =
        stdout.lines().filter(|l| l.contains("\"timestamp_ns\"")).map(|l| serde_json::from_str(l).unwrap()).collect();
    let client = peer_report(&out.stdout);
    assert_eq!(packets.len(), 6, "3 datagrams out, 3 echoes in: {stdout}");
    for p in &packets {
        assert_eq!(p["pid"], client["pid"]);
        assert_eq!(p["protocol"], "udp");
        assert_eq!(p["ip_version"], 6);
        assert_eq!(p["local_addr"], "::1");
        assert_eq!(p["remote_port"].as_u64(), Some(u64::from(server.port)));
    }
    let dirs: Vec<&str> = packets.iter().map(|p| p["direction"].as_str().unwrap()).collect();
    assert_eq!(dirs, ["outbound", "inbound", "outbound", "inbound", "outbound", "inbound"]);
    // The payload is in the hex bytes: "dgram 0" after a 40-byte IPv6 and 8-byte UDP header.
    let hex = packets[0]["data"].as_str().unwrap();
    assert!(hex.ends_with(&pidcap_packet::to_hex(b"dgram 0")), "{hex}");
}

#[test]
fn a_server_listening_before_the_capture_gets_its_accepted_connections() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("listen");
    let scratch = Scratch::new("listen");
    let server = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let port = server.port.to_string();
    let file = scratch.path("server.pcapng");
    let (child, _stderr) = start_pidcap(pidcap().args(["capture", "--pid", &server.pid.to_string(), "-w"]).arg(&file));

    let client = run_ok(&mut ns.peer(&["tcp-client", "127.0.0.1", &port, "3", "to-server"]));
    let client_ports: HashSet<u16> =
        peer_report(&client.stdout)["ports"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u16).collect();
    let syn =
        |p: &pidcap_packet::CapturedPacket| p.direction == Direction::Inbound && p.decoded.tcp_flags == Some(TCP_SYN);
    let synack = |p: &pidcap_packet::CapturedPacket| {
        p.direction == Direction::Outbound && p.decoded.tcp_flags == Some(TCP_SYN | TCP_ACK)
    };
    wait_for_capture(&file, "the 3 connections", |p| {
        p.len() >= 15
            && p.iter().filter(|p| syn(p)).count() >= 3
            && p.iter().filter(|p| synack(p)).count() >= 3
            && p.iter().any(|p| p.payload().starts_with(b"to-server 2"))
    });
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output();
    assert!(out.status.success());

    let packets = read_capture(&file);
    assert!(packets.len() >= 15, "only {} packets", packets.len());
    for p in &packets {
        assert_eq!(p.pid, server.pid, "packet {} attributed to {} ({})", p.id, p.pid, p.comm);
        assert_eq!(p.decoded.local_port, server.port);
        assert!(client_ports.contains(&p.decoded.remote_port));
    }
    // Each connection's SYN arrives at the listener, and its data at the accepted socket.
    let syns = packets.iter().filter(|p| syn(p)).count();
    assert_eq!(syns, 3);
    let synacks = packets.iter().filter(|p| synack(p)).count();
    assert_eq!(synacks, 3, "SYN-ACKs leave from request sockets and are attributed by port");
    assert!(packets.iter().any(|p| p.payload().starts_with(b"to-server 2")));
    assert_eq!(tshark_frames(&file), packets.len());
}

#[test]
fn the_capture_ends_with_a_summary_when_the_target_exits() {
    require!(Root, Tool("sleep"));
    // Long enough for a debug build to load the programs, short enough to end the capture.
    let mut sleeper = std::process::Command::new("sleep").arg("3").spawn().unwrap();
    let started = std::time::Instant::now();
    let out = pidcap().args(["capture", "-q", "--pid", &sleeper.id().to_string()]).output().unwrap();
    sleeper.wait().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(15));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pidcap: 0 packets captured"), "{stderr}");
}

#[test]
fn sigkill_leaves_no_program_attached() {
    require!(Root, Tool("sleep"), Tool("bpftool"));
    let mut sleeper = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let (child, _stderr) = start_pidcap(pidcap().args(["capture", "-q", "--pid", &sleeper.id().to_string()]));
    let held = programs_held_by(child.id());
    let names: HashSet<String> = held.iter().map(|(_, n)| n.clone()).collect();
    for want in pidcap_ebpf::PROGRAM_NAMES {
        assert!(names.contains(*want), "{want} is not loaded by pidcap: {names:?}");
    }
    let attached_before = attached_program_ids();
    assert!(held.iter().any(|(id, _)| attached_before.contains(id)), "pidcap's programs are attached");

    signal(&child, libc::SIGKILL);
    child.wait();
    let ids: HashSet<u64> = held.iter().map(|(id, _)| *id).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let attached = attached_program_ids();
        let loaded = all_program_ids();
        let left: Vec<_> = ids.iter().filter(|id| attached.contains(id) || loaded.contains(id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "programs {left:?} outlived a SIGKILLed pidcap");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn run_captures_what_a_shell_starts_by_default_and_with_f_but_not_with_no_follow() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("sh"));
    let ns = NetNs::new("fork");
    let server = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let script = format!(
        "python3 {peer} tcp-client 127.0.0.1 {port} 1 first; python3 {peer} tcp-client 127.0.0.1 {port} 1 second",
        peer = peer_script().display(),
        port = server.port
    );
    let run = |follow: Option<&str>| {
        let mut cmd = pidcap();
        cmd.args(["run", "--json"]);
        cmd.args(follow);
        let out = cmd.args(["--", "ip", "netns", "exec", &ns.name, "sh", "-c", &script]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let reports: Vec<u64> = stdout
            .lines()
            .filter(|l| l.starts_with("{\"pid\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["pid"].as_u64().unwrap())
            .collect();
        let packet_pids: Vec<u64> = stdout
            .lines()
            .filter(|l| l.contains("\"timestamp_ns\""))
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["pid"].as_u64().unwrap())
            .collect();
        (reports, packet_pids, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // `run` follows the command's children by default; -f is accepted and the same.
    for follow in [Some("-f"), None] {
        let (children, pids, stderr) = run(follow);
        assert_eq!(children.len(), 2);
        let distinct: HashSet<u64> = pids.iter().copied().collect();
        assert_eq!(
            distinct,
            children.iter().copied().collect(),
            "{follow:?}: packets come from both children: {pids:?}"
        );
        assert!(
            stderr.contains("2 child processes followed") || stderr.contains("child processes followed"),
            "{stderr}"
        );
    }

    let (_, pids, _) = run(Some("--no-follow"));
    assert!(pids.is_empty(), "with --no-follow the shell's children are not captured: {pids:?}");
}

#[test]
fn capture_by_name_takes_processes_started_later() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("name");
    let scratch = Scratch::new("name");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    // The kernel names a process after the file it executes: a symlink gives python a name of its own.
    let python = python_executable();
    let named = scratch.path("pidcap-named");
    std::os::unix::fs::symlink(&python, &named).unwrap();
    let file = scratch.path("named.pcapng");
    let (child, _stderr) = start_pidcap(pidcap().args(["capture", "--name", "pidcap-named", "-w"]).arg(&file));

    let port = server.port.to_string();
    let target = run_ok(ns.command(&named).arg(peer_script()).args(["udp-client", "127.0.0.1", &port, "2"]));
    run_ok(&mut ns.peer(&["udp-client", "127.0.0.1", &port, "2"])); // plain python3: not captured
    wait_for_capture(&file, "the named process's 4 packets", |p| p.len() >= 4);
    // Whatever the kernel took of the plain python3 (it has exited) is in its
    // ring now, and pidcap drains the ring when it stops: it would show.
    signal(&child, libc::SIGINT);
    assert!(child.wait_with_output().status.success());

    let want_pid = peer_report(&target.stdout)["pid"].as_u64().unwrap() as u32;
    let packets = read_capture(&file);
    assert_eq!(packets.len(), 4, "2 datagrams and 2 echoes of the named process only");
    assert!(packets.iter().all(|p| p.pid == want_pid && p.comm == "pidcap-named"));
}

#[test]
fn blocked_packets_are_in_the_pcapng_with_their_verdict_and_rule() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("blockpcap");
    let scratch = Scratch::new("blockpcap");
    let file = scratch.path("blocked.pcapng");
    // The target is a UDP server; rule 1 blocks what comes in on its port, so a
    // datagram from another process is captured (verdict blocked) and dropped.
    let server = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('127.0.0.1',47001))\n\
                  print('ready',flush=True)\ns.settimeout(2)\ntry:\n  print('got',s.recv(100))\nexcept OSError:\n  print('nothing')\n";
    let mut child = pidcap()
        .args(["run", "-w"])
        .arg(&file)
        .args(["--allow", "udp:9", "--block", "in:udp:local:47001", "--"])
        .args(["ip", "netns", "exec", &ns.name, "python3", "-c", server])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let send =
        "import socket\nsocket.socket(socket.AF_INET,socket.SOCK_DGRAM).sendto(b'blocked-payload',('127.0.0.1',47001))";
    run_ok(ns.command("python3").args(["-c", send]));
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(rest.trim(), "nothing", "the blocked datagram never reached the server");

    let packets = read_capture(&file);
    assert_eq!(packets.len(), 1, "{packets:?}");
    assert_eq!(packets[0].direction, Direction::Inbound);
    assert_eq!(packets[0].verdict, pidcap_packet::Verdict::Blocked);
    assert_eq!(packets[0].rule, Some(1));
    assert!(packets[0].payload().starts_with(b"blocked-payload"));
    // And tshark shows it in the comment.
    let t = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args(["-Y", "frame.comment contains \"verdict=blocked rule=1\"", "-T", "fields", "-e", "frame.number"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&t.stdout).trim(), "1");
}

#[test]
fn daemon_and_ctl_smoke() {
    require!(Root);
    let scratch = Scratch::new("daemon");
    let sock = scratch.path("pidcap.sock");
    let mut daemon = pidcap().args(["daemon", "--socket"]).arg(&sock).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(std::time::Instant::now() < deadline, "the daemon never made its socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = run_ok(pidcap().args(["ctl", "--json", "--socket"]).arg(&sock).arg("state"));
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(state["running"], false, "{state}");
    let _ = daemon.kill();
    let _ = daemon.wait();
}

#[test]
fn a_connection_opened_before_the_capture_is_attributed() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("hold");
    let scratch = Scratch::new("hold");
    let server = ns.server(&["tcp-server", "127.0.0.1", "0"]);
    let mut client = ns
        .peer(&["tcp-hold", "127.0.0.1", &server.port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(client.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    let pid = ready["pid"].as_u64().unwrap() as u32;

    let file = scratch.path("hold.pcapng");
    let (cap, _stderr) = start_pidcap(pidcap().args(["capture", "--pid", &pid.to_string(), "-w"]).arg(&file));
    std::io::Write::write_all(client.stdin.as_mut().unwrap(), b"sent-after-start\n").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("echo:sent-after-start"), "{rest}");
    client.wait().unwrap();
    let done = cap.wait_with_output();
    assert!(done.status.success(), "the capture ends when its target exits");

    let packets = read_capture(&file);
    assert!(packets.iter().all(|p| p.pid == pid));
    assert!(packets.iter().any(|p| p.direction == Direction::Outbound && p.payload() == b"sent-after-start\n"));
    assert!(packets
        .iter()
        .any(|p| p.direction == Direction::Inbound && p.payload().starts_with(b"echo:sent-after-start")));
}

#[test]
fn count_limit_pcap_format_and_pcapng_on_stdout() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("fmt");
    let scratch = Scratch::new("fmt");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    let port = server.port.to_string();
    let client = |extra: &[&str]| {
        let mut c = pidcap();
        c.arg("run").args(extra).args(["--", "ip", "netns", "exec", &ns.name, "python3"]).arg(peer_script());
        c.args(["udp-client", "127.0.0.1", &port, "5"]);
        c.output().unwrap()
    };
    // -c 3: exactly three packets, even though the client makes ten.
    let out = client(&["--json", "-c", "3"]);
    assert!(out.status.success());
    let lines = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.contains("\"timestamp_ns\"")).count();
    assert_eq!(lines, 3);

    // -F pcap by extension: classic pcap that tshark reads.
    let pcap = scratch.path("x.pcap");
    let out = client(&["-w", pcap.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(&std::fs::read(&pcap).unwrap()[..4], &0xa1b2_3c4du32.to_le_bytes(), "nanosecond pcap magic");
    assert_eq!(tshark_frames(&pcap), 10);

    // -w -: the pcapng stream on stdout stays clean (the command's own stdout goes to stderr).
    let out = client(&["-w", "-"]);
    assert!(out.status.success());
    let stream = scratch.path("stdout.pcapng");
    std::fs::write(&stream, &out.stdout).unwrap();
    assert_eq!(read_capture(&stream).len(), 10);
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"ports\""), "the client's report went to stderr");
}

#[test]
fn without_a_cgroup2_mount_pidcap_mounts_its_own() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("unshare"), Tool("findmnt"));
    let ns = NetNs::new("nocg");
    let server = ns.server(&["udp-server", "127.0.0.1", "0"]);
    // In a mount namespace of its own, take every cgroup2 mount away, then capture.
    let script = format!(
        "set -e; for m in $(findmnt -n -t cgroup2 -o TARGET); do umount -l \"$m\"; done\n\
         test -z \"$(findmnt -n -t cgroup2 -o TARGET)\"\n\
         {pidcap} run --json -- ip netns exec {ns} python3 {peer} udp-client 127.0.0.1 {port} 2\n\
         echo \"cgroup2 at: $(findmnt -n -t cgroup2 -o TARGET)\"",
        pidcap = env!("CARGO_BIN_EXE_pidcap"),
        ns = ns.name,
        peer = peer_script().display(),
        port = server.port
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("cgroup2 at: /run/pidcap/cgroup2"), "pidcap mounted its own hierarchy: {stdout}");
    let packets = stdout.lines().filter(|l| l.contains("\"timestamp_ns\"")).count();
    assert_eq!(packets, 4, "2 datagrams and 2 echoes captured through that mount: {stdout}");
}
