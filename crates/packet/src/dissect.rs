//! A packet as a tree of fields, the way Wireshark's detail pane shows it:
//! one top-level [`Field`] per layer (IP, TCP/UDP/ICMP, and one level of the
//! application protocol the Info line names: DNS, HTTP, TLS handshake, QUIC),
//! each with its children (TCP flags and options among them). Every field knows the bytes of
//! the packet it was read from (`range`, into `CapturedPacket::data`), so a
//! view can highlight them, and its Wireshark name (`name`, e.g.
//! `tcp.srcport`), which the display filter ([`crate::dfilter`]) reads.
//!
//! A TLS plaintext record is shown as its record layer (library, thread,
//! connection: computed, so with empty ranges) and the application protocol
//! of its plaintext; the synthesized IP and TCP headers are not shown.
//! Ranges never pass the captured bytes (a packet cut by the snap length
//! shows what it has); nothing panics on any bytes (fuzzed: target `dissect`).

use crate::decode::{headers, Headers, IpHeader, TransportHeader};
use crate::info::{self, dns, quic, tls, App};
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

fn field(name: &'static str, label: impl Into<String>, value: impl ToString, range: Range<usize>) -> Field {
    Field { name, label: label.into(), value: value.to_string(), range, children: Vec::new() }
}

impl Field {
    fn with(mut self, children: Vec<Field>) -> Field {
        self.children = children;
        self
    }

    /// This field and its descendants, depth first.
    pub fn walk(&self) -> Vec<&Field> {
        let mut out = vec![self];
        for c in &self.children {
            out.extend(c.walk());
        }
        out
    }

    /// The first field called `name` here or below.
    pub fn find(&self, name: &str) -> Option<&Field> {
        self.walk().into_iter().find(|f| f.name == name)
    }
}

/// The first field called `name` in a tree.
pub fn find<'a>(tree: &'a [Field], name: &str) -> Option<&'a Field> {
    tree.iter().find_map(|f| f.find(name))
}

/// The layers of a packet, outermost first. A TLS plaintext record has its
/// record layer only (its headers were synthesized by pidcap, not captured).
pub fn dissect(p: &CapturedPacket) -> Vec<Field> {
    let data = &p.data;
    let h = headers(data);
    let mut out = Vec::new();
    if let Some(t) = p.tls {
        let d = &p.decoded;
        let (src, dst) = match p.direction {
            crate::Direction::Outbound => ((d.local_addr, d.local_port), (d.remote_addr, d.remote_port)),
            crate::Direction::Inbound => ((d.remote_addr, d.remote_port), (d.local_addr, d.local_port)),
        };
        let payload = h.payload_offset..data.len();
        let (src_name, dst_name) = if src.0.is_ipv4() { ("ip.src", "ip.dst") } else { ("ipv6.src", "ipv6.dst") };
        let mut children = vec![
            field("pidcap.tls", format!("Library: {}", t.library), t.library, 0..0),
            field("pidcap.tid", format!("Thread: {}", t.tid), t.tid, 0..0),
            field(src_name, format!("Source: {}", src.0), src.0, 0..0),
            field("tcp.srcport", format!("Source Port: {}", src.1), src.1, 0..0),
            field(dst_name, format!("Destination: {}", dst.0), dst.0, 0..0),
            field("tcp.dstport", format!("Destination Port: {}", dst.1), dst.1, 0..0),
            field("tcp.len", format!("Plaintext length: {} bytes", d.payload_size), d.payload_size, 0..0),
        ];
        if !payload.is_empty() {
            children.push(field("tcp.payload", format!("Plaintext ({} bytes captured)", payload.len()), "", payload));
        }
        out.push(
            field(
                "pidcap.tls",
                format!(
                    "TLS plaintext record ({}, {}), {} → {}: taken from the library, not the wire",
                    t.library,
                    p.direction,
                    std::net::SocketAddr::new(src.0, src.1),
                    std::net::SocketAddr::new(dst.0, dst.1)
                ),
                t.library,
                0..0,
            )
            .with(children),
        );
    } else {
        match h.ip {
            Some(IpHeader::V4(_)) => out.push(ipv4(data, &h)),
            Some(IpHeader::V6(_)) => out.push(ipv6(data, &h)),
            None => {
                out.push(field("data", format!("Data ({} bytes): not an IP packet", data.len()), "", 0..data.len()));
                return out;
            }
        }
        if let Some(t) = transport(data, &h) {
            out.push(t);
        }
    }
    if let Some(a) = app(data, &h) {
        out.push(a);
    }
    for f in &mut out {
        clamp(f, data.len());
    }
    out
}

fn clamp(f: &mut Field, len: usize) {
    f.range = f.range.start.min(len)..f.range.end.min(len).max(f.range.start.min(len));
    for c in &mut f.children {
        clamp(c, len);
    }
}

fn be16(d: &[u8], at: usize) -> u16 {
    d.get(at..at + 2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

fn be32(d: &[u8], at: usize) -> u32 {
    d.get(at..at + 4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn byte(d: &[u8], at: usize) -> u8 {
    d.get(at).copied().unwrap_or(0)
}

fn proto_name(n: u8) -> String {
    crate::Protocol::from_number(n).name()
}

fn ipv4(data: &[u8], h: &Headers) -> Field {
    let Some(IpHeader::V4(ip)) = h.ip else { unreachable!("called for IPv4") };
    let hl = ip.header_len;
    let flags = byte(data, 6) >> 5;
    let frag = be16(data, 6) & 0x1fff;
    let mut children = vec![
        field("ip.version", "Version: 4", 4, 0..1),
        field("ip.hdr_len", format!("Header Length: {hl} bytes ({})", hl / 4), hl, 0..1),
        field("ip.dsfield", format!("Differentiated Services Field: 0x{:02x}", byte(data, 1)), byte(data, 1), 1..2),
        field("ip.len", format!("Total Length: {}", ip.total_len), ip.total_len, 2..4),
        field(
            "ip.id",
            format!("Identification: 0x{:04x} ({})", ip.identification, ip.identification),
            ip.identification,
            4..6,
        ),
        field(
            "ip.flags",
            format!("Flags: 0x{flags:x}{}", if ip.dont_fragment { ", Don't fragment" } else { "" }),
            flags,
            6..7,
        )
        .with(vec![
            field(
                "ip.flags.df",
                format!("Don't fragment: {}", set(ip.dont_fragment)),
                u8::from(ip.dont_fragment),
                6..7,
            ),
            field(
                "ip.flags.mf",
                format!("More fragments: {}", set(ip.more_fragments)),
                u8::from(ip.more_fragments),
                6..7,
            ),
        ]),
        field("ip.frag_offset", format!("Fragment Offset: {}", frag * 8), frag * 8, 6..8),
        field("ip.ttl", format!("Time to Live: {}", ip.ttl), ip.ttl, 8..9),
        field("ip.proto", format!("Protocol: {} ({})", proto_name(ip.protocol), ip.protocol), ip.protocol, 9..10),
        field(
            "ip.checksum",
            format!("Header Checksum: 0x{:04x}", ip.checksum),
            format!("0x{:04x}", ip.checksum),
            10..12,
        ),
        field("ip.src", format!("Source Address: {}", ip.source), ip.source, 12..16),
        field("ip.dst", format!("Destination Address: {}", ip.destination), ip.destination, 16..20),
    ];
    if hl > 20 {
        children.push(field("ip.options", format!("Options: ({} bytes)", hl - 20), "", 20..hl));
    }
    field("ip", format!("Internet Protocol Version 4, Src: {}, Dst: {}", ip.source, ip.destination), "", 0..hl)
        .with(children)
}

fn set(b: bool) -> &'static str {
    if b {
        "Set"
    } else {
        "Not set"
    }
}

fn ipv6(data: &[u8], h: &Headers) -> Field {
    let Some(IpHeader::V6(ip)) = h.ip else { unreachable!("called for IPv6") };
    let tclass = (be16(data, 0) >> 4) & 0xff;
    let mut children = vec![
        field("ipv6.version", "Version: 6", 6, 0..1),
        field("ipv6.tclass", format!("Traffic Class: 0x{tclass:02x}"), tclass, 0..2),
        field("ipv6.flow", format!("Flow Label: 0x{:05x}", ip.flow_label), ip.flow_label, 1..4),
        field("ipv6.plen", format!("Payload Length: {}", ip.payload_len), ip.payload_len, 4..6),
        field(
            "ipv6.nxt",
            format!("Next Header: {} ({})", next_header_name(ip.next_header), ip.next_header),
            ip.next_header,
            6..7,
        ),
        field("ipv6.hlim", format!("Hop Limit: {}", ip.hop_limit), ip.hop_limit, 7..8),
        field("ipv6.src", format!("Source Address: {}", ip.source), ip.source, 8..24),
        field("ipv6.dst", format!("Destination Address: {}", ip.destination), ip.destination, 24..40),
    ];
    // Extension headers, up to the transport.
    let (mut next, mut at) = (ip.next_header, 40);
    while at < ip.header_len && children.len() < 40 {
        let (name, label, len) = match next {
            0 => ("ipv6.hopopts", "Hop-by-Hop Options", (usize::from(byte(data, at + 1)) + 1) * 8),
            43 => ("ipv6.routing", "Routing Header", (usize::from(byte(data, at + 1)) + 1) * 8),
            44 => ("ipv6.fragment", "Fragment Header", 8),
            60 => ("ipv6.dstopts", "Destination Options", (usize::from(byte(data, at + 1)) + 1) * 8),
            51 => ("ipv6.ah", "Authentication Header", (usize::from(byte(data, at + 1)) + 2) * 4),
            _ => break,
        };
        let nh = byte(data, at);
        children.push(
            field(name, format!("{label}, Next Header: {} ({nh})", next_header_name(nh)), "", at..at + len)
                .with(vec![field("ipv6.nxt", format!("Next Header: {}", nh), nh, at..at + 1)]),
        );
        next = nh;
        at += len;
    }
    field(
        "ipv6",
        format!("Internet Protocol Version 6, Src: {}, Dst: {}", ip.source, ip.destination),
        "",
        0..ip.header_len,
    )
    .with(children)
}

fn next_header_name(n: u8) -> String {
    match n {
        0 => "IPv6 Hop-by-Hop Option".into(),
        43 => "Routing Header for IPv6".into(),
        44 => "Fragment Header for IPv6".into(),
        60 => "Destination Options for IPv6".into(),
        n => proto_name(n),
    }
}

fn transport(data: &[u8], h: &Headers) -> Option<Field> {
    let ip = h.ip?;
    let o = match ip {
        IpHeader::V4(v) => v.header_len,
        IpHeader::V6(v) => v.header_len,
    };
    let payload = h.payload_offset..data.len();
    Some(match h.transport? {
        TransportHeader::Tcp(t) => {
            let flags = be16(data, o + 12) & 0x0fff;
            let names = [
                (0x80, "tcp.flags.cwr", "Congestion Window Reduced"),
                (0x40, "tcp.flags.ece", "ECN-Echo"),
                (0x20, "tcp.flags.urg", "Urgent"),
                (0x10, "tcp.flags.ack", "Acknowledgment"),
                (0x08, "tcp.flags.push", "Push"),
                (0x04, "tcp.flags.reset", "Reset"),
                (0x02, "tcp.flags.syn", "Syn"),
                (0x01, "tcp.flags.fin", "Fin"),
            ];
            let mut flag_fields: Vec<Field> = names
                .iter()
                .map(|&(bit, name, label)| {
                    let on = t.flags & bit != 0;
                    field(name, format!("{label}: {}", set(on)), u8::from(on), o + 13..o + 14)
                })
                .collect();
            flag_fields
                .insert(0, field("tcp.flags.res", format!("Reserved: {}", flags >> 9), flags >> 9, o + 12..o + 13));
            let flag_names = flags_text(t.flags);
            let ack = t.flags & 0x10 != 0;
            let mut children = vec![
                field("tcp.srcport", format!("Source Port: {}", t.source_port), t.source_port, o..o + 2),
                field(
                    "tcp.dstport",
                    format!("Destination Port: {}", t.destination_port),
                    t.destination_port,
                    o + 2..o + 4,
                ),
                field("tcp.seq", format!("Sequence Number: {} (absolute)", t.seq), t.seq, o + 4..o + 8),
                field(
                    "tcp.ack",
                    if ack {
                        format!("Acknowledgment Number: {} (absolute)", t.ack)
                    } else {
                        format!("Acknowledgment Number: {} (ACK not set)", t.ack)
                    },
                    t.ack,
                    o + 8..o + 12,
                ),
                field(
                    "tcp.hdr_len",
                    format!("Header Length: {} bytes ({})", t.header_len, t.header_len / 4),
                    t.header_len,
                    o + 12..o + 13,
                ),
                field(
                    "tcp.flags",
                    format!("Flags: 0x{flags:03x} ({flag_names})"),
                    format!("0x{flags:03x}"),
                    o + 12..o + 14,
                )
                .with(flag_fields),
                field("tcp.window_size_value", format!("Window: {}", t.window), t.window, o + 14..o + 16),
                field(
                    "tcp.checksum",
                    format!("Checksum: 0x{:04x}", t.checksum),
                    format!("0x{:04x}", t.checksum),
                    o + 16..o + 18,
                ),
                field(
                    "tcp.urgent_pointer",
                    format!("Urgent Pointer: {}", be16(data, o + 18)),
                    be16(data, o + 18),
                    o + 18..o + 20,
                ),
            ];
            if t.header_len > 20 {
                let opts = tcp_options(data, o + 20, o + t.header_len);
                let summary: Vec<String> =
                    opts.iter().map(|f| f.label.split(':').next().unwrap_or("").to_string()).collect();
                children.push(
                    field(
                        "tcp.options",
                        format!("Options: ({} bytes), {}", t.header_len - 20, summary.join(", ")),
                        "",
                        o + 20..o + t.header_len,
                    )
                    .with(opts),
                );
            }
            children.push(field("tcp.len", format!("TCP Segment Len: {}", h.payload_size), h.payload_size, 0..0));
            if !payload.is_empty() {
                children.push(field("tcp.payload", format!("TCP payload ({} bytes)", payload.len()), "", payload));
            }
            let mut label = format!(
                "Transmission Control Protocol, Src Port: {}, Dst Port: {}, Seq: {}",
                t.source_port, t.destination_port, t.seq
            );
            if ack {
                label.push_str(&format!(", Ack: {}", t.ack));
            }
            label.push_str(&format!(", Len: {}", h.payload_size));
            field("tcp", label, "", o..o + t.header_len).with(children)
        }
        TransportHeader::Udp(u) => {
            let mut children = vec![
                field("udp.srcport", format!("Source Port: {}", u.source_port), u.source_port, o..o + 2),
                field(
                    "udp.dstport",
                    format!("Destination Port: {}", u.destination_port),
                    u.destination_port,
                    o + 2..o + 4,
                ),
                field("udp.length", format!("Length: {}", u.length), u.length, o + 4..o + 6),
                field(
                    "udp.checksum",
                    format!("Checksum: 0x{:04x}", u.checksum),
                    format!("0x{:04x}", u.checksum),
                    o + 6..o + 8,
                ),
            ];
            if !payload.is_empty() {
                children.push(field("udp.payload", format!("UDP payload ({} bytes)", payload.len()), "", payload));
            }
            field(
                "udp",
                format!("User Datagram Protocol, Src Port: {}, Dst Port: {}", u.source_port, u.destination_port),
                "",
                o..o + 8,
            )
            .with(children)
        }
        TransportHeader::Icmp { header_len } => {
            let v6 = ip.protocol() == 58;
            let (layer, ty, code, sum, id, seq) = if v6 {
                (
                    "icmpv6",
                    "icmpv6.type",
                    "icmpv6.code",
                    "icmpv6.checksum",
                    "icmpv6.echo.identifier",
                    "icmpv6.echo.sequence_number",
                )
            } else {
                ("icmp", "icmp.type", "icmp.code", "icmp.checksum", "icmp.ident", "icmp.seq")
            };
            let t = byte(data, o);
            let c = byte(data, o + 1);
            let icmp_bytes = data.get(o..).unwrap_or(&[]);
            let what = info::info(data);
            let mut children = vec![
                field(ty, format!("Type: {t} ({what})"), t, o..o + 1),
                field(code, format!("Code: {c}"), c, o + 1..o + 2),
                field(
                    sum,
                    format!("Checksum: 0x{:04x}", be16(data, o + 2)),
                    format!("0x{:04x}", be16(data, o + 2)),
                    o + 2..o + 4,
                ),
            ];
            let echo = if v6 { matches!(t, 128 | 129) } else { matches!(t, 0 | 8) };
            if echo && icmp_bytes.len() >= 8 {
                children.push(field(
                    id,
                    format!("Identifier: {} (0x{:04x})", be16(data, o + 4), be16(data, o + 4)),
                    be16(data, o + 4),
                    o + 4..o + 6,
                ));
                children.push(field(
                    seq,
                    format!("Sequence Number: {}", be16(data, o + 6)),
                    be16(data, o + 6),
                    o + 6..o + 8,
                ));
            }
            if !payload.is_empty() {
                children.push(field("data", format!("Data ({} bytes)", payload.len()), "", payload));
            }
            let title = if v6 { "Internet Control Message Protocol v6" } else { "Internet Control Message Protocol" };
            field(layer, title, "", o..o + header_len).with(children)
        }
    })
}

/// `SYN, ACK`, in Wireshark's order.
fn flags_text(f: u8) -> String {
    let names = [
        (0x80, "CWR"),
        (0x40, "ECE"),
        (0x20, "URG"),
        (0x10, "ACK"),
        (0x08, "PSH"),
        (0x04, "RST"),
        (0x02, "SYN"),
        (0x01, "FIN"),
    ];
    let set: Vec<&str> = names.iter().filter(|(b, _)| f & b != 0).map(|(_, n)| *n).collect();
    if set.is_empty() {
        "<None>".into()
    } else {
        set.join(", ")
    }
}

/// Each TCP option in `start..end` as a field.
fn tcp_options(data: &[u8], start: usize, end: usize) -> Vec<Field> {
    let end = end.min(data.len());
    let mut out = Vec::new();
    let mut p = start;
    while p < end && out.len() < 40 {
        let kind = data[p];
        match kind {
            0 => {
                out.push(field("tcp.options.eol", "End of Option List (EOL)", "", p..end));
                break;
            }
            1 => {
                out.push(field("tcp.options.nop", "No-Operation (NOP)", "", p..p + 1));
                p += 1;
                continue;
            }
            _ => {}
        }
        let len = usize::from(byte(data, p + 1));
        if len < 2 || p + len > end {
            out.push(field("tcp.options.unknown", format!("Unknown option {kind}: bad length {len}"), "", p..end));
            break;
        }
        let d = p + 2;
        let r = p..p + len;
        out.push(match (kind, len) {
            (2, 4) => {
                field("tcp.options.mss_val", format!("Maximum segment size: {} bytes", be16(data, d)), be16(data, d), r)
            }
            (3, 3) => {
                let s = byte(data, d);
                field(
                    "tcp.options.wscale.shift",
                    format!("Window scale: {s} (multiply by {})", 1u32 << s.min(14)),
                    s,
                    r,
                )
            }
            (4, 2) => field("tcp.options.sack_perm", "SACK permitted", "", r),
            (5, _) => {
                let blocks: Vec<String> = (0..(len - 2) / 8)
                    .map(|i| format!("{}-{}", be32(data, d + i * 8), be32(data, d + i * 8 + 4)))
                    .collect();
                field("tcp.options.sack", format!("SACK: {}", blocks.join(" ")), blocks.join(" "), r)
            }
            (8, 10) => field(
                "tcp.options.timestamp.tsval",
                format!("Timestamps: TSval {}, TSecr {}", be32(data, d), be32(data, d + 4)),
                be32(data, d),
                r,
            ),
            (30, _) => field("tcp.options.mptcp", "Multipath TCP", "", r),
            (34, _) => field("tcp.options.tfo", "TCP Fast Open", "", r),
            (k, l) => field("tcp.options.unknown", format!("Option {k} ({l} bytes)"), k, r),
        });
        p += len;
    }
    out
}

/// The application layer the Info line names, if any.
fn app(data: &[u8], h: &Headers) -> Option<Field> {
    let proto = h.ip?.protocol();
    let base = h.payload_offset;
    let payload = data.get(base..).unwrap_or(&[]);
    match info::app(proto, h.ports(), payload)? {
        App::Dns(m) => {
            // Over TCP, after the 2-byte length.
            let base = if proto == 6 { base + 2 } else { base };
            Some(dns_tree(&m, base))
        }
        App::HttpRequest(_) | App::HttpStatus(_) => Some(http_tree(payload, base)),
        App::Tls(records) => Some(tls_tree(&records, base)),
        App::Quic(q) => Some(quic_tree(&q, base)),
    }
}

fn dns_tree(m: &dns::Message, b: usize) -> Field {
    let kind = if m.response { "response" } else { "query" };
    let mut children = vec![
        field("dns.id", format!("Transaction ID: 0x{:04x}", m.id), m.id, b..b + 2),
        field(
            "dns.flags",
            format!(
                "Flags: standard {kind}{}",
                if m.response && m.rcode != 0 { format!(", {}", dns::rcode_name(m.rcode)) } else { String::new() }
            ),
            "",
            b + 2..b + 4,
        )
        .with(vec![
            field(
                "dns.flags.response",
                format!("Response: {}", u8::from(m.response)),
                u8::from(m.response),
                b + 2..b + 3,
            ),
            field("dns.flags.opcode", format!("Opcode: {}", m.opcode), m.opcode, b + 2..b + 3),
            field(
                "dns.flags.recdesired",
                format!("Recursion desired: {}", u8::from(m.recursion_desired)),
                u8::from(m.recursion_desired),
                b + 2..b + 3,
            ),
            field(
                "dns.flags.rcode",
                format!("Reply code: {} ({})", dns::rcode_name(m.rcode), m.rcode),
                m.rcode,
                b + 3..b + 4,
            ),
        ]),
        field("dns.count.queries", format!("Questions: {}", m.counts[0]), m.counts[0], b + 4..b + 6),
        field("dns.count.answers", format!("Answer RRs: {}", m.counts[1]), m.counts[1], b + 6..b + 8),
        field("dns.count.auth_rr", format!("Authority RRs: {}", m.counts[2]), m.counts[2], b + 8..b + 10),
        field("dns.count.add_rr", format!("Additional RRs: {}", m.counts[3]), m.counts[3], b + 10..b + 12),
    ];
    let bare = |n: &str| if n == "." { "<Root>".to_string() } else { n.trim_end_matches('.').to_string() };
    for q in &m.questions {
        let (s, e) = (b + q.range.start, b + q.range.end);
        let name = bare(&q.name);
        children.push(
            field("dns.qry.name", format!("Query: {name}: type {}", dns::type_name(q.qtype)), &name, s..e).with(vec![
                field("dns.qry.name", format!("Name: {name}"), &name, s..e - 4),
                field(
                    "dns.qry.type",
                    format!("Type: {} ({})", dns::type_name(q.qtype), q.qtype),
                    q.qtype,
                    e - 4..e - 2,
                ),
                field("dns.qry.class", format!("Class: 0x{:04x}", q.qclass), q.qclass, e - 2..e),
            ]),
        );
    }
    for a in &m.answers {
        let (s, e) = (b + a.range.start, b + a.range.end);
        let data_start = e.saturating_sub(usize::from(a.data_len)).max(s);
        let name = bare(&a.name);
        let (dname, dlabel, dvalue) = match &a.data {
            dns::RData::A(x) => ("dns.a", format!("Address: {x}"), x.to_string()),
            dns::RData::Aaaa(x) => ("dns.aaaa", format!("AAAA Address: {x}"), x.to_string()),
            dns::RData::Name(n) => ("dns.cname", format!("Name: {}", bare(n)), bare(n)),
            d => ("dns.data", format!("Data: {}", d.text()), d.text()),
        };
        children.push(
            field(
                "dns.resp.name",
                format!("Answer: {name}: type {}, {}", dns::type_name(a.rtype), a.data.text()),
                &name,
                s..e,
            )
            .with(vec![
                field(
                    "dns.resp.type",
                    format!("Type: {} ({})", dns::type_name(a.rtype), a.rtype),
                    a.rtype,
                    data_start.saturating_sub(10)..data_start.saturating_sub(8),
                ),
                field(
                    "dns.resp.ttl",
                    format!("Time to live: {}", a.ttl),
                    a.ttl,
                    data_start.saturating_sub(6)..data_start.saturating_sub(2),
                ),
                field(dname, dlabel, dvalue, data_start..e),
            ]),
        );
    }
    let end = children.iter().map(|f| f.range.end).max().unwrap_or(b + 12);
    field("dns", format!("Domain Name System ({kind})"), "", b..end).with(children)
}

/// Header names Wireshark has fields for.
const HTTP_HEADERS: &[(&str, &str)] = &[
    ("host", "http.host"),
    ("user-agent", "http.user_agent"),
    ("accept", "http.accept"),
    ("content-type", "http.content_type"),
    ("content-length", "http.content_length_header"),
    ("connection", "http.connection"),
    ("server", "http.server"),
    ("cookie", "http.cookie"),
    ("set-cookie", "http.set_cookie"),
    ("location", "http.location"),
    ("referer", "http.referer"),
    ("authorization", "http.authorization"),
    ("date", "http.date"),
    ("transfer-encoding", "http.transfer_encoding"),
];

fn http_tree(payload: &[u8], b: usize) -> Field {
    let mut children = Vec::new();
    let mut p = 0;
    let mut first = true;
    let mut request = false;
    while p < payload.len() && children.len() < 100 {
        let nl = payload[p..].iter().position(|&c| c == b'\n').map_or(payload.len(), |i| p + i + 1);
        let line = &payload[p..nl];
        let text =
            crate::ascii::escape(line.strip_suffix(b"\r\n").or_else(|| line.strip_suffix(b"\n")).unwrap_or(line));
        let r = b + p..b + nl;
        if line == b"\r\n" || line == b"\n" {
            children.push(field("http.end_of_headers", "\\r\\n (end of headers)", "", r));
            p = nl;
            break;
        }
        if first {
            first = false;
            let parts: Vec<&str> = text.splitn(3, ' ').collect();
            let get = |i: usize| parts.get(i).copied().unwrap_or("");
            let mut offs = Vec::new();
            let mut at = b + p;
            for part in &parts {
                offs.push(at..at + part.len());
                at += part.len() + 1;
            }
            let off = |i: usize| offs.get(i).cloned().unwrap_or(r.clone());
            if text.starts_with("HTTP/") {
                children.push(field("http.response", text.clone(), 1, r.clone()).with(vec![
                    field("http.response.version", format!("Response Version: {}", get(0)), get(0), off(0)),
                    field("http.response.code", format!("Status Code: {}", get(1)), get(1), off(1)),
                    field("http.response.phrase", format!("Response Phrase: {}", get(2)), get(2), off(2)),
                ]));
            } else {
                request = true;
                children.push(field("http.request", text.clone(), 1, r.clone()).with(vec![
                    field("http.request.method", format!("Request Method: {}", get(0)), get(0), off(0)),
                    field("http.request.uri", format!("Request URI: {}", get(1)), get(1), off(1)),
                    field("http.request.version", format!("Request Version: {}", get(2)), get(2), off(2)),
                ]));
            }
        } else {
            let (name, value) = text.split_once(':').unwrap_or((&text, ""));
            let lname = name.trim().to_ascii_lowercase();
            let fname = HTTP_HEADERS.iter().find(|(h, _)| *h == lname).map(|(_, f)| *f);
            let generic = if request { "http.request.line" } else { "http.response.line" };
            children.push(field(fname.unwrap_or(generic), text.clone(), value.trim(), r));
        }
        p = nl;
    }
    if p < payload.len() {
        children.push(field(
            "http.file_data",
            format!("File Data: {} bytes", payload.len() - p),
            "",
            b + p..b + payload.len(),
        ));
    }
    field("http", "Hypertext Transfer Protocol", "", b..b + payload.len()).with(children)
}

fn tls_tree(records: &[tls::Record], b: usize) -> Field {
    let mut children = Vec::new();
    for r in records {
        let s = b + r.range.start;
        let what = match r.content_type {
            22 if r.encrypted => "Handshake Protocol: Encrypted Handshake Message".to_string(),
            22 => format!(
                "Handshake Protocol: {}",
                r.messages.iter().map(|m| tls::message_name(m.kind)).collect::<Vec<_>>().join(", ")
            ),
            t => format!("{} Protocol", tls::content_type_name(t)),
        };
        let mut rc = vec![
            field(
                "tls.record.content_type",
                format!("Content Type: {} ({})", tls::content_type_name(r.content_type), r.content_type),
                r.content_type,
                s..s + 1,
            ),
            field(
                "tls.record.version",
                format!("Version: {} (0x{:04x})", tls::version_name(r.version), r.version),
                format!("0x{:04x}", r.version),
                s + 1..s + 3,
            ),
            field("tls.record.length", format!("Length: {}", r.length), r.length, s + 3..s + 5),
        ];
        for m in &r.messages {
            rc.push(handshake(m, b));
        }
        if r.messages.is_empty() && r.range.len() > 5 {
            let label = if r.content_type == 23 { "Encrypted Application Data" } else { "Data" };
            let name = if r.content_type == 23 { "tls.app_data" } else { "tls.record.data" };
            rc.push(field(name, format!("{label}: {} bytes", r.range.len() - 5), "", s + 5..b + r.range.end));
        }
        children.push(
            field(
                "tls.record",
                format!("{} Record Layer: {what}", tls::version_name(r.version).replace("TLS ", "TLSv")),
                "",
                s..b + r.range.end,
            )
            .with(rc),
        );
    }
    let end = records.last().map_or(b, |r| b + r.range.end);
    field("tls", "Transport Layer Security", "", b..end).with(children)
}

/// A handshake message (`b`: where the bytes its ranges count from start in the packet).
fn handshake(m: &tls::Message, b: usize) -> Field {
    let s = b + m.range.start;
    let mut c = vec![
        field(
            "tls.handshake.type",
            format!("Handshake Type: {} ({})", tls::message_name(m.kind), m.kind),
            m.kind,
            s..s + 1,
        ),
        field("tls.handshake.length", format!("Length: {}", m.length), m.length, s + 1..s + 4),
    ];
    if let Some(h) = &m.hello {
        c.extend(hello_fields(h, |r| b + r.start..b + r.end));
    }
    field("tls.handshake", format!("Handshake Protocol: {}", tls::message_name(m.kind)), "", s..b + m.range.end).with(c)
}

fn hello_fields(h: &tls::Hello, at: impl Fn(&Range<usize>) -> Range<usize>) -> Vec<Field> {
    let mut c = vec![field(
        "tls.handshake.version",
        format!("Version: {} (0x{:04x})", tls::version_name(h.version.0), h.version.0),
        format!("0x{:04x}", h.version.0),
        at(&h.version.1),
    )];
    if !h.random.is_empty() {
        c.push(field("tls.handshake.random", "Random", "", at(&h.random)));
    }
    if !h.session_id.is_empty() {
        c.push(field(
            "tls.handshake.session_id",
            format!("Session ID Length: {}", h.session_id.len().saturating_sub(1)),
            "",
            at(&h.session_id),
        ));
    }
    if !h.cipher_suites.is_empty() {
        let label = if h.cipher_suites.len() == 1 && h.cipher_suites_range.len() == 2 {
            format!("Cipher Suite: 0x{:04x}", h.cipher_suites[0])
        } else {
            format!("Cipher Suites ({} suites)", h.cipher_suites.len())
        };
        let suites: Vec<String> = h.cipher_suites.iter().map(|s| format!("0x{s:04x}")).collect();
        c.push(field("tls.handshake.ciphersuite", label, suites.join(","), at(&h.cipher_suites_range)));
    }
    for e in &h.extensions {
        let mut ef = field(
            "tls.handshake.extension.type",
            format!("Extension: {} (len={})", extension_name(e.kind), e.range.len().saturating_sub(4)),
            e.kind,
            at(&e.range),
        );
        match e.kind {
            0 => {
                if let Some((n, r)) = &h.sni {
                    ef.children.push(field(
                        "tls.handshake.extensions_server_name",
                        format!("Server Name: {n}"),
                        n,
                        at(r),
                    ));
                }
            }
            16 => {
                for (a, r) in &h.alpn {
                    ef.children.push(field(
                        "tls.handshake.extensions_alpn_str",
                        format!("ALPN Next Protocol: {a}"),
                        a,
                        at(r),
                    ));
                }
            }
            43 => {
                for v in &h.supported_versions {
                    ef.children.push(field(
                        "tls.handshake.extensions.supported_version",
                        format!("Supported Version: {} (0x{v:04x})", tls::version_name(*v)),
                        format!("0x{v:04x}"),
                        0..0,
                    ));
                }
            }
            _ => {}
        }
        c.push(ef);
    }
    c
}

fn extension_name(k: u16) -> String {
    let n = match k {
        0 => "server_name",
        5 => "status_request",
        10 => "supported_groups",
        11 => "ec_point_formats",
        13 => "signature_algorithms",
        16 => "application_layer_protocol_negotiation",
        18 => "signed_certificate_timestamp",
        21 => "padding",
        22 => "encrypt_then_mac",
        23 => "extended_master_secret",
        35 => "session_ticket",
        41 => "pre_shared_key",
        42 => "early_data",
        43 => "supported_versions",
        45 => "psk_key_exchange_modes",
        49 => "post_handshake_auth",
        51 => "key_share",
        57 => "quic_transport_parameters",
        0xff01 => "renegotiation_info",
        k => return format!("Unknown type {k}"),
    };
    n.into()
}

fn quic_tree(q: &quic::Packet, b: usize) -> Field {
    let mut c = Vec::new();
    let Some(h) = &q.long else {
        c.push(field("quic.header_form", "Header Form: Short Header (0)", 0, b..b + 1));
        c.push(field(
            "quic.key_phase",
            format!("Key Phase: {}", u8::from(q.key_phase)),
            u8::from(q.key_phase),
            b..b + 1,
        ));
        c.push(field("quic.protected_payload", "Protected Payload", "", b + 1..usize::MAX));
        return field("quic", "QUIC IETF, Protected Payload", "", b..usize::MAX).with(c);
    };
    let at = |r: &Range<usize>| b + r.start..b + r.end;
    c.push(field("quic.header_form", "Header Form: Long Header (1)", 1, b..b + 1));
    c.push(field("quic.long.packet_type", format!("Packet Type: {}", h.kind.name()), h.kind.name(), b..b + 1));
    c.push(field("quic.version", format!("Version: 0x{:08x}", h.version), h.version, b + 1..b + 5));
    c.push(field(
        "quic.dcil",
        format!("Destination Connection ID Length: {}", h.dcid.len()),
        h.dcid.len(),
        b + 5..b + 6,
    ));
    c.push(field(
        "quic.dcid",
        format!("Destination Connection ID: {}", crate::hex::to_hex(&h.dcid)),
        crate::hex::to_hex(&h.dcid),
        at(&h.dcid_range),
    ));
    c.push(field(
        "quic.scil",
        format!("Source Connection ID Length: {}", h.scid.len()),
        h.scid.len(),
        b + h.dcid_range.end..b + h.scid_range.start,
    ));
    c.push(field(
        "quic.scid",
        format!("Source Connection ID: {}", crate::hex::to_hex(&h.scid)),
        crate::hex::to_hex(&h.scid),
        at(&h.scid_range),
    ));
    if h.kind == quic::LongKind::Initial {
        c.push(field("quic.token", format!("Token: {} bytes", h.token.len()), "", at(&h.token)));
    }
    if h.length > 0 {
        c.push(field("quic.length", format!("Length: {}", h.length), h.length, 0..0));
    }
    if let Some(d) = &q.decrypted {
        c.push(field(
            "quic.packet_number",
            format!("Packet Number: {} (decrypted)", d.packet_number),
            d.packet_number,
            0..0,
        ));
        let frames = field("quic.frame", format!("Frames: {}", d.frames.join(", ")), d.frames.join(","), 0..0);
        let mut frames = frames;
        if let Some(hello) = &d.client_hello {
            frames.children.push(
                field(
                    "tls.handshake",
                    "TLS Handshake Protocol: Client Hello (in the decrypted CRYPTO frame)",
                    "",
                    0..0,
                )
                .with(hello_fields(hello, |_| 0..0)),
            );
        }
        c.push(frames);
    }
    let end = h.pn_offset.saturating_add(usize::try_from(h.length).unwrap_or(usize::MAX));
    field("quic", format!("QUIC IETF, {}", q.info()), "", b..b.saturating_add(end)).with(c)
}

#[cfg(test)]
mod tests;
