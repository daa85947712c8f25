//! Searches that match many packets (bounded ranking windows), saving through
//! the [`PacketSource`] seam, editing sequences, and the schema-3 migration
//! that rebuilds the full-text index with hex trigrams.

mod common;

use common::*;
use pidcap_library::{Filter, Library, LibraryError, PacketMeta, PacketSource, SCHEMA_VERSION};
use pidcap_packet::{CapturedPacket, Direction};

fn open() -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path().join("lib.db")).unwrap();
    (dir, lib)
}

/// 60 packets all containing `common`; every 10th also `rare`; packet 30 says `common` five times.
fn fill(lib: &mut Library) -> Vec<i64> {
    let ps: Vec<_> = (1..=60u64)
        .map(|i| {
            let mut text = format!("common word number{i}");
            if i % 10 == 0 {
                text.push_str(" rare");
            }
            if i == 30 {
                text.push_str(" common common common common");
            }
            let dir = if i % 2 == 0 { Direction::Inbound } else { Direction::Outbound };
            new_packet(packet(i, 7, "app", dir, false, 1000, 2000, text.as_bytes()), &format!("p{i}"), &[])
        })
        .collect();
    lib.save_many(&ps).unwrap()
}

#[test]
fn small_result_sets_are_ranked_over_every_match() {
    let (_d, mut lib) = open();
    fill(&mut lib);
    lib.set_search_limits(10, 40);
    let r = lib.search_results("rare", &Filter::default(), 50).unwrap();
    assert_eq!((r.hits.len(), r.matches, r.window, r.ranked), (6, 6, None, true));
    // limit 0: everything, ranked, however many.
    let all = lib.search_results("common", &Filter::default(), 0).unwrap();
    assert_eq!((all.hits.len(), all.ranked, all.window), (60, true, None));
    assert_eq!(all.hits[0].packet.name, "p30", "the packet with the most occurrences ranks first");
}

#[test]
fn large_result_sets_are_ranked_among_the_newest_matches() {
    let (_d, mut lib) = open();
    fill(&mut lib);
    lib.set_search_limits(10, 100);
    let r = lib.search_results("common", &Filter::default(), 5).unwrap();
    assert_eq!((r.matches, r.matches_exact, r.window, r.ranked), (60, true, Some(10), true));
    let mut names: Vec<_> = r.hits.iter().map(|h| h.packet.name.clone()).collect();
    assert_eq!(names.len(), 5);
    names.sort();
    // Only packets 51..=60 were candidates.
    assert!(names.iter().all(|n| n[1..].parse::<u32>().unwrap() > 50), "{names:?}");
    assert!(r.hits.windows(2).all(|w| w[0].score <= w[1].score), "best first");
    // The filter applies within the window.
    let inbound = Filter { direction: Some(Direction::Inbound), ..Default::default() };
    let r = lib.search_results("common", &inbound, 50).unwrap();
    assert_eq!(r.hits.len(), 5);
    assert!(r.hits.iter().all(|h| h.packet.packet.direction == Direction::Inbound));

    // The whole window is the packet with many occurrences and its neighbours: it wins.
    lib.set_search_limits(40, 100);
    assert_eq!(lib.search("common", &Filter::default(), 3).unwrap()[0].packet.name, "p30");
}

#[test]
fn huge_result_sets_come_newest_first_unranked() {
    let (_d, mut lib) = open();
    fill(&mut lib);
    lib.set_search_limits(10, 20);
    let r = lib.search_results("common", &Filter::default(), 4).unwrap();
    assert_eq!((r.matches, r.matches_exact, r.window, r.ranked), (21, false, Some(10), false));
    let names: Vec<_> = r.hits.iter().map(|h| h.packet.name.as_str()).collect();
    assert_eq!(names, ["p60", "p59", "p58", "p57"]);
    assert!(r.hits.iter().all(|h| h.score == 0.0));
    // A selective query on the same library is still ranked over all its matches.
    let r = lib.search_results("rare", &Filter::default(), 4).unwrap();
    assert_eq!((r.hits.len(), r.window, r.ranked), (4, None, true));
}

#[test]
fn hex_sequences_of_any_length_are_found() {
    let (_d, mut lib) = open();
    let payload = b"\x00\x11\x22\x33\x44\x55";
    lib.save(&new_packet(packet(1, 1, "x", Direction::Outbound, true, 1, 2, payload), "bytes", &[])).unwrap();
    lib.save(&new_packet(packet(2, 1, "x", Direction::Outbound, true, 1, 2, b"\x11\x22\x99"), "other", &[])).unwrap();
    let n = |q: &str| lib.search(q, &Filter::default(), 0).unwrap().len();
    assert_eq!(n("hex:001122334455"), 1);
    assert_eq!(n("hex:2233"), 1);
    assert_eq!(n("hex:4455"), 1, "the last two bytes");
    assert_eq!(n("hex:55"), 1, "the last byte");
    assert_eq!(n("hex:1122"), 2);
    assert_eq!(n("11 22 33"), 1);
    assert_eq!(n("hex:223355"), 0);
    assert_eq!(n("hex:99"), 1);
}

/// A fake daemon holding a few packets.
struct Held(Vec<CapturedPacket>);

impl PacketSource for Held {
    fn packets_by_id(&self, ids: &[u64]) -> pidcap_library::Result<Vec<CapturedPacket>> {
        ids.iter()
            .map(|id| {
                self.0
                    .iter()
                    .find(|p| p.id == *id)
                    .cloned()
                    .ok_or_else(|| LibraryError::Source(format!("no packet {id}")))
            })
            .collect()
    }
}

/// A broken source that answers with other packets than asked.
struct Wrong(Vec<CapturedPacket>);

impl PacketSource for Wrong {
    fn packets_by_id(&self, _: &[u64]) -> pidcap_library::Result<Vec<CapturedPacket>> {
        Ok(self.0.clone())
    }
}

#[test]
fn saving_through_a_packet_source_keeps_ids_order_and_metadata() {
    let (_d, mut lib) = open();
    let held: Vec<_> = (10..15u64)
        .map(|i| packet(i, 4242, "svc", Direction::Outbound, true, 5000, 53, format!("q{i}").as_bytes()))
        .collect();
    let meta = PacketMeta { name: String::new(), description: "live".into(), tags: vec!["dns".into()] };
    let ids = lib.save_from_source(&Held(held.clone()), &[13, 11], &meta).unwrap();
    let saved: Vec<_> = ids.iter().map(|&i| lib.packet(i).unwrap()).collect();
    assert_eq!(saved.iter().map(|p| p.packet.id).collect::<Vec<_>>(), [13, 11]);
    assert_eq!(saved[0].name, "capture #13");
    assert_eq!((saved[0].source.as_str(), saved[0].description.as_str()), ("daemon", "live"));
    assert_eq!((saved[0].packet.pid, saved[0].packet.comm.as_str(), saved[0].payload()), (4242, "svc", &b"q13"[..]));
    assert_eq!(saved[1].tags, ["dns"]);

    let before = lib.count(&Filter::default()).unwrap();
    let err = lib.save_from_source(&Held(held.clone()), &[12, 99], &meta).unwrap_err();
    assert!(err.to_string().contains("no packet 99"), "{err}");
    let err = lib.save_from_source(&Wrong(held[..1].to_vec()), &[11], &meta).unwrap_err();
    assert!(matches!(err, LibraryError::Source(_)), "{err:?}");
    assert_eq!(lib.count(&Filter::default()).unwrap(), before, "a failed save stores nothing");
}

#[test]
fn sequences_grow_and_reorder() {
    let (_d, mut lib) = open();
    let ids = fill(&mut lib);
    let seq = lib.create_sequence("talk", "", &ids[..2]).unwrap();
    lib.append_to_sequence(seq, &[ids[5], ids[3]]).unwrap();
    assert_eq!(lib.sequence(seq).unwrap().packet_ids, [ids[0], ids[1], ids[5], ids[3]]);
    lib.set_sequence_packets(seq, &[ids[3], ids[0], ids[5]]).unwrap();
    assert_eq!(lib.sequence(seq).unwrap().packet_ids, [ids[3], ids[0], ids[5]]);
    // A deleted member leaves a gap the next append does not fill.
    lib.delete(&[ids[5]]).unwrap();
    lib.append_to_sequence(seq, &[ids[9]]).unwrap();
    assert_eq!(lib.sequence(seq).unwrap().packet_ids, [ids[3], ids[0], ids[9]]);
    // Unknown packets or sequences change nothing.
    assert!(matches!(
        lib.append_to_sequence(seq, &[ids[1], 9999]),
        Err(LibraryError::NotFound { what: "packet", id: 9999 })
    ));
    assert!(matches!(lib.set_sequence_packets(seq, &[9999]), Err(LibraryError::NotFound { what: "packet", .. })));
    assert!(matches!(lib.append_to_sequence(77, &[ids[1]]), Err(LibraryError::NotFound { what: "sequence", id: 77 })));
    assert_eq!(lib.sequence(seq).unwrap().packet_ids, [ids[3], ids[0], ids[9]]);
}

#[test]
fn a_version_2_database_gets_the_trigram_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v2.db");
    legacy_db(&db, 2, b"GET /v2 HTTP/1.1\r\n\r\n");
    let lib = Library::open(&db).unwrap();
    let v: i64 = lib.connection().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let n = |q: &str| lib.search(q, &Filter::default(), 0).unwrap().len();
    assert_eq!(
        (n("hex:4745542f"), n("hex:474554"), n("47 45 54 20 2f 76 32"), n("tag:old"), n("comm:oldproc"), n("v2")),
        (0, 1, 1, 1, 1, 1)
    );
    lib.check_integrity().unwrap();
}
