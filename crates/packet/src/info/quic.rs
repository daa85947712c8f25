//! QUIC packet headers (RFC 9000 §17, RFC 9369 for version 2): a long
//! header's type (Initial, 0-RTT, Handshake, Retry, Version Negotiation),
//! version and connection ids; a short header is "Protected Payload". A
//! client's Initial is decrypted (RFC 9001 §5: its keys come from its
//! destination connection id alone, so one packet is enough) to list its
//! frames and read the ClientHello in its CRYPTO frame (SNI, ALPN).
//!
//! The crypto is `ring`'s (HKDF-SHA256, AES-128-GCM, AES header
//! protection), already in the workspace under rustls. Only the first
//! QUIC packet of a datagram is read; everything is bounded by the bytes.

use super::tls::{self, Hello};
use ring::{aead, hkdf};
use std::ops::Range;

pub const VERSION_1: u32 = 1;
pub const VERSION_2: u32 = 0x6b33_43cf;

/// The first QUIC packet of a UDP payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// None for a short header (1-RTT), whose connection id length only the
    /// connection knows.
    pub long: Option<LongHeader>,
    /// Short header: the key phase bit.
    pub key_phase: bool,
    /// What a decrypted client Initial holds.
    pub decrypted: Option<Decrypted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongHeader {
    pub kind: LongKind,
    pub version: u32,
    pub dcid: Vec<u8>,
    pub dcid_range: Range<usize>,
    pub scid: Vec<u8>,
    pub scid_range: Range<usize>,
    /// Initial: the token's range.
    pub token: Range<usize>,
    /// The Length field's value (Initial, 0-RTT, Handshake), 0 for the others.
    pub length: u64,
    /// Where the (protected) packet number starts.
    pub pn_offset: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongKind {
    Initial,
    ZeroRtt,
    Handshake,
    Retry,
    VersionNegotiation,
}

impl LongKind {
    pub fn name(self) -> &'static str {
        match self {
            LongKind::Initial => "Initial",
            LongKind::ZeroRtt => "0-RTT",
            LongKind::Handshake => "Handshake",
            LongKind::Retry => "Retry",
            LongKind::VersionNegotiation => "Version Negotiation",
        }
    }
}

/// A decrypted client Initial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    pub packet_number: u64,
    /// The frame types in order, a run of one type once (`CRYPTO`, `PADDING`...).
    pub frames: Vec<&'static str>,
    /// The ClientHello, when the CRYPTO data at offset 0 holds it (its
    /// ranges are into the decrypted CRYPTO data, not the packet).
    pub client_hello: Option<Hello>,
}

fn varint(b: &[u8], p: usize) -> Option<(u64, usize)> {
    let first = *b.get(p)?;
    let len = 1usize << (first >> 6);
    let bytes = b.get(p..p + len)?;
    let mut v = u64::from(first & 0x3f);
    for &x in &bytes[1..] {
        v = v << 8 | u64::from(x);
    }
    Some((v, p + len))
}

/// True for the versions pidcap takes a long header for: 1, 2, the IETF drafts, negotiation (0).
fn known_version(v: u32) -> bool {
    v == VERSION_1 || v == VERSION_2 || v == 0 || (v & 0xffff_ff00) == 0xff00_0000
}

/// The QUIC packet `b` (a UDP payload) starts with. `port_443`: either
/// port is 443, where a short header is taken for QUIC (elsewhere only a
/// long header of a known version is).
pub fn parse(b: &[u8], port_443: bool) -> Option<Packet> {
    let first = *b.first()?;
    if first & 0x80 == 0 {
        // Short header: fixed bit set, on a QUIC port, more than a header's worth.
        return (port_443 && first & 0x40 != 0 && b.len() >= 21).then_some(Packet {
            long: None,
            key_phase: first & 0x04 != 0,
            decrypted: None,
        });
    }
    let version = u32::from_be_bytes(b.get(1..5)?.try_into().ok()?);
    if !known_version(version) {
        return None;
    }
    let dlen = usize::from(*b.get(5)?);
    if dlen > 20 && version != 0 {
        return None;
    }
    let dcid_range = 6..6 + dlen;
    let dcid = b.get(dcid_range.clone())?.to_vec();
    let slen = usize::from(*b.get(dcid_range.end)?);
    let scid_range = dcid_range.end + 1..dcid_range.end + 1 + slen;
    let scid = b.get(scid_range.clone())?.to_vec();
    if version != 0 && first & 0x40 == 0 {
        return None;
    }
    let bits = (first >> 4) & 3;
    // Version 2 numbers the types one up (RFC 9369 §3.2): map them to version 1's.
    let bits = if version == VERSION_2 { (bits + 3) % 4 } else { bits };
    let kind = match (version, bits) {
        (0, _) => LongKind::VersionNegotiation,
        (_, 0) => LongKind::Initial,
        (_, 1) => LongKind::ZeroRtt,
        (_, 2) => LongKind::Handshake,
        _ => LongKind::Retry,
    };
    let mut h = LongHeader {
        kind,
        version,
        dcid,
        dcid_range,
        scid,
        token: 0..0,
        scid_range: scid_range.clone(),
        length: 0,
        pn_offset: scid_range.end,
    };
    let mut p = scid_range.end;
    if kind == LongKind::Initial {
        if let Some((n, q)) = varint(b, p) {
            h.token = q..q.saturating_add(n as usize).min(b.len());
            p = q.saturating_add(n as usize);
        }
    }
    if matches!(kind, LongKind::Initial | LongKind::ZeroRtt | LongKind::Handshake) {
        if let Some((n, q)) = varint(b, p) {
            h.length = n;
            h.pn_offset = q;
        }
    }
    let decrypted = (kind == LongKind::Initial).then(|| decrypt_initial(b, &h)).flatten();
    Some(Packet { long: Some(h), key_phase: false, decrypted })
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
fn expand_label(prk: &hkdf::Prk, label: &[u8], out: &mut [u8]) -> Option<()> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let len = (out.len() as u16).to_be_bytes();
    let full_len = [6 + label.len() as u8];
    let info: [&[u8]; 5] = [&len, &full_len, b"tls13 ", label, &[0]];
    prk.expand(&info, Len(out.len())).ok()?.fill(out).ok()
}

/// The client Initial's payload, decrypted with the keys of RFC 9001 §5.2.
/// None for a server's Initial (its keys come from the client's first
/// DCID, which this packet does not carry) and for bytes that do not open.
fn decrypt_initial(b: &[u8], h: &LongHeader) -> Option<Decrypted> {
    let salt: &[u8] = match h.version {
        VERSION_1 => &[
            0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb,
            0x7f, 0x0a,
        ],
        VERSION_2 => &[
            0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd,
            0x2e, 0xd9,
        ],
        _ => return None,
    };
    let (key_label, iv_label, hp_label): (&[u8], &[u8], &[u8]) = match h.version {
        VERSION_2 => (b"quicv2 key", b"quicv2 iv", b"quicv2 hp"),
        _ => (b"quic key", b"quic iv", b"quic hp"),
    };
    let end = h.pn_offset.checked_add(usize::try_from(h.length).ok()?)?;
    if end > b.len() || h.length < 20 {
        return None;
    }
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(&h.dcid);
    let mut client = [0u8; 32];
    expand_label(&initial, b"client in", &mut client)?;
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &client);
    let (mut key, mut iv, mut hp) = ([0u8; 16], [0u8; 12], [0u8; 16]);
    expand_label(&client, key_label, &mut key)?;
    expand_label(&client, iv_label, &mut iv)?;
    expand_label(&client, hp_label, &mut hp)?;
    // Header protection: a sample 4 bytes past the packet number's start.
    let sample = b.get(h.pn_offset + 4..h.pn_offset + 20)?;
    let mask = aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp).ok()?.new_mask(sample).ok()?;
    let first = b[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 3) + 1;
    let mut header = b[..h.pn_offset + pn_len].to_vec();
    header[0] = first;
    let mut pn = 0u64;
    for i in 0..pn_len {
        header[h.pn_offset + i] ^= mask[1 + i];
        pn = pn << 8 | u64::from(header[h.pn_offset + i]);
    }
    let mut nonce = iv;
    for (i, byte) in pn.to_be_bytes().iter().enumerate() {
        nonce[4 + i] ^= byte;
    }
    let key = aead::LessSafeKey::new(aead::UnboundKey::new(&aead::AES_128_GCM, &key).ok()?);
    let mut payload = b[h.pn_offset + pn_len..end].to_vec();
    let plain =
        key.open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(&header), &mut payload).ok()?;
    Some(frames(pn, plain))
}

/// The frames of a decrypted Initial (only the types an Initial may carry are read).
fn frames(packet_number: u64, b: &[u8]) -> Decrypted {
    let mut d = Decrypted { packet_number, frames: Vec::new(), client_hello: None };
    let mut p = 0;
    let push = |d: &mut Decrypted, name: &'static str| {
        if d.frames.last() != Some(&name) && d.frames.len() < 32 {
            d.frames.push(name);
        }
    };
    while p < b.len() {
        match b[p] {
            0x00 => {
                push(&mut d, "PADDING");
                p += 1;
            }
            0x01 => {
                push(&mut d, "PING");
                p += 1;
            }
            t @ (0x02 | 0x03) => {
                push(&mut d, "ACK");
                // largest, delay, range count, first range, then (gap, length) pairs, then ECN counts.
                let Some((_, q)) = varint(b, p + 1) else { break };
                let Some((_, q)) = varint(b, q) else { break };
                let Some((n, mut q)) = varint(b, q) else { break };
                let Some((_, r)) = varint(b, q) else { break };
                q = r;
                for _ in 0..(n.min(256) * 2 + if t == 3 { 3 } else { 0 }) {
                    let Some((_, r)) = varint(b, q) else { break };
                    q = r;
                }
                p = q;
            }
            0x06 => {
                push(&mut d, "CRYPTO");
                let Some((offset, q)) = varint(b, p + 1) else { break };
                let Some((len, q)) = varint(b, q) else { break };
                let data = &b[q..q.saturating_add(len as usize).min(b.len())];
                if offset == 0 && d.client_hello.is_none() && data.first() == Some(&1) {
                    // A handshake message without a record layer: wrap it in one for the TLS reader.
                    let mut rec = vec![22, 3, 3];
                    rec.extend_from_slice(&(data.len().min(0xffff) as u16).to_be_bytes());
                    rec.extend_from_slice(&data[..data.len().min(0xffff)]);
                    let records = tls::records(&rec);
                    d.client_hello = tls::first_hello(&records).map(|(_, h)| shift(h.clone(), 5));
                }
                p = q + data.len();
            }
            0x1c | 0x1d => {
                push(&mut d, "CONNECTION_CLOSE");
                break;
            }
            _ => {
                push(&mut d, "UNKNOWN");
                break;
            }
        }
    }
    d
}

/// A hello's ranges, moved `by` bytes back (from the wrapped record to the CRYPTO data).
fn shift(mut h: Hello, by: usize) -> Hello {
    let s = |r: &mut Range<usize>| *r = r.start.saturating_sub(by)..r.end.saturating_sub(by);
    s(&mut h.version.1);
    s(&mut h.random);
    s(&mut h.session_id);
    s(&mut h.cipher_suites_range);
    h.extensions.iter_mut().for_each(|e| s(&mut e.range));
    if let Some((_, r)) = &mut h.sni {
        s(r);
    }
    h.alpn.iter_mut().for_each(|(_, r)| s(r));
    h
}

fn hex(b: &[u8]) -> String {
    crate::hex::to_hex(b)
}

impl Packet {
    /// Wireshark's Info: `Initial, DCID=8394c8f03e515708, PKN: 2, CRYPTO, PADDING` (SCID when not empty)
    /// (pidcap adds the ClientHello's `Client Hello (SNI=..., ALPN=...)`),
    /// `Handshake, DCID=..., SCID=...`, `Protected Payload (KP0)`; a version
    /// other than 1 follows the type (`Initial (v2)`, `Initial (0xff00001d)`).
    pub fn info(&self) -> String {
        let Some(h) = &self.long else {
            return format!("Protected Payload (KP{})", u8::from(self.key_phase));
        };
        let mut s = h.kind.name().to_string();
        match h.version {
            VERSION_1 | 0 => {}
            VERSION_2 => s.push_str(" (v2)"),
            v => s.push_str(&format!(" (0x{v:08x})")),
        }
        if h.kind == LongKind::VersionNegotiation {
            return s;
        }
        s.push_str(&format!(", DCID={}", hex(&h.dcid)));
        if !h.scid.is_empty() {
            s.push_str(&format!(", SCID={}", hex(&h.scid)));
        }
        if let Some(d) = &self.decrypted {
            s.push_str(&format!(", PKN: {}", d.packet_number));
            for f in &d.frames {
                s.push_str(", ");
                s.push_str(f);
            }
            if let Some(hello) = &d.client_hello {
                let mut extra = Vec::new();
                if let Some((n, _)) = &hello.sni {
                    extra.push(format!("SNI={n}"));
                }
                if !hello.alpn.is_empty() {
                    let names: Vec<&str> = hello.alpn.iter().map(|(a, _)| a.as_str()).collect();
                    extra.push(format!("ALPN={}", names.join(",")));
                }
                s.push_str(", Client Hello");
                if !extra.is_empty() {
                    s.push_str(&format!(" ({})", extra.join(", ")));
                }
            }
        }
        s
    }
}
