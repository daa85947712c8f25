//! Integration tests of the packet library through its public API, on a real
//! SQLite database in a temporary directory: pcapng and `.dpp` round trips,
//! DioProcess v1 import, search, tags, editing, and rejection of malformed files.

mod common;

use common::*;
use pidcap_library::{ExportFormat, Filter, Library, LibraryError, MetaEdit, PacketMeta, SavedPacket, Selection};
use pidcap_packet::{Direction, Protocol, Verdict};
use pidcap_pcapfile::{Format, PacketWriter, WriterOptions};
use std::path::Path;
use std::process::Command;

fn open() -> (tempfile::TempDir, Library) {
    let dir = tempfile::tempdir().unwrap();
    let lib = Library::open(dir.path().join("lib.db")).unwrap();
    (dir, lib)
}

fn tshark_frames(path: &Path) -> usize {
    let out = Command::new("tshark").arg("-r").arg(path).args(["-T", "fields", "-e", "frame.number"]).output().unwrap();
    assert!(out.status.success(), "tshark failed on {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.trim().is_empty()).count()
}

#[test]
fn pcapng_to_library_to_pcapng_keeps_every_packet() {
    pidcap_testkit::require!(Tool("tshark"));
    let (dir, mut lib) = open();
    let originals: Vec<_> = (1..=6)
        .map(|i| {
            packet(
                i,
                100 + i as u32,
                "curl",
                if i % 2 == 0 { Direction::Inbound } else { Direction::Outbound },
                i == 3,
                40000,
                80,
                format!("payload number {i}").as_bytes(),
            )
        })
        .collect();
    let input = dir.path().join("in.pcapng");
    let mut w =
        PacketWriter::new(Format::Pcapng, std::fs::File::create(&input).unwrap(), &WriterOptions::default()).unwrap();
    for p in &originals {
        w.write_packet(p).unwrap();
    }
    w.into_inner().unwrap();

    let saved =
        lib.save_pcap(&input, None, &PacketMeta { tags: vec!["imported".into()], ..Default::default() }).unwrap();
    assert!(saved.skipped.is_empty() && saved.cut.is_none());
    let ids = saved.ids;
    assert_eq!(ids.len(), 6);
    let saved = lib.packet(ids[2]).unwrap();
    assert_eq!(saved.name, "in.pcapng #3");
    assert_eq!(saved.source, "pcap:in.pcapng");
    assert_eq!(saved.packet.pid, 103);
    assert_eq!(saved.packet.comm, "curl");
    assert_eq!(saved.packet.decoded.protocol, Protocol::Udp);

    for (fmt, name) in [(ExportFormat::Pcapng, "out.pcapng"), (ExportFormat::Pcap, "out.pcap")] {
        let out = dir.path().join(name);
        assert_eq!(ExportFormat::from_path(&out), Some(fmt));
        assert_eq!(lib.export(&Selection::All, fmt, &out).unwrap(), 6);
        let back = pidcap_pcapfile::read_packets(std::fs::File::open(&out).unwrap()).unwrap();
        assert_eq!(back.len(), originals.len());
        for (a, b) in originals.iter().zip(&back) {
            assert_eq!(a.data, b.data, "{name}: bytes differ");
            assert_eq!(a.timestamp_ns, b.timestamp_ns);
            if fmt == ExportFormat::Pcapng {
                assert_eq!((a.pid, &a.comm, a.direction), (b.pid, &b.comm, b.direction));
            }
        }
        assert_eq!(tshark_frames(&out), 6, "{name}");
    }

    // A selection of frames.
    let frames = pidcap_library::parse_frames("1-2,5").unwrap();
    let ids = lib.save_pcap(&input, Some(&frames), &PacketMeta::default()).unwrap().ids;
    let names: Vec<String> = ids.iter().map(|&i| lib.packet(i).unwrap().name).collect();
    assert_eq!(names, ["in.pcapng #1", "in.pcapng #2", "in.pcapng #5"]);
    let err =
        lib.save_pcap(&input, Some(&pidcap_library::parse_frames("9").unwrap()), &PacketMeta::default()).unwrap_err();
    assert!(err.to_string().contains("past the end"), "{err}");

    // A file that is not a capture: the pcap reader's error, kept as the source.
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"not a capture file").unwrap();
    let err = lib.save_pcap(&junk, None, &PacketMeta::default()).unwrap_err();
    assert!(err.to_string().starts_with(&format!("pcap: {}: not a pcap or pcapng file", junk.display())), "{err}");
    match &err {
        LibraryError::Pcap { path, source } => {
            assert_eq!(path.as_deref(), Some(junk.as_path()));
            assert!(matches!(source, pidcap_pcapfile::PcapError::UnknownMagic { .. }), "{source:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
}

fn comparable(p: &SavedPacket) -> SavedPacket {
    SavedPacket { id: 0, ..p.clone() }
}

#[test]
fn dpp_v2_round_trip_loses_nothing() {
    let (dir, mut a) = open();
    let ids = sample(&mut a);
    let mut blocked = packet(9, 7, "weird name ü", Direction::Inbound, true, 1, 2, b"\x00\xff");
    blocked.verdict = Verdict::Blocked;
    blocked.rule = Some(3);
    blocked.orig_len += 100; // truncated capture
    let b_id = a.save(&new_packet(blocked, "blocked one", &["Blocked"])).unwrap();
    a.import_dpp(&data_dir().join("dioprocess_http.dpp")).unwrap();
    let seq = a.create_sequence("conversation", "get and answer", &[ids[1], ids[0], b_id]).unwrap();

    let file = dir.path().join("all.dpp");
    assert_eq!(a.export(&Selection::All, ExportFormat::Dpp, &file).unwrap(), 6);

    let mut b = Library::open(dir.path().join("other.db")).unwrap();
    let report = b.import_dpp(&file).unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(report.packet_ids.len(), 6);
    assert_eq!(report.sequence_ids.len(), 1);
    let pa: Vec<_> = a.list(&Filter::default(), 0, 0).unwrap().iter().map(comparable).collect();
    let pb: Vec<_> = b.list(&Filter::default(), 0, 0).unwrap().iter().map(comparable).collect();
    assert_eq!(pa, pb);
    assert!(pb.iter().any(|p| p.synthesized));
    let sa = a.sequence(seq).unwrap();
    let sb = b.sequence(report.sequence_ids[0]).unwrap();
    assert_eq!((&sa.name, &sa.description, sa.created_at_ns), (&sb.name, &sb.description, sb.created_at_ns));
    let names = |l: &Library, ids: &[i64]| ids.iter().map(|&i| l.packet(i).unwrap().name).collect::<Vec<_>>();
    assert_eq!(names(&a, &sa.packet_ids), names(&b, &sb.packet_ids));
    assert_eq!(a.tags().unwrap(), b.tags().unwrap());

    // A sequence on its own exports its packets in order, and the sequence.
    let one = dir.path().join("seq.dpp");
    assert_eq!(a.export(&Selection::Sequence(seq), ExportFormat::Dpp, &one).unwrap(), 3);
    let mut c = Library::open(dir.path().join("third.db")).unwrap();
    let r = c.import_dpp(&one).unwrap();
    assert_eq!(names(&c, &c.sequence(r.sequence_ids[0]).unwrap().packet_ids), ["response", "get index", "blocked one"]);
}

#[test]
fn dioprocess_v1_imports_with_the_right_fields() {
    pidcap_testkit::require!(Tool("tshark"));
    let (_dir, mut lib) = open();
    let r = lib.import_dpp(&data_dir().join("dioprocess_http.dpp")).unwrap();
    assert_eq!(r.version, 1);
    let p = lib.packet(r.packet_ids[0]).unwrap();
    assert_eq!(p.name, "login request");
    assert_eq!(p.description, "POST of the login form, captured with DioProcess");
    assert_eq!(p.tags, ["auth", "http"]);
    assert!(p.synthesized);
    assert_eq!(p.source, "dpp-v1:dioprocess_http.dpp");
    let d = &p.packet.decoded;
    assert_eq!(d.protocol, Protocol::Tcp);
    assert_eq!(p.packet.direction, Direction::Outbound);
    assert_eq!((d.local_addr.to_string(), d.local_port), ("192.168.1.20".to_string(), 51234));
    assert_eq!((d.remote_addr.to_string(), d.remote_port), ("93.184.216.34".to_string(), 80));
    assert_eq!(p.payload(), b"GET /login HTTP/1.1\r\n\r\n");
    // Headers are real: checksums verify.
    let sliced = etherparse::SlicedPacket::from_ip(&p.packet.data).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = &sliced.net else { panic!("not IPv4") };
    let hdr = ip.header().to_header();
    assert_eq!(hdr.header_checksum, hdr.calc_header_checksum());
    let Some(etherparse::TransportSlice::Tcp(tcp)) = &sliced.transport else { panic!("not TCP") };
    let tcp_h = tcp.to_header();
    assert_eq!(tcp_h.checksum, tcp_h.calc_checksum_ipv4(&hdr, tcp.payload()).unwrap());

    let r = lib.import_dpp(&data_dir().join("dioprocess_dns_inbound.dpp")).unwrap();
    let p = lib.packet(r.packet_ids[0]).unwrap();
    assert_eq!(p.packet.decoded.protocol, Protocol::Udp);
    assert_eq!(p.packet.direction, Direction::Inbound);
    assert_eq!((p.packet.decoded.local_addr.to_string(), p.packet.decoded.local_port), ("fe80::1".to_string(), 40000));
    assert_eq!(p.packet.decoded.remote_port, 53);
    assert_eq!(p.payload().len(), 12);

    // Synthesised packets export to pcapng like any other, and tshark reads them.
    let out = _dir.path().join("v1.pcapng");
    lib.export(&Selection::All, ExportFormat::Pcapng, &out).unwrap();
    assert_eq!(tshark_frames(&out), 2);
}

fn ids_of(hits: &[pidcap_library::SearchHit]) -> Vec<String> {
    hits.iter().map(|h| h.packet.name.clone()).collect()
}

#[test]
fn search_finds_words_hex_tags_processes_and_combines_filters() {
    let (_dir, mut lib) = open();
    sample(&mut lib);
    let s = |q: &str, f: &Filter| ids_of(&lib.search(q, f, 0).unwrap());
    let all = Filter::default();
    assert_eq!(s("example", &all).len(), 2); // payload text of the GET and the DNS query
    assert_eq!(s("Content-Type", &all), ["response"]);
    assert_eq!(s("47 45 54", &all), ["get index"]); // "GET" in hex
    assert_eq!(s("hex:160301", &all), ["client hello"]);
    assert_eq!(s("0x07 65 78", &all), ["dns query"]);
    assert_eq!(s("07 65 78", &all), ["dns query"]);
    assert_eq!(s("tag:tls", &all), ["client hello"]);
    assert_eq!(s("dns", &all), ["dns query"]); // tag and name
    assert_eq!(s("openssl", &all), ["client hello"]); // process name
    assert_eq!(s("comm:dig", &all), ["dns query"]);
    let mut prefix = s("hell*", &all);
    prefix.sort();
    assert_eq!(prefix, ["client hello", "response"]);
    assert!(s("nowhere", &all).is_empty());
    assert!(s("47 45 55", &all).is_empty());
    assert!(s("tag:ftp", &all).is_empty());

    // Filters combine with the query and with each other.
    let web = Filter { tag: Some("WEB".into()), ..Default::default() };
    assert_eq!(s("curl", &web), ["get index"]);
    let tcp_in = Filter { protocol: Some(Protocol::Tcp), direction: Some(Direction::Inbound), ..Default::default() };
    assert_eq!(s("http", &tcp_in), ["response"]);
    let port = Filter { port: Some(443), ..Default::default() };
    assert_eq!(s("web", &port), ["client hello"]);
    assert!(s("example", &Filter { protocol: Some(Protocol::Tcp), port: Some(53), ..Default::default() }).is_empty());
    let t0 = 1_700_000_000_000_000_000u64;
    let window = Filter { since_ns: Some(t0 + 2_000_000), until_ns: Some(t0 + 3_000_000), ..Default::default() };
    assert_eq!(
        lib.list(&window, 0, 0).unwrap().iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["response", "dns query"]
    );
    assert_eq!(s("http", &Filter { pid: Some(100), ..Default::default() }).len(), 2);

    // Ranking: a match in the name beats one in the payload only.
    let hits = lib.search("response", &all, 0).unwrap();
    assert_eq!(hits[0].packet.name, "response");
    // A bad raw query is a clear error, not a panic.
    let err = lib.search("fts:\"unterminated", &all, 0).unwrap_err();
    assert!(matches!(err, LibraryError::Invalid(_)), "{err:?}");
}

#[test]
fn tags_edit_and_delete() {
    let (_dir, mut lib) = open();
    let ids = sample(&mut lib);
    let counts = |l: &Library| l.tags().unwrap().into_iter().map(|t| (t.name, t.count)).collect::<Vec<_>>();
    assert_eq!(counts(&lib), [("dns".into(), 1), ("http".into(), 2), ("tls".into(), 1), ("web".into(), 2)]);

    lib.tag(&[ids[2], ids[3]], &["suspicious".into()]).unwrap();
    assert_eq!(lib.packet(ids[2]).unwrap().tags, ["dns", "suspicious"]);
    assert_eq!(ids_of(&lib.search("suspicious", &Filter::default(), 0).unwrap()).len(), 2);
    assert!(matches!(lib.tag(&[ids[0], 999], &["x".into()]), Err(LibraryError::NotFound { id: 999, .. })));
    assert!(lib.packet(ids[0]).unwrap().tags.iter().all(|t| t != "x"), "failed tag changed nothing");
    assert!(lib.tag(&[ids[0]], &["a,b".into()]).is_err());

    lib.untag(&[ids[3]], &["tls".into()]).unwrap();
    assert!(lib.tags().unwrap().iter().all(|t| t.name != "tls"), "unused tag dropped");
    assert!(lib.search("tag:tls", &Filter::default(), 0).unwrap().is_empty());

    // Rename, then rename onto an existing tag (merge).
    assert_eq!(lib.rename_tag("http", "HTTP/1.1").unwrap(), 2);
    assert_eq!(ids_of(&lib.search("tag:1.1", &Filter::default(), 0).unwrap()).len(), 2);
    assert_eq!(lib.rename_tag("web", "HTTP/1.1").unwrap(), 3);
    assert_eq!(counts(&lib), [("dns".into(), 1), ("HTTP/1.1".into(), 3), ("suspicious".into(), 2)]);
    assert!(matches!(lib.rename_tag("nope", "x"), Err(LibraryError::NoSuchTag(_))));
    assert_eq!(lib.list(&Filter { tag: Some("http/1.1".into()), ..Default::default() }, 0, 0).unwrap().len(), 3);

    lib.edit(ids[0], &MetaEdit { name: Some("renamed".into()), description: Some("zebra crossing".into()) }).unwrap();
    let p = lib.packet(ids[0]).unwrap();
    assert_eq!((p.name.as_str(), p.description.as_str()), ("renamed", "zebra crossing"));
    assert_eq!(ids_of(&lib.search("zebra", &Filter::default(), 0).unwrap()), ["renamed"]);
    assert!(lib.search("about get index", &Filter::default(), 0).unwrap().is_empty());
    assert!(matches!(lib.edit(999, &MetaEdit::default()), Err(LibraryError::NotFound { .. })));

    let seq = lib.create_sequence("s", "", &[ids[0], ids[1]]).unwrap();
    assert_eq!(lib.delete(&[ids[0], 12345]).unwrap(), 1);
    assert!(lib.get(ids[0]).unwrap().is_none());
    assert!(lib.search("zebra", &Filter::default(), 0).unwrap().is_empty());
    assert_eq!(lib.sequence(seq).unwrap().packet_ids, [ids[1]]);
    lib.delete_sequence(seq, true).unwrap();
    assert!(lib.get(ids[1]).unwrap().is_none());
    assert_eq!(lib.count(&Filter::default()).unwrap(), 2);
    lib.check_integrity().unwrap();
}

/// Every kind of bad file is refused with a message naming the field, and the
/// database is left exactly as it was.
#[test]
fn malformed_dpp_files_are_rejected_and_change_nothing() {
    let (dir, mut lib) = open();
    sample(&mut lib);
    let good_v2 = dir.path().join("good.dpp");
    lib.export(&Selection::All, ExportFormat::Dpp, &good_v2).unwrap();
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(&good_v2).unwrap()).unwrap();
    let v1: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data_dir().join("dioprocess_http.dpp")).unwrap()).unwrap();
    let before = fingerprint(&lib);

    let with = |base: &serde_json::Value, path: &[&str], v: serde_json::Value| {
        let mut doc = base.clone();
        let mut cur = &mut doc;
        for k in path {
            cur = match k.parse::<usize>() {
                Ok(i) => &mut cur[i],
                Err(_) => &mut cur[*k],
            };
        }
        *cur = v;
        serde_json::to_vec(&doc).unwrap()
    };
    use serde_json::json;
    let last = good["packets"].as_array().unwrap().len() - 1;
    let last_s = last.to_string();
    let bad_data_field = format!("packets[{last}].data_hex");
    let mut huge_tags = good.clone();
    huge_tags["packets"][0]["tags"] = json!(vec!["t"; 10_000]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "(file): empty"),
        ("not json", b"hello".to_vec(), "(file): not valid JSON"),
        ("truncated", std::fs::read(&good_v2).unwrap()[..200].to_vec(), "(file): not valid JSON"),
        ("non-utf8", b"{\"version\":1,\"name\":\"\xff\xfe\"}".to_vec(), "(file): not UTF-8"),
        ("array top", b"[1,2]".to_vec(), "(top level): expected an object"),
        ("no version", b"{}".to_vec(), "version: missing"),
        ("version string", b"{\"version\":\"2\"}".to_vec(), "version: expected a non-negative integer"),
        ("version 3", b"{\"version\":3}".to_vec(), "version: unsupported version 3"),
        ("v1 bad hex", with(&v1, &["payload_hex"], json!("47 4G")), "payload_hex: \"4G\""),
        ("v1 odd hex", with(&v1, &["payload_hex"], json!("47 4")), "payload_hex: odd number"),
        ("v1 hex number", with(&v1, &["payload_hex"], json!(474554)), "payload_hex: expected a string"),
        ("v1 protocol", with(&v1, &["protocol"], json!("Sctp")), "protocol: \"Sctp\""),
        ("v1 direction", with(&v1, &["direction"], json!(1)), "direction: expected a string"),
        ("v1 port", with(&v1, &["remote_port"], json!(70000)), "remote_port: 70000 is larger"),
        ("v1 negative port", with(&v1, &["local_port"], json!(-1)), "local_port: expected a non-negative integer"),
        ("v1 address", with(&v1, &["local_addr"], json!("1.2.3")), "local_addr: \"1.2.3\""),
        ("v1 mixed families", with(&v1, &["remote_addr"], json!("::1")), "remote_addr: not the same IP version"),
        ("v1 tag type", with(&v1, &["tags"], json!(["ok", 5])), "tags[1]: expected a string"),
        ("v1 tags object", with(&v1, &["tags"], json!({"a": 1})), "tags: expected an array"),
        ("v1 huge payload", with(&v1, &["payload_hex"], json!("00".repeat(70_000))), "payload_hex: more than the cap"),
        ("v1 long name", with(&v1, &["name"], json!("n".repeat(2000))), "name: longer than 1024"),
        ("v2 packets not array", with(&good, &["packets"], json!("x")), "packets: expected an array"),
        ("v2 bad data", with(&good, &["packets", &last_s, "data_hex"], json!("45zz")), &bad_data_field),
        (
            "v2 timestamp float",
            with(&good, &["packets", "1", "timestamp_ns"], json!(1.5)),
            "packets[1].timestamp_ns: expected a non-negative integer",
        ),
        (
            "v2 missing timestamp",
            with(&good, &["packets", "0", "timestamp_ns"], json!(null)),
            "packets[0].timestamp_ns: missing",
        ),
        (
            "v2 pid too big",
            with(&good, &["packets", "0", "pid"], json!(1u64 << 40)),
            "packets[0].pid: 1099511627776 is larger",
        ),
        ("v2 orig_len short", with(&good, &["packets", "0", "orig_len"], json!(3)), "packets[0].orig_len"),
        ("v2 verdict", with(&good, &["packets", "2", "verdict"], json!("maybe")), "packets[2].verdict"),
        ("v2 packet not object", with(&good, &["packets", "2"], json!(7)), "packets[2]: expected an object"),
        (
            "v2 huge tags",
            serde_json::to_vec(&huge_tags).unwrap(),
            "packets[0].tags: 10000 entries, more than the cap of 256",
        ),
        (
            "v2 sequence index",
            with(&good, &["sequences"], json!([{"name": "s", "packets": [0, 99]}])),
            "sequences[0].packets[1]: index 99",
        ),
        ("v2 bad tag", with(&good, &["packets", "3", "tags"], json!(["a,b"])), "packets[3].tags[0]"),
        ("v2 empty data", with(&good, &["packets", "0", "data_hex"], json!("")), "packets[0].data_hex: no bytes"),
    ];
    for (what, bytes, expect) in cases {
        let path = dir.path().join("bad.dpp");
        std::fs::write(&path, &bytes).unwrap();
        let err = lib.import_dpp(&path).expect_err(what).to_string();
        assert!(err.contains(expect), "{what}: {err:?} does not contain {expect:?}");
        assert_eq!(fingerprint(&lib), before, "{what} changed the database");
    }

    // Oversized: over the file cap (sparse file, no 64 MiB write).
    let big = dir.path().join("big.dpp");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(pidcap_library::MAX_FILE_BYTES + 1).unwrap();
    let err = lib.import_dpp(&big).unwrap_err().to_string();
    assert!(err.contains("(file): larger than the 64 MiB cap"), "{err}");

    // An error in the last packet, with good packets and a sequence before it.
    let mut late = good.clone();
    late["sequences"] = json!([{"name": "s", "packets": [0, 1]}]);
    late["packets"][last]["rule"] = json!(70000);
    std::fs::write(dir.path().join("late.dpp"), serde_json::to_vec(&late).unwrap()).unwrap();
    assert!(lib.import_dpp(&dir.path().join("late.dpp")).is_err());
    assert_eq!(fingerprint(&lib), before);

    // The good file still imports.
    assert_eq!(lib.import_dpp(&good_v2).unwrap().packet_ids.len(), 4);
}
