//! Durability tests on real SQLite files: a process killed with SIGKILL while
//! saving and importing loses nothing it reported saved and corrupts nothing;
//! old schema versions migrate; a read-only database and a full disk give a
//! clear error and change nothing.

mod common;

use common::*;
use pidcap_library::{ExportFormat, Filter, Library, LibraryError, Selection, SCHEMA_VERSION};
use pidcap_packet::Direction;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn kill_9_while_saving_loses_nothing_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lib.db");
    // A 20-packet .dpp file for the child to import over and over.
    let dpp = dir.path().join("batch.dpp");
    {
        let mut src = Library::open(dir.path().join("src.db")).unwrap();
        let ps: Vec<_> = (0..20)
            .map(|i| {
                new_packet(packet(i, 2, "batch", Direction::Inbound, true, 3, 4, &[i as u8; 200]), "batch", &["batch"])
            })
            .collect();
        src.save_many(&ps).unwrap();
        src.export(&Selection::All, ExportFormat::Dpp, &dpp).unwrap();
    }
    // The child (src/bin/kill9_helper.rs) saves packets and imports the file
    // in a loop, printing `SAVED <ids>` after each commit, until killed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_pidcap-library-kill9-helper"))
        .arg(&db)
        .arg(&dpp)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut reported = Vec::new();
    let mut line = String::new();
    let mut lines = 0;
    while lines < 60 {
        line.clear();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("child exited early; last line {line:?}");
        }
        if let Some(ids) = line.trim().strip_prefix("SAVED ") {
            reported.extend(ids.split(' ').map(|s| s.parse::<i64>().unwrap()));
            lines += 1;
        }
    }
    child.kill().unwrap(); // SIGKILL
                           // Lines printed before death are committed too.
    for l in reader.lines() {
        let Ok(l) = l else { break };
        if let Some(ids) = l.trim().strip_prefix("SAVED ") {
            if let Ok(v) = ids.split(' ').map(|s| s.parse::<i64>()).collect::<Result<Vec<_>, _>>() {
                reported.extend(v);
            }
        }
    }
    child.wait().unwrap();

    let lib = Library::open(&db).unwrap();
    lib.check_integrity().unwrap();
    for id in &reported {
        assert!(lib.get(*id).unwrap().is_some(), "packet {id} was reported saved but is gone");
    }
    let batch = lib.count(&Filter { tag: Some("batch".into()), ..Default::default() }).unwrap();
    assert_eq!(batch % 20, 0, "an import was half applied ({batch} batch packets)");
    assert!(lib.count(&Filter::default()).unwrap() >= reported.len() as u64);
    assert!(!lib.search("child", &Filter::default(), 5).unwrap().is_empty());
}

#[test]
fn a_version_1_database_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db");
    legacy_db(&db, 1, b"GET /legacy HTTP/1.0\r\n\r\n");
    let mut lib = Library::open(&db).unwrap();
    let v: i64 = lib.connection().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let p = lib.packet(1).unwrap();
    assert_eq!(
        (p.name.as_str(), p.packet.comm.as_str(), p.packet.pid, p.synthesized),
        ("legacy", "oldproc", 77, false)
    );
    assert_eq!(p.tags, ["old"]);
    assert_eq!(p.payload(), b"GET /legacy HTTP/1.0\r\n\r\n");
    assert_eq!(lib.search("legacy", &Filter::default(), 0).unwrap().len(), 1);
    // New features work on the migrated database.
    let id =
        lib.save(&new_packet(packet(6, 1, "new", Direction::Inbound, false, 80, 1234, b"ok"), "new", &[])).unwrap();
    let seq = lib.create_sequence("both", "", &[1, id]).unwrap();
    assert_eq!(lib.sequence(seq).unwrap().packet_ids, [1, id]);
    lib.check_integrity().unwrap();
    drop(lib);

    // A database from a newer pidcap is refused, untouched.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
    drop(c);
    let err = Library::open(&db).unwrap_err();
    assert!(matches!(err, LibraryError::TooNew { .. }), "{err}");
}

#[test]
fn a_read_only_database_refuses_writes_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lib.db");
    let dpp = dir.path().join("x.dpp");
    let before = {
        let mut lib = Library::open(&db).unwrap();
        sample(&mut lib);
        lib.export(&Selection::All, ExportFormat::Dpp, &dpp).unwrap();
        fingerprint(&lib)
    };
    let mut ro = Library::open_read_only(&db).unwrap();
    assert_eq!(ro.count(&Filter::default()).unwrap(), 4);
    assert_eq!(ro.search("curl", &Filter::default(), 0).unwrap().len(), 2);
    let p = new_packet(packet(1, 1, "x", Direction::Outbound, false, 1, 2, b"x"), "x", &[]);
    for err in [
        ro.save(&p).unwrap_err(),
        ro.import_dpp(&dpp).unwrap_err(),
        ro.tag(&[1], &["t".into()]).unwrap_err(),
        ro.delete(&[1]).unwrap_err(),
    ] {
        assert!(matches!(err, LibraryError::ReadOnly), "{err:?}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }
    drop(ro);
    assert_eq!(fingerprint(&Library::open(&db).unwrap()), before);
}

#[test]
fn a_full_disk_rolls_back_the_whole_import() {
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::open(dir.path().join("lib.db")).unwrap();
    sample(&mut lib);
    // 300 packets of 1 KiB, far more than the space left.
    let big = dir.path().join("big.dpp");
    {
        let mut src = Library::open(dir.path().join("src.db")).unwrap();
        let ps: Vec<_> = (0..300)
            .map(|i| {
                new_packet(
                    packet(i, 2, "big", Direction::Outbound, false, 3, 4, &[b'a' + (i % 26) as u8; 1000]),
                    "big",
                    &["big"],
                )
            })
            .collect();
        src.save_many(&ps).unwrap();
        src.export(&Selection::All, ExportFormat::Dpp, &big).unwrap();
    }
    let before = fingerprint(&lib);
    let pages: i64 = lib.connection().pragma_query_value(None, "page_count", |r| r.get(0)).unwrap();
    lib.connection().pragma_update(None, "max_page_count", pages + 20).unwrap();
    let err = lib.import_dpp(&big).unwrap_err();
    assert!(matches!(err, LibraryError::DiskFull), "{err:?}");
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(fingerprint(&lib), before);
    lib.check_integrity().unwrap();
    // With room again, the same import succeeds.
    lib.connection().pragma_update(None, "max_page_count", 1_000_000_000i64).unwrap();
    assert_eq!(lib.import_dpp(&big).unwrap().packet_ids.len(), 300);
}
