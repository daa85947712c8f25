//! `pidcap read FILE` / `pidcap -r FILE`: files written by pidcap (made here
//! with pidcap_pcapfile's writer: two processes), by tcpdump (classic pcap,
//! no process) and by tshark (pcapng, from tests/data/frames/eth_arp.pcapng,
//! whose ARP frames are skipped), printed in the capture's line and JSON
//! format, selected with --pid/--name, written with -w and read back by tshark.

mod common;

use common::*;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_pcapfile::{Format, PacketWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// 2023-11-14 22:13:20 UTC, plus `i` microseconds.
fn ts(i: u64) -> u64 {
    1_700_000_000_000_000_000 + i * 1000
}

/// A pidcap pcapng: pid 100 `alpha` sends two datagrams, pid 200 `beta` one
/// out and one in, then one packet of pid 300 `alphabetagammadelta` (a name
/// the kernel cuts to 15 bytes).
fn pidcap_file(path: &Path) {
    let mut w = PacketWriter::new(Format::Pcapng, Vec::new(), &Default::default()).unwrap();
    let packets: [(u32, &str, Direction, u16, &[u8]); 5] = [
        (100, "alpha", Direction::Outbound, 1000, b"one"),
        (200, "beta", Direction::Outbound, 2000, b"two!"),
        (100, "alpha", Direction::Outbound, 1000, b"three"),
        (200, "beta", Direction::Inbound, 2000, b"four!!"),
        (300, "alphabetagammad", Direction::Outbound, 3000, b"five"),
    ];
    for (i, (pid, comm, dir, port, payload)) in packets.into_iter().enumerate() {
        let mut data = Vec::new();
        let b = match dir {
            Direction::Outbound => etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(port, 53),
            Direction::Inbound => etherparse::PacketBuilder::ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64).udp(53, port),
        };
        b.write(&mut data, payload).unwrap();
        let len = data.len() as u32;
        let p = CapturedPacket::new(i as u64 + 1, ts(i as u64 + 1), pid, comm.into(), 7, dir, Verdict::Pass, len, data);
        w.write_packet(&p).unwrap();
    }
    std::fs::write(path, w.into_inner().unwrap()).unwrap();
}

fn eth_arp() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/frames/eth_arp.pcapng")
}

fn read(args: &[&str]) -> Output {
    pidcap().arg("read").args(args).output().unwrap()
}

fn lines(out: &Output) -> Vec<String> {
    text(&out.stdout).lines().map(str::to_owned).collect()
}

fn ok(out: &Output) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_pidcap_file_prints_like_a_capture_and_selects_by_pid_and_name() {
    let dir = Scratch::new("read-pidcap");
    let f = dir.path("p.pcapng");
    pidcap_file(&f);

    let out = read(&[s(&f)]);
    ok(&out);
    assert_eq!(
        lines(&out),
        [
            "22:13:20.000001 100/alpha out UDP 10.0.0.1:1000 > 10.0.0.2:53 len 3",
            "22:13:20.000002 200/beta out UDP 10.0.0.1:2000 > 10.0.0.2:53 len 4",
            "22:13:20.000003 100/alpha out UDP 10.0.0.1:1000 > 10.0.0.2:53 len 5",
            "22:13:20.000004 200/beta in  UDP 10.0.0.1:2000 < 10.0.0.2:53 len 6",
            "22:13:20.000005 300/alphabetagammad out UDP 10.0.0.1:3000 > 10.0.0.2:53 len 4",
        ]
    );
    let err = text(&out.stderr);
    assert!(err.contains("5 packets read from") && err.contains("5 shown, 0 frames skipped"), "{err}");

    let out = read(&[s(&f), "--pid", "200"]);
    ok(&out);
    let got = lines(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|l| l.contains(" 200/beta ")), "{got:?}");
    assert!(text(&out.stderr).contains("5 packets read from") && text(&out.stderr).contains("2 shown"));

    // Repeatable, and --pid with --name is a union; a long name is compared on 15 bytes.
    let out = read(&[s(&f), "--pid", "100", "--pid", "999", "--name", "alphabetagammadelta"]);
    ok(&out);
    let pids: Vec<String> = lines(&out).iter().map(|l| l.split(' ').nth(1).unwrap().to_owned()).collect();
    assert_eq!(pids, ["100/alpha", "100/alpha", "300/alphabetagammad"]);

    let out = read(&[s(&f), "--name", "beta", "-c", "1"]);
    ok(&out);
    assert_eq!(lines(&out), ["22:13:20.000002 200/beta out UDP 10.0.0.1:2000 > 10.0.0.2:53 len 4"]);

    // The top-level shortcut, as tcpdump's fingers type it.
    let short = pidcap().args(["-r", s(&f), "--pid", "200"]).output().unwrap();
    ok(&short);
    assert_eq!(lines(&short), lines(&read(&[s(&f), "--pid", "200"])));
    // -v before -r is tcpdump's decoding, as after it: each line gains the verbose fields.
    let verbose = pidcap().args(["-v", "-r", s(&f), "--pid", "200"]).output().unwrap();
    ok(&verbose);
    assert_eq!(lines(&verbose), lines(&pidcap().args(["read", s(&f), "--pid", "200", "-v"]).output().unwrap()));
    let (v, plain) = (lines(&verbose), lines(&short));
    assert_eq!(v.len(), plain.len());
    for (v, plain) in v.iter().zip(&plain) {
        assert!(v.starts_with(&format!("{plain} (ttl ")), "{v}");
    }
}

#[test]
fn json_has_one_object_per_selected_packet_with_its_process() {
    let dir = Scratch::new("read-json");
    let f = dir.path("p.pcapng");
    pidcap_file(&f);
    let out = read(&[s(&f), "--json", "--name", "beta"]);
    ok(&out);
    let objs: Vec<serde_json::Value> = lines(&out).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(objs.len(), 2);
    for (o, (id, dir, len)) in objs.iter().zip([(2, "outbound", 4), (4, "inbound", 6)]) {
        assert_eq!(o["id"], id, "{o}");
        assert_eq!(o["pid"], 200);
        assert_eq!(o["comm"], "beta");
        assert_eq!(o["socket_cookie"], 7);
        assert_eq!(o["direction"], dir);
        assert_eq!(o["payload_size"], len);
        assert_eq!(o["timestamp_ns"], ts(id));
    }
}

#[test]
fn stdin_reads_as_a_file() {
    let dir = Scratch::new("read-stdin");
    let f = dir.path("p.pcapng");
    pidcap_file(&f);
    let out = pidcap()
        .args(["read", "-", "--pid", "100"])
        .stdin(Stdio::from(std::fs::File::open(&f).unwrap()))
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(lines(&out), lines(&read(&[s(&f), "--pid", "100"])));
    assert_eq!(lines(&out).len(), 2);
    assert!(text(&out.stderr).contains("5 packets read from -"), "{}", text(&out.stderr));
}

#[test]
fn write_keeps_the_selection_and_its_process_for_tshark() {
    require!(Tool("tshark"));
    let dir = Scratch::new("read-write");
    let f = dir.path("p.pcapng");
    let o = dir.path("out.pcapng");
    pidcap_file(&f);
    let out = read(&[s(&f), "--pid", "200", "-w", s(&o)]);
    ok(&out);
    assert!(out.stdout.is_empty(), "-w prints no packets: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains(&format!("2 written to {}", o.display())), "{err}");
    assert_eq!(std::fs::metadata(&o).unwrap().permissions().mode() & 0o777, 0o600);

    let t = Command::new("tshark")
        .arg("-r")
        .arg(&o)
        .args(["-T", "fields", "-e", "frame.interface_description", "-e", "frame.comment"])
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", text(&t.stderr));
    // tshark's note about running as root is not a warning about the file.
    let warnings: Vec<String> =
        text(&t.stderr).lines().filter(|l| !l.contains("This could be dangerous")).map(str::to_owned).collect();
    assert!(warnings.is_empty(), "tshark warns: {warnings:?}");
    let comments: Vec<String> = text(&t.stdout).lines().map(str::to_owned).collect();
    assert_eq!(comments.len(), 2, "{comments:?}");
    // The process in its interface's description, the packet's own fields in its comment (issue 13).
    assert!(
        comments.iter().all(|c| c.starts_with("pid=200 comm=beta\t") && c.split(['\t', ' ']).any(|t| t == "cookie=7")),
        "{comments:?}"
    );

    // And pidcap reads its own output back the same.
    let back = read(&[s(&o)]);
    ok(&back);
    assert_eq!(lines(&back).len(), 2);
    assert!(lines(&back).iter().all(|l| l.contains(" 200/beta ")));
}

#[test]
fn a_tcpdump_pcap_reads_without_process_and_matches_no_pid() {
    require!(Tool("tcpdump"));
    let dir = Scratch::new("read-tcpdump");
    let f = dir.path("p.pcapng");
    let td = dir.path("td.pcap");
    pidcap_file(&f);
    let c = Command::new("tcpdump").arg("-r").arg(&f).arg("-w").arg(&td).output().unwrap();
    assert!(c.status.success(), "{}", text(&c.stderr));
    assert_eq!(&std::fs::read(&td).unwrap()[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "tcpdump wrote classic pcap");

    let out = read(&[s(&td)]);
    ok(&out);
    let got = lines(&out);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_eq!(got[0], "22:13:20.000001 0/ out UDP 10.0.0.1:1000 > 10.0.0.2:53 len 3");
    // Classic pcap has no direction: the inbound datagram reads as outbound.
    assert_eq!(got[3], "22:13:20.000004 0/ out UDP 10.0.0.2:53 > 10.0.0.1:2000 len 6");

    let none = read(&[s(&td), "--pid", "100", "--name", "alpha"]);
    ok(&none);
    assert!(none.stdout.is_empty(), "{}", text(&none.stdout));
    assert!(text(&none.stderr).contains("5 packets read from") && text(&none.stderr).contains("0 shown"));
}

#[test]
fn a_tshark_pcapng_reads_with_its_skipped_frames_described() {
    require!(Tool("tshark"));
    let dir = Scratch::new("read-tshark");
    let ts_file = dir.path("ts.pcapng");
    let c = Command::new("tshark")
        .arg("-r")
        .arg(eth_arp())
        .arg("-F")
        .arg("pcapng")
        .arg("-w")
        .arg(&ts_file)
        .output()
        .unwrap();
    assert!(c.status.success(), "{}", text(&c.stderr));
    let out = read(&[s(&ts_file)]);
    ok(&out);
    let got = lines(&out);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got[0].ends_with("0/ out UDP 10.0.0.1:40000 > 10.0.0.2:9 len 11"), "{got:?}");
    assert!(got[2].contains("UDP [fd00::1]:40001 > [fd00::2]:7 len 11"), "{got:?}");
    let err = text(&out.stderr);
    assert!(err.contains("pidcap: frames 2-3 skipped: not an IPv4 or IPv6 packet (ethertype 0x0806, ARP)"), "{err}");
    assert!(err.contains("3 packets read from") && err.contains("3 shown, 2 frames skipped"), "{err}");

    // tshark rewriting pidcap's pcapng keeps the comments: the process is still there.
    let f = dir.path("p.pcapng");
    let re = dir.path("re.pcapng");
    pidcap_file(&f);
    let c = Command::new("tshark").arg("-r").arg(&f).arg("-F").arg("pcapng").arg("-w").arg(&re).output().unwrap();
    assert!(c.status.success(), "{}", text(&c.stderr));
    let out = read(&[s(&re), "--pid", "100"]);
    ok(&out);
    assert_eq!(lines(&out), lines(&read(&[s(&f), "--pid", "100"])));
    assert_eq!(lines(&out).len(), 2);
}

#[test]
fn missing_malformed_and_cut_files_say_what_is_wrong() {
    let dir = Scratch::new("read-bad");
    let missing = read(&[s(&dir.path("nope.pcap"))]);
    assert_eq!(missing.status.code(), Some(2));
    let err = text(&missing.stderr);
    assert!(err.contains("cannot open") && err.contains("nope.pcap") && err.contains("No such file"), "{err}");

    let junk = dir.path("junk.pcap");
    std::fs::write(&junk, b"this is not a capture file\n").unwrap();
    let bad = read(&[s(&junk)]);
    assert_eq!(bad.status.code(), Some(2));
    let err = text(&bad.stderr);
    assert!(err.contains("cannot read") && err.contains("not a pcap or pcapng file"), "{err}");
    assert!(bad.stdout.is_empty());

    let empty = dir.path("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let out = read(&[s(&empty)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("empty input"), "{}", text(&out.stderr));

    // Cut inside its last block: the complete frames are read, and the cut is said.
    let cut = dir.path("cut.pcapng");
    let bytes = std::fs::read(eth_arp()).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let out = read(&[s(&cut)]);
    ok(&out);
    assert_eq!(lines(&out).len(), 2, "{}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("was cut short (truncated pcapng Enhanced Packet Block"), "{err}");
}

#[test]
fn an_output_that_cannot_be_created_is_refused_before_reading() {
    let dir = Scratch::new("read-refuse");
    let junk = dir.path("junk.pcap");
    std::fs::write(&junk, b"not a capture").unwrap();
    let target = dir.path("target");
    std::fs::write(&target, b"keep").unwrap();
    let link = dir.path("link.pcapng");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for out_path in [link.clone(), dir.0.clone()] {
        let out = read(&[s(&junk), "-w", s(&out_path)]);
        assert_eq!(out.status.code(), Some(2));
        let err = text(&out.stderr);
        // The refusal, not the input's error: nothing was read.
        assert!(err.contains(&format!("cannot create {}", out_path.display())), "{err}");
        assert!(!err.contains("not a pcap"), "{err}");
    }
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");

    // An input that is not a capture leaves no output file behind.
    let o = dir.path("o.pcapng");
    let out = read(&[s(&junk), "-w", s(&o)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!o.exists());
}

#[test]
fn write_keeps_the_files_tls_keys() {
    // A TLS 1.3 connection (pcapfile's fixture) with its keys, in a pidcap pcapng.
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcapfile/tests/data");
    let packets = pidcap_pcapfile::read_packets(std::fs::File::open(data.join("tls13-curl.pcap")).unwrap()).unwrap();
    let (keys, bad) = pidcap_pcapfile::keylog::parse_text(&std::fs::read(data.join("tls13-curl.keys")).unwrap());
    assert!(!keys.is_empty() && bad == 0);
    let dir = Scratch::new("read-keys");
    let f = dir.path("k.pcapng");
    let o = dir.path("o.pcapng");
    let mut w = PacketWriter::new(Format::Pcapng, Vec::new(), &Default::default()).unwrap();
    w.add_keys(&keys).unwrap();
    for p in &packets {
        w.write_packet(p).unwrap();
    }
    std::fs::write(&f, w.into_inner().unwrap()).unwrap();
    let read_keys = |path: &Path| {
        let c = pidcap_pcapfile::PacketReader::new(std::fs::File::open(path).unwrap()).unwrap().read_to_end().unwrap();
        (c.packets.len(), c.keylog.iter().map(|k| k.to_line()).collect::<Vec<_>>())
    };
    let (n, written) = read_keys(&f);
    assert_eq!(n, packets.len());
    assert!(!written.is_empty(), "the writer kept the keys of the file's connection");

    // `-rFILE`, glued, as tcpdump also takes it.
    let out = pidcap().arg(format!("-r{}", f.display())).args(["-w", s(&o)]).output().unwrap();
    ok(&out);
    assert_eq!(read_keys(&o), (packets.len(), written));
}

#[test]
fn the_output_letters_of_capture_work_on_read_too() {
    let dir = Scratch::new("read-letters");
    let f = dir.path("p.pcapng");
    pidcap_file(&f);
    let out = read(&[s(&f), "--pid", "200", "-A", "-tt"]);
    ok(&out);
    assert_eq!(
        lines(&out),
        [
            "1700000000.000002 200/beta out UDP 10.0.0.1:2000 > 10.0.0.2:53 len 4",
            "two!",
            "1700000000.000004 200/beta in  UDP 10.0.0.1:2000 < 10.0.0.2:53 len 6",
            "four!!",
        ]
    );
}
