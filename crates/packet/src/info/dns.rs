//! A small DNS message parser (RFC 1035 header, questions and answers, with
//! name compression), for one-line summaries of captured queries and
//! responses ([`super::info`], `pidcap -v`).
//!
//! Hand-written rather than a crate: the workspace has no DNS crate, the
//! summaries need a tenth of one (names, types, a few record data forms),
//! and captured bytes are outside input, so this parser is small enough to
//! be read whole and is fuzzed (`pidcap-fuzz`, target `dns`). It never
//! panics and is bounded: at most [`MAX_QUESTIONS`] questions and
//! [`MAX_ANSWERS`] answers are kept, a name is at most 255 bytes on the wire
//! and follows at most [`MAX_POINTERS`] compression pointers (so a pointer
//! loop ends), every read is checked against the bytes. A message cut short
//! (the snap length) keeps what was read before the cut, marked `partial`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Questions kept of one message.
pub const MAX_QUESTIONS: usize = 8;
/// Answer records kept of one message.
pub const MAX_ANSWERS: usize = 32;
/// Compression pointers followed in one name.
pub const MAX_POINTERS: usize = 32;

/// Why bytes are not a DNS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("shorter than a DNS header")]
    Short,
    #[error("a name runs past the message")]
    Truncated,
    #[error("a name has a reserved label type")]
    BadLabel,
    #[error("a name is longer than 255 bytes")]
    LongName,
    #[error("too many compression pointers in a name")]
    PointerLoop,
    #[error("a DNS message with no question and no answer")]
    Empty,
}

/// A parsed DNS message (what the summaries need).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    /// QR: a response.
    pub response: bool,
    pub opcode: u8,
    /// AA, TC, RD, RA.
    pub authoritative: bool,
    pub truncated: bool,
    pub recursion_desired: bool,
    pub recursion_available: bool,
    pub rcode: u8,
    /// The header's counts (questions, answers, authority, additional).
    pub counts: [u16; 4],
    /// The questions read (at most [`MAX_QUESTIONS`]).
    pub questions: Vec<Question>,
    /// The answer records read (at most [`MAX_ANSWERS`]).
    pub answers: Vec<Record>,
    /// The bytes ended (or a name was bad) before every question and answer the header counts was read.
    pub partial: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Its bytes in the message (name, type, class: the type and class are the last 4).
    pub range: std::ops::Range<usize>,
    /// Dotted, with a final dot (`example.com.`; the root is `.`); bytes
    /// that are not letters, digits, `-` or `_` as `\DDD` (as dig writes them).
    pub name: String,
    pub qtype: u16,
    pub qclass: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its bytes in the message (the data is the last `data_len`).
    pub range: std::ops::Range<usize>,
    pub data_len: u16,
    pub name: String,
    pub rtype: u16,
    pub class: u16,
    pub ttl: u32,
    pub data: RData,
}

/// The record data forms the summaries show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RData {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// CNAME, NS, PTR, DNAME.
    Name(String),
    Mx {
        preference: u16,
        exchange: String,
    },
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
        target: String,
    },
    /// The first character string of a TXT record, escaped (`pidcap_packet::ascii::escape`).
    Txt(String),
    /// Any other type (or data that did not parse as its type): its length.
    Other(u16),
}

/// The mnemonic of a record type (`A`, `AAAA`, `HTTPS`...), `TYPEn` for others (RFC 3597).
pub fn type_name(t: u16) -> String {
    let name = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        64 => "SVCB",
        65 => "HTTPS",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return format!("TYPE{t}"),
    };
    name.to_string()
}

/// The name of a response code as tcpdump prints it (`NXDomain`...).
pub fn rcode_name(rcode: u8) -> String {
    let name = match rcode {
        0 => "NoError",
        1 => "FormErr",
        2 => "ServFail",
        3 => "NXDomain",
        4 => "NotImp",
        5 => "Refused",
        _ => return format!("RCODE{rcode}"),
    };
    name.to_string()
}

fn u16_at(msg: &[u8], pos: usize) -> Option<u16> {
    let b = msg.get(pos..pos.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn u32_at(msg: &[u8], pos: usize) -> Option<u32> {
    let b = msg.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The name at `pos` in `msg`, and the position after it where it is
/// written (after the first pointer, if any).
pub fn read_name(msg: &[u8], start: usize) -> Result<(String, usize), DnsError> {
    let mut out = String::new();
    let mut pos = start;
    let mut after = None;
    let mut pointers = 0;
    let mut wire_len = 1usize; // the final zero
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => {
                let len = usize::from(len);
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(DnsError::Truncated)?;
                wire_len += len + 1;
                if wire_len > 255 {
                    return Err(DnsError::LongName);
                }
                for &b in label {
                    if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*' {
                        out.push(char::from(b));
                    } else {
                        let _ = write!(out, "\\{b:03}");
                    }
                }
                out.push('.');
                pos += 1 + len;
            }
            0xc0 => {
                let low = *msg.get(pos + 1).ok_or(DnsError::Truncated)?;
                pointers += 1;
                if pointers > MAX_POINTERS {
                    return Err(DnsError::PointerLoop);
                }
                after.get_or_insert(pos + 2);
                pos = usize::from(len & 0x3f) << 8 | usize::from(low);
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    Ok((out, after.unwrap_or(pos)))
}

fn rdata(msg: &[u8], rtype: u16, start: usize, len: u16) -> RData {
    let Some(bytes) = msg.get(start..start + usize::from(len)) else { return RData::Other(len) };
    let name_at = |pos: usize| read_name(msg, pos).ok().map(|(n, _)| n);
    let parsed = match (rtype, bytes.len()) {
        (1, 4) => Some(RData::A(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))),
        (28, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            Some(RData::Aaaa(Ipv6Addr::from(a)))
        }
        (2 | 5 | 12 | 39, _) => name_at(start).map(RData::Name),
        (15, 3..) => {
            name_at(start + 2).map(|exchange| RData::Mx { preference: u16_at(msg, start).unwrap_or(0), exchange })
        }
        (33, 7..) => name_at(start + 6).map(|target| RData::Srv {
            priority: u16_at(msg, start).unwrap_or(0),
            weight: u16_at(msg, start + 2).unwrap_or(0),
            port: u16_at(msg, start + 4).unwrap_or(0),
            target,
        }),
        (16, 1..) => {
            let n = usize::from(bytes[0]);
            bytes.get(1..1 + n).map(|s| RData::Txt(crate::ascii::escape(s)))
        }
        _ => None,
    };
    parsed.unwrap_or(RData::Other(len))
}

/// Parse `msg` (a DNS message, without TCP's length prefix).
pub fn parse(msg: &[u8]) -> Result<Message, DnsError> {
    if msg.len() < 12 {
        return Err(DnsError::Short);
    }
    let flags = u16_at(msg, 2).unwrap_or(0);
    let counts = [4, 6, 8, 10].map(|at| u16_at(msg, at).unwrap_or(0));
    let mut m = Message {
        id: u16_at(msg, 0).unwrap_or(0),
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        authoritative: flags & 0x0400 != 0,
        truncated: flags & 0x0200 != 0,
        recursion_desired: flags & 0x0100 != 0,
        recursion_available: flags & 0x0080 != 0,
        rcode: (flags & 0xf) as u8,
        counts,
        questions: Vec::new(),
        answers: Vec::new(),
        partial: false,
    };
    if counts[0] == 0 && counts[1] == 0 {
        return Err(DnsError::Empty);
    }
    let mut pos = 12;
    for i in 0..counts[0] {
        let q = read_name(msg, pos).and_then(|(name, next)| {
            let qtype = u16_at(msg, next).ok_or(DnsError::Truncated)?;
            let qclass = u16_at(msg, next + 2).ok_or(DnsError::Truncated)?;
            let start = pos;
            pos = next + 4;
            Ok(Question { range: start..pos, name, qtype, qclass })
        });
        match q {
            Ok(q) if usize::from(i) < MAX_QUESTIONS => m.questions.push(q),
            Ok(_) => {}
            // The first question must parse: else these bytes are not DNS.
            Err(e) if i == 0 => return Err(e),
            Err(_) => {
                m.partial = true;
                return Ok(m);
            }
        }
    }
    for _ in 0..counts[1].min(MAX_ANSWERS as u16) {
        let r = read_name(msg, pos).and_then(|(name, next)| {
            let rtype = u16_at(msg, next).ok_or(DnsError::Truncated)?;
            let class = u16_at(msg, next + 2).ok_or(DnsError::Truncated)?;
            let ttl = u32_at(msg, next + 4).ok_or(DnsError::Truncated)?;
            let len = u16_at(msg, next + 8).ok_or(DnsError::Truncated)?;
            let data = rdata(msg, rtype, next + 10, len);
            let start = pos;
            pos = next + 10 + usize::from(len);
            Ok(Record { range: start..pos.min(msg.len()), data_len: len, name, rtype, class, ttl, data })
        });
        match r {
            Ok(r) => m.answers.push(r),
            Err(_) => {
                m.partial = true;
                return Ok(m);
            }
        }
    }
    m.partial = usize::from(counts[0]) > m.questions.len() && m.questions.len() < MAX_QUESTIONS
        || usize::from(counts[1]) > m.answers.len() && m.answers.len() < MAX_ANSWERS;
    Ok(m)
}

impl RData {
    /// As dig and tcpdump show it, after the type: `10.0.0.1`, `mail.example. 10`...
    pub fn text(&self) -> String {
        match self {
            RData::A(a) => a.to_string(),
            RData::Aaaa(a) => a.to_string(),
            RData::Name(n) => n.clone(),
            RData::Mx { preference, exchange } => format!("{exchange} {preference}"),
            RData::Srv { priority, weight, port, target } => format!("{target}:{port} {priority} {weight}"),
            RData::Txt(t) => format!("\"{t}\""),
            RData::Other(len) => format!("({len} bytes)"),
        }
    }
}

impl Record {
    /// `A 10.0.0.1`, `CNAME target.example.`...
    pub fn text(&self) -> String {
        format!("{} {}", type_name(self.rtype), self.data.text())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A query for `name` of type `qtype`, id 0x1234, RD set.
    pub fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        push_name(&mut m, name);
        m.extend_from_slice(&qtype.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m
    }

    pub fn push_name(m: &mut Vec<u8>, name: &str) {
        for label in name.split('.').filter(|l| !l.is_empty()) {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
    }

    /// The response to [`query`]`(name, 1)`: the answers are A records of
    /// `addrs`, their names pointers to the question's (offset 12).
    pub fn response(name: &str, addrs: &[[u8; 4]]) -> Vec<u8> {
        let mut m = query(name, 1);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = addrs.len() as u8;
        for a in addrs {
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4]);
            m.extend_from_slice(a);
        }
        m
    }

    #[test]
    fn a_query_and_its_response() {
        let q = parse(&query("example.com", 1)).unwrap();
        assert_eq!((q.id, q.response, q.recursion_desired, q.partial), (0x1234, false, true, false));
        assert_eq!(q.questions, [Question { range: 12..29, name: "example.com.".into(), qtype: 1, qclass: 1 }]);
        let r = parse(&response("example.com", &[[10, 0, 0, 1], [10, 0, 0, 2]])).unwrap();
        assert!(r.response && r.recursion_available && !r.partial);
        let texts: Vec<String> = r.answers.iter().map(Record::text).collect();
        assert_eq!(texts, ["A 10.0.0.1", "A 10.0.0.2"]);
        assert_eq!((r.answers[0].name.as_str(), r.answers[0].ttl), ("example.com.", 3600));
    }

    #[test]
    fn record_data_forms() {
        let mut m = response("a.example", &[]);
        m[7] = 5;
        // CNAME b.example (written out), MX 10 pointing at the question, AAAA ::1, TXT, SRV.
        m.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 1, 0, 11]);
        push_name(&mut m, "b.example");
        m.extend_from_slice(&[0xc0, 12, 0, 15, 0, 1, 0, 0, 0, 1, 0, 4, 0, 10, 0xc0, 12]);
        m.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 1, 0, 16]);
        m.extend_from_slice(&[0; 15]);
        m.push(1);
        m.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 1, 0, 4, 3, b'a', 0, b'\n']);
        m.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 1, 0, 8, 0, 1, 0, 2, 0x01, 0xbb, 0xc0, 12]);
        let r = parse(&m).unwrap();
        let texts: Vec<String> = r.answers.iter().map(Record::text).collect();
        assert_eq!(
            texts,
            ["CNAME b.example.", "MX a.example. 10", "AAAA ::1", "TXT \"a\\0\\n\"", "SRV a.example.:443 1 2"]
        );
        assert!(!r.partial);
    }

    #[test]
    fn bad_names_and_cut_messages() {
        assert_eq!(parse(&[0; 11]), Err(DnsError::Short));
        assert_eq!(parse(&[0; 12]), Err(DnsError::Empty));
        // A pointer to itself: a loop, bounded.
        let mut m = query("x", 1);
        m.truncate(12);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse(&m), Err(DnsError::PointerLoop));
        // A reserved label type; a label past the end.
        let mut m = query("x", 1);
        m[12] = 0x80;
        assert_eq!(parse(&m), Err(DnsError::BadLabel));
        let mut m = query("x", 1);
        m[12] = 60;
        assert_eq!(parse(&m), Err(DnsError::Truncated));
        // 300 bytes of labels.
        let mut m = query("x", 1);
        m.truncate(12);
        for _ in 0..5 {
            m.push(60);
            m.extend_from_slice(&[b'a'; 60]);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(parse(&m), Err(DnsError::LongName));
        // A response cut in its second answer keeps the first.
        let full = response("example.com", &[[10, 0, 0, 1], [10, 0, 0, 2]]);
        let r = parse(&full[..full.len() - 8]).unwrap();
        assert!(r.partial);
        assert_eq!(r.answers.len(), 1);
        // Every prefix parses or fails, without a panic.
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
        // Odd bytes in a label are escaped as dig does.
        let q = parse(&query("a b.\u{7f}", 1)).unwrap();
        assert_eq!(q.questions[0].name, "a\\032b.\\127.");
    }
}
