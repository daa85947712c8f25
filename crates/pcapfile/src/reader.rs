//! Reading pcap and pcapng files back into [`CapturedPacket`]s.
//!
//! # Accepted input
//!
//! * The format is detected from the first four bytes: pcapng (Section
//!   Header Block), or classic pcap with the microsecond (`0xa1b2c3d4`) or
//!   nanosecond (`0xa1b23c4d`) magic, in either byte order.
//! * pcapng: any number of sections (each with its own byte order) and
//!   interfaces; `if_tsresol` in both the 10^-n and 2^-n forms (default
//!   10^-6) and `if_tsoffset`; Enhanced, Simple and (obsolete) Packet Blocks.
//!   Every other block type is skipped.
//! * Link types: RAW (101, and 12), IPV4 (228), IPV6 (229), ETHERNET (1; the
//!   14-byte header and any 802.1Q / 802.1ad tags are stripped, only the IPv4
//!   and IPv6 ethertypes are kept), LINUX_SLL (113), LINUX_SLL2 (276),
//!   NULL (0) and LOOP (108). Frames that are not IP, or on an interface with
//!   another link type, are skipped: counted in [`PacketReader::skipped`],
//!   and listed with the reason ([`SkipReason`]) in
//!   [`PacketReader::skipped_frames`].
//!
//! # Mapping to [`CapturedPacket`]
//!
//! * `id` is the frame number in the file, 1-based, counting skipped frames
//!   too, so it matches Wireshark's `frame.number`.
//! * pid, comm, socket cookie, verdict and rule come from the first
//!   `opt_comment` that parses as ours (grammar in [`crate::comment`]);
//!   without one they are 0, `""`, 0, pass and none. On an interface whose
//!   `if_description` is a pidcap process ([`crate::comment::parse_process`],
//!   files since issue 13) the process is the interface's and the comment
//!   adds the per-packet fields ([`crate::comment::parse_packet_comment`]).
//! * The direction comes from `epb_flags` bits 0-1 (01 inbound, 10 outbound);
//!   without them from the LINUX_SLL/SLL2 packet type (host, broadcast,
//!   multicast: inbound; outgoing: outbound); otherwise it is **Outbound**
//!   (classic pcap files therefore read as all-outbound).
//! * `orig_len` and `data` exclude the stripped link-layer header.
//!
//! # TLS
//!
//! * A frame on an Exported PDU interface (`LINKTYPE_WIRESHARK_UPPER_PDU`,
//!   252) whose comment has pidcap's TLS fields (`tls=LIBRARY
//!   offset=N`, see [`crate::comment::TlsComment`]) is a TLS plaintext record:
//!   it is read back into [`CapturedPacket::tls_record`] with its
//!   connection from the PDU's address and port tags (see [`crate::tls`]).
//!   Other Exported PDU frames are skipped (link type 252); one of ours whose
//!   tags do not parse is skipped as [`SkipReason::BadTlsRecord`].
//! * Decryption Secrets Blocks of the TLS key log type are kept:
//!   [`PacketReader::keylog`], [`Contents::keylog`] (bad lines counted, never
//!   an error); other secrets types are skipped. A DSB whose secrets length
//!   does not fit its block is malformed.
//!
//! # Hostile input
//!
//! Nothing here panics on any input. A block or record longer than
//! [`MAX_BLOCK_LEN`] (16 MiB) is an error, every length is checked against
//! what is left of its block, buffers only grow as bytes actually arrive,
//! and a truncated file is an error naming the byte offset of the block or
//! record it ends in. After the first error the iterator ends.
//!
//! # A file cut short
//!
//! A file whose end was cut (a capture still being written, a full disk, a
//! partial download) ends inside its last block: the iterator yields every
//! complete frame, then [`PcapError::Truncated`]. [`PacketReader::read_to_end`]
//! keeps what is complete and says where the file was cut ([`Contents::cut`]),
//! as tshark does.

use crate::comment::{parse_comment, parse_packet_comment, parse_process, parse_tls, ProcessInfo, TlsComment};
use crate::keylog::{parse_text, KeyLogLine};
use crate::pcap::{MAGIC_NS, MAGIC_US};
use crate::pcapng::{
    BT_DSB, BT_EPB, BT_IDB, BT_SHB, BYTE_ORDER_MAGIC, FLAG_INBOUND, FLAG_OUTBOUND, SECRETS_TLS_KEY_LOG,
};
use crate::tls::{parse_pdu, LINKTYPE_UPPER_PDU};
use crate::{Format, PcapError, MAX_BLOCK_LEN};
use pidcap_packet::{CapturedPacket, Direction, TlsRecord};
use std::io::{Chain, Cursor, ErrorKind, Read};
use std::ops::RangeInclusive;

const BT_PB: u32 = 2;
const BT_SPB: u32 = 3;
/// Most interfaces accepted in one pcapng section.
const MAX_INTERFACES: usize = 1 << 16;

/// Why a frame of a file was skipped (it has a frame number, but no packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The frame's interface (or the pcap file) has a link type this reader
    /// does not strip (see the module documentation for those it does).
    LinkType(u16),
    /// The frame carries something else than IPv4 or IPv6: `protocol` is the
    /// ethertype (Ethernet, SLL), the address family (NULL, LOOP) or the IP
    /// version nibble (RAW), as the link layer says.
    NotIp { linktype: u16, protocol: Option<u32> },
    /// The frame is shorter than its link-layer header.
    Short { linktype: u16 },
    /// A TLS plaintext record of pidcap's (its comment says so) whose
    /// Exported PDU tags do not parse.
    BadTlsRecord,
}

/// A name for a link type, where it is a common one.
fn linktype_name(linktype: u16) -> Option<&'static str> {
    Some(match linktype {
        0 => "NULL",
        1 => "ETHERNET",
        9 => "PPP",
        12 | 101 => "RAW",
        50 => "PPP_HDLC",
        105 => "IEEE802_11",
        108 => "LOOP",
        113 => "LINUX_SLL",
        127 => "IEEE802_11_RADIOTAP",
        187 => "BLUETOOTH_HCI_H4",
        189 | 220 => "USB_LINUX",
        195 => "IEEE802_15_4",
        228 => "IPV4",
        229 => "IPV6",
        276 => "LINUX_SLL2",
        _ => return None,
    })
}

fn ethertype_name(t: u32) -> Option<&'static str> {
    Some(match t {
        0x0806 => "ARP",
        0x8035 => "RARP",
        0x22f0 => "AVTP",
        0x8808 => "Ethernet flow control",
        0x8847 | 0x8848 => "MPLS",
        0x8863 | 0x8864 => "PPPoE",
        0x888e => "EAPOL",
        0x88cc => "LLDP",
        0x88e5 => "MACsec",
        0x88f7 => "PTP",
        0x8906 => "FCoE",
        0x9000 => "loopback test",
        t if t < 0x0600 => "an 802.3 length field: LLC, e.g. STP",
        _ => return None,
    })
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let lt = |f: &mut std::fmt::Formatter<'_>, linktype: u16| match (linktype, linktype_name(linktype)) {
            (_, Some(name)) => write!(f, "link type {linktype} ({name})"),
            (147..=162, None) => write!(f, "link type {linktype} (USER{})", linktype - 147),
            (_, None) => write!(f, "link type {linktype}"),
        };
        match *self {
            SkipReason::LinkType(linktype) => {
                lt(f, linktype)?;
                f.write_str(" is not one pidcap reads (it reads RAW, IPV4, IPV6, ETHERNET, LINUX_SLL, LINUX_SLL2, NULL and LOOP)")
            }
            SkipReason::NotIp { linktype, protocol } => {
                f.write_str("not an IPv4 or IPv6 packet")?;
                match (linktype, protocol) {
                    (1 | 113 | 276, Some(t)) => match ethertype_name(t) {
                        Some(name) => write!(f, " (ethertype 0x{t:04x}, {name})"),
                        None => write!(f, " (ethertype 0x{t:04x})"),
                    },
                    (0 | 108, Some(family)) => write!(f, " (address family {family})"),
                    (_, Some(version)) => write!(f, " (IP version {version})"),
                    (_, None) => Ok(()),
                }
            }
            SkipReason::Short { linktype } => {
                f.write_str("shorter than its link-layer header (")?;
                lt(f, linktype)?;
                f.write_str(")")
            }
            SkipReason::BadTlsRecord => f.write_str("a TLS plaintext record whose Exported PDU tags are malformed"),
        }
    }
}

/// Consecutive frames skipped for the same reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Frame numbers, from 1, as Wireshark counts them.
    pub frames: RangeInclusive<u64>,
    pub reason: SkipReason,
}

/// Frame numbers as a short list: `2, 5-9, 12`, at most `max` runs (then `and N more`).
fn frame_list<'a>(runs: impl Iterator<Item = &'a RangeInclusive<u64>>, max: usize) -> String {
    let runs: Vec<_> = runs.collect();
    let mut parts: Vec<String> = runs
        .iter()
        .take(max)
        .map(|r| if r.start() == r.end() { r.start().to_string() } else { format!("{}-{}", r.start(), r.end()) })
        .collect();
    if runs.len() > max {
        let more: u64 = runs[max..].iter().map(|r| r.end() - r.start() + 1).sum();
        parts.push(format!("and {more} more"));
    }
    parts.join(", ")
}

/// One line per reason: `frames 2, 4-5 skipped: not an IPv4 or IPv6 packet
/// (ethertype 0x0806, ARP)` (`frame 2 skipped: ...` for one frame), reasons
/// in order of their first frame.
pub fn describe_skipped(skipped: &[Skipped]) -> Vec<String> {
    let mut reasons: Vec<SkipReason> = Vec::new();
    for s in skipped {
        if !reasons.contains(&s.reason) {
            reasons.push(s.reason);
        }
    }
    reasons
        .into_iter()
        .map(|reason| {
            let runs: Vec<&RangeInclusive<u64>> =
                skipped.iter().filter(|s| s.reason == reason).map(|s| &s.frames).collect();
            let one = runs.len() == 1 && runs[0].start() == runs[0].end();
            let list = frame_list(runs.into_iter(), 10);
            format!("{} {list} skipped: {reason}", if one { "frame" } else { "frames" })
        })
        .collect()
}

/// What [`PacketReader::read_to_end`] read.
#[derive(Debug)]
pub struct Contents {
    /// The packets, their `id` the frame number.
    pub packets: Vec<CapturedPacket>,
    /// Frames read, skipped ones included (the last frame's number).
    pub frames: u64,
    /// The frames that are not in `packets`, and why.
    pub skipped: Vec<Skipped>,
    /// Set when the file ends inside a block or record: the
    /// [`PcapError::Truncated`] that says where. Everything before it was read.
    pub cut: Option<PcapError>,
    /// The TLS key log lines of the file's Decryption Secrets Blocks, in order.
    pub keylog: Vec<KeyLogLine>,
    /// Lines of those blocks that are not valid key log lines (ignored).
    pub keylog_bad: u64,
}

/// Read every packet of a pcap or pcapng file (format auto-detected).
pub fn read_packets<R: Read>(r: R) -> Result<Vec<CapturedPacket>, PcapError> {
    PacketReader::new(r)?.collect()
}

/// Byte order of the current file or section.
#[derive(Debug, Clone, Copy)]
struct Endian {
    big: bool,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let a: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(if self.big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }

    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let a: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(if self.big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }

    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let a: [u8; 8] = b.get(at..at.checked_add(8)?)?.try_into().ok()?;
        Some(if self.big { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Endian { big: true }.u16(b, at)
}

/// Read until `buf` is full or the input ends; the count read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The input with the offset of the next byte.
struct Source<R> {
    r: R,
    offset: u64,
}

impl<R: Read> Source<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, PcapError> {
        let n = read_full(&mut self.r, buf).map_err(|source| PcapError::ReadIo { offset: self.offset, source })?;
        self.offset += n as u64;
        Ok(n)
    }

    /// Up to `n` bytes; the buffer grows with what arrives, never to a claimed length.
    fn take(&mut self, n: usize) -> Result<Vec<u8>, PcapError> {
        let mut v = Vec::new();
        (&mut self.r)
            .take(n as u64)
            .read_to_end(&mut v)
            .map_err(|source| PcapError::ReadIo { offset: self.offset, source })?;
        self.offset += v.len() as u64;
        Ok(v)
    }
}

/// Timestamp resolution of a pcapng interface.
#[derive(Debug, Clone, Copy)]
enum TsResol {
    Pow10(u8),
    Pow2(u8),
}

#[derive(Debug, Clone)]
struct Interface {
    linktype: u16,
    snaplen: u32,
    resol: TsResol,
    /// `if_tsoffset`, seconds.
    offset_s: i64,
    /// The process a pidcap process interface describes (its
    /// `if_description`, [`crate::comment::parse_process`]).
    process: Option<ProcessInfo>,
}

impl Interface {
    fn to_ns(&self, ts: u64) -> u64 {
        let ns: u128 = match self.resol {
            TsResol::Pow10(n) if n <= 9 => u128::from(ts) * 10u128.pow(u32::from(9 - n)),
            TsResol::Pow10(n) => 10u128.checked_pow(u32::from(n - 9)).map_or(0, |d| u128::from(ts) / d),
            TsResol::Pow2(n) => (u128::from(ts) * 1_000_000_000) >> n.min(127),
        };
        let ns = ns as i128 + i128::from(self.offset_s) * 1_000_000_000;
        ns.clamp(0, i128::from(u64::MAX)) as u64
    }
}

enum Kind {
    Pcap { endian: Endian, nanos: bool, linktype: u16 },
    Pcapng { endian: Endian, interfaces: Vec<Interface> },
}

/// A frame as stored, before the link layer is stripped.
struct Frame<'a> {
    linktype: u16,
    timestamp_ns: u64,
    orig_len: u32,
    data: &'a [u8],
    info: Option<ProcessInfo>,
    tls: Option<TlsComment>,
    flags: Option<u32>,
}

/// One pcapng block: type, offset of its first byte, body between the
/// 8-byte header and the 4-byte trailer.
struct RawBlock {
    block_type: u32,
    offset: u64,
    body: Vec<u8>,
}

fn block_name(block_type: u32) -> String {
    let name = match block_type {
        BT_SHB => "Section Header Block",
        BT_IDB => "Interface Description Block",
        BT_PB => "Packet Block",
        BT_SPB => "Simple Packet Block",
        BT_EPB => "Enhanced Packet Block",
        BT_DSB => "Decryption Secrets Block",
        _ => return format!("pcapng block of type 0x{block_type:08x}"),
    };
    format!("pcapng {name}")
}

/// Streams the packets of a pcap or pcapng file (format auto-detected).
pub struct PacketReader<R: Read> {
    src: Source<Chain<Cursor<[u8; 4]>, R>>,
    format: Format,
    kind: Kind,
    frames: u64,
    skipped: u64,
    skipped_frames: Vec<Skipped>,
    keylog: Vec<KeyLogLine>,
    keylog_bad: u64,
    done: bool,
}

impl<R: Read> std::fmt::Debug for PacketReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketReader")
            .field("format", &self.format)
            .field("offset", &self.src.offset)
            .field("frames", &self.frames)
            .field("skipped", &self.skipped)
            .finish_non_exhaustive()
    }
}

impl<R: Read> PacketReader<R> {
    /// Detect the format and read the file header (pcap) or first Section
    /// Header Block (pcapng).
    pub fn new(mut r: R) -> Result<PacketReader<R>, PcapError> {
        let mut magic = [0u8; 4];
        let n = read_full(&mut r, &mut magic).map_err(|source| PcapError::ReadIo { offset: 0, source })?;
        match n {
            0 => return Err(PcapError::Empty),
            1..=3 => {
                let what = "file header".to_string();
                return Err(PcapError::Truncated { what, offset: 0, needed: 4, available: n as u64 });
            }
            _ => {}
        }
        let src = Source { r: Cursor::new(magic).chain(r), offset: 0 };
        let (le, be) = (u32::from_le_bytes(magic), u32::from_be_bytes(magic));
        let (format, kind) = if le == BT_SHB {
            (Format::Pcapng, Kind::Pcapng { endian: Endian { big: false }, interfaces: Vec::new() })
        } else if [MAGIC_US, MAGIC_NS].contains(&le) || [MAGIC_US, MAGIC_NS].contains(&be) {
            let endian = Endian { big: !(le == MAGIC_US || le == MAGIC_NS) };
            (Format::Pcap, Kind::Pcap { endian, nanos: le == MAGIC_NS || be == MAGIC_NS, linktype: 0 })
        } else {
            return Err(PcapError::UnknownMagic { magic });
        };
        let mut reader = PacketReader {
            src,
            format,
            kind,
            frames: 0,
            skipped: 0,
            skipped_frames: Vec::new(),
            keylog: Vec::new(),
            keylog_bad: 0,
            done: false,
        };
        match reader.format {
            Format::Pcap => reader.read_pcap_header()?,
            Format::Pcapng => {
                // The magic guarantees a Section Header Block comes first.
                if let Some(block) = reader.read_block()? {
                    reader.handle_block(block)?;
                }
            }
        }
        Ok(reader)
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// How many frames were skipped so far (not IP, or unsupported link type).
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The frames skipped so far and why, consecutive frames with one reason
    /// in one run (so this stays short for a file of one unsupported link type).
    pub fn skipped_frames(&self) -> &[Skipped] {
        &self.skipped_frames
    }

    /// Frames read so far, skipped ones included: the last frame's number.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The TLS key log lines of the Decryption Secrets Blocks read so far.
    pub fn keylog(&self) -> &[KeyLogLine] {
        &self.keylog
    }

    /// Lines of those blocks that were not valid key log lines.
    pub fn keylog_bad_lines(&self) -> u64 {
        self.keylog_bad
    }

    /// Read the rest of the file: every packet, the skipped frames, and, when
    /// the file ends inside a block or record, where it was cut
    /// ([`Contents::cut`]) instead of an error. Any other error (a malformed
    /// block, an I/O error) is returned.
    pub fn read_to_end(mut self) -> Result<Contents, PcapError> {
        let mut packets = Vec::new();
        let mut cut = None;
        for p in self.by_ref() {
            match p {
                Ok(p) => packets.push(p),
                Err(e @ PcapError::Truncated { .. }) => cut = Some(e),
                Err(e) => return Err(e),
            }
        }
        Ok(Contents {
            packets,
            frames: self.frames,
            skipped: self.skipped_frames,
            cut,
            keylog: self.keylog,
            keylog_bad: self.keylog_bad,
        })
    }

    fn read_pcap_header(&mut self) -> Result<(), PcapError> {
        let mut h = [0u8; 24];
        let n = self.src.fill(&mut h)?;
        let what = || "pcap file header".to_string();
        if n < 24 {
            return Err(PcapError::Truncated { what: what(), offset: 0, needed: 24, available: n as u64 });
        }
        let Kind::Pcap { endian, linktype, .. } = &mut self.kind else { return Ok(()) };
        let (major, minor) = (endian.u16(&h, 4).unwrap_or(0), endian.u16(&h, 6).unwrap_or(0));
        if major != 2 {
            return Err(PcapError::Malformed {
                what: what(),
                offset: 0,
                reason: format!("unsupported version {major}.{minor} (expected 2.x)"),
            });
        }
        // The upper 16 bits of the link-type field carry FCS information.
        *linktype = endian.u32(&h, 20).unwrap_or(0) as u16;
        Ok(())
    }

    /// The next pcap record: `Ok(None)` at the end of the file.
    fn read_record(&mut self) -> Result<Option<Option<CapturedPacket>>, PcapError> {
        let Kind::Pcap { endian, nanos, linktype } = self.kind else { return Ok(None) };
        let offset = self.src.offset;
        let number = self.frames + 1;
        let mut h = [0u8; 16];
        let n = self.src.fill(&mut h)?;
        if n == 0 {
            return Ok(None);
        }
        let what = |part: &str| format!("pcap record #{number}{part}");
        if n < 16 {
            return Err(PcapError::Truncated { what: what(" header"), offset, needed: 16, available: n as u64 });
        }
        let field = |i: usize| endian.u32(&h, 4 * i).unwrap_or(0);
        let (secs, frac, caplen, orig_len) = (field(0), field(1), field(2), field(3));
        if caplen > MAX_BLOCK_LEN {
            let reason = format!("captured length {caplen} is above the {MAX_BLOCK_LEN}-byte limit");
            return Err(PcapError::Malformed { what: what(""), offset, reason });
        }
        let data = self.src.take(caplen as usize)?;
        if data.len() < caplen as usize {
            let (needed, available) = (16 + u64::from(caplen), 16 + data.len() as u64);
            return Err(PcapError::Truncated { what: what(""), offset, needed, available });
        }
        let frac_ns = if nanos { u64::from(frac) } else { u64::from(frac) * 1000 };
        let timestamp_ns = u64::from(secs) * 1_000_000_000 + frac_ns;
        let frame = Frame { linktype, timestamp_ns, orig_len, data: &data, info: None, tls: None, flags: None };
        Ok(Some(self.packet(frame)))
    }

    /// The next pcapng block: `Ok(None)` at the end of the file.
    fn read_block(&mut self) -> Result<Option<RawBlock>, PcapError> {
        let Kind::Pcapng { endian, .. } = &mut self.kind else { return Ok(None) };
        let offset = self.src.offset;
        let mut head = [0u8; 12];
        let n = self.src.fill(&mut head[..8])?;
        if n == 0 {
            return Ok(None);
        }
        if n < 8 {
            let what = "pcapng block header".to_string();
            return Err(PcapError::Truncated { what, offset, needed: 8, available: n as u64 });
        }
        let mut have = 8usize;
        if head[..4] == BT_SHB.to_le_bytes() {
            // A new section: its byte-order magic sets the byte order.
            let what = block_name(BT_SHB);
            let n = self.src.fill(&mut head[8..12])?;
            have += n;
            if n < 4 {
                return Err(PcapError::Truncated { what, offset, needed: 12, available: have as u64 });
            }
            endian.big = if head[8..12] == BYTE_ORDER_MAGIC.to_le_bytes() {
                false
            } else if head[8..12] == BYTE_ORDER_MAGIC.to_be_bytes() {
                true
            } else {
                let reason = format!("unknown byte-order magic {:02x?}", &head[8..12]);
                return Err(PcapError::Malformed { what, offset, reason });
            };
        }
        let endian = *endian;
        let block_type = endian.u32(&head, 0).unwrap_or(0);
        let total = endian.u32(&head, 4).unwrap_or(0);
        let what = block_name(block_type);
        let min = if block_type == BT_SHB { 28 } else { 12 };
        let problem = if total < min {
            Some(format!("block length {total} is below the {min}-byte minimum"))
        } else if total % 4 != 0 {
            Some(format!("block length {total} is not a multiple of 4"))
        } else if total > MAX_BLOCK_LEN {
            Some(format!("block length {total} is above the {MAX_BLOCK_LEN}-byte limit"))
        } else {
            None
        };
        if let Some(reason) = problem {
            return Err(PcapError::Malformed { what, offset, reason });
        }
        let total = total as usize;
        let rest = self.src.take(total - have)?;
        if rest.len() < total - have {
            let (needed, available) = (total as u64, (have + rest.len()) as u64);
            return Err(PcapError::Truncated { what, offset, needed, available });
        }
        let trailer = endian.u32(&rest, rest.len() - 4).unwrap_or(0);
        if trailer as usize != total {
            let reason = format!("trailing block length {trailer} differs from the leading {total}");
            return Err(PcapError::Malformed { what, offset, reason });
        }
        let mut body = head[8..have].to_vec();
        body.extend_from_slice(&rest[..rest.len() - 4]);
        Ok(Some(RawBlock { block_type, offset, body }))
    }

    /// Interpret one pcapng block; `Some` for a packet that is kept.
    fn handle_block(&mut self, block: RawBlock) -> Result<Option<CapturedPacket>, PcapError> {
        let Kind::Pcapng { endian, interfaces } = &mut self.kind else { return Ok(None) };
        let endian = *endian;
        let RawBlock { block_type, offset, body } = block;
        let malformed = |reason: String| PcapError::Malformed { what: block_name(block_type), offset, reason };
        let body_offset = offset + 8;
        let short = || malformed("block body too short for its fixed fields".to_string());
        match block_type {
            BT_SHB => {
                let (major, minor) = (endian.u16(&body, 4).ok_or_else(short)?, endian.u16(&body, 6).ok_or_else(short)?);
                if major != 1 {
                    return Err(malformed(format!("unsupported pcapng version {major}.{minor} (expected 1.x)")));
                }
                interfaces.clear();
                Ok(None)
            }
            BT_IDB => {
                let linktype = endian.u16(&body, 0).ok_or_else(short)?;
                let snaplen = endian.u32(&body, 4).ok_or_else(short)?;
                let mut iface = Interface { linktype, snaplen, resol: TsResol::Pow10(6), offset_s: 0, process: None };
                for (code, value) in options(endian, &body[8.min(body.len())..], body_offset + 8).map_err(malformed)? {
                    match (code, value) {
                        (9, [v, ..]) if v & 0x80 != 0 => iface.resol = TsResol::Pow2(v & 0x7f),
                        (9, [v, ..]) => iface.resol = TsResol::Pow10(*v),
                        (14, _) => iface.offset_s = endian.u64(value, 0).map_or(0, |v| v as i64),
                        (3, _) if linktype != LINKTYPE_UPPER_PDU && iface.process.is_none() => {
                            iface.process = std::str::from_utf8(value).ok().and_then(parse_process);
                        }
                        _ => {}
                    }
                }
                if interfaces.len() >= MAX_INTERFACES {
                    return Err(malformed(format!("more than {MAX_INTERFACES} interfaces in one section")));
                }
                interfaces.push(iface);
                Ok(None)
            }
            BT_EPB | BT_PB | BT_SPB => {
                let (iface_id, ts, caplen, orig_len, data_at) = if block_type == BT_SPB {
                    let orig_len = endian.u32(&body, 0).ok_or_else(short)?;
                    let snaplen = interfaces.first().map_or(0, |i| i.snaplen);
                    let mut caplen = orig_len.min(body.len().saturating_sub(4) as u32);
                    if snaplen != 0 {
                        caplen = caplen.min(snaplen);
                    }
                    (0, 0, caplen, orig_len, 4)
                } else {
                    let iface_id = if block_type == BT_EPB {
                        endian.u32(&body, 0).ok_or_else(short)?
                    } else {
                        endian.u16(&body, 0).ok_or_else(short)?.into()
                    };
                    let ts_hi = endian.u32(&body, 4).ok_or_else(short)?;
                    let ts_lo = endian.u32(&body, 8).ok_or_else(short)?;
                    let caplen = endian.u32(&body, 12).ok_or_else(short)?;
                    let orig_len = endian.u32(&body, 16).ok_or_else(short)?;
                    ((iface_id), u64::from(ts_hi) << 32 | u64::from(ts_lo), caplen, orig_len, 20)
                };
                let left = body.len() - data_at;
                if caplen as usize > left {
                    return Err(malformed(format!(
                        "captured length {caplen} exceeds the {left} bytes left in the block"
                    )));
                }
                let data = &body[data_at..data_at + caplen as usize];
                let Some(iface) = interfaces.get(iface_id as usize) else {
                    let n = interfaces.len();
                    return Err(malformed(format!(
                        "interface id {iface_id} is not defined ({n} interfaces in this section)"
                    )));
                };
                let (mut info, mut tls, mut flags) = (None, None, None);
                if block_type != BT_SPB {
                    let opts_at = (data_at + (caplen as usize).next_multiple_of(4)).min(body.len());
                    for (code, value) in
                        options(endian, &body[opts_at..], body_offset + opts_at as u64).map_err(malformed)?
                    {
                        match code {
                            1 if info.is_none() => {
                                let text = std::str::from_utf8(value).ok();
                                info = match (&iface.process, text) {
                                    // On a process interface: the process, and the comment's per-packet fields.
                                    (Some(base), Some(text)) => {
                                        Some(parse_packet_comment(base, text).unwrap_or_else(|| base.clone()))
                                    }
                                    (Some(base), None) => Some(base.clone()),
                                    (None, text) => text.and_then(parse_comment),
                                };
                                tls = info.as_ref().and(text).and_then(parse_tls);
                            }
                            2 => flags = endian.u32(value, 0),
                            _ => {}
                        }
                    }
                }
                if info.is_none() {
                    // A packet on a process interface with no comment: the process alone.
                    info = iface.process.clone();
                }
                let frame =
                    Frame { linktype: iface.linktype, timestamp_ns: iface.to_ns(ts), orig_len, data, info, tls, flags };
                Ok(self.packet(frame))
            }
            BT_DSB => {
                let secrets_type = endian.u32(&body, 0).ok_or_else(short)?;
                let len = endian.u32(&body, 4).ok_or_else(short)? as usize;
                let Some(secrets) = body.get(8..8usize.saturating_add(len)) else {
                    let left = body.len().saturating_sub(8);
                    return Err(malformed(format!("secrets length {len} exceeds the {left} bytes left in the block")));
                };
                if secrets_type == SECRETS_TLS_KEY_LOG {
                    let (lines, bad) = parse_text(secrets);
                    self.keylog.extend(lines);
                    self.keylog_bad += bad;
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Number the frame and turn it into a packet, or count it as skipped.
    fn packet(&mut self, f: Frame<'_>) -> Option<CapturedPacket> {
        self.frames += 1;
        if f.linktype == LINKTYPE_UPPER_PDU {
            if let (Some(tls), Some(info)) = (f.tls, f.info.clone()) {
                return self.tls_record(&f, tls, info);
            }
        }
        let (header_len, l2_direction) = match strip_link(f.linktype, f.data) {
            Ok(found) => found,
            Err(reason) => {
                self.skip(reason);
                return None;
            }
        };
        let data = f.data.get(header_len..).unwrap_or_default().to_vec();
        let direction = match f.flags.map(|fl| fl & 0b11) {
            Some(FLAG_INBOUND) => Direction::Inbound,
            Some(FLAG_OUTBOUND) => Direction::Outbound,
            _ => l2_direction.unwrap_or(Direction::Outbound),
        };
        let info = f.info.unwrap_or_else(|| ProcessInfo::unknown(0, String::new()));
        let orig_len = f.orig_len.saturating_sub(header_len as u32);
        let mut p = CapturedPacket::new(
            self.frames,
            f.timestamp_ns,
            info.pid,
            info.comm,
            info.socket_cookie,
            direction,
            info.verdict,
            orig_len,
            data,
        );
        p.rule = info.rule;
        (p.tid, p.thread, p.process) = (info.tid, info.thread, info.process);
        Some(p)
    }

    /// A TLS plaintext record written by pidcap (see the module doc).
    fn tls_record(&mut self, f: &Frame<'_>, tls: TlsComment, info: ProcessInfo) -> Option<CapturedPacket> {
        let Ok(pdu) = parse_pdu(f.data) else {
            self.skip(SkipReason::BadTlsRecord);
            return None;
        };
        let direction = match f.flags.map(|fl| fl & 0b11) {
            Some(FLAG_INBOUND) => Direction::Inbound,
            _ => Direction::Outbound,
        };
        let (local, remote) = match direction {
            Direction::Outbound => (pdu.src, pdu.dst),
            Direction::Inbound => (pdu.dst, pdu.src),
        };
        let plaintext = f.data.get(pdu.payload_at..).unwrap_or_default();
        // At most what a synthesized packet's u32 length can carry with its headers (60 bytes at most).
        let true_len = u64::from(f.orig_len)
            .saturating_sub(pdu.payload_at as u64)
            .max(plaintext.len() as u64)
            .min(u64::from(u32::MAX) - 60);
        let mut p = CapturedPacket::tls_record(TlsRecord {
            id: self.frames,
            timestamp_ns: f.timestamp_ns,
            pid: info.pid,
            comm: info.comm,
            socket_cookie: info.socket_cookie,
            direction,
            local,
            remote,
            info: tls.info,
            plaintext,
            true_len,
            stream_offset: tls.offset,
        });
        (p.thread, p.process) = (info.thread, info.process);
        Some(p)
    }

    /// Count the current frame as skipped for `reason`.
    fn skip(&mut self, reason: SkipReason) {
        self.skipped += 1;
        let frame = self.frames;
        match self.skipped_frames.last_mut() {
            Some(last) if last.reason == reason && *last.frames.end() + 1 == frame => {
                last.frames = *last.frames.start()..=frame;
            }
            _ => self.skipped_frames.push(Skipped { frames: frame..=frame, reason }),
        }
    }

    fn next_packet(&mut self) -> Result<Option<CapturedPacket>, PcapError> {
        loop {
            match self.format {
                Format::Pcap => match self.read_record()? {
                    None => return Ok(None),
                    Some(Some(p)) => return Ok(Some(p)),
                    Some(None) => {}
                },
                Format::Pcapng => {
                    let Some(block) = self.read_block()? else { return Ok(None) };
                    if let Some(p) = self.handle_block(block)? {
                        return Ok(Some(p));
                    }
                }
            }
        }
    }
}

impl<R: Read> Iterator for PacketReader<R> {
    type Item = Result<CapturedPacket, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_packet().transpose();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}

/// The options of a block: `(code, value)` up to `opt_endofopt` or the end.
/// `base` is the byte offset of `b` in the input, for error messages.
fn options(endian: Endian, b: &[u8], base: u64) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    let mut i = 0usize;
    while i < b.len() {
        let (Some(code), Some(len)) = (endian.u16(b, i), endian.u16(b, i + 2)) else {
            return Err(format!("option header at byte offset {} is cut by the end of the block", base + i as u64));
        };
        if code == 0 {
            break;
        }
        let start = i + 4;
        let end = start + usize::from(len);
        let Some(value) = b.get(start..end) else {
            let left = b.len() - start;
            return Err(format!(
                "option {code} at byte offset {} claims {len} bytes, only {left} left in the block",
                base + i as u64
            ));
        };
        out.push((code, value));
        i = end.next_multiple_of(4);
    }
    Ok(out)
}

/// Where the IP packet starts in a frame of `linktype`, and the direction the
/// link layer tells; why not when the frame is not IPv4/IPv6.
fn strip_link(linktype: u16, d: &[u8]) -> Result<(usize, Option<Direction>), SkipReason> {
    const IPV4: u16 = 0x0800;
    const IPV6: u16 = 0x86dd;
    let short = SkipReason::Short { linktype };
    let not_ip = |protocol: u32| SkipReason::NotIp { linktype, protocol: Some(protocol) };
    let ip = |proto: u16| if proto == IPV4 || proto == IPV6 { Ok(()) } else { Err(not_ip(proto.into())) };
    // Linux packet types: host, broadcast, multicast, other host, outgoing.
    let sll_direction = |t: u16| match t {
        0..=2 => Some(Direction::Inbound),
        4 => Some(Direction::Outbound),
        _ => None,
    };
    match linktype {
        101 | 12 => match d.first().map(|b| b >> 4) {
            Some(4 | 6) => Ok((0, None)),
            Some(v) => Err(not_ip(v.into())),
            None => Err(short),
        },
        228 | 229 => Ok((0, None)),
        1 => {
            let mut at = 12;
            loop {
                match be16(d, at).ok_or(short)? {
                    0x8100 | 0x88a8 | 0x9100 => at += 4,
                    t => return ip(t).map(|()| (at + 2, None)),
                }
            }
        }
        113 => {
            ip(be16(d, 14).ok_or(short)?)?;
            Ok((16, sll_direction(be16(d, 0).unwrap_or(3))))
        }
        276 => {
            let packet_type = *d.get(10).ok_or(short)?;
            d.get(19).ok_or(short)?;
            ip(be16(d, 0).ok_or(short)?)?;
            Ok((20, sll_direction(packet_type.into())))
        }
        0 | 108 => {
            let b: [u8; 4] = d.get(..4).ok_or(short)?.try_into().map_err(|_| short)?;
            // NULL stores the address family in the writer's byte order, LOOP in big endian.
            let family = u32::from_le_bytes(b).min(u32::from_be_bytes(b));
            if matches!(family, 2 | 10 | 24 | 28 | 30) {
                Ok((4, None))
            } else {
                Err(not_ip(family))
            }
        }
        _ => Err(SkipReason::LinkType(linktype)),
    }
}
