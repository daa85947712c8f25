//! `.dpp` import (`pidcap_library::parse_dpp`, versions 1 and 2): every file
//! that reads stays within the documented caps, and written again by
//! `write_dpp` (version 2) it reads back to the same packets and sequences.

use super::{outcome, shape, text_shape};
use pidcap_library::{
    parse_dpp, write_dpp, DppFile, SavedPacket, Sequence, MAX_PACKETS, MAX_PACKET_BYTES, MAX_SEQUENCES, MAX_TAGS,
};

pub fn run(data: &[u8]) -> u64 {
    let file = match parse_dpp(data, "fuzz.dpp") {
        Ok(f) => f,
        Err(e) => return outcome(&[0, text_shape(&e.to_string())]),
    };
    check_caps(&file);
    let again = write_and_read(&file);
    assert_eq!(again.version, 2);
    assert_eq!(again.packets.len(), file.packets.len());
    for (i, (a, b)) in file.packets.iter().zip(&again.packets).enumerate() {
        let what = format!("packet {i} through write_dpp");
        assert_eq!((&b.name, &b.description, &b.tags), (&a.name, &a.description, &a.tags), "{what}");
        assert_eq!((&b.source, b.synthesized), (&a.source, a.synthesized), "{what}");
        assert_eq!(b.saved_at_ns, Some(a.saved_at_ns.unwrap_or(0)), "{what}");
        assert_eq!(b.packet, a.packet, "{what}");
    }
    assert_eq!(again.sequences.len(), file.sequences.len());
    for (a, b) in file.sequences.iter().zip(&again.sequences) {
        assert_eq!((&b.name, &b.description, &b.members), (&a.name, &a.description, &a.members));
        assert_eq!(b.created_at_ns, Some(a.created_at_ns.unwrap_or(0)));
    }
    outcome(&[
        file.version,
        shape(file.packets.len()),
        shape(file.sequences.len()),
        file.packets.iter().map(|p| u64::from(p.packet.decoded.ip_version) + p.tags.len() as u64).sum(),
    ])
}

fn check_caps(f: &DppFile) {
    assert!(f.version == 1 || f.version == 2, "version {}", f.version);
    assert!(f.packets.len() <= MAX_PACKETS && f.sequences.len() <= MAX_SEQUENCES);
    for p in &f.packets {
        assert!(!p.packet.data.is_empty() && p.packet.data.len() <= MAX_PACKET_BYTES);
        assert!(p.packet.orig_len as usize >= p.packet.data.len(), "orig_len below the data's length");
        assert!(p.tags.len() <= MAX_TAGS);
    }
    for s in &f.sequences {
        assert!(s.members.iter().all(|&m| m < f.packets.len()), "a sequence member past the packets");
    }
}

/// The file as the library would save it (ids from 1), exported, and read again.
fn write_and_read(f: &DppFile) -> DppFile {
    let saved: Vec<SavedPacket> = f
        .packets
        .iter()
        .enumerate()
        .map(|(i, p)| SavedPacket {
            id: i as i64 + 1,
            name: p.name.clone(),
            description: p.description.clone(),
            tags: p.tags.clone(),
            saved_at_ns: p.saved_at_ns.unwrap_or(0),
            source: p.source.clone(),
            synthesized: p.synthesized,
            packet: p.packet.clone(),
        })
        .collect();
    let sequences: Vec<Sequence> = f
        .sequences
        .iter()
        .enumerate()
        .map(|(i, s)| Sequence {
            id: i as i64 + 1,
            name: s.name.clone(),
            description: s.description.clone(),
            created_at_ns: s.created_at_ns.unwrap_or(0),
            packet_ids: s.members.iter().map(|&m| m as i64 + 1).collect(),
        })
        .collect();
    let mut out = Vec::new();
    write_dpp(&mut out, &saved, &sequences).expect("write_dpp into memory");
    parse_dpp(&out[..], "again.dpp").unwrap_or_else(|e| panic!("pidcap's own .dpp does not read back: {e}"))
}

/// JSON pieces and the fields of both versions.
pub const DICTIONARY: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"false",
    b"-1",
    b"1e400",
    b"18446744073709551616",
    b"4294967296",
    b"65536",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\"version\":1",
    b"\"version\":2",
    b"\"packets\":",
    b"\"sequences\":",
    b"\"data_hex\":",
    b"\"payload_hex\":",
    b"\"orig_len\":",
    b"\"timestamp_ns\":",
    b"\"direction\":\"inbound\"",
    b"\"direction\":\"Outbound\"",
    b"\"protocol\":\"Udp\"",
    b"\"protocol\":\"Tcp\"",
    b"\"local_addr\":\"::1\"",
    b"\"remote_addr\":\"10.0.0.1\"",
    b"\"local_port\":",
    b"\"remote_port\":",
    b"\"verdict\":\"blocked\"",
    b"\"rule\":",
    b"\"tags\":[\"a\",\"A\"]",
    b"\"pid\":",
    b"\"comm\":",
    b"\"name\":",
    b"\"created_at_ns\":",
    b"\"saved_at_ns\":",
    b"\"synthesized\":true",
    b"\"source\":\"\"",
    b"45000014",
    b"6000000000",
    b"47 45 54",
];
