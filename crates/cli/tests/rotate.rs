//! Rotation like tcpdump's, through the real binary, as root, each test in
//! its own network namespace: `-C` (sizes within the limit, tcpdump's
//! names), `-C -W` (a ring: exactly N files, the newest packets kept), `-G`
//! (strftime names, a file per period), `-G -W` (stops after N files),
//! `read -C` (named exactly as tcpdump names the same files), the refusals,
//! a full disk mid-rotation, and TLS: curl's
//! requests decrypt in the rotated files that hold their handshakes. The target sends
//! numbered UDP datagrams of a known size to a closed port on loopback
//! (only their outbound copies are the target's); every file is read by
//! tshark without a warning, and the sequence numbers of all files
//! together are exactly the datagrams sent, in order.

mod common;

use common::*;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_pcapfile::{Format, PacketWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `python3 -c SEND N SIZE GAP`: N datagrams of SIZE bytes to 127.0.0.1:PORT
/// (nobody listens), each starting with its number (4 bytes, big-endian),
/// GAP seconds apart.
const SEND: &str = "import socket,sys,time
n,size,gap=int(sys.argv[1]),int(sys.argv[2]),float(sys.argv[3])
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
for i in range(n):
    s.sendto(i.to_bytes(4,'big')+b'x'*(size-4),('127.0.0.1',40404))
    if gap: time.sleep(gap)";

const PORT: &str = "40404";
const ROOT_NOTE: &str = "Running as user \"root\" and group \"root\". This could be dangerous.";

/// `pidcap run ARGS -- python3 SEND n size gap` in `ns`, in `dir`.
fn run_sender(ns: &NetNs, dir: &Path, args: &[&str], n: u32, size: u32, gap: f64) -> Output {
    let out = pidcap()
        .current_dir(dir)
        .arg("run")
        .args(args)
        .args(["--", "ip", "netns", "exec", &ns.name, "python3", "-c", SEND])
        .args([n.to_string(), size.to_string(), gap.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    out
}

/// The sequence numbers of the datagrams in `file`, in order; tshark must
/// read it without a warning.
fn sequence(file: &Path) -> Vec<u32> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", &format!("udp.dstport == {PORT}"), "-T", "fields", "-e", "udp.payload"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(out.status.success(), "tshark -r {}: {err}", file.display());
    assert!(
        err.lines().all(|l| l.trim() == ROOT_NOTE || l.trim().is_empty()),
        "tshark warned on {}: {err}",
        file.display()
    );
    text(&out.stdout)
        .lines()
        .map(|l| u32::from_str_radix(&l[..8], 16).unwrap_or_else(|_| panic!("payload {l:?}")))
        .collect()
}

/// The files the summary names ("N files written...: a, b, c"), as paths in `dir`.
fn summary_files(stderr: &str, dir: &Path) -> Vec<PathBuf> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("pidcap: ") && l.contains(" written") && l.contains("file"))
        .unwrap_or_else(|| panic!("no files line: {stderr}"));
    let list = line.rsplit_once(": ").unwrap().1;
    assert!(!list.contains("..."), "few files are all listed: {line}");
    list.split(", ").map(|n| dir.join(n)).collect()
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn ok(out: &Output) -> String {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {err}");
    err
}

#[test]
fn c_cuts_files_within_the_limit_with_tcpdumps_names_and_loses_no_packet() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("rot-c");
    // 2,000 datagrams of 1,000 bytes: about 2.1 MB of pcap, and more of
    // pcapng (each packet's comment holds the whole process, command line
    // included: about 3.7 MB here). At most four files, so the summary lists all.
    for (name, extra) in [("x.pcapng", "-U"), ("x.pcap", "-n")] {
        let dir = Scratch::new(&format!("rot-c-{name}"));
        let out = run_sender(&ns, &dir.0, &["-C", "1", extra, "-w", name], 2000, 1000, 0.0);
        let err = ok(&out);
        let files = summary_files(&err, &dir.0);
        let want: Vec<String> =
            (0..files.len()).map(|i| if i == 0 { name.to_string() } else { format!("{name}{i}") }).collect();
        assert!((3..=4).contains(&files.len()), "{err}");
        assert_eq!(files, want.iter().map(|n| dir.0.join(n)).collect::<Vec<_>>(), "{err}");
        let mut on_disk = want.clone();
        on_disk.sort();
        assert_eq!(listing(&dir.0), on_disk);
        let mut all = Vec::new();
        for (i, f) in files.iter().enumerate() {
            let len = std::fs::metadata(f).unwrap().len();
            assert!(len <= 1_000_000, "{} is {len} bytes", f.display());
            if i + 1 < files.len() {
                assert!(len > 997_000, "{} is {len} bytes: it had room for another datagram", f.display());
            }
            all.extend(sequence(f));
        }
        assert_eq!(all, (0..2000).collect::<Vec<u32>>(), "every datagram once, in order, across the files");
    }
}

#[test]
fn c_with_w_is_a_ring_of_exactly_n_files_holding_the_newest_packets() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("rot-cw");
    let dir = Scratch::new("rot-cw");
    // About 5.6 MB: the ring of 3 goes round.
    let out = run_sender(&ns, &dir.0, &["-C", "1", "-W", "3", "-w", "ring"], 5000, 1000, 0.0);
    let err = ok(&out);
    assert_eq!(listing(&dir.0), ["ring0", "ring1", "ring2"], "{err}");
    let files = summary_files(&err, &dir.0);
    assert_eq!(files.len(), 3, "{err}");
    assert!(err.contains("opened, the oldest overwritten"), "{err}");
    let mut all = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 1_000_000, "{} is {len} bytes", f.display());
        if i + 1 < files.len() {
            assert!(len > 990_000, "{} is {len} bytes: the older two files are full", f.display());
        }
        all.extend(sequence(f));
    }
    assert_eq!(*all.last().unwrap(), 4999, "the newest packet is kept");
    assert!(all[0] > 0, "the oldest were overwritten");
    assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "oldest file first, no gap: {:?}..{:?}", all.first(), all.last());
    assert!(all.len() > 1000 && all.len() < 5000, "three files' worth, not everything: {}", all.len());
}

#[test]
fn g_starts_a_file_per_second_named_by_strftime() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("rot-g");
    let dir = Scratch::new("rot-g");
    // 250 datagrams 10 ms apart: about 2.5 s.
    let out = run_sender(&ns, &dir.0, &["-G", "1", "-w", "cap-%H%M%S.pcapng"], 250, 100, 0.01);
    let err = ok(&out);
    let names = listing(&dir.0);
    assert!(names.len() >= 2, "{err}");
    assert!(err.contains(&format!("pidcap: {} files written: ", names.len())), "{err}");
    for n in &names {
        let stamp = n.strip_prefix("cap-").and_then(|r| r.strip_suffix(".pcapng")).unwrap_or_else(|| panic!("{n}"));
        assert!(stamp.len() == 6 && stamp.bytes().all(|b| b.is_ascii_digit()), "{n}: strftime's %H%M%S");
    }
    // Named by their start time: in that order (unless the test runs across midnight).
    let all: Vec<u32> = names.iter().flat_map(|f| sequence(&dir.0.join(f))).collect();
    assert_eq!(all, (0..250).collect::<Vec<u32>>());
}

#[test]
fn g_with_w_stops_after_n_files() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("rot-gw");
    let dir = Scratch::new("rot-gw");
    // Four seconds of datagrams or more; -G 1 -W 2 ends the capture when a third file would start.
    let out = run_sender(&ns, &dir.0, &["-G", "1", "-W", "2", "-w", "g-%s"], 400, 100, 0.01);
    let err = ok(&out);
    assert!(err.contains("-W 2: the last file is done, the capture ends"), "{err}");
    let files = summary_files(&err, &dir.0);
    assert_eq!(files.len(), 2, "{err}");
    assert_eq!(listing(&dir.0).len(), 2);
    let all: Vec<u32> = files.iter().flat_map(|f| sequence(f)).collect();
    // Some packets, not all of them: the capture ended with the second file
    // (how many fall into two one-second windows depends on how soon the
    // sender gets the CPU: under load it may be few).
    assert!(!all.is_empty() && all.len() < 400, "{}", all.len());
    assert_eq!(all, (0..all.len() as u32).collect::<Vec<u32>>());
    let written: usize = err
        .lines()
        .find_map(|l| l.split(" packets captured (").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(written, all.len(), "the summary counts what the files hold: {err}");
}

/// A pidcap pcapng of `n` datagrams numbered as SEND numbers them.
fn numbered_file(path: &Path, n: u32) {
    let mut w = PacketWriter::new(Format::Pcapng, Vec::new(), &Default::default()).unwrap();
    for i in 0..n {
        let mut data = Vec::new();
        let mut payload = i.to_be_bytes().to_vec();
        payload.resize(1000, b'x');
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .udp(5000, 40404)
            .write(&mut data, &payload)
            .unwrap();
        let len = data.len() as u32;
        let ts = 1_700_000_000_000_000_000 + u64::from(i) * 1000;
        let p = CapturedPacket::new(
            u64::from(i) + 1,
            ts,
            7,
            "sender".into(),
            1,
            Direction::Outbound,
            Verdict::Pass,
            len,
            data,
        );
        w.write_packet(&p).unwrap();
    }
    std::fs::write(path, w.into_inner().unwrap()).unwrap();
}

#[test]
fn read_splits_a_file_with_c() {
    require!(Tool("tshark"));
    let dir = Scratch::new("rot-read");
    let input = dir.path("in.pcapng");
    numbered_file(&input, 2500);
    let out_dir = dir.path("parts");
    std::fs::create_dir(&out_dir).unwrap();
    let out = pidcap()
        .current_dir(&out_dir)
        .arg("read")
        .arg(&input)
        .args(["-C", "1", "-W", "11", "-w", "part"])
        .output()
        .unwrap();
    let err = ok(&out);
    let files = summary_files(&err, &out_dir);
    assert_eq!(files.len(), 3, "{err}");
    assert_eq!(listing(&out_dir), ["part00", "part01", "part02"], "-W 11: two digits");
    let all: Vec<u32> = files.iter().flat_map(|f| sequence(f)).collect();
    assert_eq!(all, (0..2500).collect::<Vec<u32>>());
    assert!(err.contains("2500 packets read") && err.contains("2500 written"), "{err}");
}

#[test]
fn rotation_without_a_file_is_refused_before_the_command_runs() {
    let dir = Scratch::new("rot-refused");
    let marker = dir.path("ran");
    for (args, says) in [
        (&["-C", "1"][..], "-C and -G rotate the -w file: add -w FILE"),
        (&["-G", "5", "-w", "-"][..], "they cannot be used with -w - (stdout)"),
        (&["-W", "3", "-w", "x"][..], "-W N needs -C MB"),
        (&["-C", "0", "-w", "x"][..], "-C"),
    ] {
        let out = pidcap()
            .current_dir(&dir.0)
            .arg("run")
            .args(args)
            .args(["--", "touch"])
            .arg(&marker)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!marker.exists(), "{args:?}: the command ran");
        let out = pidcap().current_dir(&dir.0).args(["capture", "--pid", "1"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "capture {args:?}");
        assert!(text(&out.stderr).contains(says), "capture {args:?}: {}", text(&out.stderr));
    }
    assert_eq!(listing(&dir.0), Vec::<String>::new(), "no file made");
    let input = dir.path("in.pcapng");
    numbered_file(&input, 1);
    let out = pidcap().arg("read").arg(&input).args(["-G", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("add -w FILE"), "{}", text(&out.stderr));
}

#[test]
fn a_full_disk_mid_rotation_stops_cleanly_with_every_file_readable() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"), Tool("mount"), Tool("umount"));
    let ns = NetNs::new("rot-full");
    let disk = pidcap_testkit::tmpfs::Tmpfs::mount("rot-full", "2500k");
    // 10,000 datagrams would be about 11 MB: the third file fills the disk.
    let out = run_sender(&ns, disk.path(), &["-C", "1", "-w", "f"], 10_000, 1000, 0.0);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.to_lowercase().contains("no space left on device"), "{err}");
    assert!(err.contains("cannot write the capture files of -w f"), "{err}");
    assert!(err.contains("was cut back to its last complete block"), "{err}");
    let files = summary_files(&err, disk.path());
    assert_eq!(files.len(), 3, "{err}");
    let all: Vec<u32> = files.iter().flat_map(|f| sequence(f)).collect();
    assert_eq!(all, (0..all.len() as u32).collect::<Vec<u32>>(), "no gap across the files");
    let written: usize = err
        .lines()
        .find_map(|l| l.split(" packets captured (").nth(1)?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(written, all.len(), "the summary counts what the files hold: {err}");
}

#[test]
fn every_file_of_a_rotated_tls_run_shows_each_request_once() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"), Tool("curl"), Tool("openssl"));
    use pidcap_testkit::tls::{Certs, HttpsServer};
    let ns = NetNs::new("rot-tls");
    let dir = Scratch::new("rot-tls");
    let certs = Certs::new("rot-tls");
    let server = HttpsServer::http(ns.command("python3"), &certs);
    // Six connections, one request each, about 0.4 s apart: -G 1 puts them in several files.
    let script = format!(
        "for i in 1 2 3 4 5 6; do curl -s --cacert '{}' '{}'$i >/dev/null; sleep 0.4; done",
        certs.ca.display(),
        server.url("/r")
    );
    let out = pidcap()
        .current_dir(&dir.0)
        .args(["run", "-f", "-G", "1", "-w", "tls-%H%M%S.pcapng", "--", "ip", "netns", "exec", &ns.name])
        .args(["sh", "-c", &script])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = ok(&out);
    let names = listing(&dir.0);
    assert!(names.len() >= 2, "{err}");
    let tshark = |file: &Path, filter: &str| -> Vec<String> {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(file)
            .args(["-Y", filter, "-T", "fields", "-e", "http.request.uri"])
            .output()
            .unwrap();
        let e = text(&out.stderr);
        assert!(out.status.success(), "{e}");
        assert!(
            e.lines().all(|l| l.trim() == ROOT_NOTE || l.trim().is_empty()),
            "tshark warned on {}: {e}",
            file.display()
        );
        text(&out.stdout).lines().map(str::to_owned).collect()
    };
    let mut uris = Vec::new();
    let (mut later_decrypted, mut decrypted_all) = (0, 0);
    for (i, n) in names.iter().enumerate() {
        let f = dir.0.join(n);
        // Decrypted from the packets (the file's own keys and handshake), or from the record, never both.
        uris.extend(tshark(&f, "http.request"));
        let hellos = tshark(&f, "tls.handshake.type == 1").len();
        let decrypted = tshark(&f, "tcp && http.request").len();
        assert!(decrypted <= hellos, "{n}: {decrypted} decrypted, {hellos} handshakes");
        decrypted_all += decrypted;
        if i > 0 {
            later_decrypted += decrypted;
        }
    }
    uris.sort();
    assert_eq!(uris, ["/r1", "/r2", "/r3", "/r4", "/r5", "/r6"], "each request once across the files: {err}");
    // The connections follow one another: a file boundary splits at most one, every other one decrypts
    // in its file, with the keys that file holds (later files included).
    assert!(decrypted_all + (names.len() - 1) >= 6, "{decrypted_all} decrypted in {} files: {err}", names.len());
    assert!(later_decrypted >= 1, "nothing decrypted after the first file: {err}");
}

#[test]
fn names_are_the_ones_tcpdump_gives() {
    require!(Tool("tcpdump"), Tool("tshark"));
    let dir = Scratch::new("rot-tcpdump");
    let input = dir.path("in.pcapng");
    numbered_file(&input, 2500);
    // tcpdump reads classic pcap of the same packets; both rotate 2.6 MB into three files.
    let pcap = dir.path("in.pcap");
    let out = pidcap().arg("read").arg(&input).arg("-w").arg(&pcap).output().unwrap();
    ok(&out);
    for (tag, extra) in [("plain", &[][..]), ("w3", &["-W", "3"][..]), ("w11", &["-W", "11"][..])] {
        let (t, p) = (dir.path(&format!("t-{tag}")), dir.path(&format!("p-{tag}")));
        std::fs::create_dir(&t).unwrap();
        std::fs::create_dir(&p).unwrap();
        let st = Command::new("tcpdump")
            .current_dir(&t)
            .args(["-Z", "root", "-r"])
            .arg(&pcap)
            .args(["-C", "1"])
            .args(extra)
            .args(["-w", "f.pcap"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "tcpdump {extra:?}");
        let out = pidcap()
            .current_dir(&p)
            .arg("read")
            .arg(&pcap)
            .args(["-C", "1"])
            .args(extra)
            .args(["-w", "f.pcap"])
            .output()
            .unwrap();
        let err = ok(&out);
        assert_eq!(listing(&p), listing(&t), "-C 1 {extra:?}: {err}");
        assert_eq!(listing(&p).len(), 3);
        let all: Vec<u32> = summary_files(&err, &p).iter().flat_map(|f| sequence(f)).collect();
        assert_eq!(all, (0..2500).collect::<Vec<u32>>());
    }
}
