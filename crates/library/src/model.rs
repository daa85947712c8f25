//! The records the library stores and returns: saved packets, their metadata,
//! tags with counts, sequences, filters and selections.

use pidcap_packet::{CapturedPacket, Direction, Protocol};
use serde::{Deserialize, Serialize};

/// The library's id of a saved packet (not the capture session's packet id).
pub type PacketId = i64;
/// The library's id of a sequence.
pub type SequenceId = i64;

/// A packet stored in the library, with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedPacket {
    /// Library id.
    pub id: PacketId,
    pub name: String,
    pub description: String,
    /// Tag names, sorted case-insensitively.
    pub tags: Vec<String>,
    /// When it was saved, nanoseconds since the UNIX epoch.
    pub saved_at_ns: u64,
    /// Where it came from: `pcap:FILE`, `dpp-v1:FILE`, `daemon`...
    pub source: String,
    /// True when the IP and transport headers were made up by pidcap (a
    /// DioProcess `.dpp` v1 entry carries only the payload).
    pub synthesized: bool,
    /// The packet with all its capture metadata (timestamp, pid, process name,
    /// direction, full bytes; protocol, addresses and ports decoded from them;
    /// `tls` for a TLS plaintext record).
    pub packet: CapturedPacket,
}

impl SavedPacket {
    /// The transport payload (a TLS record's plaintext).
    pub fn payload(&self) -> &[u8] {
        self.packet.payload()
    }

    /// True for a TLS plaintext record (decrypted, never on the wire as
    /// such): `packet.tls` holds its library and thread. Lists and search
    /// results mark such rows (see [`SavedPacket::kind`]).
    pub fn is_tls(&self) -> bool {
        self.packet.is_tls()
    }

    /// What the row is, for lists: `packet`, or `tls/openssl` (`tls/gnutls`,
    /// `tls/nss`) for a TLS plaintext record.
    pub fn kind(&self) -> String {
        match self.packet.tls {
            Some(t) => format!("tls/{}", t.library),
            None => "packet".into(),
        }
    }
}

/// Metadata given when saving packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PacketMeta {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
}

/// A packet about to be saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPacket {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    /// `None`: now.
    pub saved_at_ns: Option<u64>,
    pub source: String,
    pub synthesized: bool,
    pub packet: CapturedPacket,
}

impl NewPacket {
    /// A captured packet with the given metadata, saved now.
    pub fn new(packet: CapturedPacket, meta: &PacketMeta, source: impl Into<String>) -> NewPacket {
        NewPacket {
            name: meta.name.clone(),
            description: meta.description.clone(),
            tags: meta.tags.clone(),
            saved_at_ns: None,
            source: source.into(),
            synthesized: false,
            packet,
        }
    }
}

/// A change to a packet's (or sequence's) name and description; `None` keeps the value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetaEdit {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A tag and how many packets carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagCount {
    pub name: String,
    pub count: u64,
}

/// An ordered group of packets (a conversation), saved and exported together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    pub id: SequenceId,
    pub name: String,
    pub description: String,
    pub created_at_ns: u64,
    /// Members in order.
    pub packet_ids: Vec<PacketId>,
}

/// Conditions on the stored metadata; all given ones must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub protocol: Option<Protocol>,
    /// Local or remote port.
    pub port: Option<u16>,
    pub direction: Option<Direction>,
    /// Packets carrying this tag (case-insensitive).
    pub tag: Option<String>,
    pub pid: Option<u32>,
    /// Capture timestamp at or after this (ns since the epoch).
    pub since_ns: Option<u64>,
    /// Capture timestamp at or before this (ns since the epoch).
    pub until_ns: Option<u64>,
}

/// One search result: the packet and its bm25 score (lower is better, as SQLite ranks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub score: f64,
    pub packet: SavedPacket,
}

/// Which packets an export (or a bulk operation) covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// The whole library.
    All,
    /// These packets, in this order.
    Ids(Vec<PacketId>),
    /// Packets matching a filter.
    Filter(Filter),
    /// Packets matching a full-text search and a filter (at most `limit`).
    Search { query: String, filter: Filter, limit: usize },
    /// The members of a sequence, in order (the sequence itself is exported too).
    Sequence(SequenceId),
}
