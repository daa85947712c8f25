//! TLS in pcapng files: plaintext records on their own interface as
//! Exported PDUs, key logs in Decryption Secrets Blocks before the packets
//! that need them, both read back; classic pcap leaves records out.
//!
//! `tests/data/tls13-curl.pcap` is a real capture (tcpdump on loopback) of
//! `curl --cacert ... https://127.0.0.1:18443/some-path` against a Python
//! `http.server` in `ssl`, TLS 1.3, and `tls13-curl.keys` curl's
//! `SSLKEYLOGFILE` of that run.

mod common;

use common::data_dir;
use pidcap_packet::{CapturedPacket, Direction, TlsInfo, TlsLibrary, TlsRecord};
use pidcap_pcapfile::keylog::parse_text;
use pidcap_pcapfile::{
    read_packets, CaptureFile, FileOutput, Format, PacketOutput, PacketReader, PacketWriter, PcapWriter, PcapngWriter,
    WriterOptions,
};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT_NOTE: &str = "Running as user \"root\" and group \"root\". This could be dangerous.";

fn opts() -> WriterOptions {
    WriterOptions { snaplen: 65535, application: "pidcap test".into() }
}

fn record(id: u64, dir: Direction, local: &str, remote: &str, text: &[u8], offset: u32) -> CapturedPacket {
    CapturedPacket::tls_record(TlsRecord {
        id,
        timestamp_ns: 1_700_000_000_000_000_000 + id,
        pid: 4242,
        comm: "curl".into(),
        socket_cookie: 77,
        direction: dir,
        local: local.parse().unwrap(),
        remote: remote.parse().unwrap(),
        info: TlsInfo { tid: 4243, library: TlsLibrary::Openssl },
        plaintext: text,
        true_len: text.len() as u64,
        stream_offset: offset,
    })
}

/// The real capture's packets, numbered from 1 as tshark does.
fn capture() -> Vec<CapturedPacket> {
    let mut packets = read_packets(std::fs::File::open(data_dir().join("tls13-curl.pcap")).unwrap()).unwrap();
    for p in &mut packets {
        p.pid = 4242;
        p.comm = "curl".into();
    }
    assert_eq!(packets.len(), 18);
    packets
}

fn keys() -> Vec<pidcap_pcapfile::KeyLogLine> {
    let (lines, bad) = parse_text(&std::fs::read(data_dir().join("tls13-curl.keys")).unwrap());
    assert_eq!((lines.len(), bad), (5, 0));
    lines
}

/// A file in a directory of its own, removed with it on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("pidcap-pcapfile-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir.join(name))
}

/// `tshark -r path args`: must succeed without warnings; its output lines.
fn tshark(path: &Path, args: &[&str]) -> Vec<String> {
    let out = Command::new("tshark").arg("-r").arg(path).args(args).output().expect("running tshark");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.trim() != ROOT_NOTE && !l.trim().is_empty()).collect();
    assert!(out.status.success() && warnings.is_empty(), "tshark {args:?}: {stderr}");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Write the capture as pidcap does during `run`: the keys are read when
/// curl has logged them, after the server's flight (frame 6) arrived.
fn write_capture(hold: bool, records: &[CapturedPacket]) -> Vec<u8> {
    let mut w = PcapngWriter::with_os(Vec::new(), &opts(), None).unwrap();
    w.hold_for_keys(hold).unwrap();
    for p in capture() {
        w.write_packet(&p).unwrap();
        if p.id == 7 {
            assert_eq!(w.add_keys(&keys()).unwrap(), 5);
            assert_eq!(w.add_keys(&keys()).unwrap(), 0, "each line once");
        }
        if p.id == 9 {
            for r in records {
                w.write_packet(r).unwrap();
            }
        }
    }
    w.into_inner().unwrap()
}

#[test]
fn tshark_decrypts_with_the_keys_written_before_the_handshake_that_needs_them() {
    pidcap_testkit::require!(Tool("tshark"));
    let scratch = scratch("held.pcapng");
    let file = scratch.path().to_path_buf();
    std::fs::write(&file, write_capture(true, &[])).unwrap();
    let requests = tshark(&file, &["-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]);
    assert_eq!(requests, ["/some-path"]);
    assert_eq!(tshark(&file, &["-Y", "http.response.code == 200"]).len(), 1);
    // Without holding back, the keys come after the server's encrypted flight: tshark decrypts nothing.
    std::fs::write(&file, write_capture(false, &[])).unwrap();
    assert!(tshark(&file, &["-Y", "http"]).is_empty());
    // The keys and the packets read back, and a second writing keeps them.
    let contents = PacketReader::new(&write_capture(true, &[])[..]).unwrap().read_to_end().unwrap();
    assert_eq!(contents.packets.len(), 18);
    assert_eq!(contents.keylog, keys());
    let mut again = PcapngWriter::with_os(Vec::new(), &opts(), None).unwrap();
    again.hold_for_keys(true).unwrap();
    again.add_keys(&contents.keylog).unwrap();
    for p in &contents.packets {
        again.write_packet(p).unwrap();
    }
    std::fs::write(&file, again.into_inner().unwrap()).unwrap();
    assert_eq!(tshark(&file, &["-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]), ["/some-path"]);
}

#[test]
fn records_show_and_filter_in_tshark_and_are_not_doubled_where_keys_decrypt() {
    pidcap_testkit::require!(Tool("tshark"));
    let request = b"GET /some-path HTTP/1.1\r\nHost: 127.0.0.1:18443\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    let client = "127.0.0.1:46444";
    let records = [
        // On the keyed connection of the capture: shown by tshark from the decrypted packets only.
        record(100, Direction::Outbound, client, "127.0.0.1:18443", request, 0),
        // A connection without keys: the record is the only view of its HTTP.
        record(101, Direction::Outbound, "127.0.0.1:40000", "127.0.0.1:8443", b"GET /other HTTP/1.1\r\n\r\n", 0),
        record(102, Direction::Inbound, "[::1]:40001", "[::1]:8443", b"HTTP/1.1 204 No Content\r\n\r\n", 0),
        record(103, Direction::Inbound, "127.0.0.1:40000", "127.0.0.1:8443", b"\x00\x01binary", 23),
    ];
    let scratch = scratch("records.pcapng");
    let file = scratch.path().to_path_buf();
    std::fs::write(&file, write_capture(true, &records)).unwrap();
    let mut uris = tshark(&file, &["-Y", "http.request", "-T", "fields", "-e", "http.request.uri"]);
    uris.sort();
    assert_eq!(uris, ["/other", "/some-path"], "the keyed connection's request once, the other's from its record");
    let tls = tshark(&file, &["-Y", "frame.comment contains \"tls=openssl\"", "-T", "fields", "-e", "frame.number"]);
    assert_eq!(tls.len(), 4);
    let iface = tshark(&file, &["-Y", "frame.interface_name == \"pidcap-tls-plaintext\""]);
    assert_eq!(iface.len(), 4);
    let v6 = tshark(&file, &["-Y", "ipv6.src == ::1 && http.response.code == 204"]);
    assert_eq!(v6.len(), 1);
    let ports = tshark(&file, &["-Y", "exported_pdu.src_port == 8443 && ip.dst == 127.0.0.1"]);
    assert_eq!(ports.len(), 1);
    assert!(ports[0].contains("TLS plaintext"), "{ports:?}");
    // Read back: the records with their metadata, beside the packets.
    let back = read_packets(&std::fs::read(&file).unwrap()[..]).unwrap();
    let got: Vec<&CapturedPacket> = back.iter().filter(|p| p.is_tls()).collect();
    assert_eq!(got.len(), 4);
    for (g, want) in got.iter().zip(&records) {
        assert_eq!(g.tls, want.tls);
        assert_eq!((g.pid, g.comm.as_str(), g.socket_cookie, g.direction), (4242, "curl", 77, want.direction));
        assert_eq!(g.data, want.data, "the synthesized packet, offset included");
        assert_eq!(g.orig_len, want.orig_len);
    }
    assert_eq!(back.len(), 22);
}

#[test]
fn records_round_trip_with_cut_plaintext_and_a_pcap_file_leaves_them_out() {
    let mut big = record(1, Direction::Inbound, "10.0.0.1:5", "10.0.0.2:443", &[b'x'; 3000], 9);
    big = {
        let mut r = CapturedPacket::tls_record(TlsRecord {
            id: 1,
            timestamp_ns: big.timestamp_ns,
            pid: 1,
            comm: "a b".into(),
            socket_cookie: 0,
            direction: Direction::Inbound,
            local: "10.0.0.1:5".parse().unwrap(),
            remote: "10.0.0.2:443".parse().unwrap(),
            info: TlsInfo { tid: 2, library: TlsLibrary::Gnutls },
            plaintext: &[b'x'; 100],
            true_len: 3000,
            stream_offset: 9,
        });
        r.id = 1;
        r
    };
    let mut w = PcapngWriter::with_os(Vec::new(), &opts(), None).unwrap();
    w.write_packet(&big).unwrap();
    let bytes = w.into_inner().unwrap();
    let back = read_packets(&bytes[..]).unwrap();
    assert_eq!(back, vec![big.clone()]);
    assert_eq!(back[0].decoded.payload_size, 3000);

    let mut pcap = PacketWriter::new(Format::Pcap, Vec::new(), &opts()).unwrap();
    pcap.write_packet(&capture()[0]).unwrap();
    pcap.write_packet(&big).unwrap();
    assert_eq!(pcap.tls_stats().records_left_out, 1);
    assert_eq!(pcap.add_keys(&keys()).unwrap(), 0);
    assert_eq!(read_packets(&pcap.into_inner().unwrap()[..]).unwrap().len(), 1);
    let mut p = PcapWriter::new(Vec::new(), &opts()).unwrap();
    p.write_packet(&big).unwrap();
    assert_eq!(p.tls_left_out(), 1);
}

#[test]
fn keys_of_connections_not_in_the_file_stay_out_and_dsbs_are_not_counted_as_packets() {
    let scratch = scratch("kept.pcapng");
    let path = scratch.path().to_path_buf();
    let file = CaptureFile::create(&path, 0o600).unwrap();
    let mut out: Box<dyn PacketOutput> = Box::new(FileOutput::new(Format::Pcapng, file, &opts()).unwrap());
    assert!(out.takes_tls_keys());
    out.hold_for_tls_keys().unwrap();
    // Keys first (an old key log): none of them is written before its ClientHello.
    assert_eq!(out.add_tls_keys(&keys()).unwrap(), 5);
    assert_eq!(out.tls_stats().keys_written, 0);
    let packets = capture();
    for p in &packets[..3] {
        out.write_packet(p).unwrap();
    }
    out.write_packet(&record(50, Direction::Outbound, "1.2.3.4:1", "5.6.7.8:2", b"hi", 0)).unwrap();
    out.write_packet(&packets[3]).unwrap(); // the ClientHello: its keys go in just before it
    assert_eq!(out.tls_stats().keys_written, 5);
    for p in &packets[4..] {
        out.write_packet(p).unwrap();
    }
    out.flush().unwrap();
    // 18 packets and one record; an IDB and a DSB beside them.
    assert_eq!(out.packets_kept(), Some(19));
    out.finish().unwrap();
    let contents = PacketReader::new(std::fs::File::open(&path).unwrap()).unwrap().read_to_end().unwrap();
    assert_eq!((contents.packets.len(), contents.keylog.len()), (19, 5));
    // Someone else's keys, and lines that are not keys, never enter the file.
    let mut w = PcapngWriter::with_os(Vec::new(), &opts(), None).unwrap();
    let (other, bad) =
        parse_text(format!("CLIENT_RANDOM {} {}\ngarbage\n", "11".repeat(32), "22".repeat(48)).as_bytes());
    assert_eq!(bad, 1);
    w.add_keys(&other).unwrap();
    for p in capture() {
        w.write_packet(&p).unwrap();
    }
    let c = PacketReader::new(&w.into_inner().unwrap()[..]).unwrap().read_to_end().unwrap();
    assert!(c.keylog.is_empty());
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn malformed_tls_blocks_are_skipped_or_refused_never_a_panic() {
    let mut w = PcapngWriter::with_os(Vec::new(), &opts(), None).unwrap();
    w.write_packet(&record(1, Direction::Outbound, "1.2.3.4:1", "5.6.7.8:2", b"GET / HTTP/1.1\r\n", 0)).unwrap();
    let good = w.into_inner().unwrap();
    // Every cut of the file reads up to its last complete block, or says where it was cut.
    for cut in 0..good.len() {
        let _ = PacketReader::new(&good[..cut]).map(|r| r.read_to_end());
    }
    // A record whose tags claim more than the frame holds: skipped with its reason.
    let mut bad = good.clone();
    let epb = find(&good, &6u32.to_le_bytes(), 0);
    bad[epb + 28 + 2] = 0xff; // the first tag's length
    let c = PacketReader::new(&bad[..]).unwrap().read_to_end().unwrap();
    assert_eq!(c.packets.len(), 0);
    assert_eq!(c.skipped[0].reason, pidcap_pcapfile::SkipReason::BadTlsRecord);
    // A DSB whose secrets length runs past its block is malformed.
    let mut dsb = vec![];
    dsb.extend_from_slice(&10u32.to_le_bytes());
    dsb.extend_from_slice(&24u32.to_le_bytes());
    dsb.extend_from_slice(&0x544c_534bu32.to_le_bytes());
    dsb.extend_from_slice(&100u32.to_le_bytes());
    dsb.extend_from_slice(b"abcd");
    dsb.extend_from_slice(&24u32.to_le_bytes());
    let mut file = good[..find(&good, &1u32.to_le_bytes(), 0)].to_vec();
    let idb_len = u32::from_le_bytes(good[file.len() + 4..file.len() + 8].try_into().unwrap()) as usize;
    file.extend_from_slice(&good[file.len()..file.len() + idb_len]);
    file.extend_from_slice(&dsb);
    let err = PacketReader::new(&file[..]).unwrap().read_to_end().unwrap_err();
    assert!(err.to_string().contains("Decryption Secrets Block"), "{err}");
}

/// The offset of the `nth` block (from 0) of `block_type` in a pcapng file.
fn find(file: &[u8], block_type: &[u8; 4], nth: usize) -> usize {
    let mut at = 0;
    let mut seen = 0;
    while at + 8 <= file.len() {
        if &file[at..at + 4] == block_type {
            if seen == nth {
                return at;
            }
            seen += 1;
        }
        at += u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    panic!("no block {block_type:?} #{nth}");
}

#[test]
fn a_record_claiming_four_gigabytes_reads_with_consistent_lengths() {
    let r = record(1, Direction::Outbound, "[::1]:1", "[::2]:2", b"abc", 0);
    let mut w = PcapngWriter::with_os(Vec::new(), &opts(), None).unwrap();
    w.write_packet(&r).unwrap();
    let mut bytes = w.into_inner().unwrap();
    let epb = find(&bytes, &6u32.to_le_bytes(), 0);
    bytes[epb + 24..epb + 28].copy_from_slice(&u32::MAX.to_le_bytes()); // the EPB's original length
    let back = read_packets(&bytes[..]).unwrap();
    let p = &back[0];
    assert!(p.is_tls());
    assert_eq!(u64::from(p.decoded.payload_size), u64::from(p.orig_len) - u64::from(p.decoded.payload_offset));
}
