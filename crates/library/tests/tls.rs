//! TLS plaintext records in the library: saved with their metadata (library,
//! thread), found by the words of their plaintext, marked in lists, kept by
//! `.dpp` export/import and written to pcapng; an older database is migrated
//! and reads its packets as packets.

mod common;

use common::{legacy_db, new_packet, packet};
use pidcap_library::{ExportFormat, Filter, Library, SavedPacket, Selection, SCHEMA_VERSION};
use pidcap_packet::tls::{TlsInfo, TlsLibrary, TlsRecord};
use pidcap_packet::{CapturedPacket, Direction};

/// A record of `plaintext` (of which the call really carried `true_len` bytes).
fn record(id: u64, dir: Direction, library: TlsLibrary, plaintext: &[u8], true_len: u64) -> CapturedPacket {
    CapturedPacket::tls_record(TlsRecord {
        id,
        timestamp_ns: 1_700_000_000_000_000_000 + id,
        pid: 4321,
        comm: "python3".into(),
        socket_cookie: 99,
        direction: dir,
        local: "127.0.0.1:51000".parse().unwrap(),
        remote: "127.0.0.1:8443".parse().unwrap(),
        info: TlsInfo { tid: 4322 + id as u32, library },
        plaintext,
        true_len,
        stream_offset: 17,
    })
}

fn open() -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path().join("lib.db")).unwrap();
    (dir, lib)
}

/// Saves a packet and two records (the second cut short: 2000 bytes carried, 26 kept).
fn fill(lib: &mut Library) -> (i64, i64, i64) {
    let p =
        lib.save(&new_packet(packet(1, 10, "curl", Direction::Outbound, false, 1, 443, b"\x16\x03\x01"), "hello", &[]));
    let get =
        record(2, Direction::Outbound, TlsLibrary::Openssl, b"GET /secret-page HTTP/1.1\r\nHost: bank\r\n\r\n", 41);
    let r = lib.save(&new_packet(get, "decrypted get", &["tls"]));
    let reply = record(3, Direction::Inbound, TlsLibrary::Gnutls, b"HTTP/1.1 200 OK\r\nbalance:", 2000);
    let q = lib.save(&new_packet(reply, "", &[]));
    (p.unwrap(), r.unwrap(), q.unwrap())
}

fn comparable(p: &SavedPacket) -> (String, Vec<String>, CapturedPacket) {
    (p.name.clone(), p.tags.clone(), p.packet.clone())
}

#[test]
fn a_record_keeps_its_metadata_and_is_found_by_its_plaintext() {
    let (_dir, mut lib) = open();
    let (p, r, q) = fill(&mut lib);
    let got = lib.packet(r).unwrap();
    let want =
        record(2, Direction::Outbound, TlsLibrary::Openssl, b"GET /secret-page HTTP/1.1\r\nHost: bank\r\n\r\n", 41);
    assert_eq!(got.packet, want, "everything of the record, tls included");
    assert_eq!(got.packet.tls, Some(TlsInfo { tid: 4324, library: TlsLibrary::Openssl }));
    assert!(got.is_tls() && !lib.packet(p).unwrap().is_tls());
    assert_eq!((got.kind(), lib.packet(p).unwrap().kind()), ("tls/openssl".to_string(), "packet".to_string()));
    // A record cut short keeps its true length.
    let cut = lib.packet(q).unwrap();
    assert_eq!(cut.packet.decoded.payload_size, 2000);
    assert_eq!(cut.payload(), b"HTTP/1.1 200 OK\r\nbalance:");
    assert_eq!(cut.packet, record(3, Direction::Inbound, TlsLibrary::Gnutls, b"HTTP/1.1 200 OK\r\nbalance:", 2000));

    // Words of the plaintext, a byte sequence of it, the payload column.
    let ids = |q: &str, f: &Filter| lib.search(q, f, 0).unwrap().iter().map(|h| h.packet.id).collect::<Vec<_>>();
    assert_eq!(ids("secret", &Filter::default()), [r]);
    assert_eq!(ids("payload:balance", &Filter::default()), [q]);
    assert_eq!(ids(&format!("hex:{}", pidcap_packet::to_hex(b"/secret-page")), &Filter::default()), [r]);
    assert!(lib.search("secret", &Filter::default(), 0).unwrap()[0].packet.is_tls(), "the hit is marked");
    // The list marks the records.
    let kinds: Vec<(i64, bool)> =
        lib.list(&Filter::default(), 0, 0).unwrap().iter().map(|s| (s.id, s.is_tls())).collect();
    assert_eq!(kinds, [(p, false), (r, true), (q, true)]);
    lib.check_integrity().unwrap();
}

#[test]
fn dpp_keeps_records_and_pcapng_export_writes_them() {
    let (dir, mut a) = open();
    fill(&mut a);
    let file = dir.path().join("all.dpp");
    assert_eq!(a.export(&Selection::All, ExportFormat::Dpp, &file).unwrap(), 3);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(r#""library": "openssl""#) && text.contains(r#""tid": 4324"#), "{text}");
    let mut b = Library::open(dir.path().join("b.db")).unwrap();
    b.import_dpp(&file).unwrap();
    let all = |l: &Library| l.list(&Filter::default(), 0, 0).unwrap().iter().map(comparable).collect::<Vec<_>>();
    assert_eq!(all(&a), all(&b));
    assert_eq!(b.list(&Filter::default(), 0, 0).unwrap().iter().filter(|s| s.is_tls()).count(), 2);

    // A bad `tls` object is named by its path.
    let bad = text.replacen(r#""library": "openssl""#, r#""library": "schannel""#, 1);
    let bad_file = dir.path().join("bad.dpp");
    std::fs::write(&bad_file, bad).unwrap();
    let e = b.import_dpp(&bad_file).unwrap_err().to_string();
    assert!(e.contains("packets[1].tls.library"), "{e}");

    // pcapng through pidcap_pcapfile's writer: the records are in the file, with their plaintext.
    let out = dir.path().join("all.pcapng");
    assert_eq!(a.export(&Selection::All, ExportFormat::Pcapng, &out).unwrap(), 3);
    let bytes = std::fs::read(&out).unwrap();
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"GET /secret-page HTTP/1.1") && has(b"balance:"), "the plaintext is in the pcapng");
    let contents = pidcap_pcapfile::PacketReader::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()))
        .unwrap()
        .read_to_end()
        .unwrap();
    assert_eq!(contents.frames, 3, "a frame per packet and record");
    assert!(contents.packets.iter().any(|p| p.payload().starts_with(b"GET /secret-page")), "{:?}", contents.packets);
}

#[test]
fn an_older_database_is_migrated_and_takes_records() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v3.db");
    legacy_db(&db, 3, b"GET /before-tls HTTP/1.0\r\n\r\n");
    let mut lib = Library::open(&db).unwrap();
    let v: i64 = lib.connection().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!((v, SCHEMA_VERSION), (5, 5));
    let old = lib.packet(1).unwrap();
    assert!(!old.is_tls());
    assert_eq!((old.name.as_str(), old.payload()), ("legacy", &b"GET /before-tls HTTP/1.0\r\n\r\n"[..]));
    assert_eq!(lib.search("before", &Filter::default(), 0).unwrap().len(), 1);
    let id =
        lib.save(&new_packet(record(7, Direction::Outbound, TlsLibrary::Nss, b"POST /after", 11), "new", &[])).unwrap();
    assert_eq!(lib.packet(id).unwrap().packet.tls.map(|t| t.library), Some(TlsLibrary::Nss));
    assert_eq!(lib.search("after", &Filter::default(), 0).unwrap()[0].packet.id, id);
    lib.check_integrity().unwrap();
    drop(lib);
    // Read-only opening of the migrated database sees the record too.
    let ro = Library::open_read_only(&db).unwrap();
    assert!(ro.packet(id).unwrap().is_tls());
}
