//! What a packet says, in one line: the protocol decoding shared by the
//! CLI's `-v` (tcpdump's verbose fields, [`verbose`]) and a Wireshark-like
//! "Info" column ([`info`]; with the Protocol column, [`column()`]): TCP flags, seq/ack, window and options; UDP
//! length; IP ttl/hop limit, id and length; and, from the payload ([`app`]),
//! DNS questions and answers ([`dns`]), an HTTP/1.x request or status line,
//! TLS records and their handshake messages in clear, a ClientHello's SNI and
//! ALPN ([`tls`]), QUIC headers and a client Initial's frames and ClientHello
//! ([`quic`]).
//!
//! Headers come from [`crate::headers`] (etherparse); TCP options and the
//! application protocols are read here, every read bounded by the bytes
//! (a packet cut by the snap length says what it has). Nothing panics on
//! any input (fuzzed: `pidcap-fuzz`, targets `dns`, `decode`, `dissect`).

pub mod dns;
pub mod quic;
pub mod tls;

use crate::decode::{headers, Headers, IpHeader, TransportHeader};
use std::fmt::Write as _;

/// An application protocol message recognised at the start of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum App {
    Dns(dns::Message),
    /// An HTTP/1.x request line (`GET / HTTP/1.1`), escaped, at most [`LINE_MAX`] bytes.
    HttpRequest(String),
    /// An HTTP/1.x status line (`HTTP/1.1 200 OK`), escaped, at most [`LINE_MAX`] bytes.
    HttpStatus(String),
    /// The TLS records a TCP segment starts with (at least one).
    Tls(Vec<tls::Record>),
    /// The first QUIC packet of a UDP datagram.
    Quic(Box<quic::Packet>),
}

/// Longest HTTP line shown.
pub const LINE_MAX: usize = 200;

/// TCP ports on which a payload is taken for DNS (UDP: also 5353, mDNS, and 5355, LLMNR).
const DNS_PORT: u16 = 53;

/// The application message `payload` starts with, if pidcap recognises
/// one: DNS on port 53 (UDP 5353 and 5355 too; over TCP after its length
/// prefix), HTTP/1.x request and status lines on any port, TLS records on any
/// TCP port, QUIC on UDP (a long header of a known version on any port, a
/// short header on 443). `proto` is the IP protocol number, `ports` (source, destination).
pub fn app(proto: u8, ports: (u16, u16), payload: &[u8]) -> Option<App> {
    let on = |p: &[u16]| p.contains(&ports.0) || p.contains(&ports.1);
    match proto {
        17 if on(&[DNS_PORT, 5353, 5355]) => dns::parse(payload).ok().map(App::Dns),
        17 => quic::parse(payload, on(&[443])).map(|q| App::Quic(Box::new(q))),
        6 => {
            if on(&[DNS_PORT]) && payload.len() > 2 {
                let len = usize::from(u16::from_be_bytes([payload[0], payload[1]]));
                if len + 2 >= payload.len() || len >= 12 {
                    if let Ok(m) = dns::parse(&payload[2..]) {
                        return Some(App::Dns(m));
                    }
                }
            }
            http(payload).or_else(|| {
                let records = tls::records(payload);
                (!records.is_empty()).then_some(App::Tls(records))
            })
        }
        _ => None,
    }
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH", "PRI"];

/// The first line of `payload` when it is an HTTP/1.x request or status line.
fn http(payload: &[u8]) -> Option<App> {
    // Every request and status line starts with an upper-case letter: most payloads stop here.
    if !payload.first().is_some_and(u8::is_ascii_uppercase) {
        return None;
    }
    let head = &payload[..payload.len().min(LINE_MAX + 2)];
    let end = head.iter().position(|&b| b == b'\r' || b == b'\n').unwrap_or(head.len());
    let line = &head[..end.min(LINE_MAX)];
    if let Some(rest) = line.strip_prefix(b"HTTP/1.") {
        let code = rest.get(2..5)?;
        let status = rest.get(1) == Some(&b' ') && code.iter().all(u8::is_ascii_digit);
        return status.then(|| App::HttpStatus(crate::ascii::escape(line)));
    }
    let space = line.iter().position(|&b| b == b' ')?;
    let method = std::str::from_utf8(&line[..space]).ok()?;
    // A request line ends with its version, unless the line was cut here.
    let versioned = line.windows(6).any(|w| w == b" HTTP/") || end > LINE_MAX || end == payload.len();
    (METHODS.contains(&method) && versioned).then(|| App::HttpRequest(crate::ascii::escape(line)))
}

impl App {
    /// tcpdump-like text for `-v` (`level` 1; 2 = `-vv` shows every answer kept).
    pub fn verbose(&self, level: u8) -> String {
        match self {
            App::Dns(m) => dns_verbose(m, level),
            App::HttpRequest(l) | App::HttpStatus(l) => format!("HTTP {l}"),
            App::Tls(records) => match tls::first_hello(records) {
                Some((1, h)) => {
                    let mut s = "TLS ClientHello".to_string();
                    if let Some((sni, _)) = &h.sni {
                        let _ = write!(s, " SNI {sni}");
                    }
                    if !h.alpn.is_empty() {
                        let names: Vec<&str> = h.alpn.iter().map(|(a, _)| a.as_str()).collect();
                        let _ = write!(s, " ALPN {}", names.join(","));
                    }
                    s
                }
                _ => format!("TLS {}", tls::summary(&records[..1]).replace(' ', "")),
            },
            App::Quic(q) => format!("QUIC {}", q.info()),
        }
    }

    /// Wireshark's Info text for this message (`Standard query 0x1234 A example.com`,
    /// `GET / HTTP/1.1`, `Client Hello (SNI=example.com, ALPN=h2)`,
    /// `Initial, DCID=..., SCID=..., PKN: 0, CRYPTO, PADDING`).
    pub fn info(&self) -> String {
        match self {
            App::Dns(m) => dns_info(m),
            App::HttpRequest(l) | App::HttpStatus(l) => l.clone(),
            App::Tls(records) => tls::summary(records),
            App::Quic(q) => q.info(),
        }
    }

    /// Wireshark's Protocol column for it: `DNS`, `HTTP`, `TLSv1.3`, `QUIC`.
    pub fn protocol(&self) -> String {
        match self {
            App::Dns(_) => "DNS".into(),
            App::HttpRequest(_) | App::HttpStatus(_) => "HTTP".into(),
            App::Tls(records) => {
                // The version a ServerHello chose, else the record layer's (1.3 never shows there).
                let v = match tls::first_hello(records) {
                    Some((2, h)) => h.supported_versions.first().copied().unwrap_or(h.version.0),
                    Some((_, h)) if h.supported_versions.contains(&0x0304) => 0x0304,
                    _ => records[0].version,
                };
                tls::version_name(v).replace("TLS ", "TLSv").replace("SSL ", "SSLv")
            }
            App::Quic(_) => "QUIC".into(),
        }
    }
}

/// Answers shown by `-v` (all that were kept with `-vv`).
const ANSWERS_SHOWN: usize = 4;

/// `DNS 4660+ A? example.com.` / `DNS 4660 A? example.com. 2/0/0 A 10.0.0.1, A 10.0.0.2`
/// (tcpdump's: the id in decimal, `+` when recursion is desired in a
/// query; a response's error code, then answer/authority/additional counts).
fn dns_verbose(m: &dns::Message, level: u8) -> String {
    let mut s = format!("DNS {}", m.id);
    if !m.response && m.recursion_desired {
        s.push('+');
    }
    if m.response && m.rcode != 0 {
        let _ = write!(s, " {}", dns::rcode_name(m.rcode));
    }
    for q in &m.questions {
        let _ = write!(s, " {}? {}", dns::type_name(q.qtype), q.name);
    }
    if m.response {
        let [_, an, ns, ar] = m.counts;
        let _ = write!(s, " {an}/{ns}/{ar}");
        let shown = if level >= 2 { m.answers.len() } else { m.answers.len().min(ANSWERS_SHOWN) };
        let texts: Vec<String> = m.answers[..shown].iter().map(dns::Record::text).collect();
        if !texts.is_empty() {
            let _ = write!(s, " {}", texts.join(", "));
        }
        if usize::from(an) > shown {
            s.push_str(", ...");
        }
    }
    if m.partial {
        s.push_str(" [cut]");
    }
    s
}

/// Wireshark's: `Standard query 0x1234 A example.com`,
/// `Standard query response 0x1234 A example.com A 10.0.0.1 A 10.0.0.2`,
/// `Standard query response 0x1234 No such name A nope.example`.
fn dns_info(m: &dns::Message) -> String {
    let mut s = String::from(if m.response { "Standard query response" } else { "Standard query" });
    let _ = write!(s, " 0x{:04x}", m.id);
    if m.response && m.rcode != 0 {
        let error = match m.rcode {
            1 => "Format error".to_string(),
            2 => "Server failure".to_string(),
            3 => "No such name".to_string(),
            4 => "Not implemented".to_string(),
            5 => "Refused".to_string(),
            r => dns::rcode_name(r),
        };
        let _ = write!(s, " {error}");
    }
    let bare = |n: &str| if n == "." { "<Root>".to_string() } else { n.trim_end_matches('.').to_string() };
    for q in &m.questions {
        let _ = write!(s, " {} {}", dns::type_name(q.qtype), bare(&q.name));
    }
    for a in &m.answers {
        let data = match &a.data {
            dns::RData::Name(n) => bare(n),
            d => d.text(),
        };
        let _ = write!(s, " {} {data}", dns::type_name(a.rtype));
    }
    s
}

/// TCP options as tcpdump prints them: `mss 1460,sackOK,TS val 1 ecr 0,nop,wscale 7`.
/// `opts` are the option bytes (after the 20-byte header).
pub fn tcp_options(opts: &[u8]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut p = 0;
    while let Some(&kind) = opts.get(p) {
        match kind {
            0 => {
                out.push("eol".into());
                break;
            }
            1 => {
                out.push("nop".into());
                p += 1;
                continue;
            }
            _ => {}
        }
        let Some(len) = opts.get(p + 1).map(|&l| usize::from(l)).filter(|&l| l >= 2) else {
            out.push(format!("bad opt {kind}"));
            break;
        };
        let Some(data) = opts.get(p + 2..p + len) else {
            out.push(format!("opt {kind} (cut)"));
            break;
        };
        let be16 = |i: usize| u16::from_be_bytes([data[i], data[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        out.push(match (kind, data.len()) {
            (2, 2) => format!("mss {}", be16(0)),
            (3, 1) => format!("wscale {}", data[0]),
            (4, 0) => "sackOK".into(),
            (5, n) if n % 8 == 0 => {
                let blocks: Vec<String> =
                    (0..n / 8).map(|i| format!("{{{}:{}}}", be32(i * 8), be32(i * 8 + 4))).collect();
                format!("sack {} {}", n / 8, blocks.join(""))
            }
            (8, 8) => format!("TS val {} ecr {}", be32(0), be32(4)),
            (30, _) => "mptcp".into(),
            (34, _) => "tfo".into(),
            (k, n) => format!("opt-{k}:{n}"),
        });
        p += len;
    }
    out.join(",")
}

/// The option bytes of the TCP header in `data`, as far as they were captured.
fn tcp_option_bytes<'a>(data: &'a [u8], h: &Headers) -> &'a [u8] {
    let (Some(ip), Some(TransportHeader::Tcp(t))) = (h.ip, h.transport) else { return &[] };
    let start = match ip {
        IpHeader::V4(v4) => v4.header_len,
        IpHeader::V6(v6) => v6.header_len,
    } + 20;
    let end = (start - 20 + t.header_len).min(data.len());
    data.get(start..end).unwrap_or(&[])
}

/// The application message of the packet `data` (from its IP header), if any.
pub fn app_of(data: &[u8]) -> Option<App> {
    let h = headers(data);
    let proto = h.ip?.protocol();
    app(proto, h.ports(), data.get(h.payload_offset..).unwrap_or(&[]))
}

/// tcpdump's `-v` fields of the packet `data` (from its IP header), to
/// follow pidcap's line: `(ttl 64, id 0, length 67) seq 1000, ack 2000, win
/// 512, options [nop,nop,TS val 1 ecr 2]: HTTP GET / HTTP/1.1`. `level` is
/// the number of `v`s: 2 adds the IP tos and flags, the checksums, and every
/// DNS answer kept. Empty when `data` is not an IP packet.
pub fn verbose(data: &[u8], level: u8) -> String {
    let h = headers(data);
    let Some(ip) = h.ip else { return String::new() };
    let mut s = String::new();
    match ip {
        IpHeader::V4(v4) => {
            s.push('(');
            if level >= 2 {
                let tos = data.get(1).copied().unwrap_or(0);
                let mut flags = Vec::new();
                if v4.dont_fragment {
                    flags.push("DF");
                }
                if v4.more_fragments {
                    flags.push("MF");
                }
                let _ = write!(s, "tos 0x{tos:x}, flags [{}], ", flags.join(","));
            }
            let _ = write!(s, "ttl {}, id {}, length {}", v4.ttl, v4.identification, v4.total_len);
            if level >= 2 {
                let _ = write!(s, ", proto {}, cksum 0x{:04x}", v4.protocol, v4.checksum);
            }
            s.push(')');
        }
        IpHeader::V6(v6) => {
            s.push('(');
            if level >= 2 {
                let _ = write!(s, "flowlabel 0x{:05x}, ", v6.flow_label);
            }
            let _ = write!(s, "hlim {}, length {}", v6.hop_limit, u32::from(v6.payload_len) + 40);
            if level >= 2 {
                let _ = write!(s, ", next-header {}", v6.next_header);
            }
            s.push(')');
        }
    }
    match h.transport {
        Some(TransportHeader::Tcp(t)) => {
            let _ = write!(s, " seq {}", t.seq);
            if t.flags & 0x10 != 0 {
                let _ = write!(s, ", ack {}", t.ack);
            }
            let _ = write!(s, ", win {}", t.window);
            let opts = tcp_options(tcp_option_bytes(data, &h));
            if !opts.is_empty() {
                let _ = write!(s, ", options [{opts}]");
            }
            if level >= 2 {
                let _ = write!(s, ", cksum 0x{:04x}", t.checksum);
            }
        }
        Some(TransportHeader::Udp(u)) => {
            let _ = write!(s, " udp length {}", u.length);
            if level >= 2 {
                let _ = write!(s, ", cksum 0x{:04x}", u.checksum);
            }
        }
        Some(TransportHeader::Icmp { header_len }) => {
            let icmp = data.get(h.payload_offset.saturating_sub(header_len)..).unwrap_or(&[]);
            let _ = write!(s, " {}", icmp_info(ip.protocol(), icmp));
        }
        None => {}
    }
    if let Some(a) = app(ip.protocol(), h.ports(), data.get(h.payload_offset..).unwrap_or(&[])) {
        let _ = write!(s, ": {}", a.verbose(level));
    }
    s
}

/// The packet list's Protocol and Info columns of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Wireshark's Protocol column: `TCP`, `UDP`, `DNS`, `HTTP`, `TLSv1.3`, `QUIC`, `ICMP`...
    pub protocol: String,
    /// [`info`]'s line; for a TLS plaintext record the application message
    /// of its plaintext, else `Plaintext, N bytes` (its synthesized TCP header says nothing).
    pub info: String,
    /// The application message both were read from, for callers that need
    /// more of it (the UI's row colour) without decoding the payload again.
    pub app: Option<App>,
}

/// [`Column`] of a packet (one decode of the headers, one of the payload).
pub fn column(p: &crate::CapturedPacket) -> Column {
    let h = headers(&p.data);
    let payload = p.data.get(h.payload_offset..).unwrap_or(&[]);
    let app = h.ip.and_then(|ip| app(ip.protocol(), h.ports(), payload));
    let (protocol, info) = match &app {
        Some(a @ (App::Dns(_) | App::HttpRequest(_) | App::HttpStatus(_))) if p.is_tls() => (a.protocol(), a.info()),
        _ if p.is_tls() => ("TLS plaintext".into(), format!("Plaintext, {} bytes", p.decoded.payload_size)),
        Some(a) => (a.protocol(), a.info()),
        None => (if h.ip.is_some() { p.decoded.protocol.name() } else { "data".into() }, line(&p.data, &h, None)),
    };
    Column { protocol, info, app }
}

/// A Wireshark-like Info line for the packet `data` (from its IP header):
/// the application message when one is recognised (`Standard query 0x1234
/// A example.com`, `GET / HTTP/1.1`, `Client Hello (SNI=example.com)`),
/// else TCP's `40000 → 80 [SYN] Seq=0 Win=65535 Len=0 MSS=1460 SACK_PERM
/// TSval=1 TSecr=0 WS=128` (sequence numbers as they are: pidcap does not
/// make them relative), UDP's `5353 → 53 Len=7`, ICMP's type. Empty when
/// `data` is not an IP packet.
pub fn info(data: &[u8]) -> String {
    let h = headers(data);
    let Some(ip) = h.ip else { return String::new() };
    let payload = data.get(h.payload_offset..).unwrap_or(&[]);
    line(data, &h, app(ip.protocol(), h.ports(), payload).as_ref())
}

/// [`info`]'s line from headers and the application message already decoded.
fn line(data: &[u8], h: &Headers, app: Option<&App>) -> String {
    let Some(ip) = h.ip else { return String::new() };
    if let Some(a) = app {
        return a.info();
    }
    match h.transport {
        Some(TransportHeader::Tcp(t)) => {
            let mut s =
                format!("{} → {} [{}] Seq={}", t.source_port, t.destination_port, wireshark_flags(t.flags), t.seq);
            if t.flags & 0x10 != 0 {
                let _ = write!(s, " Ack={}", t.ack);
            }
            let _ = write!(s, " Win={} Len={}", t.window, h.payload_size);
            let opts = wireshark_tcp_options(tcp_option_bytes(data, h));
            if !opts.is_empty() {
                let _ = write!(s, " {opts}");
            }
            s
        }
        Some(TransportHeader::Udp(u)) => format!("{} → {} Len={}", u.source_port, u.destination_port, h.payload_size),
        Some(TransportHeader::Icmp { header_len }) => {
            let icmp = data.get(h.payload_offset.saturating_sub(header_len)..).unwrap_or(&[]);
            icmp_info(ip.protocol(), icmp)
        }
        None => String::new(),
    }
}

/// `SYN`, `SYN, ACK`, `PSH, ACK`, `FIN, ACK`, `RST`... in Wireshark's order; `<None>` for none.
fn wireshark_flags(f: u8) -> String {
    let names = [
        (0x01, "FIN"),
        (0x02, "SYN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let set: Vec<&str> = names.iter().filter(|(bit, _)| f & bit != 0).map(|(_, n)| *n).collect();
    if set.is_empty() {
        "<None>".into()
    } else {
        set.join(", ")
    }
}

/// Wireshark's option summary: `MSS=1460 SACK_PERM TSval=1 TSecr=0 WS=128`.
fn wireshark_tcp_options(opts: &[u8]) -> String {
    let mut out = Vec::new();
    let mut p = 0;
    while let Some(&kind) = opts.get(p) {
        match kind {
            0 => break,
            1 => {
                p += 1;
                continue;
            }
            _ => {}
        }
        let Some(len) = opts.get(p + 1).map(|&l| usize::from(l)).filter(|&l| l >= 2) else { break };
        let Some(d) = opts.get(p + 2..p + len) else { break };
        match (kind, d.len()) {
            (2, 2) => out.push(format!("MSS={}", u16::from_be_bytes([d[0], d[1]]))),
            (3, 1) => out.push(format!("WS={}", 1u32 << d[0].min(14))),
            (4, 0) => out.push("SACK_PERM".into()),
            (5, n) if n >= 8 => {
                let le = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                let re = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                out.push(format!("SLE={le} SRE={re}"));
            }
            (8, 8) => {
                let v = u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
                let e = u32::from_be_bytes([d[4], d[5], d[6], d[7]]);
                out.push(format!("TSval={v} TSecr={e}"));
            }
            _ => {}
        }
        p += len;
    }
    out.join(" ")
}

/// ICMP's Info: `Echo (ping) request`, `Destination unreachable`..., else `Type 13 Code 0`.
fn icmp_info(proto: u8, icmp: &[u8]) -> String {
    let (Some(&t), code) = (icmp.first(), icmp.get(1).copied().unwrap_or(0)) else { return String::new() };
    let name = match (proto, t) {
        (1, 0) | (58, 129) => "Echo (ping) reply",
        (1, 8) | (58, 128) => "Echo (ping) request",
        (1, 3) | (58, 1) => "Destination unreachable",
        (1, 11) | (58, 3) => "Time-to-live exceeded",
        (58, 2) => "Packet too big",
        (58, 133) => "Router Solicitation",
        (58, 134) => "Router Advertisement",
        (58, 135) => "Neighbor Solicitation",
        (58, 136) => "Neighbor Advertisement",
        _ => return format!("Type {t} Code {code}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::dns::tests::{query, response};
    use super::*;
    use etherparse::PacketBuilder;

    /// A SYN with Linux's options: MSS, SACK permitted, timestamps, NOP, window scale.
    fn syn() -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .tcp(52330, 8089, 1_000_000, 65495)
            .syn()
            .options(&[
                etherparse::TcpOptionElement::MaximumSegmentSize(65495),
                etherparse::TcpOptionElement::SelectiveAcknowledgementPermitted,
                etherparse::TcpOptionElement::Timestamp(111, 0),
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::WindowScale(7),
            ])
            .unwrap()
            .write(&mut out, &[])
            .unwrap();
        out
    }

    fn tcp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 512)
            .psh()
            .ack(2000)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 53], 64).udp(sport, dport).write(&mut out, payload).unwrap();
        out
    }

    #[test]
    fn a_syn_s_options_as_tcpdump_and_wireshark_show_them() {
        let p = syn();
        assert_eq!(
            verbose(&p, 1),
            "(ttl 64, id 0, length 60) seq 1000000, win 65495, options [mss 65495,sackOK,TS val 111 ecr 0,nop,wscale 7]"
        );
        assert_eq!(
            info(&p),
            "52330 → 8089 [SYN] Seq=1000000 Win=65495 Len=0 MSS=65495 SACK_PERM TSval=111 TSecr=0 WS=128"
        );
        let vv = verbose(&p, 2);
        assert!(vv.starts_with("(tos 0x0, flags [DF], ttl 64, id 0, length 60, proto 6, cksum 0x"), "{vv}");
        assert!(vv.contains(", cksum 0x") && vv.matches("cksum").count() == 2, "{vv}");
    }

    #[test]
    fn http_request_and_status_lines() {
        let p = tcp(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            verbose(&p, 1),
            "(ttl 64, id 0, length 77) seq 1000, ack 2000, win 512: HTTP GET /index.html HTTP/1.1"
        );
        assert_eq!(info(&p), "GET /index.html HTTP/1.1");
        let p = tcp(b"HTTP/1.0 404 Not Found\r\n\r\n");
        assert_eq!(info(&p), "HTTP/1.0 404 Not Found");
        assert_eq!(app_of(&p), Some(App::HttpStatus("HTTP/1.0 404 Not Found".into())));
        // Not HTTP: a word and a space, a version with no code.
        assert_eq!(app_of(&tcp(b"hello world\r\n")), None);
        assert_eq!(app_of(&tcp(b"HTTP/1.1 2\r\n")), None);
        assert_eq!(info(&tcp(b"hello")), "40000 → 80 [PSH, ACK] Seq=1000 Ack=2000 Win=512 Len=5");
    }

    #[test]
    fn dns_queries_and_answers() {
        let q = udp(40000, 53, &query("example.com", 1));
        assert_eq!(verbose(&q, 1), "(ttl 64, id 0, length 57) udp length 37: DNS 4660+ A? example.com.");
        assert_eq!(info(&q), "Standard query 0x1234 A example.com");
        let addrs: Vec<[u8; 4]> = (1..=6).map(|i| [10, 0, 0, i]).collect();
        let r = udp(53, 40000, &response("example.com", &addrs));
        let v = verbose(&r, 1);
        assert!(
            v.ends_with(": DNS 4660 A? example.com. 6/0/0 A 10.0.0.1, A 10.0.0.2, A 10.0.0.3, A 10.0.0.4, ..."),
            "{v}"
        );
        assert!(verbose(&r, 2).ends_with("A 10.0.0.5, A 10.0.0.6"), "-vv shows every answer");
        let r = udp(53, 40000, &response("example.com", &addrs[..1]));
        assert_eq!(info(&r), "Standard query response 0x1234 A example.com A 10.0.0.1");
        // NXDomain.
        let mut nx = response("nope.example", &[]);
        nx[3] = 0x83;
        let nx = udp(53, 40000, &nx);
        assert!(verbose(&nx, 1).ends_with(": DNS 4660 NXDomain A? nope.example. 0/0/0"), "{}", verbose(&nx, 1));
        assert_eq!(info(&nx), "Standard query response 0x1234 No such name A nope.example");
        // Not on a DNS port: not taken for DNS.
        assert_eq!(app_of(&udp(40000, 40001, &query("example.com", 1))), None);
        // DNS over TCP, after its length prefix.
        let m = query("example.com", 28);
        let mut framed = (m.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&m);
        let mut p = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 53, 1, 512)
            .psh()
            .ack(1)
            .write(&mut p, &framed)
            .unwrap();
        assert_eq!(info(&p), "Standard query 0x1234 AAAA example.com");
    }

    /// A TLS 1.2-framed ClientHello with a server_name extension first.
    fn client_hello(sni: &str) -> Vec<u8> {
        let mut ext = vec![0, 0];
        let list_len = sni.len() + 3;
        ext.extend_from_slice(&((list_len + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list_len as u16).to_be_bytes());
        ext.push(0);
        ext.extend_from_slice(&(sni.len() as u16).to_be_bytes());
        ext.extend_from_slice(sni.as_bytes());
        ext.extend_from_slice(&[0x00, 0x17, 0, 0]); // extended_master_secret, empty
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&(body.len() as u16).to_be_bytes());
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1];
        rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_records_and_the_client_hello_s_sni() {
        let p = tcp(&client_hello("example.org"));
        assert_eq!(info(&p), "Client Hello (SNI=example.org)");
        assert!(verbose(&p, 1).ends_with(": TLS ClientHello SNI example.org"));
        assert_eq!(info(&tcp(&[23, 3, 3, 0, 2, 1, 2])), "Application Data");
        assert_eq!(verbose(&tcp(&[23, 3, 3, 0, 2, 1, 2]), 1).rsplit(": ").next(), Some("TLS ApplicationData"));
        // Every prefix of a ClientHello decodes or stops, without a panic.
        let full = client_hello("example.org");
        for n in 0..full.len() {
            let _ = info(&tcp(&full[..n]));
        }
        let cut = tcp(&full[..full.len() - 10]);
        assert_eq!(info(&cut), "Client Hello");
    }

    #[test]
    fn columns_of_packets_and_records() {
        let pkt = |data: Vec<u8>| {
            let len = data.len() as u32;
            crate::CapturedPacket::new(
                1,
                0,
                1,
                "x".into(),
                1,
                crate::Direction::Outbound,
                crate::Verdict::Pass,
                len,
                data,
            )
        };
        let c = column(&pkt(syn()));
        assert_eq!((c.protocol.as_str(), c.info.starts_with("52330 → 8089 [SYN] Seq=1000000")), ("TCP", true));
        assert_eq!(column(&pkt(udp(40000, 53, &query("example.com", 1)))).protocol, "DNS");
        assert_eq!(column(&pkt(tcp(b"GET / HTTP/1.1\r\n\r\n"))).protocol, "HTTP");
        assert_eq!(column(&pkt(tcp(&client_hello("a.example")))).protocol, "TLSv1.0");
        assert_eq!(column(&pkt(b"junk".to_vec())), Column { protocol: "data".into(), info: String::new(), app: None });
        let record = |plaintext: &[u8]| {
            crate::CapturedPacket::tls_record(crate::TlsRecord {
                id: 1,
                timestamp_ns: 0,
                pid: 1,
                comm: "x".into(),
                socket_cookie: 1,
                direction: crate::Direction::Outbound,
                local: "127.0.0.1:5000".parse().unwrap(),
                remote: "127.0.0.1:443".parse().unwrap(),
                info: crate::TlsInfo { tid: 1, library: crate::TlsLibrary::Openssl },
                plaintext,
                true_len: plaintext.len() as u64,
                stream_offset: 0,
            })
        };
        let c = column(&record(b"GET /secret HTTP/1.1\r\n\r\n"));
        assert_eq!((c.protocol.as_str(), c.info.as_str()), ("HTTP", "GET /secret HTTP/1.1"));
        let c = column(&record(b"\x00\x01binary"));
        assert_eq!((c.protocol.as_str(), c.info.as_str()), ("TLS plaintext", "Plaintext, 8 bytes"));
    }

    #[test]
    fn udp_ipv6_icmp_and_not_ip() {
        assert_eq!(info(&udp(5000, 6000, b"abc")), "5000 → 6000 Len=3");
        assert_eq!(verbose(&udp(5000, 6000, b"abc"), 1), "(ttl 64, id 0, length 31) udp length 11");
        let mut p = Vec::new();
        PacketBuilder::ipv6([0; 16], [0; 16], 63).udp(1, 2).write(&mut p, b"x").unwrap();
        assert_eq!(verbose(&p, 1), "(hlim 63, length 49) udp length 9");
        let mut p = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 64).icmpv4_echo_request(1, 2).write(&mut p, b"ping").unwrap();
        assert_eq!(info(&p), "Echo (ping) request");
        assert_eq!(info(b"not ip"), "");
        assert_eq!(verbose(b"", 1), "");
        // Options: sack blocks, a cut option, a bad length.
        assert_eq!(tcp_options(&[1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]), "nop,sack 1 {1:2}");
        assert_eq!(tcp_options(&[2, 4, 5]), "opt 2 (cut)");
        assert_eq!(tcp_options(&[2, 1, 5]), "bad opt 2");
        assert_eq!(tcp_options(&[3, 3, 7, 0, 9]), "wscale 7,eol");
    }
}
