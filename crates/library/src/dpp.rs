//! `.dpp` packet files: DioProcess's version 1 (one payload-only entry, read
//! only) and pidcap's version 2 (several packets with everything, and
//! sequences; read and written). The format and its size caps are described
//! in `docs/dpp-format.md`.
//!
//! Reading is strict and does all its checking before anything touches the
//! database: the file is size-capped, must be UTF-8 JSON, and every field is
//! type-checked with errors naming its JSON path (`packets[3].data_hex`).

use crate::error::{LibraryError, Result};
use crate::model::{NewPacket, SavedPacket, Sequence};
use crate::now_ns;
use pidcap_packet::tls::{TlsInfo, TlsLibrary};
use pidcap_packet::{to_hex, CapturedPacket, Direction, Protocol, Verdict};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::net::IpAddr;

/// Largest `.dpp` file read (64 MiB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// Most packets in one file.
pub const MAX_PACKETS: usize = 100_000;
/// Most sequences in one file.
pub const MAX_SEQUENCES: usize = 10_000;
/// Largest packet (IP header onwards) in a version 2 file.
pub const MAX_PACKET_BYTES: usize = 262_144;
/// Largest payload of a version 1 entry (so that the synthesised packet fits IPv4's 65,535 bytes).
pub const MAX_V1_PAYLOAD_BYTES: usize = 65_000;
/// Most tags on one packet.
pub const MAX_TAGS: usize = 256;
/// Longest tag.
pub const MAX_TAG_CHARS: usize = 128;
/// Longest name (packet, sequence, process).
pub const MAX_NAME_CHARS: usize = 1_024;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 65_536;

/// A sequence read from a file; `members` index the file's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSequence {
    pub name: String,
    pub description: String,
    pub created_at_ns: Option<u64>,
    pub members: Vec<usize>,
}

/// The checked contents of a `.dpp` file, ready to be saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DppFile {
    /// 1 or 2.
    pub version: u64,
    pub packets: Vec<NewPacket>,
    pub sequences: Vec<NewSequence>,
}

/// Read and check a `.dpp` file of either version from `r`. `origin` (the file
/// name) goes into each packet's `source`.
pub fn parse_dpp(mut r: impl Read, origin: &str) -> Result<DppFile> {
    let mut bytes = Vec::new();
    r.by_ref()
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| LibraryError::dpp_caused("(file)", format!("cannot read: {e}"), e))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(LibraryError::dpp("(file)", format!("larger than the {} MiB cap", MAX_FILE_BYTES >> 20)));
    }
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        LibraryError::dpp_caused("(file)", format!("not UTF-8 text (bad byte at offset {})", e.valid_up_to()), e)
    })?;
    if text.trim().is_empty() {
        return Err(LibraryError::dpp("(file)", "empty"));
    }
    let v: Value = serde_json::from_str(text)
        .map_err(|e| LibraryError::dpp_caused("(file)", format!("not valid JSON: {e}"), e))?;
    let top = Obj::new(String::new(), &v)?;
    match top.u64("version")? {
        1 => parse_v1(&top, origin),
        2 => parse_v2(&top, origin),
        n => Err(LibraryError::dpp("version", format!("unsupported version {n} (this pidcap reads 1 and 2)"))),
    }
}

/// A JSON object being read, with its path for error messages.
struct Obj<'a> {
    path: String,
    m: &'a Map<String, Value>,
}

impl<'a> Obj<'a> {
    fn new(path: String, v: &'a Value) -> Result<Obj<'a>> {
        match v {
            Value::Object(m) => Ok(Obj { path, m }),
            other => Err(LibraryError::dpp(
                if path.is_empty() { "(top level)".to_string() } else { path },
                format!("expected an object, found {}", kind(other)),
            )),
        }
    }

    fn at(&self, k: &str) -> String {
        if self.path.is_empty() {
            k.to_string()
        } else {
            format!("{}.{k}", self.path)
        }
    }

    fn get(&self, k: &str) -> Option<&'a Value> {
        self.m.get(k).filter(|v| !v.is_null())
    }

    fn req(&self, k: &str) -> Result<&'a Value> {
        self.get(k).ok_or_else(|| LibraryError::dpp(self.at(k), "missing"))
    }

    fn str_or(&self, k: &str, max_chars: usize, default: &'a str) -> Result<&'a str> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => {
                let s = v.as_str().ok_or_else(|| self.wrong(k, "a string", v))?;
                if s.chars().count() > max_chars {
                    return Err(LibraryError::dpp(self.at(k), format!("longer than {max_chars} characters")));
                }
                Ok(s)
            }
        }
    }

    fn str(&self, k: &str, max_chars: usize) -> Result<&'a str> {
        self.req(k)?;
        self.str_or(k, max_chars, "")
    }

    fn u64(&self, k: &str) -> Result<u64> {
        let v = self.req(k)?;
        v.as_u64().ok_or_else(|| self.wrong(k, "a non-negative integer", v))
    }

    fn u64_or(&self, k: &str, default: u64) -> Result<u64> {
        if self.get(k).is_none() {
            return Ok(default);
        }
        self.u64(k)
    }

    fn bounded(&self, k: &str, max: u64) -> Result<u64> {
        let n = self.u64(k)?;
        if n > max {
            return Err(LibraryError::dpp(self.at(k), format!("{n} is larger than {max}")));
        }
        Ok(n)
    }

    fn bool_or(&self, k: &str, default: bool) -> Result<bool> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.wrong(k, "true or false", v)),
        }
    }

    fn array(&self, k: &str, max: usize) -> Result<&'a [Value]> {
        let v = self.req(k)?;
        let a = v.as_array().ok_or_else(|| self.wrong(k, "an array", v))?;
        if a.len() > max {
            return Err(LibraryError::dpp(self.at(k), format!("{} entries, more than the cap of {max}", a.len())));
        }
        Ok(a)
    }

    fn tags(&self, k: &str) -> Result<Vec<String>> {
        if self.get(k).is_none() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for (i, t) in self.array(k, MAX_TAGS)?.iter().enumerate() {
            let field = format!("{}[{i}]", self.at(k));
            let s =
                t.as_str().ok_or_else(|| LibraryError::dpp(&field, format!("expected a string, found {}", kind(t))))?;
            out.push(crate::store::clean_tag(s).map_err(|e| LibraryError::dpp_caused(&field, e.to_string(), e))?);
        }
        Ok(out)
    }

    fn ip(&self, k: &str) -> Result<IpAddr> {
        let s = self.str(k, 64)?;
        s.trim().parse().map_err(|_| LibraryError::dpp(self.at(k), format!("{s:?} is not an IPv4 or IPv6 address")))
    }

    fn direction(&self, k: &str) -> Result<Direction> {
        let s = self.str(k, 16)?;
        s.to_ascii_lowercase()
            .parse()
            .map_err(|_| LibraryError::dpp(self.at(k), format!("{s:?} is neither \"Outbound\" nor \"Inbound\"")))
    }

    fn wrong(&self, k: &str, expected: &str, found: &Value) -> LibraryError {
        LibraryError::dpp(self.at(k), format!("expected {expected}, found {}", kind(found)))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Hex bytes, separated by whitespace (DioProcess) or contiguous (pidcap), at
/// most `max` of them ([`pidcap_packet::hex::parse_max`]); the error names `field`.
fn parse_hex(field: &str, s: &str, max: usize) -> Result<Vec<u8>> {
    use pidcap_packet::hex::{parse_max, HexErrorKind};
    parse_max(s, max).map_err(|e| {
        let at = e.at.offset;
        LibraryError::dpp_caused(
            field,
            match e.kind {
                HexErrorKind::OddDigits { digits, .. } => {
                    format!("odd number of hex digits ({digits} in {:?} at offset {at})", e.group(s))
                }
                HexErrorKind::TooLong { max } => format!("more than the cap of {max} bytes"),
                HexErrorKind::InvalidDigit(_) | HexErrorKind::EmptyPrefix => {
                    format!("{:?} at offset {at} is not a hex byte", e.group(s))
                }
            },
            e,
        )
    })
}

/// DioProcess version 1: one payload-only entry; the IP and TCP/UDP headers are synthesised.
fn parse_v1(o: &Obj<'_>, origin: &str) -> Result<DppFile> {
    let name = o.str_or("name", MAX_NAME_CHARS, "")?.to_string();
    let description = o.str_or("description", MAX_DESCRIPTION_CHARS, "")?.to_string();
    let tags = o.tags("tags")?;
    let proto = o.str("protocol", 16)?;
    let udp = match proto.parse() {
        Ok(Protocol::Tcp) => false,
        Ok(Protocol::Udp) => true,
        _ => return Err(LibraryError::dpp("protocol", format!("{proto:?} is neither \"Tcp\" nor \"Udp\""))),
    };
    let direction = o.direction("direction")?;
    let local = o.ip("local_addr")?;
    let local_port = o.bounded("local_port", 65_535)? as u16;
    let remote = o.ip("remote_addr")?;
    let remote_port = o.bounded("remote_port", 65_535)? as u16;
    if local.is_ipv4() != remote.is_ipv4() {
        return Err(LibraryError::dpp("remote_addr", "not the same IP version as local_addr"));
    }
    let payload = parse_hex("payload_hex", o.str("payload_hex", MAX_V1_PAYLOAD_BYTES * 3 + 16)?, MAX_V1_PAYLOAD_BYTES)?;
    let (src, sport, dst, dport) = match direction {
        Direction::Outbound => (local, local_port, remote, remote_port),
        Direction::Inbound => (remote, remote_port, local, local_port),
    };
    let data = synthesize(udp, src, sport, dst, dport, &payload)?;
    let len = data.len() as u32;
    let now = now_ns();
    let packet = CapturedPacket::new(0, now, 0, String::new(), 0, direction, Verdict::Pass, len, data);
    Ok(DppFile {
        version: 1,
        packets: vec![NewPacket {
            name,
            description,
            tags,
            saved_at_ns: None,
            source: format!("dpp-v1:{origin}"),
            synthesized: true,
            packet,
        }],
        sequences: Vec::new(),
    })
}

/// Build an IPv4/IPv6 + TCP/UDP packet around `payload` with correct checksums
/// ([`pidcap_packet::build::build`], TTL 64). TCP segments get PSH|ACK,
/// sequence and acknowledgement numbers 1, window 65535.
pub(crate) fn synthesize(
    udp: bool,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    payload: &[u8],
) -> Result<Vec<u8>> {
    use pidcap_packet::build::{build, flags, BuildError, TcpFields, Transport, DEFAULT_TTL};
    let transport = if udp {
        Transport::Udp
    } else {
        Transport::Tcp(TcpFields { seq: 1, ack: 1, flags: flags::PSH | flags::ACK, window: 65_535 })
    };
    build((src, sport).into(), (dst, dport).into(), DEFAULT_TTL, transport, payload).map_err(|e| match e {
        BuildError::MixedVersions { .. } => LibraryError::dpp("remote_addr", "not the same IP version as local_addr"),
        BuildError::Write(e) => {
            LibraryError::dpp_caused("payload_hex", format!("cannot build a packet around it: {e}"), e)
        }
    })
}

/// pidcap version 2: packets with everything, and sequences.
fn parse_v2(o: &Obj<'_>, origin: &str) -> Result<DppFile> {
    let list = o.array("packets", MAX_PACKETS)?;
    let mut packets = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        packets.push(parse_v2_packet(&Obj::new(format!("packets[{i}]"), v)?, origin)?);
    }
    let mut sequences = Vec::new();
    if o.get("sequences").is_some() {
        for (i, v) in o.array("sequences", MAX_SEQUENCES)?.iter().enumerate() {
            let s = Obj::new(format!("sequences[{i}]"), v)?;
            let mut members = Vec::new();
            for (j, m) in s.array("packets", MAX_PACKETS)?.iter().enumerate() {
                let field = format!("{}[{j}]", s.at("packets"));
                let idx = m
                    .as_u64()
                    .ok_or_else(|| LibraryError::dpp(&field, format!("expected a packet index, found {}", kind(m))))?;
                if idx >= packets.len() as u64 {
                    return Err(LibraryError::dpp(
                        field,
                        format!("index {idx} past the {} packets of the file", packets.len()),
                    ));
                }
                members.push(idx as usize);
            }
            sequences.push(NewSequence {
                name: s.str_or("name", MAX_NAME_CHARS, "")?.to_string(),
                description: s.str_or("description", MAX_DESCRIPTION_CHARS, "")?.to_string(),
                created_at_ns: s.get("created_at_ns").map(|_| s.u64("created_at_ns")).transpose()?,
                members,
            });
        }
    }
    Ok(DppFile { version: 2, packets, sequences })
}

fn parse_v2_packet(p: &Obj<'_>, origin: &str) -> Result<NewPacket> {
    let data = parse_hex(&p.at("data_hex"), p.str("data_hex", MAX_PACKET_BYTES * 3 + 16)?, MAX_PACKET_BYTES)?;
    if data.is_empty() {
        return Err(LibraryError::dpp(p.at("data_hex"), "no bytes"));
    }
    let orig_len = p.u64_or("orig_len", data.len() as u64)?;
    if orig_len < data.len() as u64 || orig_len > u32::MAX as u64 {
        return Err(LibraryError::dpp(
            p.at("orig_len"),
            format!("{orig_len} is not between the data length {} and 2^32-1", data.len()),
        ));
    }
    let verdict = p.str_or("verdict", 16, "pass")?;
    let verdict: Verdict = verdict
        .parse()
        .map_err(|_| LibraryError::dpp(p.at("verdict"), format!("{verdict:?} is neither \"pass\" nor \"blocked\"")))?;
    let rule = match p.get("rule") {
        None => None,
        Some(_) => Some(p.bounded("rule", u16::MAX.into())? as u16),
    };
    let mut packet = CapturedPacket::new(
        p.u64_or("capture_id", 0)?,
        p.u64("timestamp_ns")?,
        p.bounded("pid", u32::MAX.into())? as u32,
        p.str_or("comm", MAX_NAME_CHARS, "")?.to_string(),
        p.u64_or("socket_cookie", 0)?,
        p.direction("direction")?,
        verdict,
        orig_len as u32,
        data,
    );
    packet.rule = rule;
    if let Some(v) = p.get("tls") {
        let t = Obj::new(p.at("tls"), v)?;
        let library = t.str("library", 16)?;
        let library: TlsLibrary = library.parse().map_err(|_| {
            LibraryError::dpp(t.at("library"), format!("{library:?} is not \"openssl\", \"gnutls\" or \"nss\""))
        })?;
        let tid = t.bounded("tid", u32::MAX.into())? as u32;
        if packet.decoded.protocol != Protocol::Tcp {
            return Err(LibraryError::dpp(p.at("data_hex"), "a TLS record's data must be a TCP packet"));
        }
        packet.tls = Some(TlsInfo { tid, library });
        // Its true length is in orig_len, as the library and the capture keep it.
        packet.decoded.payload_size = packet.orig_len.saturating_sub(packet.decoded.payload_offset);
    }
    let source = p.str_or("source", MAX_NAME_CHARS, "")?;
    Ok(NewPacket {
        name: p.str_or("name", MAX_NAME_CHARS, "")?.to_string(),
        description: p.str_or("description", MAX_DESCRIPTION_CHARS, "")?.to_string(),
        tags: p.tags("tags")?,
        saved_at_ns: p.get("saved_at_ns").map(|_| p.u64("saved_at_ns")).transpose()?,
        source: if source.is_empty() { format!("dpp:{origin}") } else { source.to_string() },
        synthesized: p.bool_or("synthesized", false)?,
        packet,
    })
}

/// Write `packets` and `sequences` (whose members must all be among
/// `packets`; others are left out) as a version 2 `.dpp` file.
pub fn write_dpp(w: impl Write, packets: &[SavedPacket], sequences: &[Sequence]) -> Result<()> {
    let index: std::collections::HashMap<i64, usize> = packets.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    let pk: Vec<Value> = packets
        .iter()
        .map(|s| {
            let c = &s.packet;
            let d = &c.decoded;
            let mut v = json!({
                "name": s.name,
                "description": s.description,
                "tags": s.tags,
                "saved_at_ns": s.saved_at_ns,
                "source": s.source,
                "synthesized": s.synthesized,
                "capture_id": c.id,
                "timestamp_ns": c.timestamp_ns,
                "pid": c.pid,
                "comm": c.comm,
                "socket_cookie": c.socket_cookie,
                "direction": c.direction.long_str(),
                "verdict": c.verdict.as_str(),
                "rule": c.rule,
                "orig_len": c.orig_len,
                "summary": format!("{} {}:{} -> {}:{}", d.protocol.name(), d.local_addr, d.local_port, d.remote_addr, d.remote_port),
                "data_hex": to_hex(&c.data),
            });
            if let Some(t) = c.tls {
                v["tls"] = json!({ "library": t.library.as_str(), "tid": t.tid });
            }
            v
        })
        .collect();
    let seqs: Vec<Value> = sequences
        .iter()
        .filter_map(|s| {
            let members: Option<Vec<usize>> = s.packet_ids.iter().map(|id| index.get(id).copied()).collect();
            members.map(|m| {
                json!({"name": s.name, "description": s.description, "created_at_ns": s.created_at_ns, "packets": m})
            })
        })
        .collect();
    let doc = json!({
        "format": "pidcap-dpp",
        "version": 2,
        "generator": concat!("pidcap-library ", env!("CARGO_PKG_VERSION")),
        "exported_at_ns": now_ns(),
        "packets": pk,
        "sequences": seqs,
    });
    let mut w = std::io::BufWriter::new(w);
    serde_json::to_writer_pretty(&mut w, &doc).map_err(|e| LibraryError::io("cannot write the .dpp file", e.into()))?;
    w.write_all(b"\n").and_then(|_| w.flush()).map_err(|e| LibraryError::io("cannot write the .dpp file", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_parsing_names_the_field() {
        assert_eq!(parse_hex("f", "47 45 54", 10).unwrap(), b"GET");
        assert_eq!(parse_hex("f", "474554", 10).unwrap(), b"GET");
        let e = parse_hex("f", "47 4", 10).unwrap_err().to_string();
        assert!(e.contains("f: odd"), "{e}");
        let e = parse_hex("f", "47 zz", 10).unwrap_err().to_string();
        assert!(e.contains("\"zz\""), "{e}");
        assert!(e.contains("offset 3"), "{e}");
        assert!(parse_hex("f", "00 00 00", 2).is_err());
    }

    #[test]
    fn synthesised_packets_decode_back() {
        let d = synthesize(false, "10.0.0.1".parse().unwrap(), 1000, "10.0.0.2".parse().unwrap(), 80, b"GET").unwrap();
        let p = CapturedPacket::new(0, 0, 0, String::new(), 0, Direction::Outbound, Verdict::Pass, d.len() as u32, d);
        assert_eq!(p.payload(), b"GET");
        assert_eq!(p.decoded.remote_port, 80);
        let d = synthesize(true, "::1".parse().unwrap(), 53, "::2".parse().unwrap(), 5353, b"x").unwrap();
        let p = CapturedPacket::new(0, 0, 0, String::new(), 0, Direction::Inbound, Verdict::Pass, d.len() as u32, d);
        assert_eq!(p.decoded.local_port, 5353);
        assert_eq!(p.payload(), b"x");
    }
}
