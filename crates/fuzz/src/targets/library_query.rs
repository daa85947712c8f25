//! The library's query parsers: `pidcap_library::build_match` (what
//! `pidcap lib search` and the UI's library tab type) and `parse_frames`
//! (`lib save --frames 1-5,9`).
//!
//! Checked: every query `build_match` accepts, other than `fts:` (raw FTS5,
//! passed through on purpose) and other than a query holding a NUL (see
//! below), is valid FTS5: it runs on an empty `packets_fts` table made by
//! the library's own migrations; frame ranges
//! are 1-based and never reversed.

use super::{outcome, text, text_shape};
use pidcap_library::{build_match, migration_sql, parse_frames, SCHEMA_VERSION};
use rusqlite::Connection;

thread_local! {
    /// An empty library schema in memory, made once per thread.
    static DB: Connection = {
        let c = Connection::open_in_memory().expect("an in-memory SQLite");
        for v in 1..=SCHEMA_VERSION {
            c.execute_batch(migration_sql(v).expect("every version has its SQL")).expect("the library's schema");
        }
        c
    };
}

pub fn run(data: &[u8]) -> u64 {
    let Some(q) = text(data) else { return 0 };
    let query = match build_match(q) {
        Ok(m) => {
            // A NUL ends an FTS5 string for SQLite: such queries fail with
            // "unterminated string" (reported in docs/RELIABILITY.md, not a crash).
            if !q.trim_start().starts_with("fts:") && !q.contains('\0') {
                let r = DB.with(|db| {
                    db.query_row("SELECT count(*) FROM packets_fts WHERE packets_fts MATCH ?1", [&m], |r| {
                        r.get::<_, i64>(0)
                    })
                });
                if let Err(e) = r {
                    panic!("query {q:?} gives FTS5 {m:?}, which SQLite refuses: {e}");
                }
            }
            outcome(&[1, text_shape(&m)])
        }
        Err(e) => outcome(&[2, text_shape(&e.to_string())]),
    };
    let frames = match parse_frames(q) {
        Ok(ranges) => {
            assert!(!ranges.is_empty());
            assert!(ranges.len() <= q.split(',').count());
            for r in &ranges {
                assert!(*r.start() >= 1 && r.start() <= r.end(), "frames {r:?} from {q:?}");
            }
            outcome(&[3, super::shape(ranges.len())])
        }
        Err(e) => outcome(&[4, text_shape(&e.to_string())]),
    };
    outcome(&[query, frames])
}

/// The query language's prefixes and FTS5's own syntax.
pub const DICTIONARY: &[&[u8]] = &[
    b"name:",
    b"description:",
    b"tag:",
    b"tags:",
    b"comm:",
    b"process:",
    b"payload:",
    b"hex:",
    b"0x",
    b"fts:",
    b"*",
    b"\"",
    b"\"\"",
    b" AND ",
    b" OR ",
    b" NOT ",
    b"NEAR(",
    b"(",
    b")",
    b"{",
    b"}",
    b"^",
    b"+",
    b":",
    b"47 45 54",
    b"-",
    b",",
    b"1-5,9",
    b"12-",
    b"18446744073709551615",
    b"\x00",
];
