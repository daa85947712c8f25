//! Conversations and Follow stream: the connections in a capture, counted as
//! packets arrive, and one connection's payload put back together.
//!
//! - [`ConversationKey`]: protocol and both endpoints, the same whichever way
//!   a packet went (the endpoints in order), plus an instance number for a
//!   5-tuple used again after its connection closed (a new SYN). A TLS
//!   plaintext record belongs to the TCP connection it was read from or
//!   written to: same key, counted apart as [`Stream::Plaintext`].
//! - [`ConversationTable`]: incremental, one [`CapturedPacket`] at a time
//!   ([`ConversationTable::add`]: a hash lookup and a few additions): packets
//!   and bytes each way, first and last time, the processes, the TCP state
//!   from the flags ([`TcpState`]), the ids of its packets.
//! - [`follow`]: one conversation's bytes in order as [`Chunk`]s (a
//!   direction, bytes or a gap, the packets they came from). TCP is put in
//!   order by sequence number in each direction (out-of-order segments,
//!   retransmissions and overlaps: the first captured copy of a byte wins);
//!   bytes no packet held are an explicit gap ([`GapReason::NotCaptured`]),
//!   and so is the part of a payload the snap length cut
//!   ([`GapReason::Truncated`]). UDP (and other protocols) are datagrams in
//!   capture order, one chunk each. TLS plaintext records are a stream in
//!   capture order, a jump of their stream offset being a gap (a record lost).
//!   Chunks of one direction that follow each other are one chunk (a
//!   message); the directions interleave in the order the bytes became
//!   contiguous (the packet that completed them).

use crate::build::flags;
use crate::{CapturedPacket, Direction, Protocol};
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

/// Which bytes of a conversation: what crossed the wire, or the TLS
/// plaintext records taken from the TLS library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Stream {
    #[default]
    Wire,
    Plaintext,
}

/// One conversation: protocol and both endpoints (`a <= b`), whichever
/// way a packet went, and which use of that 5-tuple (0 first; a SYN after
/// the connection closed or was reset starts the next).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    pub protocol: Protocol,
    pub a: SocketAddr,
    pub b: SocketAddr,
    pub instance: u32,
}

/// (protocol, lower endpoint, higher endpoint): a key without its instance.
type Tuple = (Protocol, SocketAddr, SocketAddr);

/// The packet's source and destination (not its local and remote).
pub fn endpoints(p: &CapturedPacket) -> (SocketAddr, SocketAddr) {
    let d = &p.decoded;
    let local = SocketAddr::new(d.local_addr, d.local_port);
    let remote = SocketAddr::new(d.remote_addr, d.remote_port);
    match p.direction {
        Direction::Outbound => (local, remote),
        Direction::Inbound => (remote, local),
    }
}

fn tuple(p: &CapturedPacket) -> Tuple {
    let (s, d) = endpoints(p);
    (p.decoded.protocol, s.min(d), s.max(d))
}

impl ConversationKey {
    /// The key of `p`'s conversation, first instance.
    pub fn of(p: &CapturedPacket) -> ConversationKey {
        let (protocol, a, b) = tuple(p);
        ConversationKey { protocol, a, b, instance: 0 }
    }

    fn tuple(&self) -> Tuple {
        (self.protocol, self.a, self.b)
    }
}

impl fmt::Display for ConversationKey {
    /// `TCP 10.0.0.1:40000 ⇄ 10.0.0.2:80` (`#2` after it for a later instance).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ⇄ {}", self.protocol, self.a, self.b)?;
        if self.instance > 0 {
            write!(f, " #{}", self.instance + 1)?;
        }
        Ok(())
    }
}

/// What one direction of a conversation carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flow {
    /// Packets (or TLS plaintext records).
    pub packets: u64,
    /// Bytes of the IP packets on the wire (`orig_len`); for records, of plaintext.
    pub bytes: u64,
    /// Bytes of transport payload (for records: of plaintext).
    pub payload: u64,
}

impl Flow {
    fn add(&mut self, p: &CapturedPacket) {
        self.packets += 1;
        self.payload += u64::from(p.decoded.payload_size);
        self.bytes += if p.is_tls() { u64::from(p.decoded.payload_size) } else { u64::from(p.orig_len) };
    }
}

/// A TCP connection's state, from the flags seen (either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    /// A SYN, no SYN-ACK yet.
    SynSeen,
    /// The SYN-ACK seen, or traffic without a handshake (it began before the capture).
    Established,
    /// A FIN from one side.
    Fin,
    /// A FIN from both sides.
    Closed,
    /// A RST.
    Reset,
}

impl TcpState {
    /// `SYN seen`, `established`, `FIN`, `closed`, `RST`.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpState::SynSeen => "SYN seen",
            TcpState::Established => "established",
            TcpState::Fin => "FIN",
            TcpState::Closed => "closed",
            TcpState::Reset => "RST",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Processes remembered per conversation (the first ones seen).
pub const MAX_PROCESSES: usize = 4;

/// One conversation, as counted so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversation {
    pub key: ConversationKey,
    /// The side that opened it: the SYN's sender; without a handshake, the
    /// side with the higher port when one port is below 1024 and the other
    /// not, else the first packet's sender.
    pub client: SocketAddr,
    /// Wire packets from `key.a` to `key.b` and back.
    pub a_to_b: Flow,
    pub b_to_a: Flow,
    /// TLS plaintext records, the same way.
    pub plain_a_to_b: Flow,
    pub plain_b_to_a: Flow,
    /// Timestamps of the first and last packet (or record), ns since the epoch.
    pub first_ns: u64,
    pub last_ns: u64,
    /// (pid, comm) of the processes seen on it, first first (at most [`MAX_PROCESSES`]).
    pub processes: Vec<(u32, String)>,
    /// Ids of its wire packets and of its records, in arrival order.
    pub packet_ids: Vec<u64>,
    pub record_ids: Vec<u64>,
    syn: bool,
    syn_ack: bool,
    fin_a: bool,
    fin_b: bool,
    rst: bool,
}

impl Conversation {
    fn new(key: ConversationKey, first: &CapturedPacket) -> Conversation {
        let (src, dst) = endpoints(first);
        let client = match (src.port() < 1024, dst.port() < 1024) {
            (true, false) => dst,
            (false, true) => src,
            _ => src,
        };
        Conversation {
            key,
            client,
            a_to_b: Flow::default(),
            b_to_a: Flow::default(),
            plain_a_to_b: Flow::default(),
            plain_b_to_a: Flow::default(),
            first_ns: first.timestamp_ns,
            last_ns: first.timestamp_ns,
            processes: Vec::new(),
            packet_ids: Vec::new(),
            record_ids: Vec::new(),
            syn: false,
            syn_ack: false,
            fin_a: false,
            fin_b: false,
            rst: false,
        }
    }

    /// The other end than the client.
    pub fn server(&self) -> SocketAddr {
        if self.client == self.key.a {
            self.key.b
        } else {
            self.key.a
        }
    }

    /// What the client sent, and what the server sent, of `stream`.
    pub fn flows(&self, stream: Stream) -> (Flow, Flow) {
        let (ab, ba) = match stream {
            Stream::Wire => (self.a_to_b, self.b_to_a),
            Stream::Plaintext => (self.plain_a_to_b, self.plain_b_to_a),
        };
        if self.client == self.key.a {
            (ab, ba)
        } else {
            (ba, ab)
        }
    }

    /// The ids of its packets of `stream`.
    pub fn ids(&self, stream: Stream) -> &[u64] {
        match stream {
            Stream::Wire => &self.packet_ids,
            Stream::Plaintext => &self.record_ids,
        }
    }

    /// True when it has TLS plaintext records.
    pub fn has_plaintext(&self) -> bool {
        !self.record_ids.is_empty()
    }

    /// Nanoseconds from its first packet to its last.
    pub fn duration_ns(&self) -> u64 {
        self.last_ns.saturating_sub(self.first_ns)
    }

    /// The TCP state; None for other protocols.
    pub fn state(&self) -> Option<TcpState> {
        if self.key.protocol != Protocol::Tcp {
            return None;
        }
        Some(if self.rst {
            TcpState::Reset
        } else if self.fin_a && self.fin_b {
            TcpState::Closed
        } else if self.fin_a || self.fin_b {
            TcpState::Fin
        } else if self.syn && !self.syn_ack {
            TcpState::SynSeen
        } else {
            TcpState::Established
        })
    }

    fn add(&mut self, p: &CapturedPacket) {
        let (src, _) = endpoints(p);
        let from_a = src == self.key.a;
        self.first_ns = self.first_ns.min(p.timestamp_ns);
        self.last_ns = self.last_ns.max(p.timestamp_ns);
        if self.processes.len() < MAX_PROCESSES && !self.processes.iter().any(|(pid, _)| *pid == p.pid) {
            self.processes.push((p.pid, p.comm.clone()));
        }
        if p.is_tls() {
            if from_a { &mut self.plain_a_to_b } else { &mut self.plain_b_to_a }.add(p);
            self.record_ids.push(p.id);
            return;
        }
        if from_a { &mut self.a_to_b } else { &mut self.b_to_a }.add(p);
        self.packet_ids.push(p.id);
        let Some(f) = p.decoded.tcp_flags.filter(|_| self.key.protocol == Protocol::Tcp) else { return };
        if f & flags::SYN != 0 {
            if f & flags::ACK == 0 {
                self.syn = true;
                self.client = src;
            } else {
                self.syn_ack = true;
                self.client = if from_a { self.key.b } else { self.key.a };
            }
        }
        if f & flags::FIN != 0 {
            if from_a {
                self.fin_a = true;
            } else {
                self.fin_b = true;
            }
        }
        if f & flags::RST != 0 {
            self.rst = true;
        }
    }

    /// A SYN (no ACK) on a connection that closed or was reset starts another.
    fn is_reused_by(&self, p: &CapturedPacket) -> bool {
        let Some(f) = p.decoded.tcp_flags else { return false };
        !p.is_tls()
            && f & flags::SYN != 0
            && f & flags::ACK == 0
            && matches!(self.state(), Some(TcpState::Closed | TcpState::Reset))
    }
}

/// Every conversation of a capture, updated one packet at a time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversationTable {
    /// In the order their first packet arrived.
    list: Vec<Conversation>,
    /// A 5-tuple's current instance: its index in `list`.
    current: HashMap<Tuple, usize>,
    /// Every key: its index in `list`.
    index: HashMap<ConversationKey, usize>,
    /// The newest id added (older ids are ignored: packets already counted).
    last_id: Option<u64>,
}

impl ConversationTable {
    pub fn new() -> ConversationTable {
        ConversationTable::default()
    }

    /// Count `p` in its conversation (a new one if needed); the
    /// conversation's index in [`ConversationTable::list`]. None for a packet
    /// whose id is not newer than the last one added (already counted), or
    /// that is not IP.
    pub fn add(&mut self, p: &CapturedPacket) -> Option<usize> {
        if self.last_id.is_some_and(|last| p.id <= last) {
            return None;
        }
        self.last_id = Some(p.id);
        if p.decoded.ip_version == 0 {
            return None;
        }
        let t = tuple(p);
        let i = match self.current.get(&t) {
            Some(&i) if !self.list[i].is_reused_by(p) => i,
            prev => {
                let instance = prev.map_or(0, |&i| self.list[i].key.instance + 1);
                let key = ConversationKey { protocol: t.0, a: t.1, b: t.2, instance };
                self.list.push(Conversation::new(key, p));
                let i = self.list.len() - 1;
                self.current.insert(t, i);
                self.index.insert(key, i);
                i
            }
        };
        self.list[i].add(p);
        Some(i)
    }

    /// Every conversation, in the order they began.
    pub fn list(&self) -> &[Conversation] {
        &self.list
    }

    pub fn get(&self, key: &ConversationKey) -> Option<&Conversation> {
        self.index.get(key).map(|&i| &self.list[i])
    }

    /// The conversation `p` is counted in (its 5-tuple's newest one that
    /// holds it, else the newest).
    pub fn of(&self, p: &CapturedPacket) -> Option<&Conversation> {
        let &i = self.current.get(&tuple(p))?;
        let key = self.list[i].key;
        (0..=key.instance)
            .rev()
            .filter_map(|n| self.get(&ConversationKey { instance: n, ..key }))
            .find(|c| c.ids(if p.is_tls() { Stream::Plaintext } else { Stream::Wire }).binary_search(&p.id).is_ok())
            .or(Some(&self.list[i]))
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn clear(&mut self) {
        *self = ConversationTable::default();
    }
}

/// Which end sent a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// `client` / `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }
}

/// Why bytes of a stream are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// No captured packet held them (not captured, dropped, or no longer held).
    NotCaptured,
    /// Their packet was captured, cut by the snap length.
    Truncated,
}

/// What a chunk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    Bytes(Vec<u8>),
    /// `len` bytes of the stream that were not captured.
    Gap {
        len: u64,
        reason: GapReason,
    },
}

/// A run of one direction's bytes (or a gap in them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub from: Side,
    pub data: Data,
    /// The packets it came from (a gap: the cut packets; none when nothing held them).
    pub packets: Vec<u64>,
    /// Offset of its first byte in its direction's stream.
    pub offset: u64,
}

impl Chunk {
    /// Its bytes (a gap: none).
    pub fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Bytes(b) => b,
            Data::Gap { .. } => &[],
        }
    }

    /// The length it stands for in the stream (a gap's too).
    pub fn len(&self) -> u64 {
        match &self.data {
            Data::Bytes(b) => b.len() as u64,
            Data::Gap { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_gap(&self) -> bool {
        matches!(self.data, Data::Gap { .. })
    }
}

/// One conversation's bytes, both directions, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowStream {
    pub key: ConversationKey,
    pub stream: Stream,
    pub client: SocketAddr,
    pub server: SocketAddr,
    pub chunks: Vec<Chunk>,
}

impl FollowStream {
    /// (bytes, bytes in gaps) sent by `side`.
    pub fn totals(&self, side: Side) -> (u64, u64) {
        let mine = self.chunks.iter().filter(|c| c.from == side);
        mine.fold((0, 0), |(b, g), c| if c.is_gap() { (b, g + c.len()) } else { (b + c.len(), g) })
    }
}

/// A piece of one direction, before the directions are merged: `order` is
/// the id of the packet that made it available (running maximum along the
/// stream, so that an out-of-order packet delays what follows it).
struct Piece {
    order: u64,
    offset: u64,
    data: Data,
    packets: Vec<u64>,
}

/// `conv`'s bytes of `stream` from `packets` (any packets: those not of the
/// conversation, or of the other stream, are left out; in capture order).
pub fn follow<'a>(
    conv: &Conversation,
    stream: Stream,
    packets: impl IntoIterator<Item = &'a CapturedPacket>,
) -> FollowStream {
    let ids = conv.ids(stream);
    let mut mine: [Vec<&CapturedPacket>; 2] = [Vec::new(), Vec::new()];
    for p in packets {
        if p.is_tls() != (stream == Stream::Plaintext) || tuple(p) != conv.key.tuple() {
            continue;
        }
        if ids.binary_search(&p.id).is_err() {
            continue; // another instance of the 5-tuple
        }
        let side = usize::from(endpoints(p).0 != conv.client);
        mine[side].push(p);
    }
    let pieces = mine.map(|ps| match (stream, conv.key.protocol) {
        (Stream::Plaintext, _) => records(&ps),
        (Stream::Wire, Protocol::Tcp) => tcp(&ps),
        (Stream::Wire, _) => datagrams(&ps),
    });
    let coalesce = !(stream == Stream::Wire && conv.key.protocol != Protocol::Tcp);
    FollowStream { key: conv.key, stream, client: conv.client, server: conv.server(), chunks: merge(pieces, coalesce) }
}

/// The captured payload of `p` (at most its size on the wire) and that size.
fn payload(p: &CapturedPacket) -> (&[u8], u64) {
    let wire = u64::from(p.decoded.payload_size);
    let got = p.payload();
    (&got[..got.len().min(wire as usize)], wire)
}

fn gap(len: u64, reason: GapReason) -> Data {
    Data::Gap { len, reason }
}

/// `p`'s payload as a piece at `offset`, and the part the snap length cut
/// as a gap after it; returns the payload's length on the wire.
fn push_payload(out: &mut Vec<Piece>, p: &CapturedPacket, offset: u64) -> u64 {
    let (got, wire) = payload(p);
    out.push(Piece { order: p.id, offset, data: Data::Bytes(got.to_vec()), packets: vec![p.id] });
    let cut = wire - got.len() as u64;
    if cut > 0 {
        out.push(Piece {
            order: p.id,
            offset: offset + got.len() as u64,
            data: gap(cut, GapReason::Truncated),
            packets: vec![p.id],
        });
    }
    wire
}

/// UDP and the rest: each datagram in capture order; a cut one ends in a gap.
fn datagrams(ps: &[&CapturedPacket]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut offset = 0;
    for p in ps {
        let wire = push_payload(&mut out, p, offset);
        offset += wire;
    }
    out
}

/// TLS plaintext records in capture order: each record's stream offset (its
/// synthesized sequence number) beyond the bytes so far is a gap (a record
/// lost); one cut by the snap length ends in a gap.
fn records(ps: &[&CapturedPacket]) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    let mut next_seq: Option<u32> = None;
    for p in ps {
        let seq = p.decoded.tcp_seq.unwrap_or(0);
        if let Some(n) = next_seq {
            let ahead = seq.wrapping_sub(n);
            if ahead > 0 && ahead < 1 << 31 {
                out.push(Piece {
                    order: p.id,
                    offset,
                    data: gap(u64::from(ahead), GapReason::NotCaptured),
                    packets: vec![],
                });
                offset += u64::from(ahead);
            }
        }
        let wire = push_payload(&mut out, p, offset);
        offset += wire;
        next_seq = Some(seq.wrapping_add(wire as u32));
    }
    out
}

/// One TCP segment's place in its direction's stream.
struct Segment<'a> {
    id: u64,
    /// Offset of its first payload byte from the stream's start.
    offset: u64,
    captured: &'a [u8],
    /// Its payload's length on the wire.
    wire: u64,
}

/// One direction of a TCP connection, by sequence number.
fn tcp(ps: &[&CapturedPacket]) -> Vec<Piece> {
    // The stream starts after the SYN's sequence number, or at the lowest
    // sequence number of a segment with payload (the connection began before
    // the capture). Offsets are taken relative to a base with wrapping
    // arithmetic, so a stream crossing 2^32 stays in order.
    let syn = ps.iter().find(|p| p.decoded.tcp_flags.is_some_and(|f| f & flags::SYN != 0));
    let data: Vec<&&CapturedPacket> = ps.iter().filter(|p| p.decoded.payload_size > 0).collect();
    let Some(base) = syn
        .map(|p| p.decoded.tcp_seq.unwrap_or(0).wrapping_add(1))
        .or_else(|| data.first().map(|p| p.decoded.tcp_seq.unwrap_or(0)))
    else {
        return Vec::new();
    };
    let rel = |p: &CapturedPacket| {
        let syn_byte = p.decoded.tcp_flags.is_some_and(|f| f & flags::SYN != 0);
        let seq = p.decoded.tcp_seq.unwrap_or(0).wrapping_add(u32::from(syn_byte));
        i64::from(seq.wrapping_sub(base) as i32)
    };
    let start = if syn.is_some() { 0 } else { data.iter().map(|p| rel(p)).min().unwrap_or(0) };
    let mut segs: Vec<Segment<'_>> = Vec::new();
    for p in &data {
        let (captured, wire) = payload(p);
        let (mut off, mut captured, mut wire) = (rel(p) - start, captured, wire);
        if off < 0 {
            // Before the SYN's sequence number: only what reaches past it counts.
            let skip = off.unsigned_abs();
            if skip >= wire {
                continue;
            }
            captured = &captured[(skip as usize).min(captured.len())..];
            wire -= skip;
            off = 0;
        }
        segs.push(Segment { id: p.id, offset: off as u64, captured, wire });
    }
    // Stable: at one offset, the first captured copy comes first (and wins).
    segs.sort_by_key(|s| s.offset);
    // The parts the snap length cut, merged: [start, end) with the cut packets.
    let mut cuts: Vec<(u64, u64, Vec<u64>)> = Vec::new();
    for s in &segs {
        let (from, to) = (s.offset + s.captured.len() as u64, s.offset + s.wire);
        if from >= to {
            continue;
        }
        match cuts.last_mut() {
            Some(last) if from <= last.1 => {
                last.1 = last.1.max(to);
                last.2.push(s.id);
            }
            _ => cuts.push((from, to, vec![s.id])),
        }
    }
    let mut out = Vec::new();
    let mut cursor = 0u64;
    let mut order = 0u64;
    for s in &segs {
        order = order.max(s.id);
        if s.offset > cursor {
            gaps(&cuts, cursor, s.offset, order, &mut out);
            cursor = s.offset;
        }
        let end = s.offset + s.captured.len() as u64;
        if end > cursor {
            let bytes = s.captured[(cursor - s.offset) as usize..].to_vec();
            out.push(Piece { order, offset: cursor, data: Data::Bytes(bytes), packets: vec![s.id] });
            cursor = end;
        }
    }
    let end = segs.iter().map(|s| s.offset + s.wire).max().unwrap_or(0);
    if end > cursor {
        gaps(&cuts, cursor, end, order, &mut out);
    }
    out
}

/// The gap pieces for [from, to): cut by the snap length where a cut covers
/// it, not captured elsewhere.
fn gaps(cuts: &[(u64, u64, Vec<u64>)], from: u64, to: u64, order: u64, out: &mut Vec<Piece>) {
    let mut at = from;
    for (cs, ce, ids) in cuts.iter().filter(|c| c.1 > from && c.0 < to) {
        let (cs, ce) = ((*cs).max(at), (*ce).min(to));
        if cs > at {
            out.push(Piece { order, offset: at, data: gap(cs - at, GapReason::NotCaptured), packets: vec![] });
        }
        if ce > cs {
            out.push(Piece { order, offset: cs, data: gap(ce - cs, GapReason::Truncated), packets: ids.clone() });
        }
        at = at.max(ce);
    }
    if to > at {
        out.push(Piece { order, offset: at, data: gap(to - at, GapReason::NotCaptured), packets: vec![] });
    }
}

/// Both directions' pieces in order of the packet that made them available
/// (client first on a tie); with `coalesce`, consecutive pieces of one
/// direction and kind are one chunk.
fn merge(pieces: [Vec<Piece>; 2], coalesce: bool) -> Vec<Chunk> {
    let [client, server] = pieces;
    let (mut c, mut s) = (client.into_iter().peekable(), server.into_iter().peekable());
    let mut out: Vec<Chunk> = Vec::new();
    loop {
        let (from, piece) = match (c.peek(), s.peek()) {
            (Some(x), Some(y)) if x.order <= y.order => (Side::Client, c.next()),
            (Some(_), Some(_)) => (Side::Server, s.next()),
            (Some(_), None) => (Side::Client, c.next()),
            (None, Some(_)) => (Side::Server, s.next()),
            (None, None) => break,
        };
        let Some(piece) = piece else { break };
        if coalesce {
            if let Some(last) = out.last_mut().filter(|l| l.from == from) {
                let joined = match (&mut last.data, &piece.data) {
                    (Data::Bytes(a), Data::Bytes(b)) => {
                        a.extend_from_slice(b);
                        true
                    }
                    (Data::Gap { len, reason }, Data::Gap { len: more, reason: r }) if reason == r => {
                        *len += more;
                        true
                    }
                    _ => false,
                };
                if joined {
                    for id in piece.packets {
                        if !last.packets.contains(&id) {
                            last.packets.push(id);
                        }
                    }
                    continue;
                }
            }
        }
        out.push(Chunk { from, data: piece.data, packets: piece.packets, offset: piece.offset });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{build, TcpFields, Transport};
    use crate::{TlsInfo, TlsLibrary, TlsRecord, Verdict};

    const CLIENT: &str = "10.0.0.1:40000";
    const SERVER: &str = "10.0.0.2:80";

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// A packet captured at the client (pid 7, curl): `from_client` says which way it went.
    fn tcp_pkt(id: u64, from_client: bool, seq: u32, f: u8, payload: &[u8]) -> CapturedPacket {
        let (src, dst) = if from_client { (sa(CLIENT), sa(SERVER)) } else { (sa(SERVER), sa(CLIENT)) };
        let data =
            build(src, dst, 64, Transport::Tcp(TcpFields { seq, ack: 1, flags: f, window: 512 }), payload).unwrap();
        let dir = if from_client { Direction::Outbound } else { Direction::Inbound };
        let len = data.len() as u32;
        CapturedPacket::new(id, 1_000 + id * 1_000, 7, "curl".into(), 9, dir, Verdict::Pass, len, data)
    }

    /// `p` as captured with a snap length: only `keep` bytes of it.
    fn cut(mut p: CapturedPacket, keep: usize) -> CapturedPacket {
        p.data.truncate(keep);
        p.decoded = crate::decode(&p.data, p.direction);
        p
    }

    const PA: u8 = flags::PSH | flags::ACK;

    fn table(ps: &[CapturedPacket]) -> ConversationTable {
        let mut t = ConversationTable::new();
        for p in ps {
            t.add(p);
        }
        t
    }

    fn follow_all(ps: &[CapturedPacket], stream: Stream) -> FollowStream {
        let t = table(ps);
        assert_eq!(t.len(), 1, "{:?}", t.list());
        follow(&t.list()[0], stream, ps)
    }

    /// The chunks as text: `C:bytes`, `S:bytes`, `C:[n missing]`, `C:[n cut]`.
    fn render(f: &FollowStream) -> Vec<String> {
        f.chunks
            .iter()
            .map(|c| {
                let who = if c.from == Side::Client { "C" } else { "S" };
                match &c.data {
                    Data::Bytes(b) => format!("{who}:{}", String::from_utf8_lossy(b)),
                    Data::Gap { len, reason: GapReason::NotCaptured } => format!("{who}:[{len} missing]"),
                    Data::Gap { len, reason: GapReason::Truncated } => format!("{who}:[{len} cut]"),
                }
            })
            .collect()
    }

    fn handshake() -> Vec<CapturedPacket> {
        vec![
            tcp_pkt(1, true, 100, flags::SYN, b""),
            tcp_pkt(2, false, 500, flags::SYN | flags::ACK, b""),
            tcp_pkt(3, true, 101, flags::ACK, b""),
        ]
    }

    #[test]
    fn a_conversation_is_one_whichever_way_and_counts_each_way() {
        let mut ps = handshake();
        ps.push(tcp_pkt(4, true, 101, PA, b"GET / HTTP/1.0\r\n\r\n"));
        ps.push(tcp_pkt(5, false, 501, PA, b"HTTP/1.0 200 OK\r\n\r\nhello"));
        let t = table(&ps);
        assert_eq!(t.len(), 1);
        let c = &t.list()[0];
        assert_eq!(c.key, ConversationKey::of(&ps[1]));
        assert_eq!(c.key.to_string(), "TCP 10.0.0.1:40000 ⇄ 10.0.0.2:80");
        assert_eq!((c.client, c.server()), (sa(CLIENT), sa(SERVER)));
        let (up, down) = c.flows(Stream::Wire);
        assert_eq!((up.packets, down.packets), (3, 2));
        assert_eq!(up.payload, 18);
        assert_eq!(down.payload, 24);
        let sent = |d| ps.iter().filter(|p| p.direction == d).map(|p| u64::from(p.orig_len)).sum::<u64>();
        assert_eq!((up.bytes, down.bytes), (sent(Direction::Outbound), sent(Direction::Inbound)));
        assert_eq!(up.bytes, 3 * 40 + 18);
        assert_eq!((c.first_ns, c.duration_ns()), (2_000, 4_000));
        assert_eq!(c.processes, [(7, "curl".to_string())]);
        assert_eq!(c.packet_ids, [1, 2, 3, 4, 5]);
        assert_eq!(c.state(), Some(TcpState::Established));
        // Already counted: ignored.
        let mut t2 = t.clone();
        assert_eq!(t2.add(&ps[4]), None);
        assert_eq!(t2, t);
    }

    #[test]
    fn tcp_state_follows_the_flags() {
        let mut t = ConversationTable::new();
        let state = |t: &ConversationTable| t.list().last().unwrap().state();
        t.add(&tcp_pkt(1, true, 100, flags::SYN, b""));
        assert_eq!(state(&t), Some(TcpState::SynSeen));
        t.add(&tcp_pkt(2, false, 500, flags::SYN | flags::ACK, b""));
        assert_eq!(state(&t), Some(TcpState::Established));
        t.add(&tcp_pkt(3, true, 101, flags::FIN | flags::ACK, b""));
        assert_eq!(state(&t), Some(TcpState::Fin));
        t.add(&tcp_pkt(4, false, 501, flags::FIN | flags::ACK, b""));
        assert_eq!(state(&t), Some(TcpState::Closed));
        // The 5-tuple used again: a second conversation.
        t.add(&tcp_pkt(5, true, 9000, flags::SYN, b""));
        assert_eq!(t.len(), 2);
        assert_eq!(t.list()[1].key.instance, 1);
        assert_eq!(t.list()[1].key.to_string(), "TCP 10.0.0.1:40000 ⇄ 10.0.0.2:80 #2");
        assert_eq!(state(&t), Some(TcpState::SynSeen));
        t.add(&tcp_pkt(6, false, 0, flags::RST | flags::ACK, b""));
        assert_eq!(state(&t), Some(TcpState::Reset));
        assert_eq!(t.list()[0].packet_ids, [1, 2, 3, 4]);
        assert_eq!(t.list()[1].packet_ids, [5, 6]);
        assert_eq!(t.of(&tcp_pkt(3, true, 0, 0, b"")).unwrap().key.instance, 0);
        assert_eq!(t.of(&tcp_pkt(6, true, 0, 0, b"")).unwrap().key.instance, 1);
        // Data without a handshake: established; the client by its port.
        let mut t = ConversationTable::new();
        t.add(&tcp_pkt(1, false, 7, PA, b"late"));
        assert_eq!(state(&t), Some(TcpState::Established));
        assert_eq!(t.list()[0].client, sa(CLIENT));
    }

    #[test]
    fn follow_puts_tcp_in_order_and_interleaves_the_directions() {
        let mut ps = handshake();
        ps.push(tcp_pkt(4, true, 101, PA, b"GET / HTTP/1.0\r\n"));
        ps.push(tcp_pkt(5, true, 117, PA, b"\r\n"));
        ps.push(tcp_pkt(6, false, 501, PA, b"HTTP/1.0 200 OK\r\n\r\n"));
        ps.push(tcp_pkt(7, false, 520, PA, b"hello"));
        ps.push(tcp_pkt(8, false, 525, flags::FIN | flags::ACK, b""));
        let f = follow_all(&ps, Stream::Wire);
        assert_eq!(render(&f), ["C:GET / HTTP/1.0\r\n\r\n", "S:HTTP/1.0 200 OK\r\n\r\nhello"]);
        assert_eq!(f.chunks[0].packets, [4, 5]);
        assert_eq!(f.chunks[1].packets, [6, 7]);
        assert_eq!((f.chunks[1].offset, f.totals(Side::Server)), (0, (24, 0)));
        assert_eq!((f.client, f.server), (sa(CLIENT), sa(SERVER)));
    }

    #[test]
    fn out_of_order_segments_are_put_back_in_order() {
        let mut ps = handshake();
        ps.push(tcp_pkt(4, true, 106, PA, b"world"));
        ps.push(tcp_pkt(5, false, 501, PA, b"early"));
        ps.push(tcp_pkt(6, true, 101, PA, b"hello"));
        let f = follow_all(&ps, Stream::Wire);
        // "world" waits for "hello" (packet 6), so the server's bytes come first.
        assert_eq!(render(&f), ["S:early", "C:helloworld"]);
        assert_eq!(f.chunks[1].packets, [6, 4]);
    }

    #[test]
    fn retransmissions_and_overlaps_are_taken_once() {
        let mut ps = handshake();
        ps.push(tcp_pkt(4, true, 101, PA, b"abcdef"));
        ps.push(tcp_pkt(5, true, 101, PA, b"abcdef")); // retransmitted
        ps.push(tcp_pkt(6, true, 104, PA, b"XXXghij")); // overlaps: "def" again, differently
        ps.push(tcp_pkt(7, true, 100, PA, b"?")); // before the stream (a keep-alive probe)
        let f = follow_all(&ps, Stream::Wire);
        assert_eq!(render(&f), ["C:abcdefghij"]);
        assert_eq!(f.chunks[0].packets, [4, 6]);
    }

    #[test]
    fn bytes_not_captured_are_a_gap_with_their_length() {
        let mut ps = handshake();
        ps.push(tcp_pkt(4, true, 101, PA, b"one"));
        // 123 bytes at seq 104 never captured.
        ps.push(tcp_pkt(5, true, 227, PA, b"two"));
        let f = follow_all(&ps, Stream::Wire);
        assert_eq!(render(&f), ["C:one", "C:[123 missing]", "C:two"]);
        assert!(f.chunks[1].packets.is_empty());
        assert_eq!(f.chunks[2].offset, 126);
        assert_eq!(f.totals(Side::Client), (6, 123));
        // Without the SYN the stream starts at the lowest sequence number seen.
        let f = follow_all(&ps[3..], Stream::Wire);
        assert_eq!(render(&f), ["C:one", "C:[123 missing]", "C:two"]);
    }

    #[test]
    fn a_payload_cut_by_the_snap_length_is_a_gap_a_later_copy_can_fill() {
        let mut ps = handshake();
        let long = tcp_pkt(4, true, 101, PA, b"0123456789");
        let headers = long.data.len() - 10;
        ps.push(cut(long.clone(), headers + 4));
        ps.push(tcp_pkt(5, true, 111, PA, b"end"));
        let f = follow_all(&ps, Stream::Wire);
        assert_eq!(render(&f), ["C:0123", "C:[6 cut]", "C:end"]);
        assert_eq!(f.chunks[1].packets, [4]);
        // A retransmission captured whole fills it.
        ps.push(tcp_pkt(6, true, 101, PA, b"0123456789"));
        let f = follow_all(&ps, Stream::Wire);
        assert_eq!(render(&f), ["C:0123456789end"]);
        // A cut last segment: its gap ends the stream; a missing part beside a cut is said apart.
        let mut ps = handshake();
        ps.push(cut(tcp_pkt(4, true, 101, PA, b"0123456789"), headers + 2));
        ps.push(cut(tcp_pkt(5, true, 121, PA, b"abcdefghij"), headers));
        let f = follow_all(&ps, Stream::Wire);
        assert_eq!(render(&f), ["C:01", "C:[8 cut]", "C:[10 missing]", "C:[10 cut]"]);
        assert_eq!(f.chunks[3].packets, [5]);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let ps = vec![
            tcp_pkt(1, true, u32::MAX - 1, flags::SYN, b""),
            tcp_pkt(2, true, u32::MAX, PA, b"ab"),
            tcp_pkt(3, true, 1, PA, b"cd"),
        ];
        assert_eq!(render(&follow_all(&ps, Stream::Wire)), ["C:abcd"]);
    }

    fn udp_pkt(id: u64, from_client: bool, payload: &[u8]) -> CapturedPacket {
        let (c, s) = (sa("[fd00::1]:5353"), sa("[fd00::2]:53"));
        let (src, dst) = if from_client { (c, s) } else { (s, c) };
        let data = build(src, dst, 64, Transport::Udp, payload).unwrap();
        let dir = if from_client { Direction::Outbound } else { Direction::Inbound };
        let len = data.len() as u32;
        CapturedPacket::new(id, id, 8, "dig".into(), 3, dir, Verdict::Pass, len, data)
    }

    #[test]
    fn udp_is_datagrams_in_order_and_a_cut_one_ends_in_a_gap() {
        let q2 = udp_pkt(3, true, b"query2");
        let hl = q2.data.len() - 6;
        let ps = vec![
            udp_pkt(1, true, b"query1"),
            udp_pkt(2, false, b"answer1"),
            cut(q2, hl + 2),
            udp_pkt(4, true, b"query3"),
        ];
        let t = table(&ps);
        let c = &t.list()[0];
        assert_eq!(c.state(), None);
        assert_eq!(c.client, sa("[fd00::1]:5353"), "the side of the port under 1024 is the server");
        let (up, down) = c.flows(Stream::Wire);
        assert_eq!((up.packets, up.payload, down.packets, down.payload), (3, 18, 1, 7));
        let f = follow(c, Stream::Wire, &ps);
        // Datagrams stay apart, even two of one direction in a row.
        assert_eq!(render(&f), ["C:query1", "S:answer1", "C:qu", "C:[4 cut]", "C:query3"]);
        assert_eq!(f.chunks[4].offset, 12);
    }

    fn record(id: u64, from_client: bool, offset: u32, plaintext: &[u8], true_len: u64) -> CapturedPacket {
        CapturedPacket::tls_record(TlsRecord {
            id,
            timestamp_ns: id,
            pid: 7,
            comm: "curl".into(),
            socket_cookie: 9,
            direction: if from_client { Direction::Outbound } else { Direction::Inbound },
            local: sa(CLIENT),
            remote: sa(SERVER),
            info: TlsInfo { tid: 7, library: TlsLibrary::Openssl },
            plaintext,
            true_len,
            stream_offset: offset,
        })
    }

    #[test]
    fn tls_records_belong_to_their_connection_and_follow_as_plaintext() {
        let mut ps = handshake();
        ps.push(tcp_pkt(4, true, 101, PA, b"\x16\x03\x01 client hello"));
        ps.push(record(5, true, 0, b"GET /secret HTTP/1.1\r\n\r\n", 24));
        ps.push(tcp_pkt(6, true, 117, PA, b"\x17\x03\x03 ciphertext"));
        ps.push(tcp_pkt(7, false, 501, PA, b"\x17\x03\x03 ciphertext back"));
        ps.push(record(8, false, 0, b"HTTP/1.1 200 OK\r\n", 17));
        ps.push(record(9, false, 17, b"\r\nhe", 10)); // cut: 6 bytes not kept
                                                      // A record lost in the kernel: 50 bytes, then this one.
        ps.push(record(10, false, 77, b"tail", 4));
        let t = table(&ps);
        assert_eq!(t.len(), 1, "records are counted in their TCP connection");
        let c = &t.list()[0];
        assert!(c.has_plaintext());
        assert_eq!(c.record_ids, [5, 8, 9, 10]);
        let (up, down) = c.flows(Stream::Plaintext);
        assert_eq!((up.packets, up.bytes, down.packets, down.bytes), (1, 24, 3, 31));
        assert_eq!(c.flows(Stream::Wire).0.packets, 4);
        let plain = follow(c, Stream::Plaintext, &ps);
        assert_eq!(
            render(&plain),
            ["C:GET /secret HTTP/1.1\r\n\r\n", "S:HTTP/1.1 200 OK\r\n\r\nhe", "S:[6 cut]", "S:[50 missing]", "S:tail"]
        );
        assert_eq!(plain.chunks[1].packets, [8, 9]);
        let wire = follow(c, Stream::Wire, &ps);
        assert_eq!(
            render(&wire),
            ["C:\x16\x03\x01 client hello\x17\x03\x03 ciphertext", "S:\x17\x03\x03 ciphertext back"]
        );
    }

    #[test]
    fn follow_leaves_out_other_conversations_and_instances() {
        let mut ps = handshake();
        ps.push(tcp_pkt(4, true, 101, PA, b"first"));
        ps.push(tcp_pkt(5, true, 106, flags::RST, b""));
        ps.push(tcp_pkt(6, true, 7000, flags::SYN, b""));
        ps.push(tcp_pkt(7, true, 7001, PA, b"second"));
        ps.push(udp_pkt(8, true, b"other"));
        let t = table(&ps);
        assert_eq!(t.len(), 3);
        assert_eq!(render(&follow(&t.list()[0], Stream::Wire, &ps)), ["C:first"]);
        assert_eq!(render(&follow(&t.list()[1], Stream::Wire, &ps)), ["C:second"]);
        assert_eq!(render(&follow(&t.list()[2], Stream::Wire, &ps)), ["C:other"]);
        assert!(follow(&t.list()[0], Stream::Plaintext, &ps).chunks.is_empty());
    }
}
