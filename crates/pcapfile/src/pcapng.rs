//! The pcapng writer (little-endian).
//!
//! Hand-written on purpose: no crate writes exactly these blocks and options
//! (`opt_comment` + `epb_flags` on EPBs, `if_tsresol` = 9, an IDB per
//! process), the format is a few dozen lines of `std::io::Write`, and owning
//! every byte keeps the output deterministic and golden-testable.
//!
//! Layout: SHB (byte-order magic, version 1.0, section length -1,
//! `shb_os`, `shb_userappl`), IDB 0 (link type 12 = raw IP, see
//! [`LINKTYPE_RAW_IDB`], snaplen, `if_name` = `pidcap`, `if_tsresol` = 9),
//! then one EPB per packet with the timestamp in nanoseconds, the data
//! padded to 32 bits, `opt_comment` and `epb_flags` (bits 0-1: 01 inbound,
//! 10 outbound). The verdict travels only in the comment: the flags stay
//! honest.
//!
//! Processes (issue 13): a packet with a process goes on that process's
//! interface, an IDB like IDB 0 with `if_name` `comm[pid]` and
//! `if_description` the process ([`crate::comment::format_process`]),
//! written just before the first packet that needs it: once per
//! description and file (a new one after an exec, a reused pid or a rename;
//! [`Interfaces`]). Its comment holds only the packet's own fields
//! ([`crate::comment::format_packet_comment`], often none: then no comment
//! option). A packet with no process (pid 0) stays on IDB 0 with the whole
//! comment ([`crate::comment::format_comment`]). Comments are formatted once
//! per socket and thread and kept (`Comments`), not per packet.
//!
//! TLS (see [`crate::tls`] and [`crate::keylog`]):
//! * A TLS plaintext record is written on an interface of its own
//!   (`LINKTYPE_WIRESHARK_UPPER_PDU`, `if_name` = `pidcap-tls-plaintext`,
//!   described as taken from the TLS library, not the wire), described by an
//!   IDB just before the file's first record, as an Exported PDU: tshark dissects
//!   the plaintext (`-Y http.request`). Its comment is the whole process plus
//!   `tls=LIBRARY offset=N` (the calling thread is its `tid=`) ([`crate::comment::TlsComment`]).
//! * Key log lines ([`PcapngWriter::add_keys`]) go into Decryption Secrets
//!   Blocks (`TLSK`), each line once, only for connections whose ClientHello
//!   is in the file, and before the packets that need them: with
//!   [`PcapngWriter::hold_for_keys`], the blocks after a ClientHello wait
//!   until its keys are in (TLS 1.3 logs its handshake secrets only after
//!   the server's encrypted flight has arrived; tshark reads a file in one
//!   pass and does not decrypt a connection whose keys come after it).
//! * No HTTP twice: a record whose connection has its ClientHello and keys
//!   in the same file is written with the `data` dissector (Wireshark shows
//!   the HTTP from the decrypted packets); any other as `http` when it looks
//!   like HTTP/1.x. The choice is made when the record's block goes out.
//! * Rotation ([`crate::rotate`]): [`PcapngWriter::start_file`] goes on in a
//!   new file; `write_preamble` is the one place that writes what every file
//!   says for itself and resets what is per file (the interfaces: blocks held
//!   back over the change are renumbered to the new file's).

use crate::comment::{
    format_comment, format_packet_comment, format_process, format_tls, process_if_name, ProcessInfo, TlsComment,
};
use crate::keylog::{covers_connection, KeyLogLine};
use crate::tls::{
    client_hello, conn_key, looks_like_http, pdu_tags, ConnKey, PduProto, LINKTYPE_UPPER_PDU, TLS_IF_DESCRIPTION,
    TLS_IF_NAME,
};
use crate::{captured, PcapError, RecordRef, Sink, WriterOptions};
use pidcap_packet::{decode, CapturedPacket, Direction, ProcessMeta, TlsInfo};
use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) const BT_SHB: u32 = 0x0A0D_0D0A;
pub(crate) const BT_IDB: u32 = 1;
pub(crate) const BT_EPB: u32 = 6;
/// Decryption Secrets Block.
pub(crate) const BT_DSB: u32 = 0x0000_000A;
/// DSB secrets type: TLS key log (`TLSK`).
pub(crate) const SECRETS_TLS_KEY_LOG: u32 = 0x544c_534b;
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;

const OPT_ENDOFOPT: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
const EPB_FLAGS: u16 = 2;

/// The link type of the packets' interfaces: raw IP as 12 (`DLT_RAW` on
/// Linux and every platform but OpenBSD; Wireshark and pidcap's reader read
/// it as raw IP), not `LINKTYPE_RAW` (101). libpcap (1.10.3) compares each
/// later IDB's link type with the *DLT* it made of the first one's, so a
/// second IDB of 101 after a first of 101 makes tcpdump refuse the file
/// ("an interface has a type 101 different from the type of the first
/// interface"); 12 after 12 reads. Classic pcap keeps 101.
pub(crate) const LINKTYPE_RAW_IDB: u16 = 12;

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

/// Most connections whose ClientHello random the writer remembers (then it forgets them all).
const MAX_CONNS: usize = 1 << 16;
/// Most key log lines kept for connections not seen (yet) in the file.
const MAX_PENDING: usize = 4096;
/// Longest time packets are held back waiting for a handshake's keys.
const HOLD_MAX: Duration = Duration::from_millis(500);
/// Most bytes held back.
const HOLD_BYTES: usize = 8 << 20;

/// What the writer knows of TLS keys (see the module doc).
#[derive(Debug, Default)]
struct Keys {
    /// Lines written into the file (each once).
    written: HashSet<String>,
    /// The labels written, per client random.
    labels: HashMap<[u8; 32], u8>,
    /// Lines whose client random no packet of the file has shown yet.
    pending: HashMap<[u8; 32], Vec<KeyLogLine>>,
    pending_lines: usize,
    /// The ClientHello random of each connection, from its packets.
    conns: HashMap<ConnKey, [u8; 32]>,
    /// Client randoms seen in a ClientHello.
    seen: HashSet<[u8; 32]>,
    /// The client randoms of the ClientHellos in this file (held ones
    /// included): only there can Wireshark decrypt, so only a record of such
    /// a connection is written as `data` (no HTTP twice).
    hellos_here: HashSet<[u8; 32]>,
}

/// Blocks held back until the keys of some handshakes are in the file.
#[derive(Debug)]
struct Hold {
    blocks: Vec<Held>,
    bytes: usize,
    waiting: HashSet<[u8; 32]>,
    since: Instant,
}

#[derive(Debug)]
struct Held {
    bytes: Vec<u8>,
    /// A record's block: its connection's random and where its protocol name is.
    record: Option<([u8; 32], usize)>,
    /// A ClientHello's block: its random.
    hello: Option<[u8; 32]>,
}

/// Writes pcapng: see the module doc for the exact layout.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    pub(crate) out: Sink<W>,
    /// The EPB buffer, kept between packets.
    block: Vec<u8>,
    /// The comments formatted so far, by socket and thread ([`Comments`]):
    /// formatted once per socket, not per packet.
    comments: Comments,
    /// The interfaces this file has described ([`Interfaces`]).
    ifaces: Interfaces,
    /// Boxed: most files never see a key.
    keys: Box<Keys>,
    /// Hold handshakes back for their keys ([`PcapngWriter::hold_for_keys`]).
    hold_for_keys: bool,
    hold: Option<Box<Hold>>,
    /// Blocks written after the headers, and which of them are not packets.
    blocks_out: u64,
    not_packets: Vec<u64>,
    /// `shb_os` and `shb_userappl`, for the SHB of every file
    /// ([`PcapngWriter::start_file`]); boxed to keep the writer small.
    shb: Box<(Option<String>, String)>,
}

impl<W: Write> PcapngWriter<W> {
    /// Write the SHB (with `shb_os` from the running kernel) and the IDB.
    pub fn new(w: W, opts: &WriterOptions) -> Result<PcapngWriter<W>, PcapError> {
        PcapngWriter::with_os(w, opts, host_os().as_deref())
    }

    /// Like [`PcapngWriter::new`] with an explicit `shb_os` (`None` = omitted),
    /// for byte-for-byte reproducible files.
    pub fn with_os(w: W, opts: &WriterOptions, os: Option<&str>) -> Result<PcapngWriter<W>, PcapError> {
        let mut writer = PcapngWriter {
            out: Sink { w, snaplen: opts.snaplen },
            block: Vec::new(),
            comments: Comments::default(),
            ifaces: Interfaces::default(),
            keys: Box::default(),
            hold_for_keys: false,
            hold: None,
            blocks_out: 0,
            not_packets: Vec::new(),
            shb: Box::new((os.map(str::to_owned), opts.application.clone())),
        };
        writer.write_preamble()?;
        Ok(writer)
    }

    /// The start of a file, and the ONE place where per-file state is
    /// (re)made: the SHB and the packets' IDB (the two header blocks,
    /// [`PcapngWriter::HEADER_BLOCKS`]), then what the blocks to come may
    /// need that an earlier file of the run described: the TLS plaintext
    /// interface (a held record may refer to it) and every key log line
    /// written so far, in one Decryption Secrets Block. Called by
    /// [`PcapngWriter::with_os`] for the first file and by
    /// [`PcapngWriter::start_file`] for each next one (rotation). Anything
    /// else a file must describe on its own goes here.
    fn write_preamble(&mut self) -> Result<(), PcapError> {
        let mut shb = Block::new(BT_SHB);
        shb.u32(BYTE_ORDER_MAGIC).u16(1).u16(0).u32(u32::MAX).u32(u32::MAX); // section length -1
        let (os, application) = &*self.shb;
        if let Some(os) = os {
            shb.option(SHB_OS, os.as_bytes());
        }
        if !application.is_empty() {
            shb.option(SHB_USERAPPL, application.as_bytes());
        }
        self.out.w.write_all(shb.finish())?;

        self.out.w.write_all(&packets_idb("pidcap", None, self.out.snaplen))?;

        // Counted from here: the blocks after the headers.
        self.blocks_out = 0;
        self.not_packets.clear();
        // The handshakes this file has: those held back, which go into it.
        self.keys.hellos_here = self.hold.iter().flat_map(|h| h.blocks.iter().filter_map(|b| b.hello)).collect();
        // This file's interfaces: the packets' (id 0), then the ones the
        // blocks held back over the change of file name, described again
        // here and renumbered in those blocks.
        let old = std::mem::take(&mut self.ifaces);
        if let Some(mut hold) = self.hold.take() {
            let mut remap = HashMap::new();
            for held in &mut hold.blocks {
                let Some(id_bytes) = held.bytes.get_mut(8..12) else { continue };
                let id = u32::from_le_bytes(id_bytes.try_into().unwrap_or_default());
                let new = match remap.get(&id) {
                    Some(&new) => new,
                    None => {
                        let new = match old.table.get(id as usize) {
                            Some(Iface::Process { name, desc }) => {
                                let (name, desc) = (name.clone(), desc.clone());
                                self.describe_process(name, desc)?
                            }
                            Some(Iface::Tls) => self.tls_iface()?,
                            _ => 0,
                        };
                        remap.insert(id, new);
                        new
                    }
                };
                held.bytes[8..12].copy_from_slice(&new.to_le_bytes());
            }
            self.hold = Some(hold);
        }
        let mut lines: Vec<&String> = self.keys.written.iter().collect();
        if !lines.is_empty() {
            lines.sort();
            let text: String = lines.iter().flat_map(|l| [l.as_str(), "\n"]).collect();
            let bytes = dsb(&text);
            self.write_now(&bytes, false)?;
        }
        Ok(())
    }

    /// Blocks at the start of every file that are not counted by
    /// `PcapngWriter::packets_in`: the SHB and the packets' IDB (id 0).
    pub const HEADER_BLOCKS: u64 = 2;

    /// Go on in a new file `w` (rotation): flush the current one, write the
    /// new one's preamble (`PcapngWriter::write_preamble`: its own SHB, IDBs
    /// and the keys so far), and give back the old one. Blocks held back for
    /// a handshake's keys stay held and go into the new file (they start at
    /// its ClientHello, so the new file has the whole handshake).
    pub fn start_file(&mut self, w: W) -> Result<W, PcapError> {
        self.out.flush()?;
        let old = std::mem::replace(&mut self.out.w, w);
        self.write_preamble()?;
        Ok(old)
    }

    /// Bytes held back for keys (not in the file yet).
    pub fn held_bytes(&self) -> u64 {
        self.hold.as_ref().map_or(0, |h| h.bytes as u64)
    }

    /// Exactly how many bytes writing `p` adds to the file (now, or when
    /// held blocks are released): its EPB, and the TLS interface's IDB or a
    /// DSB of keys waiting for its ClientHello that would go in before it.
    /// For rotation by size ([`crate::rotate`]).
    pub fn bytes_for(&mut self, p: &RecordRef<'_>) -> u64 {
        let (data, _) = captured(p, self.out.snaplen);
        let Some(info) = p.tls else {
            let mut extra = 0;
            if let Some((_, random)) = client_hello(p.data) {
                if let Some(lines) = self.keys.pending.get(&random) {
                    extra = self.dsb_len(lines);
                }
            }
            let full = match self.ifaces.lookup(p) {
                Lookup::Whole => true,
                Lookup::Known(_) => false,
                Lookup::New { name, desc } => {
                    extra += packets_idb(&name, Some(&desc), self.out.snaplen).len() as u64;
                    false
                }
            };
            self.cache_comment(p, full);
            return epb_len(data.len(), self.comments.text().len()) + extra;
        };
        self.cache_comment(p, true);
        let comment = self.comments.text().len();
        let d = decode(p.data, p.direction);
        let header_len = (d.payload_offset as usize).min(p.data.len());
        let kept = (p.data.len() - header_len).min(self.out.snaplen as usize).min(crate::MAX_BLOCK_LEN as usize - 8192);
        let tags = if d.local_addr.is_ipv4() && d.remote_addr.is_ipv4() { TAGS_V4 } else { TAGS_V6 };
        let suffix = format_tls(&TlsComment { info, offset: d.tcp_seq.unwrap_or(0) }).len();
        let idb = if self.ifaces.tls.is_some() { 0 } else { tls_idb().len() as u64 };
        idb + epb_len(tags + kept, comment + suffix)
    }

    /// The bytes [`PcapngWriter::add_keys`] would write now for `lines`.
    pub fn bytes_for_keys(&self, lines: &[KeyLogLine]) -> u64 {
        let now: Vec<KeyLogLine> = lines
            .iter()
            .filter(|l| self.keys.seen.contains(&l.client_random) && !self.keys.written.contains(&l.to_line()))
            .cloned()
            .collect();
        self.dsb_len(&now)
    }

    /// The length of the DSB that would hold those of `lines` not yet written (0: none).
    fn dsb_len(&self, lines: &[KeyLogLine]) -> u64 {
        let mut seen = HashSet::new();
        let text: usize = lines
            .iter()
            .map(KeyLogLine::to_line)
            .filter(|l| !self.keys.written.contains(l) && seen.insert(l.clone()))
            .map(|l| l.len() + 1)
            .sum();
        if text == 0 {
            return 0;
        }
        // Type, length, secrets type, secrets length, the text padded, end of options, length.
        (24 + text.next_multiple_of(4)) as u64
    }

    /// Keys will come ([`PcapngWriter::add_keys`]): from now on, the blocks
    /// after a ClientHello are held back until that handshake's keys are in
    /// the file (at most `HOLD_MAX`, 8 MiB), so that the Decryption Secrets
    /// Block comes before the first packet that needs it, as tshark reads
    /// files in one pass. (TLS 1.3's handshake secrets are logged only once
    /// the server's encrypted flight has arrived.)
    pub fn hold_for_keys(&mut self, on: bool) -> Result<(), PcapError> {
        self.hold_for_keys = on;
        if !on {
            self.release()?;
        }
        Ok(())
    }

    /// Append one Enhanced Packet Block.
    pub fn write_packet(&mut self, p: &CapturedPacket) -> Result<(), PcapError> {
        self.write_record(&RecordRef::from(p))
    }

    /// Append one Enhanced Packet Block for a packet given by its borrowed
    /// fields; a TLS plaintext record goes on the TLS interface (see the module doc).
    pub fn write_record(&mut self, p: &RecordRef<'_>) -> Result<(), PcapError> {
        self.release_if_late()?;
        if let Some(tls) = p.tls {
            return self.write_tls(p, tls);
        }
        let mut started_hold = None;
        let mut hello = None;
        if let Some((conn, random)) = client_hello(p.data) {
            if self.keys.conns.len() >= MAX_CONNS {
                self.keys.conns.clear();
                self.keys.seen.clear();
            }
            self.keys.seen.insert(random);
            self.keys.conns.insert(conn, random);
            if self.keys.hellos_here.len() >= MAX_CONNS {
                self.keys.hellos_here.clear();
            }
            self.keys.hellos_here.insert(random);
            hello = Some(random);
            // Keys read before their ClientHello was written go in now, before it.
            if let Some(lines) = self.keys.pending.remove(&random) {
                self.keys.pending_lines -= lines.len();
                self.write_keys(&lines)?;
            }
            if self.hold_for_keys && !covers_connection(self.keys.labels.get(&random).copied().unwrap_or(0)) {
                started_hold = Some(random);
            }
        }
        if let Some(random) = started_hold {
            let hold = self.hold.get_or_insert_with(|| {
                Box::new(Hold { blocks: Vec::new(), bytes: 0, waiting: HashSet::new(), since: Instant::now() })
            });
            hold.waiting.insert(random);
        }
        // A known process is remembered by `lookup` already; a new one here.
        let iface = match self.ifaces.lookup(p) {
            Lookup::Whole => None,
            Lookup::Known(id) => Some(id),
            Lookup::New { name, desc } => {
                let id = self.describe_process(name, desc)?;
                self.ifaces.remember(p, id);
                Some(id)
            }
        };
        self.cache_comment(p, iface.is_none());
        let comment = self.comments.text();
        let (data, orig_len) = captured(p, self.out.snaplen);
        // The block in parts: its fields, the packet's bytes (straight from
        // the record, the kernel's ring), their padding, and the options.
        let total = epb_len(data.len(), comment.len()) as u32;
        let mut head = [0u8; 28];
        for (at, v) in [BT_EPB, total, iface.unwrap_or(0), (p.timestamp_ns >> 32) as u32, p.timestamp_ns as u32]
            .into_iter()
            .chain([data.len() as u32, orig_len])
            .enumerate()
        {
            head[at * 4..at * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let pad = &[0u8; 3][..data.len().next_multiple_of(4) - data.len()];
        // The options start aligned (after the padding): built as a block's tail.
        let mut tail = Block { buf: std::mem::take(&mut self.block) };
        tail.buf.clear();
        if !comment.is_empty() {
            tail.option(OPT_COMMENT, comment.as_bytes());
        }
        tail.option(EPB_FLAGS, &flags(p.direction).to_le_bytes()).u32(OPT_ENDOFOPT.into()).u32(total);
        if self.hold.is_some() {
            // Held back (keys awaited): the block whole, in a buffer of its own.
            let bytes = [&head[..], data, pad, &tail.buf].concat();
            self.block = tail.buf;
            return self.emit_packet(bytes, None, hello);
        }
        // Written now, in one vectored write (one block: see [`write_block`]).
        let r = write_block(&mut self.out.w, &head, data, pad, &tail.buf);
        self.block = tail.buf;
        r?;
        self.blocks_out += 1;
        Ok(())
    }

    /// Make the current comment ([`Comments::text`]) `p`'s: the whole
    /// form (`full`: interface 0, TLS records) or the per-packet one (on its
    /// process's interface).
    fn cache_comment(&mut self, p: &RecordRef<'_>, full: bool) {
        self.comments.select(p, full);
    }

    /// Write the IDB of a process interface (not held: an interface must
    /// come before its packets, and may come early); its id.
    fn describe_process(&mut self, name: String, desc: String) -> Result<u32, PcapError> {
        self.write_now(&packets_idb(&name, Some(&desc), self.out.snaplen), false)?;
        Ok(self.ifaces.add(Iface::Process { name, desc }))
    }

    /// The TLS plaintext interface's id, describing it first if this file has not.
    fn tls_iface(&mut self) -> Result<u32, PcapError> {
        if let Some(id) = self.ifaces.tls {
            return Ok(id);
        }
        // Not held: an interface must come before its packets, and may come early.
        self.write_now(&tls_idb(), false)?;
        let id = self.ifaces.add(Iface::Tls);
        self.ifaces.tls = Some(id);
        Ok(id)
    }

    /// A TLS plaintext record: an Exported PDU on the TLS plaintext interface.
    fn write_tls(&mut self, p: &RecordRef<'_>, info: TlsInfo) -> Result<(), PcapError> {
        let iface = self.tls_iface()?;
        let d = decode(p.data, p.direction);
        let header_len = (d.payload_offset as usize).min(p.data.len());
        let plaintext = &p.data[header_len..];
        let (local, remote) =
            (SocketAddr::new(d.local_addr, d.local_port), SocketAddr::new(d.remote_addr, d.remote_port));
        let (src, dst) = match p.direction {
            Direction::Outbound => (local, remote),
            Direction::Inbound => (remote, local),
        };
        let conn = conn_key(local, remote);
        let random = self.keys.conns.get(&conn).copied();
        let keyed = random.is_some_and(|r| self.decrypts_here(&r));
        let proto = if looks_like_http(plaintext) && !keyed { PduProto::Http } else { PduProto::Data };
        let (tags, name_at) = pdu_tags(proto, src, dst);
        let kept = plaintext.len().min(self.out.snaplen as usize).min(crate::MAX_BLOCK_LEN as usize - 8192);
        let true_len = u64::from(p.orig_len).saturating_sub(header_len as u64).max(kept as u64);
        let caplen = tags.len() + kept;
        let orig_len = u32::try_from(tags.len() as u64 + true_len).unwrap_or(u32::MAX);
        self.cache_comment(p, true);
        let base = self.comments.text();
        let comment = format!("{base}{}", format_tls(&TlsComment { info, offset: d.tcp_seq.unwrap_or(0) }));
        let mut epb = Block::reuse(std::mem::take(&mut self.block), BT_EPB);
        epb.u32(iface).u32((p.timestamp_ns >> 32) as u32).u32(p.timestamp_ns as u32).u32(caplen as u32).u32(orig_len);
        epb.buf.extend_from_slice(&tags);
        epb.padded(&plaintext[..kept])
            .option(OPT_COMMENT, comment.as_bytes())
            .option(EPB_FLAGS, &flags(p.direction).to_le_bytes());
        epb.finish();
        // The protocol name's place in the block: after the 28 bytes of EPB header and fields.
        let at = 28 + name_at;
        self.emit_packet(epb.buf, random.filter(|_| proto == PduProto::Http).map(|r| (r, at)), None)
    }

    /// True when Wireshark can decrypt the connection of `random` in this
    /// file: its ClientHello is here and some of its keys are written.
    fn decrypts_here(&self, random: &[u8; 32]) -> bool {
        self.keys.hellos_here.contains(random) && self.keys.labels.get(random).is_some_and(|&l| l != 0)
    }

    /// Write a packet's block, or hold it back; the buffer comes back for reuse.
    fn emit_packet(
        &mut self,
        bytes: Vec<u8>,
        record: Option<([u8; 32], usize)>,
        hello: Option<[u8; 32]>,
    ) -> Result<(), PcapError> {
        if let Some(hold) = self.hold.as_mut() {
            hold.bytes += bytes.len();
            hold.blocks.push(Held { bytes, record, hello });
            if hold.bytes > HOLD_BYTES {
                self.release()?;
            }
            return Ok(());
        }
        let r = self.write_now(&bytes, true);
        self.block = bytes;
        r
    }

    /// One block to the output now; counted.
    fn write_now(&mut self, bytes: &[u8], packet: bool) -> Result<(), PcapError> {
        self.out.w.write_all(bytes)?;
        if !packet {
            self.not_packets.push(self.blocks_out);
        }
        self.blocks_out += 1;
        Ok(())
    }

    /// Write every held block (records whose connection's keys came meanwhile as `data`).
    fn release(&mut self) -> Result<(), PcapError> {
        let Some(hold) = self.hold.take() else { return Ok(()) };
        for mut held in hold.blocks {
            if let Some((random, at)) = held.record {
                if self.decrypts_here(&random) {
                    if let Some(name) = held.bytes.get_mut(at..at + 4) {
                        name.copy_from_slice(b"data");
                    }
                }
            }
            self.write_now(&held.bytes, true)?;
        }
        Ok(())
    }

    fn release_if_late(&mut self) -> Result<(), PcapError> {
        if self.hold.as_ref().is_some_and(|h| h.since.elapsed() >= HOLD_MAX) {
            self.release()?;
        }
        Ok(())
    }

    /// Add TLS key log lines: each line is written once per file, in a
    /// Decryption Secrets Block, before any packet written after this call
    /// (and before the packets held back for them). Only lines for a
    /// connection whose ClientHello is in the file are written; the others
    /// wait for it (a key log holds other programs' and older sessions'
    /// keys too). Returns how many lines were new.
    pub fn add_keys(&mut self, lines: &[KeyLogLine]) -> Result<usize, PcapError> {
        let mut now = Vec::new();
        let mut new = 0;
        for l in lines {
            if self.keys.written.contains(&l.to_line()) {
                continue;
            }
            new += 1;
            if self.keys.seen.contains(&l.client_random) {
                now.push(l.clone());
            } else {
                if self.keys.pending_lines >= MAX_PENDING {
                    self.keys.pending.clear();
                    self.keys.pending_lines = 0;
                }
                let waiting = self.keys.pending.entry(l.client_random).or_default();
                if !waiting.contains(l) {
                    waiting.push(l.clone());
                    self.keys.pending_lines += 1;
                }
            }
        }
        self.write_keys(&now)?;
        self.release_if_late()?;
        Ok(new)
    }

    /// One DSB with the lines not yet in the file; releases what waited for them.
    fn write_keys(&mut self, lines: &[KeyLogLine]) -> Result<(), PcapError> {
        let mut text = String::new();
        for l in lines {
            let line = l.to_line();
            if self.keys.written.insert(line.clone()) {
                text.push_str(&line);
                text.push('\n');
                *self.keys.labels.entry(l.client_random).or_default() |= l.label.bit();
            }
        }
        if text.is_empty() {
            return Ok(());
        }
        let bytes = dsb(&text);
        // Not held: the keys must come before the packets that need them.
        self.write_now(&bytes, false)?;
        if let Some(hold) = self.hold.as_mut() {
            let labels = &self.keys.labels;
            hold.waiting.retain(|r| !covers_connection(labels.get(r).copied().unwrap_or(0)));
            if hold.waiting.is_empty() {
                self.release()?;
            }
        }
        Ok(())
    }

    /// Key log lines written into the file so far.
    pub fn keys_written(&self) -> usize {
        self.keys.written.len()
    }

    /// Of the first `n` blocks written after the headers, how many are packets.
    pub(crate) fn packets_in(&self, n: u64) -> u64 {
        n - self.not_packets.iter().filter(|&&b| b < n).count() as u64
    }

    /// Flush the underlying writer (blocks held back for keys stay held).
    pub fn flush(&mut self) -> Result<(), PcapError> {
        self.release_if_late()?;
        self.out.flush()
    }

    /// Write what is held back, flush, and give back the underlying writer.
    pub fn into_inner(mut self) -> Result<W, PcapError> {
        self.release()?;
        self.out.into_inner()
    }
}

/// Comments by socket and thread, direct-mapped: the packets of a few
/// sockets interleave in the kernel's ring (two sender threads, a sink
/// that receives what they send), and each keeps its formatted comment. A
/// slot holds the last comment whose socket and thread map to it; it is
/// taken only when every field the comment says is the packet's.
#[derive(Debug)]
struct Comments {
    /// The packet's fields, whether the comment is the whole form, the text.
    slots: Vec<Option<(ProcessInfo, bool, String)>>,
    current: usize,
}

impl Comments {
    /// Slots (a power of two).
    const SLOTS: usize = 256;

    fn slot_of(pid: u32, cookie: u64, tid: u32) -> usize {
        let key = cookie ^ (u64::from(pid) << 32) ^ u64::from(tid).rotate_left(17);
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - Self::SLOTS.trailing_zeros())) as usize
    }

    /// Make `p`'s comment the current one, formatting it if its slot holds another.
    fn select(&mut self, p: &RecordRef<'_>, full: bool) {
        // A TLS record's thread is its call's (one `tid` in the comment).
        let tid = if p.tid != 0 { p.tid } else { p.tls.map_or(0, |t| t.tid) };
        let slot = Self::slot_of(p.pid, p.socket_cookie, tid);
        self.current = slot;
        let same = self.slots[slot].as_ref().is_some_and(|(i, f, _)| {
            *f == full
                && i.pid == p.pid
                && i.socket_cookie == p.socket_cookie
                && i.verdict == p.verdict
                && i.rule == p.rule
                && i.tid == tid
                && i.comm == p.comm
                && i.thread == p.thread
                && (!full || same_meta(i.process.as_ref(), p.process))
        });
        if !same {
            let info = ProcessInfo {
                pid: p.pid,
                comm: p.comm.to_string(),
                socket_cookie: p.socket_cookie,
                verdict: p.verdict,
                rule: p.rule,
                tid,
                thread: p.thread.to_string(),
                process: p.process.cloned(),
            };
            let text = if full { format_comment(&info) } else { format_packet_comment(&info) };
            self.slots[slot] = Some((info, full, text));
        }
    }

    /// The comment [`Comments::select`] chose last.
    fn text(&self) -> &str {
        self.slots[self.current].as_ref().map_or("", |(_, _, t)| t.as_str())
    }
}

impl Default for Comments {
    fn default() -> Comments {
        Comments { slots: vec![None; Self::SLOTS], current: 0 }
    }
}

/// A Decryption Secrets Block of key log `text`.
fn dsb(text: &str) -> Vec<u8> {
    let mut dsb = Block::new(BT_DSB);
    dsb.u32(SECRETS_TLS_KEY_LOG).u32(text.len() as u32).padded(text.as_bytes());
    dsb.finish().to_vec()
}

/// The IDB of a packets' interface: id 0 (`pidcap`, no description) or a
/// process's (`comm[pid]`, described).
fn packets_idb(name: &str, desc: Option<&str>, snaplen: u32) -> Vec<u8> {
    let mut idb = Block::new(BT_IDB);
    idb.u16(LINKTYPE_RAW_IDB).u16(0).u32(snaplen);
    idb.option(IF_NAME, name.as_bytes());
    if let Some(desc) = desc {
        idb.option(IF_DESCRIPTION, desc.as_bytes());
    }
    idb.option(IF_TSRESOL, &[9]);
    idb.finish().to_vec()
}

/// Do two packets carry the same process metadata (the same `Arc` first,
/// then by value)?
fn same_meta(a: Option<&Arc<ProcessMeta>>, b: Option<&Arc<ProcessMeta>>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        _ => false,
    }
}

/// An interface of the current file.
#[derive(Debug, Clone)]
enum Iface {
    /// Id 0: the packets with no process.
    Capture,
    /// A process ([`crate::comment::format_process`]).
    Process { name: String, desc: String },
    /// The TLS plaintext records.
    Tls,
}

/// The interfaces of the current file (index = interface id), the process
/// ones by description, and the last interface of each pid seen
/// (direct-mapped: a packet of a process already described costs a compare
/// of its name and metadata, pointer first, and no formatting).
#[derive(Debug)]
struct Interfaces {
    table: Vec<Iface>,
    by_desc: HashMap<String, u32>,
    tls: Option<u32>,
    recent: Vec<Option<Recent>>,
}

#[derive(Debug)]
struct Recent {
    pid: u32,
    comm: String,
    process: Option<Arc<ProcessMeta>>,
    id: u32,
}

/// Where a packet goes ([`Interfaces::lookup`]).
enum Lookup {
    /// No process, or a file that has [`Interfaces::MAX`] already:
    /// interface 0, the whole comment.
    Whole,
    /// A process interface this file has.
    Known(u32),
    /// A process this file has not described (yet).
    New { name: String, desc: String },
}

impl Interfaces {
    const RECENT: usize = 64;
    /// Most interfaces a file describes (pidcap's reader takes 65536 a
    /// section; this also bounds the descriptions kept): the processes seen
    /// after that in the file go on interface 0 with the whole comment.
    const MAX: usize = 16384;

    fn slot(pid: u32) -> usize {
        (pid.wrapping_mul(0x9e37_79b9) >> (32 - Self::RECENT.trailing_zeros())) as usize
    }

    fn lookup(&mut self, p: &RecordRef<'_>) -> Lookup {
        if p.pid == 0 {
            return Lookup::Whole;
        }
        if let Some(r) = &self.recent[Self::slot(p.pid)] {
            if r.pid == p.pid && r.comm == p.comm && same_meta(r.process.as_ref(), p.process) {
                // Id 0 is never a process's: it marks one seen once the file was full.
                return if r.id == 0 { Lookup::Whole } else { Lookup::Known(r.id) };
            }
        }
        let desc = format_process(p.pid, p.comm, p.process.map(|m| &**m));
        match self.by_desc.get(&desc) {
            Some(&id) => {
                self.remember(p, id);
                Lookup::Known(id)
            }
            // A description too long for an option (65535 bytes) would be cut: the whole comment
            // on interface 0 instead, cut as any long comment is.
            None if self.table.len() >= Self::MAX || desc.len() > usize::from(u16::MAX) => {
                self.remember(p, 0);
                Lookup::Whole
            }
            None => Lookup::New { name: process_if_name(p.pid, p.comm), desc },
        }
    }

    /// `p`'s process is interface `id` (what [`Interfaces::lookup`] looks at first).
    fn remember(&mut self, p: &RecordRef<'_>, id: u32) {
        self.recent[Self::slot(p.pid)] =
            Some(Recent { pid: p.pid, comm: p.comm.to_string(), process: p.process.cloned(), id });
    }

    /// A new interface; its id.
    fn add(&mut self, iface: Iface) -> u32 {
        let id = self.table.len() as u32;
        if let Iface::Process { desc, .. } = &iface {
            self.by_desc.insert(desc.clone(), id);
        }
        self.table.push(iface);
        id
    }
}

impl Default for Interfaces {
    fn default() -> Interfaces {
        Interfaces {
            table: vec![Iface::Capture],
            by_desc: HashMap::new(),
            tls: None,
            recent: (0..Self::RECENT).map(|_| None).collect(),
        }
    }
}

/// The IDB of the TLS plaintext interface.
fn tls_idb() -> Vec<u8> {
    let mut idb = Block::new(BT_IDB);
    idb.u16(LINKTYPE_UPPER_PDU).u16(0).u32(0);
    idb.option(IF_NAME, TLS_IF_NAME.as_bytes())
        .option(IF_DESCRIPTION, TLS_IF_DESCRIPTION.as_bytes())
        .option(IF_TSRESOL, &[9]);
    idb.finish().to_vec()
}

/// Bytes of the Exported PDU tags of a record ([`pdu_tags`]) for IPv4 and IPv6 endpoints.
const TAGS_V4: usize = 8 + 8 + 8 + 8 + 8 + 8 + 20 + 4;
const TAGS_V6: usize = TAGS_V4 + 2 * 12;

/// The length of an EPB of `data` bytes with a comment of `comment` bytes
/// and the flags option (as [`PcapngWriter::write_record`] builds it).
fn epb_len(data: usize, comment: usize) -> u64 {
    // Type, length, interface, timestamp (2), captured and original length: 28;
    // the comment option, the flags option (8), end of options (4), length (4).
    // No comment (a packet on its process's interface with nothing of its own): no option.
    let comment = if comment == 0 { 0 } else { 4 + comment.min(usize::from(u16::MAX)).next_multiple_of(4) };
    (28 + data.next_multiple_of(4) + comment + 8 + 4 + 4) as u64
}

/// One block given in parts, to `w` with vectored writes: a writer that
/// takes every write whole ([`crate::CaptureFile`]) takes the block in one
/// call, as one block; any other writer gets it all, in as many calls as it takes.
fn write_block<W: Write>(w: &mut W, head: &[u8], data: &[u8], pad: &[u8], tail: &[u8]) -> std::io::Result<()> {
    use std::io::{ErrorKind, IoSlice};
    let mut parts = [IoSlice::new(head), IoSlice::new(data), IoSlice::new(pad), IoSlice::new(tail)];
    let mut bufs = &mut parts[..];
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn flags(d: Direction) -> u32 {
    match d {
        Direction::Inbound => FLAG_INBOUND,
        Direction::Outbound => FLAG_OUTBOUND,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_packet::Verdict;

    fn record<'a>(pid: u32, data: &'a [u8], direction: Direction, cookie: u64) -> RecordRef<'a> {
        RecordRef {
            id: 1,
            timestamp_ns: 1_700_000_000_123_456_789 + data.len() as u64,
            pid,
            comm: "flood",
            tid: pid + 1,
            thread: "flood",
            process: None,
            socket_cookie: cookie,
            direction,
            verdict: Verdict::Pass,
            rule: None,
            orig_len: data.len() as u32 + 7,
            data,
            tls: None,
        }
    }

    /// Every packet of `records` through a writer; `held`: with every block
    /// held back first (the path that builds a block whole), released at the end.
    fn file(records: &[RecordRef<'_>], held: bool) -> Vec<u8> {
        let opts = WriterOptions { snaplen: 61, ..WriterOptions::default() };
        let mut w = PcapngWriter::with_os(Vec::new(), &opts, Some("Linux test")).unwrap();
        for r in records {
            if held {
                w.hold.get_or_insert_with(|| {
                    Box::new(Hold { blocks: Vec::new(), bytes: 0, waiting: HashSet::new(), since: Instant::now() })
                });
            }
            w.write_record(r).unwrap();
            if held {
                w.release().unwrap();
            }
        }
        w.into_inner().unwrap()
    }

    #[test]
    fn a_packet_written_from_the_record_in_parts_is_the_block_built_whole() {
        let bytes: Vec<u8> = (0..=70u8).collect();
        let mut records = Vec::new();
        // Every padding (0-3), cut by the snap length (61) or not, on
        // interface 0 (pid 0: the whole comment) and on a process's own
        // interface (the per-packet comment), both directions.
        for len in (0..=9).chain(60..=66) {
            for (pid, cookie) in [(0, 7), (4242, 1_000_544), (4242, 0)] {
                for dir in [Direction::Outbound, Direction::Inbound] {
                    records.push(record(pid, &bytes[..len], dir, cookie));
                }
            }
        }
        let parts = file(&records, false);
        assert_eq!(parts, file(&records, true));
        // Whole blocks, each length at both ends: one EPB per record.
        let (mut at, mut epbs) = (0, 0);
        while at < parts.len() {
            let word = |i: usize| u32::from_le_bytes(parts[i..i + 4].try_into().unwrap());
            let len = word(at + 4) as usize;
            assert!(len.is_multiple_of(4) && word(at + len - 4) as usize == len, "block at {at}");
            epbs += usize::from(word(at) == BT_EPB);
            at += len;
        }
        assert_eq!((at, epbs), (parts.len(), records.len()));
    }

    /// A writer that takes at most 3 bytes a call, and one part at a time.
    struct Dribble(Vec<u8>);

    impl Write for Dribble {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let n = b.len().min(3);
            self.0.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_block_in_parts_reaches_a_writer_that_takes_a_little_at_a_time_whole() {
        let mut w = Dribble(Vec::new());
        write_block(&mut w, b"head", b"packet", &[0, 0], b"tail").unwrap();
        assert_eq!(w.0, b"headpacket\0\0tail");
        let mut w = Dribble(Vec::new());
        write_block(&mut w, b"", b"", &[], b"x").unwrap();
        assert_eq!(w.0, b"x");
    }
}
