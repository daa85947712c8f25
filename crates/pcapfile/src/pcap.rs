//! The classic pcap writer: nanosecond magic `0xa1b23c4d`, version 2.4,
//! `LINKTYPE_RAW`, little-endian.
//!
//! Classic pcap has no per-packet metadata, so a file written with
//! `-F pcap` keeps only the timestamp, the lengths and the bytes: the
//! process (pid, comm), the socket cookie, the verdict, the rule and the
//! direction are lost. Use pcapng (the default) to keep them. TLS plaintext
//! records are left out and counted ([`PcapWriter::tls_left_out`]).

use crate::{captured, PcapError, RecordRef, Sink, WriterOptions, LINKTYPE_RAW};
use pidcap_packet::CapturedPacket;
use std::io::Write;

pub(crate) const MAGIC_NS: u32 = 0xa1b2_3c4d;
pub(crate) const MAGIC_US: u32 = 0xa1b2_c3d4;

/// Writes classic pcap with nanosecond timestamps.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    pub(crate) out: Sink<W>,
    buf: Vec<u8>,
    tls_left_out: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Write the 24-byte file header.
    pub fn new(w: W, opts: &WriterOptions) -> Result<PcapWriter<W>, PcapError> {
        let mut writer = PcapWriter { out: Sink { w, snaplen: opts.snaplen }, buf: Vec::new(), tls_left_out: 0 };
        writer.write_preamble()?;
        Ok(writer)
    }

    /// The start of a file (the one place of per-file state): the 24-byte
    /// header, one block ([`PcapWriter::HEADER_BLOCKS`]).
    fn write_preamble(&mut self) -> Result<(), PcapError> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC_NS.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes()); // thiszone
        h.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
        h.extend_from_slice(&self.out.snaplen.to_le_bytes());
        h.extend_from_slice(&u32::from(LINKTYPE_RAW).to_le_bytes());
        self.out.w.write_all(&h)?;
        Ok(())
    }

    /// Blocks of the file header.
    pub const HEADER_BLOCKS: u64 = 1;

    /// Go on in a new file `w` (rotation): flush the current one, write the
    /// new one's header, and give back the old one.
    pub fn start_file(&mut self, w: W) -> Result<W, PcapError> {
        self.out.flush()?;
        let old = std::mem::replace(&mut self.out.w, w);
        self.write_preamble()?;
        Ok(old)
    }

    /// Exactly how many bytes writing `p` adds to the file (0 for a TLS
    /// record, which is left out). For rotation by size.
    pub fn bytes_for(&self, p: &RecordRef<'_>) -> u64 {
        if p.tls.is_some() {
            return 0;
        }
        16 + captured(p, self.out.snaplen).0.len() as u64
    }

    /// Append one record. Fails for timestamps after 2106 (32-bit seconds).
    pub fn write_packet(&mut self, p: &CapturedPacket) -> Result<(), PcapError> {
        self.write_record(&RecordRef::from(p))
    }

    /// Append one record given by its borrowed fields. A TLS plaintext
    /// record is left out (classic pcap has one link type and no metadata:
    /// it would read as a packet that never crossed the wire) and counted.
    pub fn write_record(&mut self, p: &RecordRef<'_>) -> Result<(), PcapError> {
        if p.tls.is_some() {
            self.tls_left_out += 1;
            return Ok(());
        }
        let secs = u32::try_from(p.timestamp_ns / 1_000_000_000).map_err(|_| PcapError::Unwritable {
            id: p.id,
            reason: format!("timestamp {} ns does not fit classic pcap's 32-bit seconds", p.timestamp_ns),
        })?;
        let nanos = (p.timestamp_ns % 1_000_000_000) as u32;
        let (data, orig_len) = captured(p, self.out.snaplen);
        self.buf.clear();
        for v in [secs, nanos, data.len() as u32, orig_len] {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        self.buf.extend_from_slice(data);
        self.out.w.write_all(&self.buf)?;
        Ok(())
    }

    /// TLS plaintext records left out so far.
    pub fn tls_left_out(&self) -> u64 {
        self.tls_left_out
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
