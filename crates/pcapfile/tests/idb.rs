//! Processes in interfaces (issue 13): each process described once per file
//! in an Interface Description Block of its own (`if_name` `comm[pid]`,
//! `if_description` the process), its packets on that interface with only
//! their own fields in the comment; a new IDB when the description changes
//! (exec under the same pid, a reused pid) and at the start of every rotated
//! file; older files (the whole process in every comment) read back the same.
//! With tshark: `wireshark/pidcap.lua` gives the same fields from both forms,
//! and tcpdump reads the file.

mod common;

use common::data_dir;
use etherparse::PacketBuilder;
use pidcap_packet::{CapturedPacket, ContainerRef, Direction, ProcessMeta, Verdict};
use pidcap_pcapfile::comment::{format_comment, ProcessInfo};
use pidcap_pcapfile::rotate::Clock;
use pidcap_pcapfile::{
    read_packets, CaptureFile, FileOutput, Format, PacketOutput, PcapngWriter, RotatingOutput, Rotation, WriterOptions,
};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

const ROOT_NOTE: &str = "Running as user \"root\" and group \"root\". This could be dangerous.";

use pidcap_testkit::Scratch;

/// A process as pidcap reads it from /proc.
fn meta(pid: u32, comm: &str, exe: &str, cmdline: &[&str]) -> Arc<ProcessMeta> {
    Arc::new(ProcessMeta {
        pid,
        comm: comm.into(),
        exe: exe.into(),
        cmdline: cmdline.iter().map(|a| a.to_string()).collect(),
        ppid: 4100,
        parent_comm: "bash".into(),
        uid: 1000,
        user: "alice".into(),
        cgroup: "/user.slice/user-1000.slice/user@1000.service/app.slice/flood.scope".into(),
        container: Some(ContainerRef { runtime: "docker".into(), id: "0123456789abcdef".into() }),
    })
}

/// Packet `id` of `process`: IPv4 UDP with a `payload`-byte payload, its
/// thread the process's own, socket cookie 40961.
fn packet(id: u64, process: &Arc<ProcessMeta>, payload: usize) -> CapturedPacket {
    let mut data = Vec::new();
    let body = vec![0x61; payload];
    let out = id.is_multiple_of(2);
    let (src, dst) = if out { ([127, 0, 0, 1], [127, 0, 0, 2]) } else { ([127, 0, 0, 2], [127, 0, 0, 1]) };
    let (sport, dport) = if out { (40000, 9) } else { (9, 40000) };
    PacketBuilder::ipv4(src, dst, 64).udp(sport, dport).write(&mut data, &body).unwrap();
    let dir = if out { Direction::Outbound } else { Direction::Inbound };
    let ts = 1_700_000_000_000_000_000 + id * 1000;
    let len = data.len() as u32;
    let mut p = CapturedPacket::new(id, ts, process.pid, process.comm.clone(), 40961, dir, Verdict::Pass, len, data);
    (p.tid, p.thread, p.process) = (process.pid, process.comm.clone(), Some(Arc::clone(process)));
    p
}

/// The blocks of a little-endian pcapng file: (type, whole block).
fn blocks(bytes: &[u8]) -> Vec<(u32, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let t = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((t, &bytes[at..at + len]));
        at += len;
    }
    assert_eq!(at, bytes.len(), "whole blocks");
    out
}

/// The `if_description`s of the IDBs of `bytes`, in order (empty: none).
fn descriptions(bytes: &[u8]) -> Vec<String> {
    blocks(bytes)
        .into_iter()
        .filter(|(t, _)| *t == 1)
        .map(|(_, b)| {
            // Options from byte 16 (type, length, link type, reserved, snap length).
            let mut at = 16;
            let mut desc = String::new();
            while at + 4 <= b.len() - 4 {
                let code = u16::from_le_bytes([b[at], b[at + 1]]);
                let len = usize::from(u16::from_le_bytes([b[at + 2], b[at + 3]]));
                if code == 3 {
                    desc = String::from_utf8(b[at + 4..at + 4 + len].to_vec()).unwrap();
                }
                if code == 0 {
                    break;
                }
                at += 4 + len.next_multiple_of(4);
            }
            desc
        })
        .collect()
}

fn write_file(path: &Path, packets: &[CapturedPacket]) {
    let file = CaptureFile::create(path, 0o600).unwrap();
    let mut out: Box<dyn PacketOutput> =
        Box::new(FileOutput::new(Format::Pcapng, file, &WriterOptions::default()).unwrap());
    for p in packets {
        out.write_packet(p).unwrap();
    }
    out.finish().unwrap();
}

fn tool(prog: &str, file: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new(prog).arg("-r").arg(file).args(args).output().expect("running the tool");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{prog} -r {} {args:?}: {stderr}", file.display());
    if prog == "tshark" {
        let warnings: Vec<&str> = stderr.lines().filter(|l| l.trim() != ROOT_NOTE && !l.trim().is_empty()).collect();
        assert!(warnings.is_empty(), "tshark -r {} {args:?} warned: {warnings:?}", file.display());
    }
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

fn lua(file: &Path, filter: &str, fields: &[&str]) -> Vec<String> {
    let plugin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wireshark/pidcap.lua");
    let mut args = vec!["-X".to_string(), format!("lua_script:{}", plugin.display()), "-Y".into(), filter.into()];
    args.extend(["-T", "fields", "-E", "separator=|"].map(String::from));
    for f in fields {
        args.extend(["-e".to_string(), f.to_string()]);
    }
    tool("tshark", file, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// One long-lived flooding process: 1000 packets of 64-byte payloads.
fn flood() -> Vec<CapturedPacket> {
    let m = meta(
        4242,
        "flood",
        "/usr/bin/python3.11",
        &["python3", "-c", "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); ..."],
    );
    (1..=1000).map(|id| packet(id, &m, 64)).collect()
}

#[test]
fn one_process_is_described_once_and_its_packets_are_small() {
    let d = Scratch::new("flood");
    let path = d.path("flood.pcapng");
    let sent = flood();
    write_file(&path, &sent);
    let bytes = std::fs::read(&path).unwrap();
    let all = blocks(&bytes);
    // SHB and interface 0 are the file's header, whatever it holds.
    let header: usize = all[..2].iter().map(|(_, b)| b.len()).sum();
    let descs = descriptions(&bytes);
    let of_flood = descs.iter().filter(|d| d.starts_with("pid=4242 ")).count();
    assert!((1..=2).contains(&of_flood), "{descs:?}");
    let per_packet = (bytes.len() - header) as f64 / sent.len() as f64;
    // What the same packets took with the whole process in every comment (pidcap before issue 13).
    let before_comment = format_comment(&ProcessInfo::of(&sent[0])).len().next_multiple_of(4);
    let before = 28 + sent[0].data.len().next_multiple_of(4) + 4 + before_comment + 8 + 4 + 4;
    println!("bytes per packet of a 64-byte payload: {per_packet:.1} (the whole process per packet: {before})");
    assert!(per_packet < 160.0, "{per_packet} bytes per packet");
    assert!((before as f64) > 2.0 * per_packet, "before {before}, now {per_packet}");
    assert_eq!(read_packets(&bytes[..]).unwrap(), sent, "every packet reads back whole");
}

#[test]
fn tshark_and_tcpdump_show_the_process_on_every_packet() {
    pidcap_testkit::require!(Tool("tshark"), Tool("tcpdump"));
    let d = Scratch::new("tools");
    let path = d.path("flood.pcapng");
    let sent = flood();
    write_file(&path, &sent);
    assert_eq!(tool("tcpdump", &path, &["-n"]).len(), sent.len(), "tcpdump reads every packet");
    let names = tool("tshark", &path, &["-T", "fields", "-e", "frame.interface_name"]);
    assert!(names.len() == sent.len() && names.iter().all(|n| n == "flood[4242]"), "{names:?}");
    let fields =
        lua(&path, "pidcap.exe contains \"python\"", &["pidcap.pid", "pidcap.tid", "pidcap.cmdline", "pidcap.cookie"]);
    assert_eq!(fields.len(), sent.len());
    let cmdline = sent[0].process.as_ref().unwrap().cmdline.join(" ");
    assert!(fields.iter().all(|f| *f == format!("4242|4242|{cmdline}|40961")), "{:?}", &fields[..2]);
    // The same from the file in the older form.
    let old = d.path("old.pcapng");
    std::fs::write(&old, old_form(&sent)).unwrap();
    let f = ["pidcap.pid", "pidcap.comm", "pidcap.tid", "pidcap.thread", "pidcap.exe", "pidcap.cmdline", "pidcap.arg"];
    let g = ["pidcap.ppid", "pidcap.pcomm", "pidcap.uid", "pidcap.user", "pidcap.cgroup", "pidcap.container"];
    let h = ["pidcap.cookie", "pidcap.verdict", "pidcap.rule"];
    let every: Vec<&str> = f.iter().chain(&g).chain(&h).copied().collect();
    assert_eq!(lua(&path, "pidcap", &every), lua(&old, "pidcap", &every));
}

/// `packets` as pidcap wrote them before issue 13: one interface, the whole
/// process in every packet's comment (the layout of `tests/data/golden-v1.pcapng`).
fn old_form(packets: &[CapturedPacket]) -> Vec<u8> {
    fn block(t: u32, body: &[u8]) -> Vec<u8> {
        let len = (12 + body.len()) as u32;
        [&t.to_le_bytes()[..], &len.to_le_bytes(), body, &len.to_le_bytes()].concat()
    }
    fn opt(code: u16, v: &[u8]) -> Vec<u8> {
        let mut o = [&code.to_le_bytes()[..], &(v.len() as u16).to_le_bytes(), v].concat();
        o.resize(4 + v.len().next_multiple_of(4), 0);
        o
    }
    let shb = [&0x1a2b_3c4du32.to_le_bytes()[..], &1u16.to_le_bytes(), &0u16.to_le_bytes(), &[0xff; 8], &[0; 4]];
    let mut out = block(0x0a0d_0d0a, &shb.concat());
    let idb = [&101u16.to_le_bytes()[..], &[0, 0], &65535u32.to_le_bytes(), &opt(2, b"pidcap"), &opt(9, &[9]), &[0; 4]];
    out.extend(block(1, &idb.concat()));
    for p in packets {
        let mut body = [0u32, (p.timestamp_ns >> 32) as u32, p.timestamp_ns as u32, p.data.len() as u32, p.orig_len]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect::<Vec<u8>>();
        body.extend(&p.data);
        body.resize(body.len().next_multiple_of(4), 0);
        body.extend(opt(1, format_comment(&ProcessInfo::of(p)).as_bytes()));
        let flags: u32 = if p.direction == Direction::Inbound { 1 } else { 2 };
        body.extend(opt(2, &flags.to_le_bytes()));
        body.extend([0; 4]);
        out.extend(block(6, &body));
    }
    out
}

#[test]
fn a_file_in_the_older_form_reads_back_the_same() {
    let sent = flood();
    assert_eq!(read_packets(&old_form(&sent)[..]).unwrap(), sent);
    // And the golden file the writer made before issue 13 (see tests/golden.rs).
    let v1 = read_packets(std::fs::File::open(data_dir().join("golden-v1.pcapng")).unwrap()).unwrap();
    let now = read_packets(std::fs::File::open(data_dir().join("golden.pcapng")).unwrap()).unwrap();
    assert_eq!(v1, now);
    assert_eq!(v1.len(), 6);
}

/// A process execs (same pid, new exe and command line), its old image's
/// packets still interleave, the pid is reused by another process later:
/// one interface per description, every packet on its own.
#[test]
fn exec_under_the_same_pid_and_a_reused_pid_get_an_interface_each() {
    let d = Scratch::new("exec");
    let path = d.path("exec.pcapng");
    let sh = meta(4242, "sh", "/usr/bin/dash", &["sh", "-c", "curl -s http://127.0.0.1:8/"]);
    let curl = meta(4242, "curl", "/usr/bin/curl", &["curl", "-s", "http://127.0.0.1:8/"]);
    let other = meta(77, "dig", "/usr/bin/dig", &["dig", "@127.0.0.1"]);
    let reused = meta(4242, "curl", "/usr/bin/curl", &["curl", "-s", "http://127.0.0.1:9/"]);
    // A copy of curl's metadata in another allocation (a re-read of /proc): the same description.
    let curl_again = Arc::new((*curl).clone());
    let order = [&sh, &sh, &curl, &other, &sh, &curl, &curl_again, &other, &reused, &curl, &reused];
    let sent: Vec<CapturedPacket> = order.iter().enumerate().map(|(i, m)| packet(i as u64 + 1, m, 10)).collect();
    write_file(&path, &sent);
    let bytes = std::fs::read(&path).unwrap();
    let descs = descriptions(&bytes);
    assert_eq!(descs.len(), 5, "interface 0, sh, curl, dig, the reused pid's: {descs:?}");
    assert!(descs[1].starts_with("pid=4242 comm=sh exe=/usr/bin/dash cmdline=sh -c curl\\x20-s"), "{descs:?}");
    assert!(descs[2].starts_with("pid=4242 comm=curl exe=/usr/bin/curl cmdline=curl -s http://127.0.0.1:8/"));
    assert!(descs[3].starts_with("pid=77 comm=dig "));
    assert!(descs[4].contains("http://127.0.0.1:9/"));
    // Each IDB comes before the first packet on it.
    let kinds: String = blocks(&bytes)[2..].iter().map(|(t, _)| if *t == 1 { 'I' } else { 'P' }).collect();
    assert_eq!(kinds, "IPPIPIPPPPPIPPP");
    let back = read_packets(&bytes[..]).unwrap();
    assert_eq!(back, sent);
    // With tshark (always in CI): the plugin sees each packet's own process.
    if pidcap_testkit::find_tool("tshark").is_some() || pidcap_testkit::in_ci() {
        let exes = lua(&path, "pidcap", &["pidcap.pid", "pidcap.exe", "pidcap.cmdline"]);
        let want: Vec<String> = order.iter().map(|m| format!("{}|{}|{}", m.pid, m.exe, m.cmdline.join(" "))).collect();
        assert_eq!(exes, want);
        assert_eq!(lua(&path, "pidcap.exe == \"/usr/bin/dash\"", &["frame.number"]), ["1", "2", "5"]);
    }
}

/// Every rotated file describes the processes of its packets again, before them: each reads alone.
#[test]
fn every_rotated_file_describes_its_processes_again() {
    let d = Scratch::new("rotate");
    let a = meta(4242, "flood", "/usr/bin/python3.11", &["python3", "flood.py"]);
    let b = meta(77, "sink", "/usr/bin/socat", &["socat", "UDP-RECV:9", "-"]);
    let sent: Vec<CapturedPacket> = (1..=200).map(|id| packet(id, if id % 3 == 0 { &b } else { &a }, 64)).collect();
    let clock: Clock = Box::new(|| 1_700_000_000);
    let rotation = Rotation { max_bytes: Some(4000), ..Rotation::default() };
    let mut out: Box<dyn PacketOutput> = Box::new(
        RotatingOutput::create(&d.path("r.pcapng"), Format::Pcapng, &WriterOptions::default(), 0o600, rotation, clock)
            .unwrap(),
    );
    for p in &sent {
        out.write_packet(p).unwrap();
    }
    let files = out.files().unwrap();
    out.finish().unwrap();
    assert!(files.names.len() >= 5, "{:?}", files.names);
    let mut back = Vec::new();
    for name in &files.names {
        let bytes = std::fs::read(name).unwrap();
        assert!(bytes.len() <= 4000, "{}: {} bytes", name.display(), bytes.len());
        let descs = descriptions(&bytes);
        let packets = read_packets(&bytes[..]).unwrap();
        assert!(packets.iter().all(|p| p.process.is_some()), "{}", name.display());
        let mut pids: Vec<u32> = packets.iter().map(|p| p.pid).collect();
        pids.sort();
        pids.dedup();
        // Interface 0, then each process of the file once.
        assert_eq!(descs.len(), 1 + pids.len(), "{}: {descs:?}", name.display());
        back.extend(packets);
    }
    assert_eq!(back.len(), sent.len());
    for (got, want) in back.iter().zip(&sent) {
        assert_eq!(
            (got.timestamp_ns, got.pid, &got.process, got.tid),
            (want.timestamp_ns, want.pid, &want.process, want.tid)
        );
    }
}

/// A packet's own fields over its process's: another thread, a blocked one,
/// a socket without a cookie, a thread with no name; and packets with no
/// process stay on interface 0 with the whole comment.
#[test]
fn per_packet_fields_ride_in_the_comment() {
    let m = meta(4242, "flood", "/usr/bin/python3.11", &["python3"]);
    let mut sent: Vec<CapturedPacket> = (1..=6).map(|id| packet(id, &m, 10)).collect();
    (sent[1].tid, sent[1].thread) = (4243, "worker 2".into());
    (sent[2].verdict, sent[2].rule) = (Verdict::Blocked, Some(3));
    sent[3].socket_cookie = 0;
    (sent[4].tid, sent[4].thread) = (0, String::new());
    (sent[5].pid, sent[5].comm, sent[5].process, sent[5].tid, sent[5].thread) =
        (0, String::new(), None, 0, String::new());
    let mut w = PcapngWriter::with_os(Vec::new(), &WriterOptions::default(), None).unwrap();
    for p in &sent {
        w.write_packet(p).unwrap();
    }
    let bytes = w.into_inner().unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("tid=4243 thread=worker\\x202 cookie=40961"));
    assert!(text.contains("cookie=40961 verdict=blocked rule=3"));
    assert!(text.contains("tid=0 thread= cookie=40961"));
    assert!(text.contains("pid=0 comm= cookie=40961 verdict=pass"), "no process: the whole comment on interface 0");
    let epbs: Vec<&[u8]> = blocks(&bytes).into_iter().filter(|(t, _)| *t == 6).map(|(_, b)| b).collect();
    let ifaces: Vec<u32> = epbs.iter().map(|b| u32::from_le_bytes(b[8..12].try_into().unwrap())).collect();
    assert_eq!(ifaces, [1, 1, 1, 1, 1, 0]);
    // The packet of the socket with no cookie, tid = pid, thread = comm: no comment at all.
    assert_eq!(epbs[3].len(), 28 + 40 + 8 + 4 + 4);
    assert_eq!(read_packets(&bytes[..]).unwrap(), sent);
}

/// A file describes at most 16384 interfaces (pidcap's reader takes 65536 a
/// section): the processes after that go on interface 0 with the whole
/// comment, and read back the same.
#[test]
fn a_file_full_of_processes_writes_the_rest_whole() {
    let processes: Vec<Arc<ProcessMeta>> =
        (1..=16400u32).map(|pid| meta(pid, "cc1", "/usr/lib/gcc/cc1", &["cc1", "-quiet"])).collect();
    let mut sent: Vec<CapturedPacket> = processes.iter().enumerate().map(|(i, m)| packet(i as u64 + 1, m, 0)).collect();
    // The first process again, and the last twice: on their interface, and whole.
    for m in [&processes[0], &processes[16399], &processes[16399]] {
        let id = sent.len() as u64 + 1;
        sent.push(packet(id, m, 0));
    }
    let mut w = PcapngWriter::with_os(Vec::new(), &WriterOptions::default(), None).unwrap();
    for p in &sent {
        w.write_packet(p).unwrap();
    }
    let bytes = w.into_inner().unwrap();
    assert_eq!(descriptions(&bytes).len(), 16384);
    let ifaces: Vec<u32> = blocks(&bytes)
        .into_iter()
        .filter(|(t, _)| *t == 6)
        .map(|(_, b)| u32::from_le_bytes(b[8..12].try_into().unwrap()))
        .collect();
    assert_eq!(ifaces[..3], [1, 2, 3]);
    assert_eq!(ifaces[16382], 16383);
    assert!(ifaces[16383..16400].iter().all(|&i| i == 0), "{:?}", &ifaces[16380..]);
    assert_eq!(ifaces[16400..], [1, 0, 0]);
    assert_eq!(read_packets(&bytes[..]).unwrap(), sent);
}

/// A process whose description does not fit an option (65535 bytes) is not
/// cut into a wrong one: its packets go whole on interface 0, as before.
#[test]
fn a_description_too_long_for_an_option_is_not_an_interface() {
    let long = "x".repeat(70_000);
    let m = meta(4242, "flood", "/usr/bin/python3.11", &["python3", &long]);
    let short = meta(77, "dig", "/usr/bin/dig", &["dig"]);
    let sent = [packet(1, &m, 0), packet(2, &short, 0), packet(3, &m, 0)];
    let mut w = PcapngWriter::with_os(Vec::new(), &WriterOptions::default(), None).unwrap();
    for p in &sent {
        w.write_packet(p).unwrap();
    }
    let bytes = w.into_inner().unwrap();
    assert_eq!(descriptions(&bytes).len(), 2, "interface 0 and dig's");
    let ifaces: Vec<u32> = blocks(&bytes)
        .into_iter()
        .filter(|(t, _)| *t == 6)
        .map(|(_, b)| u32::from_le_bytes(b[8..12].try_into().unwrap()))
        .collect();
    assert_eq!(ifaces, [0, 1, 0]);
    let back = read_packets(&bytes[..]).unwrap();
    assert_eq!(back[1], sent[1]);
    // The whole comment, cut at 65535 bytes, gives the process back no more than it did before.
    assert!(back[0].process.as_ref().is_none_or(|p| p.cmdline != m.cmdline));
}
