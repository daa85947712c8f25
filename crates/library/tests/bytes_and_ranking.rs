//! Issue 13/14: 1- and 2-byte hex queries answered by the byte-presence
//! index (schema 5) give the same packets as a full scan; an older database
//! gets that index on open; deleting a packet takes it out of the index; and
//! a word in every packet's name still ranks the packet whose payload holds it
//! first.

mod common;

use common::{legacy_db, new_packet, packet};
use pidcap_library::{Filter, Library, SCHEMA_VERSION};
use pidcap_packet::Direction;
use std::collections::BTreeSet;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn hits(lib: &Library, q: &str) -> BTreeSet<i64> {
    lib.search(q, &Filter::default(), 0).unwrap().iter().map(|h| h.packet.id).collect()
}

/// The packets whose payload holds `needle`, by reading every one.
fn scan(lib: &Library, needle: &[u8]) -> BTreeSet<i64> {
    lib.list(&Filter::default(), 0, 0)
        .unwrap()
        .iter()
        .filter(|p| p.packet.payload().windows(needle.len()).any(|w| w == needle))
        .map(|p| p.id)
        .collect()
}

#[test]
fn one_and_two_byte_queries_give_what_a_full_scan_gives() {
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::open(dir.path().join("l.db")).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // 300 packets, payloads of 0..40 bytes from a 12-value alphabet (so that
    // every byte and many pairs are in some packets and not in others).
    for i in 0..300u64 {
        let len = (rng.next() % 40) as usize;
        let payload: Vec<u8> = (0..len)
            .map(|_| {
                [0x00, 0x0d, 0x0a, 0x47, 0x45, 0x54, 0xff, 0x20, 0x2f, 0x31, 0x7f, 0x80][(rng.next() % 12) as usize]
            })
            .collect();
        let p = packet(i + 1, 10, "gen", Direction::Outbound, i % 2 == 0, 4000, 80, &payload);
        lib.save(&new_packet(p, &format!("p{i}"), &[])).unwrap();
    }
    let alphabet = [0x00u8, 0x0d, 0x0a, 0x47, 0x45, 0x54, 0xff, 0x20, 0x2f, 0x31, 0x7f, 0x80, 0x99];
    let mut nonempty = 0;
    for &a in &alphabet {
        let want = scan(&lib, &[a]);
        assert_eq!(hits(&lib, &format!("hex:{a:02x}")), want, "byte {a:02x}");
        assert_eq!(hits(&lib, &format!("0x{a:02X}")), want, "byte 0x{a:02X}");
        nonempty += usize::from(!want.is_empty());
        for &b in &alphabet {
            let want = scan(&lib, &[a, b]);
            assert_eq!(hits(&lib, &format!("hex:{a:02x}{b:02x}")), want, "bytes {a:02x} {b:02x}");
            // `47 45` (one of them with a digit: `ff ee` are words) is the same query.
            let spaced = format!("{a:02x} {b:02x}");
            if spaced.bytes().any(|c| c.is_ascii_digit()) {
                assert_eq!(hits(&lib, &spaced), want, "{spaced}");
            }
        }
    }
    assert_eq!(nonempty, 12, "all but 0x99 are somewhere");
    // Longer sequences still go through the trigram column, and agree too.
    for needle in [&[0x0d, 0x0a, 0x47][..], &[0x47, 0x45, 0x54, 0x20]] {
        assert_eq!(hits(&lib, &format!("hex:{}", pidcap_packet::to_hex(needle))), scan(&lib, needle));
    }
    // With a limit (the windowed path) the hits are matches, newest first among equals.
    let r = lib.search_results("hex:0d0a", &Filter::default(), 5).unwrap();
    let all = scan(&lib, &[0x0d, 0x0a]);
    assert_eq!(r.matches as usize, all.len());
    assert!(r.hits.len() == 5 && r.hits.iter().all(|h| all.contains(&h.packet.id)), "{:?}", r.hits);
    // A filter applies (UDP are the even ones, ids 1, 3, 5...).
    let udp = Filter { protocol: Some(pidcap_packet::Protocol::Udp), ..Filter::default() };
    let got: BTreeSet<i64> = lib.search("hex:47", &udp, 0).unwrap().iter().map(|h| h.packet.id).collect();
    let want: BTreeSet<i64> = scan(&lib, &[0x47]).into_iter().filter(|id| id % 2 == 1).collect();
    assert_eq!(got, want);
    // Deleting packets takes them out of the byte index too.
    let gone: Vec<i64> = scan(&lib, &[0xff]).into_iter().take(3).collect();
    assert_eq!(lib.delete(&gone).unwrap(), 3);
    let after = hits(&lib, "hex:ff");
    assert!(gone.iter().all(|id| !after.contains(id)));
    assert_eq!(after, scan(&lib, &[0xff]));
    lib.check_integrity().unwrap();
}

#[test]
fn a_version_4_database_gets_the_byte_index_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v4.db");
    legacy_db(&db, 4, b"GET /\r\n");
    let lib = Library::open(&db).unwrap();
    let v: i64 = lib.connection().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    assert_eq!(hits(&lib, "hex:0d0a").len(), 1);
    assert_eq!(hits(&lib, "hex:2f").len(), 1);
    assert!(hits(&lib, "hex:0a0d").is_empty());
    assert!(hits(&lib, "hex:ff").is_empty());
}

#[test]
fn a_version_4_database_opened_read_only_gives_its_packets_and_says_what_a_byte_search_needs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v4.db");
    legacy_db(&db, 4, b"GET /\r\n");
    // `pidcap send --lib` opens read-only: the packet is there, unmigrated.
    let ro = Library::open_read_only(&db).unwrap();
    assert_eq!(ro.packet(1).unwrap().packet.payload(), b"GET /\r\n");
    assert_eq!(hits(&ro, "oldproc").len(), 1, "the full-text index is there");
    let e = ro.search("hex:0d0a", &Filter::default(), 0).unwrap_err().to_string();
    assert!(e.contains("schema 5") && e.contains("read-write once"), "{e}");
    let v: i64 = ro.connection().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, 4, "a read-only open migrates nothing");
    drop(ro);
    // Older than the packets' columns: refused, with what to do.
    let db3 = dir.path().join("v3.db");
    legacy_db(&db3, 3, b"x");
    let e = Library::open_read_only(&db3).unwrap_err().to_string();
    assert!(e.contains("version 3") && e.contains("read-write once"), "{e}");
}

#[test]
fn the_packet_whose_payload_holds_the_word_ranks_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::open(dir.path().join("l.db")).unwrap();
    // A sequence of 12 packets all named "curl GET" (as `lib save --name`
    // names a whole capture): handshake, ACKs, the request, the answer, FINs.
    let mut ids = Vec::new();
    for i in 0..12u64 {
        let payload: Vec<u8> = match i {
            3 => b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8089\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n".to_vec(),
            5 => b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11\r\nContent-Length: 4\r\n\r\nbody".to_vec(),
            _ => Vec::new(),
        };
        let dir = if i % 2 == 0 { Direction::Outbound } else { Direction::Inbound };
        let p = packet(i + 1, 7, "curl", dir, false, 52330, 8089, &payload);
        ids.push(lib.save(&new_packet(p, "curl GET", &["web"])).unwrap());
    }
    for limit in [0, 50] {
        let r = lib.search("GET", &Filter::default(), limit).unwrap();
        assert_eq!(r.len(), 12);
        assert_eq!(
            r[0].packet.id,
            ids[3],
            "the request first: {:?}",
            r.iter().map(|h| (h.packet.id, h.score)).collect::<Vec<_>>()
        );
        assert!(r[0].score < r[1].score, "and scored apart from the rest: {} {}", r[0].score, r[1].score);
    }
    // The same with two words, one only in the payload.
    assert_eq!(lib.search("curl Host", &Filter::default(), 0).unwrap()[0].packet.id, ids[3]);
}
