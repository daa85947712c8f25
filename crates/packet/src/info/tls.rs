//! TLS records as they start a TCP payload (RFC 8446 §5, RFC 5246 §6.2),
//! and the handshake messages in clear among them: the ClientHello's and
//! ServerHello's version, cipher suites, server name (SNI) and ALPN
//! protocols. Every piece keeps its byte range (offsets into the bytes
//! given), for the packet detail tree ([`crate::dissect`]); the Info line
//! ([`super::info`]) and the display filter read the same structures.
//!
//! Bounded: at most [`MAX_RECORDS`] records and [`MAX_MESSAGES`] messages
//! are read, every read is checked; bytes cut short keep what was read.

use std::ops::Range;

/// Records read of one payload.
pub const MAX_RECORDS: usize = 16;
/// Handshake messages read of one record.
pub const MAX_MESSAGES: usize = 8;
/// Extensions read of one hello.
pub const MAX_EXTENSIONS: usize = 64;

/// One TLS record (its header and as much of its body as the bytes hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 20 ChangeCipherSpec, 21 Alert, 22 Handshake, 23 ApplicationData.
    pub content_type: u8,
    /// The record layer's version (0x0301..0x0304).
    pub version: u16,
    /// The record's declared body length.
    pub length: u16,
    /// The whole record (header and body, as far as the bytes go).
    pub range: Range<usize>,
    /// The handshake messages in clear (empty for other content types and
    /// for an encrypted handshake record).
    pub messages: Vec<Message>,
    /// A handshake record whose body is not a sequence of messages (encrypted: TLS 1.2's Finished).
    pub encrypted: bool,
}

/// A handshake message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// 1 ClientHello, 2 ServerHello, 4 NewSessionTicket, 8 EncryptedExtensions, 11 Certificate...
    pub kind: u8,
    pub length: u32,
    pub range: Range<usize>,
    /// For a ClientHello or ServerHello.
    pub hello: Option<Hello>,
}

/// What a ClientHello or ServerHello says (as far as the bytes go).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// legacy_version, and its range.
    pub version: (u16, Range<usize>),
    pub random: Range<usize>,
    pub session_id: Range<usize>,
    /// The offered suites (ClientHello) or the chosen one (ServerHello).
    pub cipher_suites: Vec<u16>,
    pub cipher_suites_range: Range<usize>,
    pub extensions: Vec<Extension>,
    /// server_name's host_name.
    pub sni: Option<(String, Range<usize>)>,
    /// application_layer_protocol_negotiation's names.
    pub alpn: Vec<(String, Range<usize>)>,
    /// supported_versions: offered (ClientHello) or chosen (ServerHello).
    pub supported_versions: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub kind: u16,
    pub range: Range<usize>,
}

fn u16_at(b: &[u8], p: usize) -> Option<u16> {
    let s = b.get(p..p.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn u24_at(b: &[u8], p: usize) -> Option<u32> {
    let s = b.get(p..p.checked_add(3)?)?;
    Some(u32::from_be_bytes([0, s[0], s[1], s[2]]))
}

/// True when `b` starts like a TLS record: a known content type, version 3.0 to 3.4.
pub fn looks_like_tls(b: &[u8]) -> bool {
    matches!(b.first(), Some(20..=23)) && b.get(1) == Some(&3) && b.get(2).is_some_and(|&v| v <= 4)
}

/// The records `b` starts with, if it starts with one (see the module doc).
pub fn records(b: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut p = 0;
    let mut after_ccs = false;
    while out.len() < MAX_RECORDS && p < b.len() && looks_like_tls(&b[p..]) {
        let content_type = b[p];
        let version = u16_at(b, p + 1).unwrap_or(0);
        let Some(length) = u16_at(b, p + 3) else {
            out.push(Record {
                content_type,
                version,
                length: 0,
                range: p..b.len(),
                messages: vec![],
                encrypted: false,
            });
            break;
        };
        let end = (p + 5 + usize::from(length)).min(b.len());
        let mut r = Record { content_type, version, length, range: p..end, messages: vec![], encrypted: false };
        if content_type == 22 {
            if after_ccs {
                r.encrypted = true;
            } else {
                let (messages, ok) = handshake_messages(b, p + 5, p + 5 + usize::from(length), end);
                r.encrypted = !ok;
                r.messages = messages;
            }
        }
        after_ccs |= content_type == 20;
        out.push(r);
        p = end;
    }
    out
}

/// The messages of a handshake record whose body is `start..declared_end`
/// (the bytes hold `start..end`); false when they do not fill it exactly.
fn handshake_messages(b: &[u8], start: usize, declared_end: usize, end: usize) -> (Vec<Message>, bool) {
    let mut out = Vec::new();
    let mut p = start;
    while p < end && out.len() < MAX_MESSAGES {
        let kind = b[p];
        let Some(length) = u24_at(b, p + 1) else {
            // Cut in the message header: keep the type.
            out.push(Message { kind, length: 0, range: p..end, hello: None });
            return (out, plausible(kind));
        };
        let m_end = p + 4 + length as usize;
        if !plausible(kind) || m_end > declared_end {
            return (Vec::new(), false);
        }
        let range = p..m_end.min(end);
        let hello = matches!(kind, 1 | 2).then(|| hello(b, p + 4, range.end, kind == 1));
        out.push(Message { kind, length, range, hello });
        p = m_end;
    }
    (out, true)
}

fn plausible(kind: u8) -> bool {
    matches!(kind, 0..=2 | 4 | 5 | 8 | 11..=16 | 20 | 24 | 254)
}

/// A hello's body from `p` to `end` (client: a ClientHello).
fn hello(b: &[u8], start: usize, end: usize, client: bool) -> Hello {
    let b = &b[..end];
    let mut h = Hello::default();
    let mut p = start;
    let Some(v) = u16_at(b, p) else { return h };
    h.version = (v, p..p + 2);
    p += 2;
    if p + 32 > end {
        return h;
    }
    h.random = p..p + 32;
    p += 32;
    let Some(&sid) = b.get(p) else { return h };
    h.session_id = p..(p + 1 + usize::from(sid)).min(end);
    p += 1 + usize::from(sid);
    if client {
        let Some(n) = u16_at(b, p) else { return h };
        h.cipher_suites_range = p..(p + 2 + usize::from(n)).min(end);
        let mut q = p + 2;
        while q + 2 <= h.cipher_suites_range.end {
            h.cipher_suites.push(u16_at(b, q).unwrap_or(0));
            q += 2;
        }
        p += 2 + usize::from(n);
        let Some(&n) = b.get(p) else { return h };
        p += 1 + usize::from(n); // compression methods
    } else {
        let Some(s) = u16_at(b, p) else { return h };
        h.cipher_suites = vec![s];
        h.cipher_suites_range = p..p + 2;
        p += 3; // suite, compression method
    }
    let Some(n) = u16_at(b, p) else { return h };
    let ext_end = (p + 2 + usize::from(n)).min(end);
    p += 2;
    while p + 4 <= ext_end && h.extensions.len() < MAX_EXTENSIONS {
        let kind = u16_at(b, p).unwrap_or(0);
        let len = usize::from(u16_at(b, p + 2).unwrap_or(0));
        if p + 4 + len > ext_end {
            // Cut short: keep the extension's header, read nothing of it.
            h.extensions.push(Extension { kind, range: p..ext_end });
            break;
        }
        let data = p + 4..p + 4 + len;
        h.extensions.push(Extension { kind, range: p..data.end });
        let d = &b[data.clone()];
        let at = data.start;
        match kind {
            // server_name_list: length (2), then name_type (1) = host_name (0), length (2), name.
            0 if d.get(2) == Some(&0) => {
                if let Some(n) = u16_at(d, 3) {
                    let r = at + 5..(at + 5 + usize::from(n)).min(data.end);
                    h.sni = Some((crate::ascii::escape(&b[r.clone()]), r));
                }
            }
            // protocol_name_list: length (2), then (length (1), name)*.
            16 => {
                let mut q = 2;
                while let Some(&l) = d.get(q) {
                    let r = at + q + 1..(at + q + 1 + usize::from(l)).min(data.end);
                    h.alpn.push((crate::ascii::escape(&b[r.clone()]), r));
                    q += 1 + usize::from(l);
                    if h.alpn.len() >= 16 {
                        break;
                    }
                }
            }
            // supported_versions: a list (client: length (1), versions) or the chosen one.
            43 => {
                let list = if client { d.get(1..).unwrap_or(&[]) } else { d };
                h.supported_versions =
                    list.chunks_exact(2).take(16).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            }
            _ => {}
        }
        p += 4 + len;
    }
    h
}

/// `TLS 1.2`, `TLS 1.3`, `SSL 3.0`; `0x7f1c` for others.
pub fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".into(),
        0x0301 => "TLS 1.0".into(),
        0x0302 => "TLS 1.1".into(),
        0x0303 => "TLS 1.2".into(),
        0x0304 => "TLS 1.3".into(),
        v => format!("0x{v:04x}"),
    }
}

/// Wireshark's names of handshake message types.
pub fn message_name(kind: u8) -> String {
    let n = match kind {
        0 => "Hello Request",
        1 => "Client Hello",
        2 => "Server Hello",
        4 => "New Session Ticket",
        5 => "End of Early Data",
        8 => "Encrypted Extensions",
        11 => "Certificate",
        12 => "Server Key Exchange",
        13 => "Certificate Request",
        14 => "Server Hello Done",
        15 => "Certificate Verify",
        16 => "Client Key Exchange",
        20 => "Finished",
        24 => "Key Update",
        254 => "Message Hash",
        k => return format!("Handshake ({k})"),
    };
    n.into()
}

/// The content type's name (`Handshake`, `Application Data`...).
pub fn content_type_name(t: u8) -> &'static str {
    match t {
        20 => "Change Cipher Spec",
        21 => "Alert",
        22 => "Handshake",
        23 => "Application Data",
        _ => "Unknown",
    }
}

/// Wireshark's Info for the records: their messages and kinds joined by
/// `, ` (`Server Hello, Change Cipher Spec, Application Data`) as tshark does, a ClientHello
/// with its SNI and ALPN: `Client Hello (SNI=example.org, ALPN=h2,http/1.1)`.
pub fn summary(records: &[Record]) -> String {
    let mut parts: Vec<String> = Vec::new();
    for r in records {
        let part = match r.content_type {
            22 if r.encrypted => "Encrypted Handshake Message".to_string(),
            22 => r.messages.iter().map(message_info).collect::<Vec<_>>().join(", "),
            // A plaintext alert is 2 bytes (level, description); longer, it is encrypted.
            21 if r.length != 2 => "Encrypted Alert".to_string(),
            t => content_type_name(t).to_string(),
        };
        if !part.is_empty() {
            parts.push(part);
        }
    }
    parts.join(", ")
}

fn message_info(m: &Message) -> String {
    let name = message_name(m.kind);
    let Some(h) = m.hello.as_ref().filter(|_| m.kind == 1) else { return name };
    let mut extra = Vec::new();
    if let Some((s, _)) = &h.sni {
        extra.push(format!("SNI={s}"));
    }
    if !h.alpn.is_empty() {
        extra.push(format!("ALPN={}", h.alpn.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>().join(",")));
    }
    if extra.is_empty() {
        name
    } else {
        format!("{name} ({})", extra.join(", "))
    }
}

/// The first hello (ClientHello or ServerHello) of the records.
pub fn first_hello(records: &[Record]) -> Option<(u8, &Hello)> {
    records.iter().flat_map(|r| &r.messages).find_map(|m| Some((m.kind, m.hello.as_ref()?)))
}
