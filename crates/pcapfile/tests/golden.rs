//! Golden-file, round-trip and hostile-input tests.
//!
//! The golden files `tests/data/golden.pcapng` and `tests/data/golden.pcap`
//! are written from [`common::golden_packets`] (fixed timestamps, a fixed
//! `shb_os`). When the writer changes on purpose, regenerate them with
//!
//! ```text
//! PIDCAP_BLESS=1 cargo test -p pidcap-pcapfile --test golden
//! ```
//!
//! and review the diff (`tshark -r crates/pcapfile/tests/data/golden.pcapng -V`).

mod common;

use common::{golden_packets, golden_path, GOLDEN_OS};
use pidcap_packet::Direction;
use pidcap_pcapfile::{
    read_packets, Format, PacketReader, PacketWriter, PcapError, PcapWriter, PcapngWriter, WriterOptions,
};

fn opts() -> WriterOptions {
    WriterOptions { snaplen: 65535, application: "pidcap 0.1.0".into() }
}

fn write_pcapng() -> Vec<u8> {
    let mut w = PcapngWriter::with_os(Vec::new(), &opts(), Some(GOLDEN_OS)).expect("header");
    for p in golden_packets() {
        w.write_packet(&p).expect("packet");
    }
    w.into_inner().expect("into_inner")
}

fn write_pcap() -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), &opts()).expect("header");
    for p in golden_packets() {
        w.write_packet(&p).expect("packet");
    }
    w.into_inner().expect("into_inner")
}

fn check_golden(name: &str, bytes: &[u8]) {
    let path = golden_path(name);
    if std::env::var_os("PIDCAP_BLESS").is_some() {
        std::fs::write(&path, bytes).expect("writing golden file");
        return;
    }
    let golden =
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (regenerate with PIDCAP_BLESS=1)", path.display()));
    if golden != bytes {
        let at = golden.iter().zip(bytes).position(|(a, b)| a != b).unwrap_or(golden.len().min(bytes.len()));
        panic!(
            "{name} differs from the golden file at byte {at} (golden {} bytes, now {} bytes); \
             if the change is intended, regenerate with PIDCAP_BLESS=1",
            golden.len(),
            bytes.len()
        );
    }
}

#[test]
fn pcapng_matches_golden_file() {
    check_golden("golden.pcapng", &write_pcapng());
}

#[test]
fn pcap_matches_golden_file() {
    check_golden("golden.pcap", &write_pcap());
}

#[test]
fn pcapng_layout_is_as_documented() {
    let b = write_pcapng();
    assert_eq!(&b[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);
    assert_eq!(&b[8..12], &0x1a2b3c4du32.to_le_bytes());
    assert_eq!(&b[12..16], &[1, 0, 0, 0], "version 1.0");
    assert_eq!(&b[16..24], &[0xff; 8], "section length -1");
    let text = String::from_utf8_lossy(&b);
    assert!(text.contains("pidcap 0.1.0") && text.contains(GOLDEN_OS));
    // Each process once, in its interface's name and description; on each packet what is its own.
    for (name, desc) in [
        ("curl[4242]", "pid=4242 comm=curl"),
        ("wget[555]", "pid=555 comm=wget"),
        ("Web Content[9001]", "pid=9001 comm=Web\\x20Content"),
    ] {
        assert_eq!(text.matches(name).count(), 1, "{name}");
        assert_eq!(text.matches(desc).count(), 1, "{desc}");
    }
    assert_eq!(text.matches("tid=0 thread= cookie=8812").count(), 3, "the thread unknown, on every packet of curl");
    assert!(text.contains("tid=0 thread= cookie=9000 verdict=blocked rule=3"));
    assert!(text.contains("tid=0 thread= cookie=1 rule=0"));
    assert!(!text.contains("verdict=pass"), "pass is the default");
}

#[test]
fn pcapng_round_trip_keeps_every_field() {
    let back = read_packets(&write_pcapng()[..]).expect("read back");
    assert_eq!(back, golden_packets());
    // The golden file itself reads back the same, and so does the file of
    // the same packets in the older form (the whole process in every
    // packet's comment, one interface: pidcap before issue 13).
    for name in ["golden.pcapng", "golden-v1.pcapng"] {
        let file = std::fs::read(golden_path(name)).expect("golden file");
        assert_eq!(read_packets(&file[..]).expect("read golden"), golden_packets(), "{name}");
    }
}

#[test]
fn pcap_round_trip_keeps_bytes_and_times_only() {
    let bytes = write_pcap();
    let mut r = PacketReader::new(&bytes[..]).expect("header");
    assert_eq!(r.format(), Format::Pcap);
    let back: Vec<_> = r.by_ref().collect::<Result<_, _>>().expect("read back");
    assert_eq!(r.skipped(), 0);
    let want = golden_packets();
    assert_eq!(back.len(), want.len());
    for (b, w) in back.iter().zip(&want) {
        assert_eq!((b.id, b.timestamp_ns, b.orig_len, &b.data), (w.id, w.timestamp_ns, w.orig_len, &w.data));
        assert_eq!((b.pid, b.comm.as_str(), b.socket_cookie, b.rule), (0, "", 0, None), "classic pcap has no process");
        assert_eq!(b.direction, Direction::Outbound, "documented default");
    }
}

#[test]
fn packet_writer_picks_the_format_at_run_time() {
    for format in [Format::Pcap, Format::Pcapng] {
        let mut w = PacketWriter::new(format, Vec::new(), &opts()).expect("header");
        assert_eq!(w.format(), format);
        for p in golden_packets() {
            w.write_packet(&p).expect("packet");
        }
        w.flush().expect("flush");
        let bytes = w.into_inner().expect("into_inner");
        let r = PacketReader::new(&bytes[..]).expect("header");
        assert_eq!(r.format(), format);
        assert_eq!(r.count(), 6);
    }
}

#[test]
fn snaplen_cuts_captured_bytes_but_keeps_orig_len() {
    let o = WriterOptions { snaplen: 30, application: String::new() };
    let mut w = PcapngWriter::new(Vec::new(), &o).expect("header");
    let p = &golden_packets()[0];
    w.write_packet(p).expect("packet");
    let back = read_packets(&w.into_inner().expect("bytes")[..]).expect("read");
    assert_eq!(back[0].data, p.data[..30]);
    assert_eq!(back[0].orig_len, p.orig_len);
}

#[test]
fn pcap_rejects_timestamps_after_2106() {
    let mut p = golden_packets().remove(0);
    p.timestamp_ns = u64::MAX;
    let mut w = PcapWriter::new(Vec::new(), &opts()).expect("header");
    let e = w.write_packet(&p).expect_err("out of range");
    assert!(e.to_string().contains("32-bit seconds"), "{e}");
}

#[test]
fn errors_name_the_block_and_offset() {
    let b = write_pcapng();
    // Offsets of the blocks: walk the little-endian lengths.
    let mut offsets = vec![0usize];
    while let Some(&o) = offsets.last() {
        let len = u32::from_le_bytes(b[o + 4..o + 8].try_into().expect("4 bytes")) as usize;
        if o + len >= b.len() {
            break;
        }
        offsets.push(o + len);
    }
    assert_eq!(offsets.len(), 12, "SHB, IDB, 6 EPBs and the IDBs of their 4 processes");
    // SHB, IDB 0, curl's IDB, EPB, EPB, resolved's IDB, EPB.
    let third_epb = offsets[6];
    let e = read_packets(&b[..third_epb + 30]).expect_err("truncated");
    assert!(matches!(e, PcapError::Truncated { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.starts_with(&format!("truncated pcapng Enhanced Packet Block at byte offset {third_epb}:")), "{msg}");

    let mut bad = b.clone();
    bad[third_epb + 4] = 0x03; // length no longer a multiple of 4
    let msg = read_packets(&bad[..]).expect_err("malformed").to_string();
    assert!(
        msg.starts_with(&format!("malformed pcapng Enhanced Packet Block at byte offset {third_epb}: block length")),
        "{msg}"
    );

    assert!(matches!(read_packets(&b""[..]), Err(PcapError::Empty)));
    let msg = read_packets(&b"GIF89a"[..]).expect_err("not pcap").to_string();
    assert!(msg.contains("unknown magic number"), "{msg}");
    let p = write_pcap();
    let msg = read_packets(&p[..p.len() - 1]).expect_err("cut").to_string();
    assert!(msg.starts_with("truncated pcap record #6 at byte offset"), "{msg}");
}

/// xorshift64: deterministic randomness without a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Reading must end in Ok or Err, never panic; the reader is drained fully.
fn read_all(bytes: &[u8]) -> Result<usize, PcapError> {
    let mut r = PacketReader::new(bytes)?;
    let mut n = 0;
    for p in r.by_ref() {
        p?;
        n += 1;
    }
    let _ = r.skipped();
    Ok(n)
}

#[test]
fn hostile_input_never_panics() {
    for golden in [write_pcapng(), write_pcap()] {
        for n in 0..golden.len() {
            match read_all(&golden[..n]) {
                Ok(count) => assert!(count < 6, "a cut file cannot hold every packet"),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let mut b = golden.clone();
            let flips = 1 + rng.next() % 4;
            for _ in 0..flips {
                let at = (rng.next() % b.len() as u64) as usize;
                // Half the time a random byte, otherwise an extreme one (lengths!).
                b[at] = if rng.next().is_multiple_of(2) {
                    rng.next() as u8
                } else {
                    [0x00, 0xff, 0x7f, 0x80][(rng.next() % 4) as usize]
                };
            }
            let cut = if rng.next().is_multiple_of(8) { (rng.next() % b.len() as u64) as usize } else { b.len() };
            let _ = read_all(&b[..cut]);
        }
    }
    // Pure noise behind each magic.
    let mut rng = XorShift(42);
    for magic in
        [[0x0a, 0x0d, 0x0d, 0x0a], [0xd4, 0xc3, 0xb2, 0xa1], [0x4d, 0x3c, 0xb2, 0xa1], [0xa1, 0xb2, 0xc3, 0xd4]]
    {
        for _ in 0..2_000 {
            let len = (rng.next() % 200) as usize;
            let mut b = magic.to_vec();
            b.extend((0..len).map(|_| rng.next() as u8));
            let _ = read_all(&b);
        }
    }
}

#[test]
fn a_packet_above_the_block_limit_is_cut_and_still_readable() {
    let mut p = golden_packets().remove(0);
    p.data.resize(17 << 20, 0x55);
    p.orig_len = p.data.len() as u32;
    let o = WriterOptions { snaplen: u32::MAX, application: String::new() };
    let mut w = PcapngWriter::new(Vec::new(), &o).expect("header");
    w.write_packet(&p).expect("packet");
    let back = read_packets(&w.into_inner().expect("bytes")[..]).expect("own output reads back");
    assert!(back[0].data.len() < 16 << 20);
    assert_eq!(back[0].orig_len, p.orig_len);
}
