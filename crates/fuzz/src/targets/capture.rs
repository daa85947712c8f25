//! pcap and pcapng reading (`pidcap_pcapfile::PacketReader`), and what a
//! file that reads must also do: read the same when the bytes arrive a few
//! at a time, read a prefix of its packets when cut short, and survive
//! pidcap's own writers (written as pcapng and read back: the same packets;
//! written again: the same bytes; classic pcap: the same bytes and times).

use super::{outcome, shape};
use pidcap_packet::{decode, CapturedPacket, Direction, Verdict};
use pidcap_pcapfile::comment::{format_comment, ProcessInfo};
use pidcap_pcapfile::{
    read_packets, Format, PacketReader, PcapError, PcapWriter, PcapngWriter, WriterOptions, MAX_BLOCK_LEN,
};
use std::io::Read;

/// A reader that hands out at most `step` bytes per call (as a pipe or a
/// socket may), to check that the reader never relies on full reads.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.data.len().min(buf.len()).min(self.step);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Everything one read of a file gives: the format, the packets before the
/// first error, the error's text, the skipped-frame count.
#[derive(Debug, PartialEq)]
struct Read1 {
    format: Option<Format>,
    packets: Vec<CapturedPacket>,
    error: Option<String>,
    skipped: u64,
}

fn read_all(r: impl Read) -> Read1 {
    let mut reader = match PacketReader::new(r) {
        Ok(r) => r,
        Err(e) => return Read1 { format: None, packets: Vec::new(), error: Some(check_error(&e)), skipped: 0 },
    };
    let format = Some(reader.format());
    let (mut packets, mut error) = (Vec::new(), None);
    for item in reader.by_ref() {
        match item {
            Ok(p) => packets.push(p),
            Err(e) => {
                error = Some(check_error(&e));
                break;
            }
        }
    }
    assert!(reader.next().is_none(), "the reader goes on after {error:?}");
    Read1 { format, packets, error, skipped: reader.skipped() }
}

/// An error's text, checked: it names an offset for a format problem.
fn check_error(e: &PcapError) -> String {
    let text = e.to_string();
    if matches!(e, PcapError::Truncated { .. } | PcapError::Malformed { .. }) {
        assert!(text.contains("byte offset"), "a format error names its offset: {text}");
    }
    text
}

fn writer_options() -> WriterOptions {
    WriterOptions { snaplen: u32::MAX, application: String::new() }
}

fn write_pcapng(packets: &[CapturedPacket]) -> Vec<u8> {
    let mut w = PcapngWriter::with_os(Vec::new(), &writer_options(), None).expect("pcapng header into memory");
    for p in packets {
        w.write_packet(p).expect("pcapng packet into memory");
    }
    w.into_inner().expect("flush into memory")
}

/// What a packet becomes once pidcap's pcapng writer wrote it and its reader
/// read it back as frame `id`: the captured length never exceeds the length
/// on the wire, and the process fields survive only in a comment that fits
/// a pcapng option (65,535 bytes).
fn after_pcapng(p: &CapturedPacket, id: u64) -> CapturedPacket {
    let mut q = p.clone();
    q.id = id;
    q.orig_len = p.orig_len.max(p.data.len() as u32);
    if format_comment(&ProcessInfo::of(p)).len() > usize::from(u16::MAX) {
        (q.pid, q.comm, q.socket_cookie, q.verdict, q.rule) = (0, String::new(), 0, Verdict::Pass, None);
        (q.tid, q.thread, q.process) = (0, String::new(), None);
    }
    q
}

/// pidcap writes every packet as LINKTYPE_RAW, which its reader (like
/// Wireshark) reads only when the bytes start with an IPv4 or IPv6 version
/// nibble. Other frames (non-IP bytes of a LINKTYPE_IPV4 file, an Ethernet
/// frame whose IP header is garbage) cannot come back.
fn raw_readable(p: &CapturedPacket) -> bool {
    matches!(p.data.first().map(|b| b >> 4), Some(4 | 6))
}

/// Check everything about one read file; the outcome for the driver.
pub fn run(data: &[u8]) -> u64 {
    let full = read_all(data);

    // The same bytes, a few at a time: the same result, error included.
    let step = 1 + (data.len() % 7);
    assert_eq!(read_all(Trickle { data, step }), full, "reading {step} bytes at a time differs");
    match read_packets(data) {
        Ok(ps) => assert!(full.error.is_none() && ps == full.packets, "read_packets differs from the reader"),
        Err(e) => assert_eq!(Some(e.to_string()), full.error, "read_packets differs from the reader"),
    }

    // Frame numbers: increasing, from 1, counting the skipped frames.
    let mut last = 0;
    for p in &full.packets {
        assert!(p.id > last, "frame numbers go {last} then {}", p.id);
        last = p.id;
        assert!(p.data.len() <= MAX_BLOCK_LEN as usize);
        let mut want = decode(&p.data, p.direction);
        if p.is_tls() {
            // A TLS plaintext record's payload size is its plaintext's true length.
            want.payload_size = p.orig_len - want.payload_offset;
        }
        assert_eq!(p.decoded, want, "frame {} decoded twice differently", p.id);
    }
    assert!(last <= full.packets.len() as u64 + full.skipped, "frame {last} with {} skipped", full.skipped);

    // A file cut short reads a prefix of the packets.
    let cut = (super::hash(data) % (data.len() as u64 + 1)) as usize;
    let part = read_all(&data[..cut]);
    assert!(
        part.packets.len() <= full.packets.len() && part.packets[..] == full.packets[..part.packets.len()],
        "the first {cut} bytes read other packets than the whole file"
    );

    if !full.packets.is_empty() {
        round_trip(&full.packets);
    }
    outcome(&[
        full.format.map_or(0, |f| f as u64 + 1),
        shape(full.packets.len()),
        shape(full.skipped as usize),
        super::text_shape(full.error.as_deref().unwrap_or("")),
        full.packets
            .iter()
            .map(|p| u64::from(p.decoded.ip_version) << 8 | u64::from(p.decoded.protocol.number()))
            .sum(),
    ])
}

fn round_trip(packets: &[CapturedPacket]) {
    let (readable, lost): (Vec<&CapturedPacket>, Vec<&CapturedPacket>) = packets.iter().partition(|p| raw_readable(p));
    let readable: Vec<CapturedPacket> = readable.into_iter().cloned().collect();
    let first = write_pcapng(packets);
    let back = read_all(&first[..]);
    assert_eq!(back.error, None, "pidcap's own pcapng does not read back");
    assert_eq!(back.skipped, lost.len() as u64, "frames that are not IP are skipped, and only those");
    assert_eq!(back.packets.len(), readable.len());
    let numbers: Vec<u64> = (1..=packets.len() as u64).filter(|&i| raw_readable(&packets[i as usize - 1])).collect();
    for ((p, q), id) in readable.iter().zip(&back.packets).zip(numbers) {
        assert_eq!(q, &after_pcapng(p, id), "packet {} changed through pcapng", p.id);
    }
    // Written again from what was read: the same bytes.
    let again: Vec<CapturedPacket> = {
        let mut all = Vec::new();
        let mut it = back.packets.iter();
        for p in packets {
            // Frames that could not come back are written again as they were.
            all.push(if raw_readable(p) { it.next().cloned().unwrap_or_else(|| p.clone()) } else { p.clone() });
        }
        all
    };
    assert_eq!(write_pcapng(&again), first, "pcapng written twice differs");

    // Classic pcap keeps the bytes, the lengths and the time (to 2106).
    if packets.iter().all(|p| p.timestamp_ns / 1_000_000_000 <= u64::from(u32::MAX)) {
        let mut w = PcapWriter::new(Vec::new(), &writer_options()).expect("pcap header into memory");
        for p in packets {
            w.write_packet(p).expect("pcap record into memory");
        }
        let bytes = w.into_inner().expect("flush into memory");
        let back = read_all(&bytes[..]);
        assert_eq!(back.error, None, "pidcap's own pcap does not read back");
        // TLS plaintext records are left out of classic pcap.
        let kept: Vec<&CapturedPacket> = readable.iter().filter(|p| !p.is_tls()).collect();
        assert_eq!(back.packets.len(), kept.len());
        for (p, q) in kept.iter().zip(&back.packets) {
            let want = (&p.data, p.timestamp_ns, p.orig_len.max(p.data.len() as u32), Direction::Outbound, 0);
            assert_eq!((&q.data, q.timestamp_ns, q.orig_len, q.direction, q.pid), want, "packet {} through pcap", p.id);
        }
    }
}

/// Tokens of both formats: magic numbers, block types, option codes, link types.
pub const DICTIONARY: &[&[u8]] = &[
    b"\x0a\x0d\x0d\x0a",
    b"\x4d\x3c\x2b\x1a",
    b"\x1a\x2b\x3c\x4d",
    b"\xd4\xc3\xb2\xa1",
    b"\xa1\xb2\xc3\xd4",
    b"\x4d\x3c\xb2\xa1",
    b"\xa1\xb2\x3c\x4d",
    b"\x01\x00\x00\x00",
    b"\x03\x00\x00\x00",
    b"\x06\x00\x00\x00",
    b"\x02\x00\x00\x00",
    b"\x05\x00\x00\x00",
    b"\x09\x00\x01\x00",
    b"\x0e\x00\x08\x00",
    b"\x01\x00",
    b"\x65\x00",
    b"\xe4\x00",
    b"\xe5\x00",
    b"\x71\x00",
    b"\x14\x01",
    b"\x6c\x00",
    b"\x08\x00",
    b"\x86\xdd",
    b"\x81\x00",
    b"\x88\xa8",
    b"\x00\x00\x00\x00",
    b"\xff\xff\xff\xff",
    b"\x45\x00",
    b"\x60\x00\x00\x00",
    b"pid=",
    b" comm=",
    b" cookie=",
    b" verdict=blocked",
    b" rule=",
    b"\\x20",
];
