//! Capture files for pidcap: pcapng (the default) and classic pcap, written
//! from and read back into [`CapturedPacket`]s.
//!
//! * [`PcapngWriter`] writes one Section Header Block, one Interface
//!   Description Block (raw IP, nanosecond timestamps), an IDB per process
//!   (`if_name` `curl[1234]`, `if_description` the whole process, grammar in
//!   [`comment`]) before its first packet, and one Enhanced Packet Block per
//!   packet on its process's interface, with the packet's own fields (thread,
//!   cookie, verdict, rule) in an `opt_comment` and its direction in
//!   `epb_flags`, so Wireshark/tshark users can filter with
//!   `frame.interface_description contains "pid=1234"` and
//!   `frame.packet_flags_direction`.
//! * [`PcapWriter`] writes classic pcap (nanosecond magic, `LINKTYPE_RAW`).
//!   Classic pcap has no per-packet metadata: **`-F pcap` loses the process,
//!   the socket cookie, the verdict, the rule and the direction**; only
//!   pcapng keeps them.
//!   Classic pcap cannot hold TLS plaintext records: they are left out and
//!   counted ([`PcapWriter::tls_left_out`]).
//! * TLS: plaintext records on their own interface as Exported PDUs, key logs
//!   in Decryption Secrets Blocks ([`tls`], [`keylog`], the pcapng writer's
//!   doc); the reader gives both back.
//! * [`PacketWriter`] picks one of the two at run time.
//! * [`FileOutput`] writes one of them to a [`CaptureFile`]: created private
//!   (0600), never through a symbolic link, written by a thread of its own
//!   (the caller never waits for the file system), cut back to its last
//!   complete block when the disk fills; see the [`mod@file`] module.
//! * [`RotatingOutput`] rotates files as tcpdump's `-C`, `-W` and `-G` do,
//!   every file complete on its own; see the [`rotate`] module.
//! * [`PacketOutput`] is the one interface of every output of packets (these
//!   writers, the CLI's text and JSON lines, ...), see the [`output`] module.
//! * [`PacketReader`] / [`read_packets`] read either format (auto-detected by
//!   magic number), see the [`reader`] module for what is accepted.
//!
//! Structured Apple "Darwin process event blocks" are deliberately *not*
//! written: tshark 4.0 (Debian 12) reads them silently but only exposes their
//! fields in the file-structure view (`-X read_format:"MIME Files Format"`),
//! never on the frames; an interface's name and description are on every
//! frame (`frame.interface_name`, `frame.interface_description`).

pub mod comment;
pub mod file;
pub mod keylog;
pub mod output;
mod pcap;
mod pcapng;
pub mod reader;
pub mod rotate;
pub mod tls;

pub use file::{CaptureFile, FileOutput, DEFAULT_FILE_MODE};
pub use keylog::{KeyLogFollower, KeyLogLine};
pub use output::PacketOutput;
pub use pcap::PcapWriter;
pub use pcapng::PcapngWriter;
pub use reader::{describe_skipped, read_packets, Contents, PacketReader, SkipReason, Skipped};
pub use rotate::{FilesWritten, RotatingOutput, Rotation};

use pidcap_packet::{CapturedPacket, Direction, ProcessMeta, TlsInfo, Verdict};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// `LINKTYPE_RAW`: the packet starts at the IPv4 or IPv6 header.
pub const LINKTYPE_RAW: u16 = 101;

/// Largest block (pcapng) or record (pcap) the reader accepts: 16 MiB.
pub const MAX_BLOCK_LEN: u32 = 16 * 1024 * 1024;

/// A capture file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Classic libpcap format (no per-packet process information).
    Pcap,
    /// pcapng, with the process on every packet (pidcap's default).
    Pcapng,
}

impl Format {
    /// The format implied by a file name's extension: `.pcap`/`.cap` ->
    /// [`Format::Pcap`], `.pcapng`/`.ntar` -> [`Format::Pcapng`] (case-insensitive).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "pcap" | "cap" => Some(Format::Pcap),
            "pcapng" | "ntar" => Some(Format::Pcapng),
            _ => None,
        }
    }

    /// `pcap` or `pcapng`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pcap => "pcap",
            Format::Pcapng => "pcapng",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = String;

    /// `pcap` or `pcapng` (case-insensitive).
    fn from_str(s: &str) -> Result<Format, String> {
        match s.to_ascii_lowercase().as_str() {
            "pcap" => Ok(Format::Pcap),
            "pcapng" => Ok(Format::Pcapng),
            _ => Err(format!("unknown capture format {s:?}: expected \"pcap\" or \"pcapng\"")),
        }
    }
}

/// Settings shared by both writers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Longest captured length written per packet; longer data is cut
    /// (the original length is kept).
    pub snaplen: u32,
    /// Written as pcapng `shb_userappl`, e.g. `pidcap 0.1.0`; empty = omitted.
    pub application: String,
}

impl Default for WriterOptions {
    fn default() -> WriterOptions {
        WriterOptions { snaplen: 65535, application: format!("pidcap {}", env!("CARGO_PKG_VERSION")) }
    }
}

/// Everything that can go wrong writing or reading a capture file.
///
/// Reading errors name the block or record (`what`, e.g. `pcapng Enhanced
/// Packet Block`) and the byte offset in the input where it starts.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Writing (or flushing) the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Reading the input failed (not a format problem).
    #[error("I/O error reading at byte offset {offset}: {source}")]
    ReadIo { offset: u64, source: std::io::Error },
    /// The input has no bytes at all.
    #[error("empty input: expected a pcap or pcapng file")]
    Empty,
    /// The first four bytes are neither a pcap nor a pcapng magic number.
    #[error("not a pcap or pcapng file: unknown magic number {magic:02x?} at byte offset 0")]
    UnknownMagic { magic: [u8; 4] },
    /// The input ends inside a header, block or record.
    #[error("truncated {what} at byte offset {offset}: needs {needed} bytes, only {available} left in the input")]
    Truncated { what: String, offset: u64, needed: u64, available: u64 },
    /// A header, block, record or option is inconsistent.
    #[error("malformed {what} at byte offset {offset}: {reason}")]
    Malformed { what: String, offset: u64, reason: String },
    /// A packet cannot be represented in the output format.
    #[error("cannot write packet {id}: {reason}")]
    Unwritable { id: u64, reason: String },
    /// A file of a rotation could not be made.
    #[error("cannot create {}", path.display())]
    Create {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing one file of a rotation failed (the error says which).
    #[error("{}", path.display())]
    InFile {
        path: std::path::PathBuf,
        #[source]
        source: Box<PcapError>,
    },
}

/// What a writer needs of one packet, borrowed: lets a capture loop write
/// straight from the kernel's buffer without building a [`CapturedPacket`].
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    pub id: u64,
    pub timestamp_ns: u64,
    pub pid: u32,
    pub comm: &'a str,
    pub socket_cookie: u64,
    pub direction: Direction,
    pub verdict: Verdict,
    pub rule: Option<u16>,
    pub orig_len: u32,
    pub data: &'a [u8],
    /// Set for a TLS plaintext record ([`CapturedPacket::tls`]): `data` is
    /// its synthesized packet.
    pub tls: Option<TlsInfo>,
    // -- the whole process (issue 12): see CapturedPacket's fields of these names --
    pub tid: u32,
    pub thread: &'a str,
    pub process: Option<&'a Arc<ProcessMeta>>,
}

impl RecordRef<'_> {
    /// An owned [`CapturedPacket`] of this record, its headers decoded (for
    /// outputs that show them).
    pub fn to_packet(&self) -> CapturedPacket {
        let mut p = CapturedPacket {
            rule: self.rule,
            tls: self.tls,
            tid: self.tid,
            thread: self.thread.to_string(),
            process: self.process.cloned(),
            ..CapturedPacket::new(
                self.id,
                self.timestamp_ns,
                self.pid,
                self.comm.to_string(),
                self.socket_cookie,
                self.direction,
                self.verdict,
                self.orig_len,
                self.data.to_vec(),
            )
        };
        if p.tls.is_some() {
            // A record's payload size is its plaintext's true length, not what the synthesized headers say.
            p.decoded.payload_size = p.orig_len.saturating_sub(p.decoded.payload_offset);
        }
        p
    }
}

impl<'a> From<&'a CapturedPacket> for RecordRef<'a> {
    fn from(p: &'a CapturedPacket) -> RecordRef<'a> {
        RecordRef {
            id: p.id,
            timestamp_ns: p.timestamp_ns,
            pid: p.pid,
            comm: &p.comm,
            socket_cookie: p.socket_cookie,
            direction: p.direction,
            verdict: p.verdict,
            rule: p.rule,
            orig_len: p.orig_len,
            data: &p.data,
            tls: p.tls,
            tid: p.tid,
            thread: &p.thread,
            process: p.process.as_ref(),
        }
    }
}

/// A writer of either format, chosen at run time.
#[derive(Debug)]
pub enum PacketWriter<W: Write> {
    Pcap(PcapWriter<W>),
    Pcapng(PcapngWriter<W>),
}

impl<W: Write> PacketWriter<W> {
    /// Write the file header(s) for `format` and return the writer.
    pub fn new(format: Format, w: W, opts: &WriterOptions) -> Result<PacketWriter<W>, PcapError> {
        Ok(match format {
            Format::Pcap => PacketWriter::Pcap(PcapWriter::new(w, opts)?),
            Format::Pcapng => PacketWriter::Pcapng(PcapngWriter::new(w, opts)?),
        })
    }

    /// The format being written.
    pub fn format(&self) -> Format {
        match self {
            PacketWriter::Pcap(_) => Format::Pcap,
            PacketWriter::Pcapng(_) => Format::Pcapng,
        }
    }

    /// Append one packet.
    pub fn write_packet(&mut self, p: &CapturedPacket) -> Result<(), PcapError> {
        self.write_record(&RecordRef::from(p))
    }

    /// Append one packet given by its borrowed fields.
    pub fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        match self {
            PacketWriter::Pcap(w) => w.write_record(r),
            PacketWriter::Pcapng(w) => w.write_record(r),
        }
    }

    /// Flush the underlying writer.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        match self {
            PacketWriter::Pcap(w) => w.flush(),
            PacketWriter::Pcapng(w) => w.flush(),
        }
    }

    /// See [`PcapngWriter::add_keys`]; classic pcap has no place for keys (0).
    pub fn add_keys(&mut self, lines: &[keylog::KeyLogLine]) -> Result<usize, PcapError> {
        match self {
            PacketWriter::Pcap(_) => Ok(0),
            PacketWriter::Pcapng(w) => w.add_keys(lines),
        }
    }

    /// See [`PcapngWriter::hold_for_keys`] (nothing for classic pcap).
    pub fn hold_for_keys(&mut self, on: bool) -> Result<(), PcapError> {
        match self {
            PacketWriter::Pcap(_) => Ok(()),
            PacketWriter::Pcapng(w) => w.hold_for_keys(on),
        }
    }

    /// What the file holds of TLS so far.
    pub fn tls_stats(&self) -> TlsFileStats {
        match self {
            PacketWriter::Pcap(w) => TlsFileStats { keys_written: 0, records_left_out: w.tls_left_out() },
            PacketWriter::Pcapng(w) => TlsFileStats { keys_written: w.keys_written() as u64, records_left_out: 0 },
        }
    }

    /// Of the first `n` blocks written after the headers, how many are packets.
    pub(crate) fn packets_in(&self, n: u64) -> u64 {
        match self {
            PacketWriter::Pcap(_) => n,
            PacketWriter::Pcapng(w) => w.packets_in(n),
        }
    }

    /// Blocks of a file's header ([`PcapngWriter::HEADER_BLOCKS`], [`PcapWriter::HEADER_BLOCKS`]).
    pub fn header_blocks(&self) -> u64 {
        match self {
            PacketWriter::Pcap(_) => PcapWriter::<W>::HEADER_BLOCKS,
            PacketWriter::Pcapng(_) => PcapngWriter::<W>::HEADER_BLOCKS,
        }
    }

    /// Go on in a new file (see [`PcapngWriter::start_file`]); the old one comes back.
    pub fn start_file(&mut self, w: W) -> Result<W, PcapError> {
        match self {
            PacketWriter::Pcap(p) => p.start_file(w),
            PacketWriter::Pcapng(p) => p.start_file(w),
        }
    }

    /// Exactly how many bytes writing `r` adds to the file (see [`PcapngWriter::bytes_for`]).
    pub fn bytes_for(&mut self, r: &RecordRef<'_>) -> u64 {
        match self {
            PacketWriter::Pcap(w) => w.bytes_for(r),
            PacketWriter::Pcapng(w) => w.bytes_for(r),
        }
    }

    /// The bytes [`PacketWriter::add_keys`] would write now for `lines`.
    pub fn bytes_for_keys(&self, lines: &[keylog::KeyLogLine]) -> u64 {
        match self {
            PacketWriter::Pcap(_) => 0,
            PacketWriter::Pcapng(w) => w.bytes_for_keys(lines),
        }
    }

    /// Bytes held back for TLS keys, not in the file yet.
    pub fn held_bytes(&self) -> u64 {
        match self {
            PacketWriter::Pcap(_) => 0,
            PacketWriter::Pcapng(w) => w.held_bytes(),
        }
    }

    /// Flush and give back the underlying writer.
    pub fn into_inner(self) -> Result<W, PcapError> {
        match self {
            PacketWriter::Pcap(w) => w.into_inner(),
            PacketWriter::Pcapng(w) => w.into_inner(),
        }
    }

    /// The underlying writer.
    pub fn get_ref(&self) -> &W {
        match self {
            PacketWriter::Pcap(w) => &w.out.w,
            PacketWriter::Pcapng(w) => &w.out.w,
        }
    }

    /// The underlying writer, to act on it (write nothing to it directly).
    pub fn get_mut(&mut self) -> &mut W {
        match self {
            PacketWriter::Pcap(w) => &mut w.out.w,
            PacketWriter::Pcapng(w) => &mut w.out.w,
        }
    }
}

/// What a capture file holds of TLS: key log lines written (pcapng), TLS
/// plaintext records left out (classic pcap cannot hold them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TlsFileStats {
    pub keys_written: u64,
    pub records_left_out: u64,
}

/// The output of a writer, shared by both formats.
#[derive(Debug)]
struct Sink<W: Write> {
    w: W,
    snaplen: u32,
}

impl<W: Write> Sink<W> {
    fn flush(&mut self) -> Result<(), PcapError> {
        Ok(self.w.flush()?)
    }

    fn into_inner(mut self) -> Result<W, PcapError> {
        self.w.flush()?;
        Ok(self.w)
    }
}

/// The captured bytes of `p` as written: cut to `snaplen`, with the original
/// length never below the captured length. Shared by both writers.
fn captured<'a>(p: &RecordRef<'a>, snaplen: u32) -> (&'a [u8], u32) {
    let cap = p.data.len().min(snaplen as usize).min(MAX_BLOCK_LEN as usize - 4096); // room for the EPB fields and options
    let data = &p.data[..cap];
    // `cap` is below MAX_BLOCK_LEN, so it fits in u32.
    let orig = p.orig_len.max(cap as u32);
    (data, orig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_from_path_and_str() {
        assert_eq!(Format::from_path(Path::new("a/b.pcap")), Some(Format::Pcap));
        assert_eq!(Format::from_path(Path::new("x.CAP")), Some(Format::Pcap));
        assert_eq!(Format::from_path(Path::new("x.pcapng")), Some(Format::Pcapng));
        assert_eq!(Format::from_path(Path::new("x.ntar")), Some(Format::Pcapng));
        assert_eq!(Format::from_path(Path::new("x.txt")), None);
        assert_eq!(Format::from_path(Path::new("pcap")), None);
        assert_eq!("pcapng".parse::<Format>(), Ok(Format::Pcapng));
        assert_eq!("PCAP".parse::<Format>(), Ok(Format::Pcap));
        assert!("json".parse::<Format>().is_err());
        assert_eq!(WriterOptions::default().snaplen, 65535);
        assert!(WriterOptions::default().application.starts_with("pidcap "));
    }

    #[test]
    fn a_record_becomes_the_packet_it_came_from() {
        let data = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2, 0, 53, 4, 0, 0, 8, 0, 0];
        let mut p =
            CapturedPacket::new(9, 123, 42, "dig".into(), 77, Direction::Outbound, Verdict::Blocked, 1500, data);
        p.rule = Some(2);
        (p.tid, p.thread) = (43, "worker".into());
        p.process = Some(Arc::new(ProcessMeta { pid: 42, comm: "dig".into(), ppid: 1, ..ProcessMeta::default() }));
        let back = RecordRef::from(&p).to_packet();
        assert_eq!(back, p);
        assert_eq!(back.decoded.remote_port, 1024);
    }
}
