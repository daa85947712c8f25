//! Helpers shared by the library's integration tests: building packets, and a
//! fingerprint of every table to prove a failed operation changed nothing.
#![allow(dead_code)]

use pidcap_library::{Library, NewPacket, PacketMeta};
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// An IPv4 TCP (or UDP) packet from 10.0.0.1:sport to 10.0.0.2:dport.
#[allow(clippy::too_many_arguments)]
pub fn packet(
    id: u64,
    pid: u32,
    comm: &str,
    dir: Direction,
    udp: bool,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> CapturedPacket {
    let b = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64);
    let mut data = Vec::new();
    if udp {
        b.udp(sport, dport).write(&mut data, payload).unwrap();
    } else {
        b.tcp(sport, dport, 1000 + id as u32, 512).psh().ack(7).write(&mut data, payload).unwrap();
    }
    let len = data.len() as u32;
    CapturedPacket::new(
        id,
        1_700_000_000_000_000_000 + id * 1_000_000,
        pid,
        comm.into(),
        4242 + id,
        dir,
        Verdict::Pass,
        len,
        data,
    )
}

pub fn new_packet(p: CapturedPacket, name: &str, tags: &[&str]) -> NewPacket {
    let meta = PacketMeta {
        name: name.into(),
        description: format!("about {name}"),
        tags: tags.iter().map(|t| t.to_string()).collect(),
    };
    NewPacket::new(p, &meta, "test")
}

/// A small library: HTTP, DNS and TLS-ish packets from curl and dig.
pub fn sample(lib: &mut Library) -> Vec<i64> {
    let ps = vec![
        new_packet(
            packet(
                1,
                100,
                "curl",
                Direction::Outbound,
                false,
                40000,
                80,
                b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n",
            ),
            "get index",
            &["http", "web"],
        ),
        new_packet(
            packet(
                2,
                100,
                "curl",
                Direction::Inbound,
                false,
                80,
                40000,
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nhello",
            ),
            "response",
            &["http"],
        ),
        new_packet(
            packet(
                3,
                200,
                "dig",
                Direction::Outbound,
                true,
                50000,
                53,
                b"\x12\x34\x01\x00\x00\x01\x07example\x03com\x00",
            ),
            "dns query",
            &["dns"],
        ),
        new_packet(
            packet(
                4,
                300,
                "openssl",
                Direction::Outbound,
                false,
                40001,
                443,
                b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            ),
            "client hello",
            &["tls", "web"],
        ),
    ];
    lib.save_many(&ps).unwrap()
}

/// Row counts and a hash of every row of every table (shadow FTS tables included).
pub fn fingerprint(lib: &Library) -> Vec<(String, i64, u64)> {
    let c = lib.connection();
    let tables: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .filter(|n: &String| n != "packets_fts")
        .collect();
    let mut out = Vec::new();
    for t in tables {
        let mut st = c.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let ncol = st.column_count();
        let mut rows: Vec<String> = st
            .query_map([], |r| {
                let vals: Vec<rusqlite::types::Value> = (0..ncol).map(|i| r.get(i).unwrap()).collect();
                Ok(format!("{vals:?}"))
            })
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        rows.sort();
        let mut h = DefaultHasher::new();
        rows.hash(&mut h);
        out.push((t, rows.len() as i64, h.finish()));
    }
    out
}

/// A database as pidcap with schema `version` (1 or 2) wrote it: one outbound
/// TCP packet 10.0.0.1:1234 -> 10.0.0.2:80 named `legacy` (description
/// `from v1`, pid 77, comm `oldproc`, tag `old`) carrying `payload`, indexed
/// the old way (one hex token per byte).
pub fn legacy_db(path: &Path, version: i64, payload: &[u8]) {
    let c = rusqlite::Connection::open(path).unwrap();
    for v in 1..=version {
        c.execute_batch(pidcap_library::migration_sql(v).unwrap()).unwrap();
    }
    c.pragma_update(None, "user_version", version).unwrap();
    let p = packet(5, 77, "oldproc", Direction::Outbound, false, 1234, 80, payload);
    c.execute(
        "INSERT INTO packets(name, description, saved_at_ns, source, capture_id, timestamp_ns, pid, comm, direction, \
         ip_version, protocol, local_addr, local_port, remote_addr, remote_port, orig_len, data, payload) \
         VALUES ('legacy', 'from v1', 1, 'old', 5, ?, 77, 'oldproc', 'out', 4, 6, '10.0.0.1', 1234, '10.0.0.2', 80, ?, ?, ?)",
        rusqlite::params![p.timestamp_ns as i64, p.orig_len, p.data, p.payload()],
    )
    .unwrap();
    c.execute("INSERT INTO tags(name) VALUES ('old')", []).unwrap();
    c.execute("INSERT INTO packet_tags VALUES (1, 1)", []).unwrap();
    let text: String = payload.iter().map(|&b| if b.is_ascii_graphic() { b as char } else { ' ' }).collect();
    let hex: Vec<String> = payload.iter().map(|b| format!("{b:02x}")).collect();
    c.execute(
        "INSERT INTO packets_fts(rowid, name, description, tags, comm, payload_text, payload_hex) \
         VALUES (1, 'legacy', 'from v1', 'old', 'oldproc', ?, ?)",
        rusqlite::params![text, hex.join(" ")],
    )
    .unwrap();
}
