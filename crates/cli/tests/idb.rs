//! Processes in interfaces (issue 13), through the real binary: a flood of
//! one process captured by `pidcap run` is described by at most two
//! interfaces (its exec from `ip netns exec` to python may show both) and
//! takes under 160 bytes a 64-byte datagram; tshark with
//! `wireshark/pidcap.lua` shows its executable and command line on every
//! packet, tcpdump and `pidcap read` read it; and `pidcap read` prints the
//! same for a file in the older form (the whole process in every comment).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../pcapfile/tests/data").join(name)
}

/// 1000 datagrams of 64 bytes from one socket to another of the same process.
const FLOOD: &str = "import socket; r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0)); \
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(r.getsockname()); \
    [s.send(b'x' * 64) for _ in range(1000)]; import time; time.sleep(0.3)";

#[test]
fn a_flood_of_one_process_is_described_once_and_small_and_every_tool_reads_it() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"), Tool("tcpdump"));
    let ns = NetNs::new("idb-flood");
    let scratch = Scratch::new("idb-flood");
    let file = scratch.path("flood.pcapng");
    // The interpreter itself, not a pyenv shim (one exec, from ip to python).
    let python = python_executable();
    let out = pidcap()
        .args(["run", "-q", "-w"])
        .arg(&file)
        .args(["--", "ip", "netns", "exec", &ns.name])
        .arg(&python)
        .args(["-c", FLOOD])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out);
    let packets = read_capture(&file);
    assert_eq!(packets.len(), 2000, "1000 out, 1000 in: {}", text(&out.stderr));
    let tshark = |args: &[&str]| {
        let out = Command::new("tshark").arg("-r").arg(&file).args(args).output().unwrap();
        ok(&out);
        text(&out.stdout).lines().map(str::to_owned).collect::<Vec<_>>()
    };
    let mut names = tshark(&["-T", "fields", "-e", "frame.interface_name"]);
    assert_eq!(names.len(), 2000);
    names.sort();
    names.dedup();
    assert!((1..=2).contains(&names.len()), "{names:?}");
    // Bytes a packet takes, from the file: all of it but the section header and interface 0.
    let bytes = std::fs::read(&file).unwrap();
    let header: usize = {
        let shb = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        shb + u32::from_le_bytes(bytes[shb + 4..shb + 8].try_into().unwrap()) as usize
    };
    let per_packet = (bytes.len() - header) as f64 / 2000.0;
    println!("{per_packet:.1} bytes a 64-byte datagram");
    assert!(per_packet < 160.0, "{per_packet} bytes a packet");
    // The plugin: every packet is python's, with its command line.
    let lua =
        format!("lua_script:{}", Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wireshark/pidcap.lua").display());
    let fields = tshark(&["-X", &lua, "-Y", "pidcap.exe contains \"python\"", "-T", "fields", "-e", "pidcap.cmdline"]);
    assert_eq!(fields.len(), 2000);
    assert!(fields.iter().all(|c| c.contains(" -c import socket;")), "{:?}", &fields[..1]);
    // tcpdump and pidcap read it.
    let td = Command::new("tcpdump").arg("-n").arg("-r").arg(&file).output().unwrap();
    ok(&td);
    assert_eq!(text(&td.stdout).lines().count(), 2000);
    let read = pidcap().arg("read").arg(&file).output().unwrap();
    ok(&read);
    let who = format!(" {}/{} ", packets[0].pid, packets[0].comm);
    assert!(packets[0].comm.starts_with("python"), "{:?}", packets[0]);
    assert!(text(&read.stdout).lines().all(|l| l.contains(&who)), "{}", text(&read.stdout));
}

#[test]
fn read_prints_the_same_for_the_older_form() {
    for args in [&[][..], &["--json"][..], &["-v"][..]] {
        let run = |name: &str| {
            let out = pidcap().arg("read").arg(golden(name)).args(args).env("TZ", "UTC").output().unwrap();
            ok(&out);
            text(&out.stdout)
        };
        let (new, old) = (run("golden.pcapng"), run("golden-v1.pcapng"));
        assert_eq!(new.lines().count(), 6, "{new}");
        assert_eq!(new, old, "{args:?}");
    }
}
