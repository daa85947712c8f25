//! The DNS parser (`pidcap_packet::info::dns::parse`) and the one-line
//! protocol summaries built on it (`pidcap_packet::info`: `app`, `info`,
//! `verbose`) on any bytes.
//!
//! Checked: parsing never reads past the bytes nor keeps more than its
//! bounds (questions, answers, name length); a name's text is ASCII and ends
//! with a dot; the header fields are the bytes'; a message parsed as a UDP
//! payload on port 53 and over TCP after its length prefix says the same;
//! `info` and `verbose` of the bytes as an IP packet, and of a UDP/53
//! packet built around them, are one line each.

use super::outcome;
use pidcap_packet::build::{build, Transport};
use pidcap_packet::info::{self, dns, App};

pub fn run(data: &[u8]) -> u64 {
    let parsed = dns::parse(data);
    let kind = match &parsed {
        Ok(m) => {
            check(data, m);
            // Over TCP, the same message after its length prefix.
            let mut framed = (data.len().min(usize::from(u16::MAX)) as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(data);
            assert_eq!(info::app(6, (40000, 53), &framed), Some(App::Dns(m.clone())), "DNS over TCP differs");
            assert_eq!(info::app(17, (53, 40000), data), Some(App::Dns(m.clone())));
            0
        }
        Err(e) => *e as u64 + 1,
    };
    // The summaries: of the bytes as an IP packet, and of a UDP datagram to port 53 carrying them.
    for level in [1, 2] {
        assert!(!info::verbose(data, level).contains('\n'), "a verbose line has no newline");
    }
    assert!(!info::info(data).contains('\n'));
    let src = "10.0.0.1:40000".parse().unwrap();
    let dst = "10.0.0.53:53".parse().unwrap();
    if let Ok(packet) = build(src, dst, 64, Transport::Udp, data) {
        let line = info::info(&packet);
        assert!(!line.contains('\n'), "{line}");
        if parsed.is_ok() {
            assert!(line.starts_with("Standard query"), "a DNS datagram's info: {line}");
            assert!(info::verbose(&packet, 1).contains(": DNS "));
        }
    }
    let (q, a) = parsed.as_ref().map_or((0, 0), |m| (m.questions.len() as u64, m.answers.len() as u64));
    outcome(&[kind, q.min(3), a.min(3)])
}

fn check(data: &[u8], m: &dns::Message) {
    assert_eq!(m.id, u16::from_be_bytes([data[0], data[1]]));
    assert_eq!(m.counts[0], u16::from_be_bytes([data[4], data[5]]));
    assert!(m.questions.len() <= dns::MAX_QUESTIONS && m.questions.len() <= usize::from(m.counts[0]));
    assert!(m.answers.len() <= dns::MAX_ANSWERS && m.answers.len() <= usize::from(m.counts[1]));
    let names = m.questions.iter().map(|q| &q.name).chain(m.answers.iter().map(|a| &a.name));
    for name in names {
        assert!(name.is_ascii() && name.ends_with('.'), "{name:?}");
        // Escapes make a byte at most 4 characters: 255 bytes on the wire at most.
        assert!(name.len() <= 4 * 255, "{} characters", name.len());
    }
    for a in &m.answers {
        let _ = a.text();
    }
}

pub const DICTIONARY: &[&[u8]] = &[
    b"\x00\x01\x00\x01",
    b"\x00\x1c\x00\x01",
    b"\xc0\x0c",
    b"\xc0\x00",
    b"\x07example\x03com\x00",
    b"\x81\x80",
    b"\x01\x00",
    b"\x00\x00\x0e\x10\x00\x04",
    b"\x00\x05\x00\x01",
    b"\x00\x10\x00\x01",
    b"\x00\x21\x00\x01",
];
