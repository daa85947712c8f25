//! Rotation and TLS: a handshake held back for its keys when a new file
//! starts goes into the new file whole, after that file's own preamble, so
//! tshark decrypts it there; a TLS record held back goes with it (its
//! interface described again); the keys written so far open every later
//! file; a record in a file without its connection's handshake is written as
//! HTTP (nothing decrypts it there). Every file reads in tshark without a warning.
//!
//! `tests/data/tls13-curl.pcap` and `.keys`: see tests/tls.rs.

mod common;

use common::data_dir;
use pidcap_packet::{CapturedPacket, Direction, TlsInfo, TlsLibrary, TlsRecord};
use pidcap_pcapfile::keylog::parse_text;
use pidcap_pcapfile::rotate::Clock;
use pidcap_pcapfile::{read_packets, Format, PacketOutput, PacketReader, RotatingOutput, Rotation, WriterOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

const ROOT_NOTE: &str = "Running as user \"root\" and group \"root\". This could be dangerous.";

fn tshark(path: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("tshark").arg("-r").arg(path).args(args).output().expect("running tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.trim() != ROOT_NOTE && !l.trim().is_empty()).collect();
    assert!(out.status.success() && warnings.is_empty(), "tshark {} {args:?}: {stderr}", path.display());
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dir(tag: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("pidcap-pcapfile-rotate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn capture() -> Vec<CapturedPacket> {
    let mut packets = read_packets(std::fs::File::open(data_dir().join("tls13-curl.pcap")).unwrap()).unwrap();
    for p in &mut packets {
        p.pid = 4242;
        p.comm = "curl".into();
    }
    packets
}

fn request_record() -> CapturedPacket {
    let text = b"GET /some-path HTTP/1.1\r\nHost: 127.0.0.1:18443\r\n\r\n";
    CapturedPacket::tls_record(TlsRecord {
        id: 100,
        timestamp_ns: 1_700_000_000_000_000_000,
        pid: 4242,
        comm: "curl".into(),
        socket_cookie: 77,
        direction: Direction::Outbound,
        local: "127.0.0.1:46444".parse().unwrap(),
        remote: "127.0.0.1:18443".parse().unwrap(),
        info: TlsInfo { tid: 4243, library: TlsLibrary::Openssl },
        plaintext: text,
        true_len: text.len() as u64,
        stream_offset: 0,
    })
}

#[test]
fn a_held_handshake_moves_to_the_new_file_and_decrypts_there() {
    pidcap_testkit::require!(Tool("tshark"));
    let d = dir("tls");
    let now = Arc::new(AtomicI64::new(1_700_000_000));
    let c = Arc::clone(&now);
    let clock: Clock = Box::new(move || c.load(Ordering::SeqCst));
    let opts = WriterOptions { snaplen: 65535, application: "pidcap test".into() };
    let rotation = Rotation { seconds: Some(1), ..Rotation::default() };
    let template = d.0.join("f-%s.pcapng");
    let mut out: Box<dyn PacketOutput> =
        Box::new(RotatingOutput::create(&template, Format::Pcapng, &opts, 0o600, rotation, clock).unwrap());
    out.hold_for_tls_keys().unwrap();
    let (keys, bad) = parse_text(&std::fs::read(data_dir().join("tls13-curl.keys")).unwrap());
    assert_eq!((keys.len(), bad), (5, 0));
    for p in capture() {
        // A new file as the ClientHello's reply comes (the ClientHello is held back), and one more
        // once the keys are in and the request has gone.
        if p.id == 5 || p.id == 12 {
            now.fetch_add(1, Ordering::SeqCst);
        }
        out.write_packet(&p).unwrap();
        if p.id == 4 {
            // A TLS record while the handshake is held: its interface is described in the first file.
            out.write_packet(&request_record()).unwrap();
        }
        if p.id == 7 {
            assert_eq!(out.add_tls_keys(&keys).unwrap(), 5);
        }
        if p.id == 13 {
            // A record of that connection in the third file, which has its keys but not its handshake:
            // Wireshark cannot decrypt there, so the record is written as HTTP (shown once, not zero times).
            out.write_packet(&request_record()).unwrap();
        }
    }
    let files = out.files().unwrap();
    out.finish().unwrap();
    let names: Vec<PathBuf> = files.names.clone();
    assert_eq!(
        names,
        [d.0.join("f-1700000000.pcapng"), d.0.join("f-1700000001.pcapng"), d.0.join("f-1700000002.pcapng")]
    );
    // The first file: the TCP handshake only; all of the TLS handshake is in the second, which decrypts.
    assert_eq!(tshark(&names[0], &[]).len(), 3);
    let uris = tshark(&names[1], &["-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]);
    assert_eq!(uris, ["/some-path"], "decrypted in the second file (or from the record, written as data)");
    assert_eq!(tshark(&names[1], &["-Y", "tls.handshake.type == 1"]).len(), 1, "the ClientHello is there");
    assert_eq!(tshark(&names[1], &["-Y", "frame.interface_name == \"pidcap-tls-plaintext\""]).len(), 1);
    // Each later file opens with every key written so far.
    for (i, name) in names.iter().enumerate() {
        let contents = PacketReader::new(std::fs::File::open(name).unwrap()).unwrap().read_to_end().unwrap();
        let want = if i == 0 { 0 } else { 5 };
        assert_eq!(contents.keylog.len(), want, "{}", name.display());
        tshark(name, &["-V"]);
    }
    let frames: usize = names.iter().map(|n| tshark(n, &[]).len()).sum();
    assert_eq!(frames, 20, "18 packets and the two records, each once");
    let third = tshark(&names[2], &["-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]);
    assert_eq!(third, ["/some-path"], "the record, as HTTP, where nothing decrypts");
}
