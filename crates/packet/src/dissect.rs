//! A packet as a tree of fields, the way Wireshark's detail pane shows it:
//! one top-level [`Field`] per layer (IP, TCP/UDP/ICMP, and one level of the
//! application protocol the Info line names: DNS, HTTP, TLS handshake), each
//! with its children (TCP options among them). Every field knows the bytes of
//! the packet it was read from (`range`, into `CapturedPacket::data`), so a
//! view can highlight them, and its Wireshark name (`name`, e.g.
//! `tcp.srcport`), which the display filter ([`crate::dfilter`]) reads.

use crate::CapturedPacket;
use std::ops::Range;

/// One line of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Wireshark's field name (`ip.src`, `tcp.flags.syn`, `dns.qry.name`);
    /// a layer's own name for a layer (`ip`, `tcp`, `dns`).
    pub name: &'static str,
    /// What the line shows: `Source Port: 51284`.
    pub label: String,
    /// The field's value as a display filter compares it (`51284`,
    /// `10.0.0.1`, `1` for a set flag, the text of a string field).
    pub value: String,
    /// The bytes it was read from, as offsets into the packet's data
    /// (empty for a field computed rather than read).
    pub range: Range<usize>,
    pub children: Vec<Field>,
}

/// The layers of a packet, outermost first. A TLS plaintext record has its
/// record layer only (its headers were synthesized by pidcap, not captured).
pub fn dissect(p: &CapturedPacket) -> Vec<Field> {
    // The skeleton of the interface; issue 14's packet-detail work fills it.
    let _ = p;
    Vec::new()
}
