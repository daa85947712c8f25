//! `pidcap send --pcap FILE --frame N` takes Wireshark's frame N: every
//! record counts, those pidcap cannot decode too, and asking for one of those
//! (or past the end, or past where a file was cut) says why. Fixtures in
//! tests/data/frames/ are made with text2pcap from the hex dumps beside them
//! (`text2pcap -l 1 eth_arp.txt eth_arp.pcapng`, `text2pcap -F pcap -l 147
//! user0.txt user0.pcap`): eth_arp has UDP, ARP, ARP, UDP, UDP over IPv6.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/frames").join(name)
}

/// `pidcap send --pcap FILE --frame N --mode connect --dry-run`: exit code, stdout, stderr.
fn dry_run(file: &Path, frame: &str) -> (Option<i32>, String, String) {
    let out = pidcap()
        .args(["send", "--pcap"])
        .arg(file)
        .args(["--frame", frame, "--mode", "connect", "--dry-run"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn frame_n_is_wiresharks_frame_n() {
    let eth = fixture("eth_arp.pcapng");
    let (code, stdout, err) = dry_run(&eth, "4");
    assert_eq!(code, Some(0), "{err}");
    assert!(stdout.contains("|fourth frame, th|"), "frame 4 is the second UDP packet: {stdout}");
    let (code, stdout, _) = dry_run(&eth, "5");
    assert_eq!(code, Some(0));
    assert!(stdout.contains("fifth frame") && stdout.contains("[fd00::2]:7"), "{stdout}");

    let (code, _, err) = dry_run(&eth, "2");
    assert_eq!(code, Some(2));
    assert!(err.contains("frame 2 of") && err.contains("not an IPv4 or IPv6 packet (ethertype 0x0806, ARP)"), "{err}");
    let (code, _, err) = dry_run(&eth, "6");
    assert_eq!(code, Some(2));
    assert!(err.contains("has 5 frames, no frame 6"), "{err}");

    let (code, _, err) = dry_run(&fixture("user0.pcap"), "1");
    assert_eq!(code, Some(2));
    assert!(err.contains("link type 147 (USER0) is not one pidcap reads"), "not \"0 frames\" but why: {err}");
}

#[test]
fn a_frame_past_the_cut_of_a_file_cut_short_says_so() {
    let scratch = Scratch::new("frames-cut");
    let cut = scratch.path("cut.pcapng");
    let bytes = std::fs::read(fixture("eth_arp.pcapng")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let (code, stdout, err) = dry_run(&cut, "4");
    assert_eq!(code, Some(0), "frames before the cut are sent: {err}");
    assert!(stdout.contains("fourth frame"), "{stdout}");
    let (code, _, err) = dry_run(&cut, "5");
    assert_eq!(code, Some(2));
    assert!(err.contains("has 4 complete frames, no frame 5: the file was cut short (truncated"), "{err}");
}
