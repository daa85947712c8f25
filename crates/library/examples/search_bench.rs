//! Search benchmark: fills a library with N synthetic HTTP-like packets
//! (default 1,000,000) and prints how long saving and typical searches take.
//!
//! `cargo run --release -p pidcap-library --example search_bench -- [N] [DB]`
//! (without DB a temporary file is used and removed). Figures go to BENCH.md.

use pidcap_library::{Filter, Library, NewPacket};
use pidcap_packet::{CapturedPacket, Direction, Protocol, Verdict};
use std::time::Instant;

const RESOURCES: [&str; 10] =
    ["users", "orders", "items", "carts", "search", "login", "logout", "images", "videos", "stats"];
const COMMS: [&str; 5] = ["curl", "firefox", "wget", "python3", "node"];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn make(i: u64, rng: &mut Rng) -> NewPacket {
    let res = RESOURCES[(rng.next() % 10) as usize];
    let host = format!("host{}.example", rng.next() % 1000);
    let payload = format!(
        "GET /api/{res}/{} HTTP/1.1\r\nHost: {host}\r\nX-Request-Id: req{i}\r\nAccept: */*\r\n\r\n",
        rng.next() % 100_000
    );
    let port = 1024 + (i % 60_000) as u16;
    let mut data = Vec::new();
    etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, (i >> 8) as u8, i as u8], 64)
        .tcp(port, if i.is_multiple_of(3) { 443 } else { 80 }, i as u32, 512)
        .write(&mut data, payload.as_bytes())
        .unwrap();
    let len = data.len() as u32;
    let comm = COMMS[(i % 5) as usize];
    let p = CapturedPacket::new(
        i,
        1_700_000_000_000_000_000 + i * 1_000,
        1000 + (i % 50) as u32,
        comm.into(),
        i,
        Direction::Outbound,
        Verdict::Pass,
        len,
        data,
    );
    let mut tags = vec![res.to_string()];
    if i.is_multiple_of(100) {
        tags.push("sampled".into());
    }
    NewPacket {
        name: format!("{res} request {i}"),
        description: String::new(),
        tags,
        saved_at_ns: None,
        source: "bench".into(),
        synthesized: false,
        packet: p,
    }
}

/// Drop schema 5's byte-presence index and mark the database as schema 4.
fn rusqlite_free_downgrade(path: &std::path::Path) -> String {
    let lib = Library::open(path).unwrap();
    let c = lib.connection();
    c.execute_batch(
        "DROP TRIGGER IF EXISTS packets_bytes_delete; DROP TABLE IF EXISTS packets_bytes; PRAGMA user_version = 4;",
    )
    .map(|_| "ok".to_string())
    .unwrap_or_else(|e| e.to_string())
}

fn time<T>(f: impl Fn() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut out = None;
    for _ in 0..5 {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
        out = Some(r);
    }
    (best, out.unwrap())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).map(|s| s.parse().expect("N")).unwrap_or(1_000_000);
    let tmp = std::env::temp_dir().join(format!("pidcap-bench-{}.db", std::process::id()));
    let path = args.get(2).map(Into::into).unwrap_or(tmp.clone());
    let load = || std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string();
    println!("load average at start: {}", load());
    // PIDCAP_BENCH_MIGRATE=1 with an existing DB: take it back to schema 4
    // (no byte-presence index) first, to time the migration that adds it.
    if std::env::var_os("PIDCAP_BENCH_MIGRATE").is_some() && path.exists() {
        let c = rusqlite_free_downgrade(&path);
        println!("taken back to schema 4: {c}");
    }
    let t = Instant::now();
    let mut lib = Library::open(&path).unwrap();
    let open_secs = t.elapsed().as_secs_f64();
    if open_secs > 1.0 {
        println!("opened in {open_secs:.1} s (schema migration)");
    }
    let have = lib.count(&Filter::default()).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let t = Instant::now();
    let batch = 10_000;
    let mut i = have;
    while i < n {
        let end = (i + batch).min(n);
        let ps: Vec<NewPacket> = (i..end).map(|k| make(k, &mut rng)).collect();
        lib.save_many(&ps).unwrap();
        i = end;
        if i.is_multiple_of(100_000) {
            eprintln!("  {i} saved, {:.1} s", t.elapsed().as_secs_f64());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    if n > have {
        println!(
            "saved {} packets in {secs:.1} s ({:.0} packets/s, 10,000 per transaction)",
            n - have,
            (n - have) as f64 / secs
        );
    }
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!("database: {} packets, {:.0} MiB", lib.count(&Filter::default()).unwrap(), size as f64 / 1048576.0);
    let all = Filter::default();
    let rare = format!("req{}", n / 2 + 7);
    let rare_hex = format!("hex:{}", pidcap_packet::to_hex(rare.as_bytes()));
    let queries: Vec<(&str, &str, Filter)> = vec![
        ("rare word (1 match)", &rare, all.clone()),
        ("word in ~0.1% (host)", "host42", all.clone()),
        ("word in ~10% (resource)", "orders", all.clone()),
        ("word in every packet", "HTTP", all.clone()),
        ("two words", "orders host42", all.clone()),
        ("hex sequence (1 match)", &rare_hex, all.clone()),
        ("hex, 4 bytes in every packet", "hex:0d0a0d0a", all.clone()),
        ("hex, 2 bytes in every packet", "hex:0d0a", all.clone()),
        ("hex, 1 byte in every packet", "hex:2f", all.clone()),
        ("hex, 2 bytes in ~10%", "hex:7669", all.clone()),
        ("hex, 1 byte in ~10%", "hex:76", all.clone()),
        ("hex, 1 byte in none", "hex:6b", all.clone()),
        ("hex, 2 bytes + port filter", "hex:0d0a", Filter { port: Some(443), ..Default::default() }),
        ("process name", "comm:wget", all.clone()),
        ("word + tag filter", "orders", Filter { tag: Some("sampled".into()), ..Default::default() }),
        (
            "word + port + protocol",
            "host42",
            Filter { port: Some(443), protocol: Some(Protocol::Tcp), ..Default::default() },
        ),
    ];
    println!("{:<28} {:>10} {:>9}", "query (limit 50)", "best of 5", "results");
    for (label, q, f) in queries {
        let (ms, r) = time(|| lib.search_results(q, &f, 50).unwrap());
        let how = match (r.window, r.ranked) {
            (None, _) => format!("bm25 over all {} matches", r.matches),
            (Some(w), true) => format!("bm25 over newest {w} of {} matches", r.matches),
            (Some(w), false) => format!("newest first (window {w}, >{} matches)", r.matches - 1),
        };
        println!("{label:<28} {ms:>7.1} ms {:>9}  {how}", r.hits.len());
    }
    let (ms, k) =
        time(|| lib.list(&Filter { tag: Some("sampled".into()), ..Default::default() }, 50, 0).unwrap().len());
    println!("{:<28} {ms:>7.1} ms {k:>9}", "list by tag (no FTS)");
    println!("load average at the end: {}", load());
    if args.get(2).is_none() {
        drop(lib);
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", tmp.display()));
        }
    }
}
