//! The pcapng writer (little-endian).
//!
//! Hand-written on purpose: no crate writes exactly these blocks and options
//! (`opt_comment` + `epb_flags` on every EPB, `if_tsresol` = 9), the format is
//! a few dozen lines of `std::io::Write`, and owning every byte keeps the
//! output deterministic and golden-testable.
//!
//! Layout: SHB (byte-order magic, version 1.0, section length -1,
//! `shb_os`, `shb_userappl`), one IDB (`LINKTYPE_RAW`, snaplen, `if_name` =
//! `pidcap`, `if_tsresol` = 9), then one EPB per packet with the timestamp in
//! nanoseconds, the data padded to 32 bits, `opt_comment` (see
//! [`crate::comment`]) and `epb_flags` (bits 0-1: 01 inbound, 10 outbound).
//! The verdict travels only in the comment: the flags stay honest.

use crate::comment::{format_comment, ProcessInfo};
use crate::{captured, PcapError, RecordRef, Sink, WriterOptions, LINKTYPE_RAW};
use pidcap_packet::{CapturedPacket, Direction};
use std::io::Write;

pub(crate) const BT_SHB: u32 = 0x0A0D_0D0A;
pub(crate) const BT_IDB: u32 = 1;
pub(crate) const BT_EPB: u32 = 6;
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

/// `epb_flags` direction bits.
pub(crate) const FLAG_INBOUND: u32 = 0b01;
pub(crate) const FLAG_OUTBOUND: u32 = 0b10;

/// Builds one block in memory (so each block is a single `write_all`).
struct Block {
    buf: Vec<u8>,
}

impl Block {
    fn new(block_type: u32) -> Block {
        Block::reuse(Vec::with_capacity(128), block_type)
    }

    /// Start a block in a buffer kept from an earlier one (no allocation per packet).
    fn reuse(mut buf: Vec<u8>, block_type: u32) -> Block {
        buf.clear();
        buf.extend_from_slice(&block_type.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes()); // length, patched in finish()
        Block { buf }
    }

    fn u16(&mut self, v: u16) -> &mut Block {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, v: u32) -> &mut Block {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Bytes, zero-padded to 32 bits.
    fn padded(&mut self, bytes: &[u8]) -> &mut Block {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(self.buf.len().next_multiple_of(4), 0);
        self
    }

    fn option(&mut self, code: u16, value: &[u8]) -> &mut Block {
        // Option values are at most 0xffff bytes; longer ones are cut.
        let value = &value[..value.len().min(usize::from(u16::MAX))];
        self.u16(code).u16(value.len() as u16).padded(value)
    }

    fn finish(&mut self) -> &[u8] {
        self.u32(OPT_ENDOFOPT.into()); // opt_endofopt: code 0, length 0
        let total = self.buf.len() as u32 + 4;
        self.u32(total);
        self.buf[4..8].copy_from_slice(&total.to_le_bytes());
        &self.buf
    }
}

/// The running system as `shb_os` wants it (`Linux 6.1.0-18-amd64`), if /proc says.
fn host_os() -> Option<String> {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
    match (read("/proc/sys/kernel/ostype"), read("/proc/sys/kernel/osrelease")) {
        (Some(t), Some(r)) => Some(format!("{t} {r}")),
        (Some(t), None) => Some(t),
        _ => None,
    }
}

/// Writes pcapng: see the module doc for the exact layout.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    pub(crate) out: Sink<W>,
    /// The EPB buffer, kept between packets.
    block: Vec<u8>,
    /// The last comment written and the process fields it says: consecutive
    /// packets of one socket share it, so it is formatted once, not per packet.
    comment: Option<(ProcessInfo, String)>,
}

impl<W: Write> PcapngWriter<W> {
    /// Write the SHB (with `shb_os` from the running kernel) and the IDB.
    pub fn new(w: W, opts: &WriterOptions) -> Result<PcapngWriter<W>, PcapError> {
        PcapngWriter::with_os(w, opts, host_os().as_deref())
    }

    /// Like [`PcapngWriter::new`] with an explicit `shb_os` (`None` = omitted),
    /// for byte-for-byte reproducible files.
    pub fn with_os(mut w: W, opts: &WriterOptions, os: Option<&str>) -> Result<PcapngWriter<W>, PcapError> {
        let mut shb = Block::new(BT_SHB);
        shb.u32(BYTE_ORDER_MAGIC).u16(1).u16(0).u32(u32::MAX).u32(u32::MAX); // section length -1
        if let Some(os) = os {
            shb.option(SHB_OS, os.as_bytes());
        }
        if !opts.application.is_empty() {
            shb.option(SHB_USERAPPL, opts.application.as_bytes());
        }
        w.write_all(shb.finish())?;

        let mut idb = Block::new(BT_IDB);
        idb.u16(LINKTYPE_RAW).u16(0).u32(opts.snaplen);
        idb.option(IF_NAME, b"pidcap").option(IF_TSRESOL, &[9]);
        w.write_all(idb.finish())?;
        Ok(PcapngWriter { out: Sink { w, snaplen: opts.snaplen }, block: Vec::new(), comment: None })
    }

    /// Append one Enhanced Packet Block.
    pub fn write_packet(&mut self, p: &CapturedPacket) -> Result<(), PcapError> {
        self.write_record(&RecordRef::from(p))
    }

    /// Append one Enhanced Packet Block for a packet given by its borrowed fields.
    pub fn write_record(&mut self, p: &RecordRef<'_>) -> Result<(), PcapError> {
        let same = self.comment.as_ref().is_some_and(|(i, _)| {
            i.pid == p.pid
                && i.socket_cookie == p.socket_cookie
                && i.verdict == p.verdict
                && i.rule == p.rule
                && i.comm == p.comm
        });
        if !same {
            let info = ProcessInfo {
                pid: p.pid,
                comm: p.comm.to_string(),
                socket_cookie: p.socket_cookie,
                verdict: p.verdict,
                rule: p.rule,
            };
            let text = format_comment(&info);
            self.comment = Some((info, text));
        }
        let comment = self.comment.as_ref().map_or("", |(_, c)| c.as_str());
        let (data, orig_len) = captured(p, self.out.snaplen);
        let flags = match p.direction {
            Direction::Inbound => FLAG_INBOUND,
            Direction::Outbound => FLAG_OUTBOUND,
        };
        let mut epb = Block::reuse(std::mem::take(&mut self.block), BT_EPB);
        epb.u32(0) // interface id
            .u32((p.timestamp_ns >> 32) as u32)
            .u32(p.timestamp_ns as u32)
            .u32(data.len() as u32)
            .u32(orig_len)
            .padded(data)
            .option(OPT_COMMENT, comment.as_bytes())
            .option(EPB_FLAGS, &flags.to_le_bytes());
        let written = self.out.w.write_all(epb.finish());
        self.block = epb.buf;
        written?;
        Ok(())
    }

    /// Flush the underlying writer.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.out.flush()
    }

    /// Flush and give back the underlying writer.
    pub fn into_inner(self) -> Result<W, PcapError> {
        self.out.into_inner()
    }
}
