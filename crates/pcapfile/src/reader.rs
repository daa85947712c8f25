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
//!   another link type, are skipped and counted in [`PacketReader::skipped`].
//!
//! # Mapping to [`CapturedPacket`]
//!
//! * `id` is the frame number in the file, 1-based, counting skipped frames
//!   too, so it matches Wireshark's `frame.number`.
//! * pid, comm, socket cookie, verdict and rule come from the first
//!   `opt_comment` that parses as ours (grammar in [`crate::comment`]);
//!   without one they are 0, `""`, 0, pass and none.
//! * The direction comes from `epb_flags` bits 0-1 (01 inbound, 10 outbound);
//!   without them from the LINUX_SLL/SLL2 packet type (host, broadcast,
//!   multicast: inbound; outgoing: outbound); otherwise it is **Outbound**
//!   (classic pcap files therefore read as all-outbound).
//! * `orig_len` and `data` exclude the stripped link-layer header.
//!
//! # Hostile input
//!
//! Nothing here panics on any input. A block or record longer than
//! [`MAX_BLOCK_LEN`] (16 MiB) is an error, every length is checked against
//! what is left of its block, buffers only grow as bytes actually arrive,
//! and a truncated file is an error naming the byte offset of the block or
//! record it ends in. After the first error the iterator ends.

use crate::comment::{parse_comment, ProcessInfo};
use crate::pcap::{MAGIC_NS, MAGIC_US};
use crate::pcapng::{BT_EPB, BT_IDB, BT_SHB, BYTE_ORDER_MAGIC, FLAG_INBOUND, FLAG_OUTBOUND};
use crate::{Format, PcapError, MAX_BLOCK_LEN};
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use std::io::{Chain, Cursor, ErrorKind, Read};

const BT_PB: u32 = 2;
const BT_SPB: u32 = 3;
/// Most interfaces accepted in one pcapng section.
const MAX_INTERFACES: usize = 1 << 16;

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
        let mut reader = PacketReader { src, format, kind, frames: 0, skipped: 0, done: false };
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
        let frame = Frame { linktype, timestamp_ns, orig_len, data: &data, info: None, flags: None };
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
                let mut iface = Interface { linktype, snaplen, resol: TsResol::Pow10(6), offset_s: 0 };
                for (code, value) in options(endian, &body[8.min(body.len())..], body_offset + 8).map_err(malformed)? {
                    match (code, value) {
                        (9, [v, ..]) if v & 0x80 != 0 => iface.resol = TsResol::Pow2(v & 0x7f),
                        (9, [v, ..]) => iface.resol = TsResol::Pow10(*v),
                        (14, _) => iface.offset_s = endian.u64(value, 0).map_or(0, |v| v as i64),
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
                let (mut info, mut flags) = (None, None);
                if block_type != BT_SPB {
                    let opts_at = (data_at + (caplen as usize).next_multiple_of(4)).min(body.len());
                    for (code, value) in
                        options(endian, &body[opts_at..], body_offset + opts_at as u64).map_err(malformed)?
                    {
                        match code {
                            1 if info.is_none() => info = std::str::from_utf8(value).ok().and_then(parse_comment),
                            2 => flags = endian.u32(value, 0),
                            _ => {}
                        }
                    }
                }
                let frame =
                    Frame { linktype: iface.linktype, timestamp_ns: iface.to_ns(ts), orig_len, data, info, flags };
                Ok(self.packet(frame))
            }
            _ => Ok(None),
        }
    }

    /// Number the frame and turn it into a packet, or count it as skipped.
    fn packet(&mut self, f: Frame<'_>) -> Option<CapturedPacket> {
        self.frames += 1;
        let Some((header_len, l2_direction)) = strip_link(f.linktype, f.data) else {
            self.skipped += 1;
            return None;
        };
        let data = f.data.get(header_len..).unwrap_or_default().to_vec();
        let direction = match f.flags.map(|fl| fl & 0b11) {
            Some(FLAG_INBOUND) => Direction::Inbound,
            Some(FLAG_OUTBOUND) => Direction::Outbound,
            _ => l2_direction.unwrap_or(Direction::Outbound),
        };
        let info = f.info.unwrap_or(ProcessInfo {
            pid: 0,
            comm: String::new(),
            socket_cookie: 0,
            verdict: Verdict::Pass,
            rule: None,
        });
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
        Some(p)
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
/// link layer tells; `None` when the frame is not IPv4/IPv6.
fn strip_link(linktype: u16, d: &[u8]) -> Option<(usize, Option<Direction>)> {
    const IPV4: u16 = 0x0800;
    const IPV6: u16 = 0x86dd;
    let is_ip = |proto: u16| proto == IPV4 || proto == IPV6;
    // Linux packet types: host, broadcast, multicast, other host, outgoing.
    let sll_direction = |t: u16| match t {
        0..=2 => Some(Direction::Inbound),
        4 => Some(Direction::Outbound),
        _ => None,
    };
    match linktype {
        101 | 12 => matches!(d.first().map(|b| b >> 4), Some(4 | 6)).then_some((0, None)),
        228 | 229 => Some((0, None)),
        1 => {
            let mut at = 12;
            loop {
                match be16(d, at)? {
                    0x8100 | 0x88a8 | 0x9100 => at += 4,
                    t if is_ip(t) => return Some((at + 2, None)),
                    _ => return None,
                }
            }
        }
        113 => is_ip(be16(d, 14)?).then(|| (16, sll_direction(be16(d, 0).unwrap_or(3)))),
        276 => {
            let packet_type = *d.get(10)?;
            d.get(19)?;
            is_ip(be16(d, 0)?).then(|| (20, sll_direction(packet_type.into())))
        }
        0 | 108 => {
            let b: [u8; 4] = d.get(..4)?.try_into().ok()?;
            // NULL stores the address family in the writer's byte order, LOOP in big endian.
            let family = u32::from_le_bytes(b).min(u32::from_be_bytes(b));
            matches!(family, 2 | 10 | 24 | 28 | 30).then_some((4, None))
        }
        _ => None,
    }
}
