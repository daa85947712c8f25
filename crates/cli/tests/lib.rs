//! `pidcap lib` through the real binary: saving from a pcapng file and from a
//! running daemon, listing, searching, tagging, editing, deleting, importing
//! `.dpp` files (every file tried and reported) and exporting to `.dpp`,
//! pcapng and pcap (checked by tshark); the database and exports private
//! (0600, the default directory 0700), `--db` in a missing directory or on
//! a device refused; frames numbered as Wireshark does (tests/data/frames/),
//! files cut short read up to the cut. Fixtures are in tests/data/lib/. The
//! daemon test needs root, the exports tshark (`require!`).

mod common;

use common::{require, NetNs, Scratch, StderrLines};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lib").join(name)
}

/// `pidcap lib --db DB ARGS`, its output (not checked).
fn lib(db: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pidcap")).arg("lib").arg("--db").arg(db).args(args).output().expect("run pidcap")
}

/// `pidcap lib --db DB ARGS`, which must succeed; its stdout.
fn lib_ok(db: &Path, args: &[&str]) -> String {
    let out = lib(db, args);
    assert!(
        out.status.success(),
        "pidcap lib {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `pidcap lib --db DB ARGS --json`, parsed.
fn lib_json(db: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = lib_ok(db, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed {out:?}: {e}"))
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect()
}

fn tshark_frames(path: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark is needed by this test (apt-get install tshark; the test must require! it)");
    assert!(out.status.success(), "tshark -r {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).count()
}

#[test]
fn save_list_search_tag_edit_delete() {
    let dir = Scratch::new("lib-crud");
    let db = dir.path("lib.db");
    let saved =
        ids(&lib_json(&db, &["save", "--pcap", fixture("capture.pcapng").to_str().unwrap(), "--tag", "golden,web"]));
    assert_eq!(saved, [1, 2, 3, 4, 5, 6]);
    let frames = ids(&lib_json(
        &db,
        &["save", "--pcap", fixture("capture.pcapng").to_str().unwrap(), "--frames", "1,5-6", "--name", "again"],
    ));
    assert_eq!(frames.len(), 3);

    let list = lib_json(&db, &["list"]);
    assert_eq!(list.as_array().unwrap().len(), 9);
    assert_eq!(list[0]["name"], "capture.pcapng #1");
    assert_eq!(list[0]["tags"], serde_json::json!(["golden", "web"]));
    assert_eq!(list[0]["source"], "pcap:capture.pcapng");
    assert_eq!(
        names(&lib_json(&db, &["list", "--protocol", "udp", "--limit", "2"])),
        ["capture.pcapng #2", "capture.pcapng #3"]
    );
    assert_eq!(lib_json(&db, &["list", "--port", "443"]).as_array().unwrap().len(), 4);

    // Words, hex bytes (3 and 2 bytes), a tag, a filter.
    let hits = lib_json(&db, &["search", "GET"]);
    let hit_ids: Vec<i64> = hits.as_array().unwrap().iter().map(|h| h["packet"]["id"].as_i64().unwrap()).collect();
    assert!(hit_ids.contains(&1) && hit_ids.contains(&7), "{hits}");
    assert!(hits[0]["score"].as_f64().unwrap() < 0.0);
    assert_eq!(lib_json(&db, &["search", "47 45 54"]).as_array().unwrap().len(), 2);
    assert_eq!(lib_json(&db, &["search", "hex:4745"]).as_array().unwrap().len(), 2);
    assert_eq!(lib_json(&db, &["search", "again", "--protocol", "udp"]).as_array().unwrap().len(), 1);
    let none = lib(&db, &["search", "nosuchword"]);
    assert!(none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no match"));
    let bad = lib(&db, &["search", "fts:\"unbalanced"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bad search query"), "{bad:?}");

    // Tags.
    lib_ok(&db, &["tag", "1-3", "interesting", "todo"]);
    lib_ok(&db, &["untag", "2", "todo"]);
    let tags = lib_json(&db, &["tags"]);
    let count =
        |name: &str| tags.as_array().unwrap().iter().find(|t| t["name"] == name).map(|t| t["count"].as_u64().unwrap());
    assert_eq!((count("interesting"), count("todo"), count("golden")), (Some(3), Some(2), Some(6)));
    assert_eq!(lib_json(&db, &["search", "tag:todo"]).as_array().unwrap().len(), 2);
    assert_eq!(names(&lib_json(&db, &["list", "--tag", "todo"])), ["capture.pcapng #1", "capture.pcapng #3"]);
    lib_ok(&db, &["tag", "--rename", "todo", "done"]);
    let tags = lib_json(&db, &["tags"]);
    assert!(tags.as_array().unwrap().iter().any(|t| t["name"] == "done" && t["count"] == 2), "{tags}");
    let missing = lib(&db, &["tag", "99", "x"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no packet with id 99"), "{missing:?}");

    // Edit, then find it by the new words.
    lib_ok(&db, &["edit", "4", "--name", "big upload", "--description", "a thousand bytes"]);
    let shown = lib_json(&db, &["show", "4"]);
    assert_eq!(
        (shown[0]["name"].as_str(), shown[0]["description"].as_str()),
        (Some("big upload"), Some("a thousand bytes"))
    );
    assert_eq!(lib_json(&db, &["search", "thousand"])[0]["packet"]["id"], 4);
    assert!(!lib(&db, &["edit", "4"]).status.success(), "an edit without changes is refused");

    // Delete: gone from list, search and tags.
    let out = lib_ok(&db, &["delete", "1,4"]);
    assert!(out.contains("deleted 2 packet(s)"), "{out}");
    assert_eq!(lib_json(&db, &["list"]).as_array().unwrap().len(), 7);
    assert!(lib_json(&db, &["search", "thousand"]).as_array().unwrap().is_empty());
    assert_eq!(lib(&db, &["delete", "1"]).status.code(), Some(1), "deleting a missing packet is reported");
    assert_eq!(lib(&db, &["show", "1"]).status.code(), Some(1));
}

#[test]
fn import_v1_and_export_dpp_pcapng_pcap() {
    require!(Tool("tshark"));
    let dir = Scratch::new("lib-export");
    let db = dir.path("lib.db");
    let report = lib_json(&db, &["import", fixture("login_v1.dpp").to_str().unwrap()]);
    assert_eq!(report[0]["version"], 1);
    let login = report[0]["packet_ids"][0].as_i64().unwrap();
    let p = &lib_json(&db, &["show", &login.to_string()])[0];
    assert_eq!(p["name"], "login request");
    assert_eq!(p["synthesized"], true);
    assert_eq!(p["source"], "dpp-v1:login_v1.dpp");
    assert_eq!((p["packet"]["pid"].as_u64(), p["packet"]["comm"].as_str()), (Some(0), Some("")));
    assert_eq!(p["tags"], serde_json::json!(["auth", "http"]));
    assert!(lib_ok(&db, &["list"]).contains("(synthesised)"));
    assert_eq!(lib_json(&db, &["search", "login"])[0]["packet"]["id"], login);

    lib_ok(&db, &["save", "--pcap", fixture("capture.pcapng").to_str().unwrap(), "--sequence", "golden run"]);
    let seqs = lib_json(&db, &["seq", "list"]);
    assert_eq!(seqs[0]["packet_ids"].as_array().unwrap().len(), 6);

    for (file, frames) in [("all.pcapng", 7), ("all.pcap", 7)] {
        let out = dir.path(file);
        lib_ok(&db, &["export", "-o", out.to_str().unwrap()]);
        assert_eq!(tshark_frames(&out), frames, "{file}");
    }
    let udp = dir.path("udp.pcap");
    lib_ok(&db, &["export", "-o", udp.to_str().unwrap(), "--protocol", "udp"]);
    assert_eq!(tshark_frames(&udp), 3);
    let searched = dir.path("found.out");
    lib_ok(&db, &["export", "-o", searched.to_str().unwrap(), "--format", "pcapng", "--search", "login"]);
    assert_eq!(tshark_frames(&searched), 1);
    assert!(!lib(&db, &["export", "-o", dir.path("x.bin").to_str().unwrap()]).status.success(), "unknown extension");

    // .dpp v2 round trip into another library keeps packets, tags and the sequence.
    let dpp = dir.path("all.dpp");
    lib_ok(&db, &["export", "-o", dpp.to_str().unwrap()]);
    let db2 = dir.path("other.db");
    let r = lib_json(&db2, &["import", dpp.to_str().unwrap()]);
    assert_eq!((r[0]["version"].as_u64(), r[0]["packet_ids"].as_array().unwrap().len()), (Some(2), 7));
    let strip = |mut v: Value| {
        for p in v.as_array_mut().unwrap() {
            let o = p.as_object_mut().unwrap();
            o.remove("id");
            o.remove("saved_at_ns");
        }
        v
    };
    assert_eq!(strip(lib_json(&db, &["list"])), strip(lib_json(&db2, &["list"])));
    assert_eq!(lib_json(&db2, &["seq", "list"])[0]["name"], "golden run");
    let seq_pcap = dir.path("seq.pcapng");
    lib_ok(&db2, &["export", "-o", seq_pcap.to_str().unwrap(), "--sequence", "1"]);
    assert_eq!(tshark_frames(&seq_pcap), 6);

    // Sequences: reorder, append, rename.
    lib_ok(&db2, &["seq", "set", "1", "3,1"]);
    lib_ok(&db2, &["seq", "add", "1", "7,2"]);
    lib_ok(&db2, &["seq", "edit", "1", "--name", "short run"]);
    let seq = &lib_json(&db2, &["seq", "list"])[0];
    assert_eq!((seq["name"].as_str(), ids(&seq["packet_ids"])), (Some("short run"), vec![3, 1, 7, 2]));
    assert!(!lib(&db2, &["seq", "add", "1", "99"]).status.success());
    assert!(!lib(&db2, &["seq", "add", "5", "1"]).status.success());
    assert_eq!(ids(&lib_json(&db2, &["seq", "list"])[0]["packet_ids"]), [3, 1, 7, 2]);
}

#[test]
fn a_malformed_dpp_is_refused_and_changes_nothing() {
    let dir = Scratch::new("lib-bad");
    let db = dir.path("lib.db");
    lib_ok(&db, &["save", "--pcap", fixture("capture.pcapng").to_str().unwrap(), "--tag", "t"]);
    let snapshot = |db: &Path| {
        (lib_ok(db, &["list", "--json"]), lib_ok(db, &["tags", "--json"]), lib_ok(db, &["seq", "list", "--json"]))
    };
    let before = snapshot(&db);
    let out =
        lib(&db, &["import", fixture("login_v1.dpp").to_str().unwrap(), fixture("bad_port_v1.dpp").to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad_port_v1.dpp") && err.contains("remote_port"),
        "the error names the file and the field: {err}"
    );
    // The good file given first was imported (each file is its own transaction); undo it and compare.
    let after = lib_json(&db, &["list"]);
    let extra: Vec<String> = after
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "login request")
        .map(|p| p["id"].to_string())
        .collect();
    assert_eq!(extra.len(), 1);
    lib_ok(&db, &["delete", &extra.join(",")]);
    assert_eq!(snapshot(&db), before);

    // A file that is not JSON at all, and one that is truncated.
    let junk = dir.path("junk.dpp");
    std::fs::write(&junk, b"\x00\x01 not json").unwrap();
    let truncated = dir.path("truncated.dpp");
    let text = std::fs::read(fixture("login_v1.dpp")).unwrap();
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    for f in [&junk, &truncated] {
        let out = lib(&db, &["import", f.to_str().unwrap()]);
        assert!(!out.status.success(), "{}", f.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains("invalid .dpp file"), "{out:?}");
    }
    assert_eq!(snapshot(&db), before);
}

#[test]
fn save_by_packet_id_needs_a_running_daemon() {
    let dir = Scratch::new("lib-nodaemon");
    let db = dir.path("lib.db");
    let sock = dir.path("none.sock");
    let out = lib(&db, &["save", "--packet", "1-3", "--socket", sock.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("start one with `sudo pidcap daemon`"), "{err}");
    assert!(!db.exists(), "no database is created when there is nothing to save");
    assert!(!lib(&db, &["save"]).status.success(), "--pcap or --packet is required");
    assert!(!lib(&db, &["save", "--packet", "x"]).status.success());
}

/// The python3 peer of the daemon test: prints its pid, waits for a line on
/// stdin, then sends three marked UDP datagrams to a socket of its own on
/// loopback and receives them.
const UDP_PEER: &str = "import os,socket,sys
r=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); r.bind(('127.0.0.1',0))
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
print(os.getpid(),flush=True); sys.stdin.readline()
for i in range(3):
    s.sendto(b'pidcap-lib-marker-%d' % i, r.getsockname()); r.recv(100)
print('done',flush=True)";

/// The daemon, stopped when the test ends (or fails).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SAFETY: kill(2) on a child this test started and has not reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn save_by_packet_id_from_the_daemon() {
    require!(Root, Tool("ip"), Tool("python3"));
    let dir = Scratch::new("lib-daemon");
    let db = dir.path("lib.db");
    let sock = dir.path("pidcap.sock");
    let ns = NetNs::new("lib");

    let mut daemon = Command::new(env!("CARGO_BIN_EXE_pidcap"))
        .args(["daemon", "--socket", sock.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let mut lines = StderrLines::new(daemon.stderr.take().unwrap());
    let _daemon = KillOnDrop(daemon);
    lines.wait_for("pidcap daemon: listening", Duration::from_secs(30));

    let mut peer =
        ns.command("python3").args(["-c", UDP_PEER]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let mut peer_out = BufReader::new(peer.stdout.take().unwrap());
    let mut line = String::new();
    peer_out.read_line(&mut line).unwrap();
    let pid: u32 = line.trim().parse().unwrap_or_else(|_| panic!("peer said {line:?}"));

    let mut client = pidcap_api::Client::connect(&sock).unwrap();
    client.start_capture(vec![pid], vec![], None, None, false).unwrap();
    peer.stdin.take().unwrap().write_all(b"go\n").unwrap();
    line.clear();
    peer_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "done");
    assert!(peer.wait().unwrap().success());

    // The marked datagrams as the daemon holds them (out and in: 6 packets).
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = loop {
        let page = client.get_packets(0, Some(1000)).unwrap();
        let marked: Vec<_> =
            page.packets.into_iter().filter(|p| p.payload().starts_with(b"pidcap-lib-marker-")).collect();
        if marked.len() >= 6 || Instant::now() > deadline {
            break marked;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(held.len(), 6, "the daemon did not capture the 6 datagrams: {held:?}");
    let outbound: Vec<u64> =
        held.iter().filter(|p| p.direction == pidcap_packet::Direction::Outbound).map(|p| p.id).collect();
    assert_eq!(outbound.len(), 3);

    // By a list of ids...
    let list = format!("{},{}", outbound[2], outbound[0]);
    let saved = ids(&lib_json(
        &db,
        &[
            "save",
            "--packet",
            &list,
            "--socket",
            sock.to_str().unwrap(),
            "--name",
            "marker",
            "--description",
            "from the daemon",
            "--tag",
            "live",
        ],
    ));
    assert_eq!(saved.len(), 2);
    let shown = lib_json(&db, &["show", &format!("{},{}", saved[0], saved[1])]);
    for (p, (want_id, want_payload)) in shown.as_array().unwrap().iter().zip([(outbound[2], "2"), (outbound[0], "0")]) {
        let held = held.iter().find(|h| h.id == want_id).unwrap();
        assert_eq!(p["packet"]["id"].as_u64(), Some(want_id));
        assert_eq!(p["packet"]["pid"].as_u64(), Some(u64::from(pid)));
        assert_eq!(p["packet"]["comm"].as_str(), Some(held.comm.as_str()));
        assert!(held.comm.starts_with("python"), "comm {:?}", held.comm);
        assert_eq!((p["name"].as_str(), p["source"].as_str()), (Some("marker"), Some("daemon")));
        assert_eq!(p["tags"], serde_json::json!(["live"]));
        let payload = format!("pidcap-lib-marker-{want_payload}");
        let data = p["packet"]["data"].as_str().unwrap().to_string();
        assert!(data.ends_with(&pidcap_packet::to_hex(payload.as_bytes())), "payload of {want_id}: {data}");
    }
    let hits = lib_json(&db, &["search", "from the daemon", "--pid", &pid.to_string()]);
    assert_eq!(hits.as_array().unwrap().len(), 2);

    // ... and by a range (every packet of the capture between the first and last marked one).
    let (lo, hi) = (held.iter().map(|p| p.id).min().unwrap(), held.iter().map(|p| p.id).max().unwrap());
    let saved = ids(&lib_json(&db, &["save", "--packet", &format!("{lo}-{hi}"), "--socket", sock.to_str().unwrap()]));
    assert_eq!(saved.len() as u64, hi - lo + 1);
    let first = &lib_json(&db, &["show", &saved[0].to_string()])[0];
    assert_eq!(first["name"], format!("capture #{lo}"));

    // An id the daemon does not hold: an error, nothing saved.
    let before = lib_ok(&db, &["list", "--json"]);
    let out = lib(&db, &["save", "--packet", &format!("{lo},{}", hi + 1000), "--socket", sock.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("does not hold packet(s) {}", hi + 1000)), "{err}");
    assert_eq!(lib_ok(&db, &["list", "--json"]), before);
}

#[test]
fn a_word_in_thousands_of_packets_is_ranked_among_the_newest_and_says_so() {
    let dir = Scratch::new("lib-window");
    let db = dir.path("lib.db");
    let pcap = dir.path("many.pcapng");
    let n = pidcap_library::SEARCH_WINDOW as u64 + 100;
    {
        let f = std::io::BufWriter::new(std::fs::File::create(&pcap).unwrap());
        let mut w =
            pidcap_pcapfile::PacketWriter::new(pidcap_pcapfile::Format::Pcapng, f, &Default::default()).unwrap();
        for i in 1..=n {
            let mut data = Vec::new();
            let payload = format!("everywhere item{i}");
            etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .udp(1000, 2000)
                .write(&mut data, payload.as_bytes())
                .unwrap();
            let len = data.len() as u32;
            let p = pidcap_packet::CapturedPacket::new(
                i,
                i * 1000,
                1,
                "gen".into(),
                0,
                pidcap_packet::Direction::Outbound,
                pidcap_packet::Verdict::Pass,
                len,
                data,
            );
            w.write_packet(&p).unwrap();
        }
        w.flush().unwrap();
    }
    lib_ok(&db, &["save", "--pcap", pcap.to_str().unwrap()]);
    let out = lib(&db, &["search", "everywhere", "--limit", "3"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{n} packets match; ranked among the newest {}", pidcap_library::SEARCH_WINDOW)),
        "{err}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    // Every match, ranked, with --limit 0; a selective query says nothing.
    assert_eq!(lib_json(&db, &["search", "everywhere", "--limit", "0"]).as_array().unwrap().len() as u64, n);
    let out = lib(&db, &["search", "item77"]);
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
}

fn frames_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/frames").join(name)
}

/// `pidcap lib ARGS` under umask 022 (the usual one) with XDG_DATA_HOME set: no --db.
fn lib_default(xdg: &Path, args: &[&str]) -> Output {
    Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" lib \"$@\""])
        .arg(env!("CARGO_BIN_EXE_pidcap"))
        .args(args)
        .env("XDG_DATA_HOME", xdg)
        .output()
        .expect("run pidcap")
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

#[test]
fn the_library_and_its_exports_are_private() {
    let dir = Scratch::new("lib-private");
    let xdg = dir.path("xdg");
    let out = lib_default(&xdg, &["save", "--pcap", fixture("capture.pcapng").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&xdg.join("pidcap")), 0o700, "the default library's directory");
    assert_eq!(mode(&xdg.join("pidcap/library.db")), 0o600);
    for companion in ["-wal", "-shm", "-journal"] {
        let f = xdg.join(format!("pidcap/library.db{companion}"));
        if f.exists() {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }
    let export = dir.path("all.pcapng");
    let out = lib_default(&xdg, &["export", "-o", export.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&export), 0o600);
    let shared = dir.path("shared.dpp");
    let out = lib_default(&xdg, &["export", "-o", shared.to_str().unwrap(), "--file-mode", "644"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(mode(&shared), 0o644);
}

#[test]
fn a_db_in_a_missing_directory_or_on_a_device_is_refused() {
    let dir = Scratch::new("lib-baddb");
    let missing = dir.path("no/such/dir/x.db");
    let out = lib(&missing, &["list"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("the directory {} does not exist", dir.path("no/such/dir").display())), "{err}");
    assert!(!dir.path("no").exists(), "the directories were created");

    let _ = std::fs::remove_file("/dev/null-journal");
    let out = lib(Path::new("/dev/null"), &["save", "--pcap", fixture("capture.pcapng").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/dev/null is not a regular file"), "{err}");
    assert!(!Path::new("/dev/null-journal").exists(), "SQLite wrote beside /dev/null");
}

#[test]
fn import_tries_every_file_and_reports_each() {
    let dir = Scratch::new("lib-import-each");
    let db = dir.path("lib.db");
    let (good, bad) = (fixture("login_v1.dpp"), fixture("bad_port_v1.dpp"));
    let missing = dir.path("missing.dpp");
    let files = [good.to_str().unwrap(), bad.to_str().unwrap(), missing.to_str().unwrap(), good.to_str().unwrap()];
    let mut args = vec!["import"];
    args.extend(files);
    let out = lib(&db, &args);
    assert_eq!(out.status.code(), Some(1), "some files failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout.matches("login_v1.dpp: .dpp v1, 1 packet(s)").count(), 2, "both good files: {stdout}");
    assert!(err.contains("bad_port_v1.dpp") && err.contains("remote_port"), "{err}");
    assert!(err.contains("missing.dpp"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "the cause is said once: {err}");
    assert!(err.contains("2 of 4 file(s) could not be imported"), "{err}");
    let names = names(&lib_json(&db, &["list"]));
    assert_eq!(names, ["login request", "login request"], "nothing lost, nothing of the bad files kept");

    // --json: one entry per file, in order, an error where one failed.
    args.push("--json");
    let out = lib(&db, &args);
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = v.as_array().unwrap();
    assert_eq!(v.len(), 4);
    assert_eq!((v[0]["version"].as_u64(), v[3]["version"].as_u64()), (Some(1), Some(1)));
    assert!(v[1]["error"].as_str().unwrap().contains("remote_port"), "{v:?}");
    assert!(v[2]["error"].as_str().unwrap().contains("missing.dpp"), "{v:?}");

    // Every file bad: exit 2.
    assert_eq!(lib(&db, &["import", bad.to_str().unwrap()]).status.code(), Some(2));
}

#[test]
fn save_numbers_frames_as_wireshark_and_says_what_it_skipped() {
    require!(Tool("tshark"));
    let dir = Scratch::new("lib-frames");
    let db = dir.path("lib.db");
    let eth = frames_fixture("eth_arp.pcapng");
    // What tshark calls each frame: 1 UDP, 2-3 ARP, 4 and 5 UDP.
    let out = Command::new("tshark").arg("-r").arg(&eth).args(["-T", "fields", "-e", "frame.protocols"]).output();
    let protocols = String::from_utf8(out.unwrap().stdout).unwrap();
    let arp: Vec<usize> =
        protocols.lines().enumerate().filter(|(_, l)| l.contains(":arp")).map(|(i, _)| i + 1).collect();
    assert_eq!(arp, [2, 3]);

    let out = lib(&db, &["save", "--pcap", eth.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frames 2-3 skipped: not an IPv4 or IPv6 packet (ethertype 0x0806, ARP)"), "{err}");
    assert_eq!(names(&lib_json(&db, &["list"])), ["eth_arp.pcapng #1", "eth_arp.pcapng #4", "eth_arp.pcapng #5"]);

    let four = ids(&lib_json(&db, &["save", "--pcap", eth.to_str().unwrap(), "--frames", "4"]));
    let shown = &lib_json(&db, &["show", &four[0].to_string()])[0];
    assert_eq!(shown["name"], "eth_arp.pcapng #4");
    assert!(
        shown["packet"]["data"].as_str().unwrap().ends_with(&pidcap_packet::to_hex(b"fourth frame, the second packet")),
        "{shown}"
    );
    let out = lib(&db, &["save", "--pcap", eth.to_str().unwrap(), "--frames", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frame 2 skipped: not an IPv4 or IPv6 packet"), "{out:?}");

    // A link type pidcap does not read: not "0 frames", but why.
    let out = lib(&db, &["save", "--pcap", frames_fixture("user0.pcap").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frames 1-2 skipped: link type 147 (USER0) is not one pidcap reads"), "{err}");
}

#[test]
fn save_reads_a_file_cut_short_up_to_its_last_complete_block() {
    require!(Tool("tshark"));
    let dir = Scratch::new("lib-cut");
    let db = dir.path("lib.db");
    let cut = dir.path("cut.pcapng");
    let mut w =
        pidcap_pcapfile::PacketWriter::new(pidcap_pcapfile::Format::Pcapng, Vec::new(), &Default::default()).unwrap();
    for i in 1..=387u64 {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1000, 2000)
            .write(&mut data, format!("datagram {i}").as_bytes())
            .unwrap();
        let len = data.len() as u32;
        let dir = pidcap_packet::Direction::Outbound;
        w.write_packet(&pidcap_packet::CapturedPacket::new(
            i,
            i,
            1,
            "gen".into(),
            0,
            dir,
            pidcap_packet::Verdict::Pass,
            len,
            data,
        ))
        .unwrap();
    }
    let bytes = w.into_inner().unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 7]).unwrap();
    // tshark reads the complete frames (and warns about the cut).
    let t = Command::new("tshark").arg("-r").arg(&cut).args(["-T", "fields", "-e", "frame.number"]).output().unwrap();
    let tshark_count = String::from_utf8_lossy(&t.stdout).lines().filter(|l| !l.is_empty()).count();
    assert_eq!(tshark_count, 386);

    let out = lib(&db, &["save", "--pcap", cut.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ids(&saved).len(), tshark_count);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("was cut short (truncated pcapng Enhanced Packet Block"), "{err}");
    assert!(err.contains("its 386 complete frames were read"), "{err}");
}

// -- library output and ranking (issue 14) --

/// A capture of `curl http://127.0.0.1:8089/` at the client (pid 7, 12
/// packets: handshake, the request, ACKs, the answer, FINs), as pcapng.
fn curl_get_capture(path: &Path) {
    use pidcap_packet::{CapturedPacket, Direction, Verdict};
    let mut w = pidcap_pcapfile::PcapngWriter::new(std::fs::File::create(path).unwrap(), &Default::default()).unwrap();
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8089\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    let answer = b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\nContent-Length: 2\r\n\r\nhi";
    for i in 0..12u64 {
        let out = i % 2 == 0;
        let payload: &[u8] = match i {
            4 => request,
            7 => answer,
            _ => b"",
        };
        let (src, dst) = if out {
            ((52330, [127, 0, 0, 1]), (8089, [127, 0, 0, 1]))
        } else {
            ((8089, [127, 0, 0, 1]), (52330, [127, 0, 0, 1]))
        };
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4(src.1, dst.1, 64)
            .tcp(src.0, dst.0, 1000 + i as u32, 512)
            .ack(1)
            .write(&mut data, payload)
            .unwrap();
        let dir = if out { Direction::Outbound } else { Direction::Inbound };
        let p = CapturedPacket::new(
            i + 1,
            1_700_000_000_000_000_000 + i * 1_000,
            7,
            "curl".into(),
            9,
            dir,
            Verdict::Pass,
            data.len() as u32,
            data,
        );
        w.write_packet(&p).unwrap();
    }
    w.into_inner().unwrap();
}

#[test]
fn search_ranks_the_request_first_and_lines_are_local_with_arrows_and_labelled_sizes() {
    let dir = Scratch::new("lib-rank");
    let db = dir.path("lib.db");
    let pcap = dir.path("curl.pcapng");
    curl_get_capture(&pcap);
    // The whole capture named "curl GET", as a sequence: GET is in every packet's name.
    let saved = ids(&lib_json(
        &db,
        &["save", "--pcap", pcap.to_str().unwrap(), "--name", "curl GET", "--sequence", "curl-get"],
    ));
    assert_eq!(saved.len(), 12);
    let hits = lib_json(&db, &["search", "GET"]);
    let order: Vec<i64> = hits.as_array().unwrap().iter().map(|h| h["packet"]["id"].as_i64().unwrap()).collect();
    assert_eq!(order.len(), 12);
    assert_eq!(order[0], saved[4], "the request (frame 5) first: {order:?}");
    let score = |i: usize| hits[i]["score"].as_f64().unwrap();
    assert!(score(0) < score(1) && score(0) < -0.5, "scored apart: {} {}", score(0), score(1));

    // Text: local time (TZ respected), `>` out and `<` in as in the capture lines, sizes labelled.
    let run = |tz: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pidcap"))
            .env("TZ", tz)
            .arg("lib")
            .arg("--db")
            .arg(&db)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let text = run("UTC", &["search", "GET"]);
    let first = text.lines().next().unwrap();
    assert!(first.contains(&format!(" {}  2023-11-14 22:13:20.000004  ", saved[4])), "{first}");
    assert!(first.contains("out TCP    127.0.0.1:52330 > 127.0.0.1:8089"), "{first}");
    assert!(first.contains("payload 78 B, packet 118 B  7/curl  curl GET"), "{first}");
    assert!(!first.contains("  0.00  "), "{first}");
    let list = run("JST-9", &["list"]);
    let answer = list.lines().find(|l| l.trim_start().starts_with(&format!("{} ", saved[7]))).unwrap();
    assert!(answer.contains("2023-11-15 07:13:20.000007  in  TCP    127.0.0.1:52330 < 127.0.0.1:8089"), "{answer}");
    let show = run("UTC", &["show", &saved[4].to_string()]);
    assert!(show.contains("payload 78 B, packet 118 B (118 B captured)"), "{show}");
    assert!(!show.contains("orig_len"), "{show}");
}
