//! Interoperability with Wireshark's tshark (Debian 12 ships 4.0): the
//! golden files must open without any warning and expose the process,
//! direction, addresses and ports the way users will query them.
//!
//! Each test starts with `require!(Tool("tshark"))`: without tshark it
//! prints a skip reason and passes, unless `CI=true`: then it fails.

mod common;

use common::{golden_packets, golden_path};
use pidcap_packet::Direction;
use std::process::Command;

/// tshark's own note when run as root; it is about the environment, not the file.
const ROOT_NOTE: &str = "Running as user \"root\" and group \"root\". This could be dangerous.";

/// Run `tshark -r <golden file> <args>`: it must succeed with nothing on stderr.
fn tshark(file: &str, args: &[&str]) -> Vec<String> {
    let path = golden_path(file);
    let out = Command::new("tshark").arg("-r").arg(&path).args(args).output().expect("running tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.trim() != ROOT_NOTE && !l.trim().is_empty()).collect();
    assert!(out.status.success(), "tshark -r {} {args:?} failed: {stderr}", path.display());
    assert!(warnings.is_empty(), "tshark -r {} {args:?} warned: {warnings:?}", path.display());
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn tshark_reads_pcapng_cleanly_with_every_frame() {
    pidcap_testkit::require!(Tool("tshark"));
    assert_eq!(tshark("golden.pcapng", &[]).len(), golden_packets().len());
}

#[test]
fn tshark_filters_by_pid_in_the_comment() {
    pidcap_testkit::require!(Tool("tshark"));
    let want: Vec<String> = golden_packets().iter().filter(|p| p.pid == 4242).map(|p| p.id.to_string()).collect();
    // Files since issue 13: the process in its interface's description, per-packet fields in the comment.
    let frames = tshark(
        "golden.pcapng",
        &["-Y", "frame.interface_description contains \"pid=4242\"", "-T", "fields", "-e", "frame.number"],
    );
    assert_eq!(frames, want);
    let frames = tshark(
        "golden.pcapng",
        &["-Y", "frame.interface_name == \"curl[4242]\"", "-T", "fields", "-e", "frame.number"],
    );
    assert_eq!(frames, want);
    let blocked = tshark(
        "golden.pcapng",
        &["-Y", "frame.comment contains \"verdict=blocked\"", "-T", "fields", "-e", "frame.number"],
    );
    assert_eq!(blocked, ["5"]);
    let described = tshark(
        "golden.pcapng",
        &["-T", "fields", "-E", "separator=|", "-e", "frame.interface_description", "-e", "frame.comment"],
    );
    assert_eq!(described[5], "pid=9001 comm=Web\\x20Content|tid=0 thread= cookie=1 rule=0");
    // Older files: the whole process in the comment.
    let frames = tshark(
        "golden-v1.pcapng",
        &["-Y", "frame.comment contains \"pid=4242\"", "-T", "fields", "-e", "frame.number"],
    );
    assert_eq!(frames, want);
    let blocked = tshark(
        "golden-v1.pcapng",
        &["-Y", "frame.comment contains \"verdict=blocked\"", "-T", "fields", "-e", "frame.number"],
    );
    assert_eq!(blocked, ["5"]);
    let comments = tshark("golden-v1.pcapng", &["-T", "fields", "-e", "frame.comment"]);
    assert_eq!(comments[5], "pid=9001 comm=Web\\x20Content cookie=1 verdict=pass rule=0");
}

/// Every field of `wireshark/pidcap.lua`, per packet.
const LUA_FIELDS: [&str; 17] = [
    "pidcap.pid",
    "pidcap.comm",
    "pidcap.tid",
    "pidcap.thread",
    "pidcap.exe",
    "pidcap.cmdline",
    "pidcap.arg",
    "pidcap.ppid",
    "pidcap.pcomm",
    "pidcap.uid",
    "pidcap.user",
    "pidcap.cgroup",
    "pidcap.container",
    "pidcap.cookie",
    "pidcap.verdict",
    "pidcap.rule",
    "pidcap.tls",
];

fn lua_fields(file: &str, filter: &str) -> Vec<String> {
    let lua = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wireshark/pidcap.lua");
    let mut args = vec!["-X".to_string(), format!("lua_script:{}", lua.display()), "-Y".into(), filter.into()];
    args.extend(["-T", "fields", "-E", "separator=|"].map(String::from));
    for f in LUA_FIELDS {
        args.extend(["-e".to_string(), f.to_string()]);
    }
    tshark(file, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn the_plugin_gives_the_same_fields_from_the_interface_as_from_the_whole_comment() {
    pidcap_testkit::require!(Tool("tshark"));
    let old = lua_fields("golden-v1.pcapng", "pidcap");
    assert_eq!(old.len(), golden_packets().len(), "{old:?}");
    assert!(old[0].starts_with("4242|curl|"), "{old:?}");
    assert!(old[4].contains("|9000|blocked|3|"), "{old:?}");
    assert_eq!(lua_fields("golden.pcapng", "pidcap"), old);
    for filter in
        ["pidcap.pid == 4242", "pidcap.comm == \"Web Content\"", "pidcap.verdict == \"blocked\"", "pidcap.rule == 0"]
    {
        let (old, new) = (lua_fields("golden-v1.pcapng", filter), lua_fields("golden.pcapng", filter));
        assert!(!old.is_empty(), "{filter}");
        assert_eq!(new, old, "{filter}");
    }
}

#[test]
fn tshark_sees_the_direction() {
    pidcap_testkit::require!(Tool("tshark"));
    let dirs = tshark("golden.pcapng", &["-T", "fields", "-e", "frame.packet_flags_direction"]);
    let want: Vec<&str> = golden_packets()
        .iter()
        .map(|p| match p.direction {
            Direction::Inbound => "0x00000001",
            Direction::Outbound => "0x00000002",
        })
        .collect();
    assert_eq!(dirs, want);
    let inbound =
        tshark("golden.pcapng", &["-Y", "frame.packet_flags_direction == 1", "-T", "fields", "-e", "frame.number"]);
    assert_eq!(inbound, ["2"]);
}

/// Addresses, ports, lengths and nanosecond times as tshark decodes them.
fn expected_fields() -> Vec<String> {
    golden_packets()
        .iter()
        .map(|p| {
            let (src, dst) = match p.direction {
                Direction::Outbound => (&p.decoded.local_addr, p.decoded.local_port),
                Direction::Inbound => (&p.decoded.remote_addr, p.decoded.remote_port),
            };
            let (v4, v6) = if p.decoded.ip_version == 4 {
                (src.to_string(), String::new())
            } else {
                (String::new(), src.to_string())
            };
            let (tcp, udp) = match p.decoded.protocol {
                pidcap_packet::Protocol::Tcp => (dst.to_string(), String::new()),
                _ => (String::new(), dst.to_string()),
            };
            let t = format!("{}.{:09}", p.timestamp_ns / 1_000_000_000, p.timestamp_ns % 1_000_000_000);
            format!("{v4}\t{v6}\t{tcp}\t{udp}\t{}\t{}\t{t}", p.orig_len, p.data.len())
        })
        .collect()
}

const FIELDS: &[&str] = &[
    "-T",
    "fields",
    "-e",
    "ip.src",
    "-e",
    "ipv6.src",
    "-e",
    "tcp.srcport",
    "-e",
    "udp.srcport",
    "-e",
    "frame.len",
    "-e",
    "frame.cap_len",
    "-e",
    "frame.time_epoch",
];

#[test]
fn tshark_decodes_the_same_addresses_ports_and_times() {
    pidcap_testkit::require!(Tool("tshark"));
    assert_eq!(tshark("golden.pcapng", FIELDS), expected_fields());
}

#[test]
fn tshark_reads_classic_pcap() {
    pidcap_testkit::require!(Tool("tshark"));
    assert_eq!(tshark("golden.pcap", &[]).len(), golden_packets().len());
    assert_eq!(tshark("golden.pcap", FIELDS), expected_fields());
}
