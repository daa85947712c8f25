//! Full-text search: turning what a user types into an FTS5 query, and running
//! it together with metadata filters, ranked by bm25 with a word scored per
//! column (within a bounded window of the newest matches when a query matches
//! very many packets). A 1- or 2-byte sequence is one term of the
//! byte-presence index (`packets_bytes`, schema 5); longer ones a phrase of
//! the hex column's trigrams.
//!
//! Query language (see [`build_match`]):
//! - words: every word must appear in some column (name, description, tags,
//!   process name, payload text); `word*` is a prefix;
//! - `name:x`, `description:x`, `tag:x`, `comm:x`, `payload:x`: a word in one column;
//! - a byte sequence, `47 45 54` or `hex:474554` or `0x474554`: those bytes,
//!   consecutive, in the payload;
//! - `fts:<raw FTS5 query>`: passed to SQLite as is.

use crate::error::{LibraryError, Result};
use crate::model::{Filter, SearchHit};
use crate::store::{filter_sql, HEX_GRAM};
use crate::Library;
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};

/// Column weights for bm25, in the FTS table's column order:
/// name, description, tags, comm, payload_text, payload_hex.
const BM25: &str = "bm25(packets_fts, 10.0, 4.0, 6.0, 3.0, 1.0, 1.0)";

/// A quoted FTS5 string (a phrase of the word's tokens).
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn is_hex_byte(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The bytes of a hex string (`474554`, `47:45:54`, `47 45 54`: [`pidcap_packet::hex::parse`]); None when empty.
fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    pidcap_packet::hex::parse(s).ok().filter(|b| !b.is_empty())
}

/// The FTS5 query for a byte sequence in the hex column (see
/// [`crate::store::payload_hex`]): the phrase of its overlapping trigrams, or
/// a prefix for 1 or 2 bytes.
fn hex_match(bytes: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    if bytes.len() < HEX_GRAM {
        return format!("payload_hex : \"{}\"*", hex(bytes));
    }
    let grams: Vec<String> = bytes.windows(HEX_GRAM).map(hex).collect();
    format!("payload_hex : \"{}\"", grams.join(" "))
}

/// A query, parsed.
enum Parsed {
    /// `fts:...`, as given.
    Raw(String),
    /// A byte sequence.
    Hex(Vec<u8>),
    /// Words: (the column asked for, the word, a prefix).
    Words(Vec<(Option<&'static str>, String, bool)>),
}

/// The metadata and text columns a word without a column is looked for in.
const WORD_COLUMNS: [&str; 5] = ["name", "description", "tags", "comm", "payload_text"];

fn parse(query: &str) -> Result<Parsed> {
    let q = query.trim();
    if q.is_empty() {
        return Err(LibraryError::Invalid("empty search query".into()));
    }
    if let Some(raw) = q.strip_prefix("fts:") {
        return Ok(Parsed::Raw(raw.trim().to_string()));
    }
    let hex = q.strip_prefix("hex:").or_else(|| q.strip_prefix("0x"));
    if let Some(h) = hex {
        return hex_bytes(h)
            .map(Parsed::Hex)
            .ok_or_else(|| LibraryError::Invalid(format!("{q:?} is not a byte sequence in hex")));
    }
    let words: Vec<&str> = q.split_whitespace().collect();
    // `47 45 54`: at least two byte-sized hex tokens, one of them with a digit.
    if words.len() >= 2
        && words.iter().all(|w| is_hex_byte(w))
        && words.iter().any(|w| w.bytes().any(|b| b.is_ascii_digit()))
    {
        return Ok(Parsed::Hex(hex_bytes(q).unwrap_or_default()));
    }
    let mut terms = Vec::new();
    for w in words {
        let (col, word) = match w.split_once(':') {
            Some(("name", v)) => (Some("name"), v),
            Some(("description", v)) => (Some("description"), v),
            Some(("tag", v)) | Some(("tags", v)) => (Some("tags"), v),
            Some(("comm", v)) | Some(("process", v)) => (Some("comm"), v),
            Some(("payload", v)) => (Some("payload_text"), v),
            _ => (None, w),
        };
        let (word, prefix) = match word.strip_suffix('*') {
            Some(w) => (w, true),
            None => (word, false),
        };
        if !word.is_empty() {
            terms.push((col, word.to_string(), prefix));
        }
    }
    if terms.is_empty() {
        return Err(LibraryError::Invalid(format!("nothing to search for in {q:?}")));
    }
    Ok(Parsed::Words(terms))
}

/// One word's term; `per_column`: as an OR of one phrase per column (see [`Plan::ranking`]).
fn word_term(col: Option<&str>, word: &str, prefix: bool, per_column: bool) -> String {
    let mut t = quote(word);
    if prefix {
        t.push('*');
    }
    match col {
        Some(c) => format!("{c} : {t}"),
        // Not the hex column: `45` should not match every packet holding byte 0x45.
        None if !per_column => format!("{{{}}} : {t}", WORD_COLUMNS.join(" ")),
        None => format!("({})", WORD_COLUMNS.map(|c| format!("{c} : {t}")).join(" OR ")),
    }
}

/// Translate a user query into an FTS5 MATCH expression on the full-text
/// table (`packets_fts`). A 1- or 2-byte sequence is searched in the
/// byte-presence index instead (see [`Library::search_results`]); this gives
/// its (slow) prefix form on the trigram column.
pub fn build_match(query: &str) -> Result<String> {
    Ok(match parse(query)? {
        Parsed::Raw(r) => r,
        Parsed::Hex(b) => hex_match(&b),
        Parsed::Words(w) => w.iter().map(|(c, w, p)| word_term(*c, w, *p, false)).collect::<Vec<_>>().join(" AND "),
    })
}

/// Where a query is looked up and how it is ranked.
struct Plan {
    /// The FTS5 table: `packets_fts`, or `packets_bytes` for 1 or 2 bytes.
    table: &'static str,
    /// The MATCH expression that selects the packets.
    matching: String,
    /// The same packets, as bm25 should score them: a word without a column
    /// is an OR of one phrase per column, so that each column has its own
    /// document frequency. As one phrase over all columns, a word in every
    /// packet's name (a sequence saved as "curl GET") had the same, null,
    /// weight in the one payload that holds it, and the packets were ordered
    /// by their length alone (the request came 11th of 12).
    ranking: String,
    bm25: &'static str,
}

fn plan(query: &str) -> Result<Plan> {
    let fts = |matching: String, ranking: String| Plan { table: "packets_fts", matching, ranking, bm25: BM25 };
    Ok(match parse(query)? {
        Parsed::Raw(r) => fts(r.clone(), r),
        // One term of the byte-presence index (schema 5): `"4745"`.
        Parsed::Hex(b) if b.len() < HEX_GRAM => {
            let term = format!("\"{}\"", b.iter().map(|x| format!("{x:02x}")).collect::<String>());
            Plan { table: "packets_bytes", matching: term.clone(), ranking: term, bm25: "bm25(packets_bytes)" }
        }
        Parsed::Hex(b) => fts(hex_match(&b), hex_match(&b)),
        Parsed::Words(w) => {
            let join = |per_column| w.iter().map(|(c, w, p)| word_term(*c, w, *p, per_column)).collect::<Vec<_>>();
            fts(join(false).join(" AND "), join(true).join(" AND "))
        }
    })
}

/// A full-text query matching at most this many packets is ranked by bm25
/// over all its matches; one matching more is ranked (or ordered) among its
/// newest this-many matches only. bm25 costs about 4 µs a match, so this bounds
/// a search to some tens of milliseconds however common its words are.
pub const SEARCH_WINDOW: usize = 4_000;

/// Matches are counted up to this many. Above it bm25 is not used at all
/// (its per-term document counts alone scan every match) and the window is
/// ordered newest first.
pub const RANKED_MATCHES_MAX: usize = 150_000;

/// Search hits and how they were chosen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    /// Packets the full-text query matches (before the filter), counted up
    /// to [`RANKED_MATCHES_MAX`] + 1; see `matches_exact`.
    pub matches: u64,
    /// False when there are more than `matches`.
    pub matches_exact: bool,
    /// `Some(n)`: too many matches; only the newest `n` were considered.
    pub window: Option<usize>,
    /// True: best first by bm25 (`score`); false: newest first (`score` 0).
    pub ranked: bool,
}

impl Library {
    /// Full-text search combined with `filter`, best first (bm25), at most
    /// `limit` (0: every match, all ranked). See [`Library::search_results`]
    /// for how a query matching many packets is handled.
    pub fn search(&self, query: &str, filter: &Filter, limit: usize) -> Result<Vec<SearchHit>> {
        Ok(self.search_results(query, filter, limit)?.hits)
    }

    /// Full-text search combined with `filter`, at most `limit` hits (0: every
    /// match, all ranked by bm25, however slow).
    ///
    /// With a limit, the query's matches are first counted cheaply (rowids in
    /// index order, up to [`RANKED_MATCHES_MAX`] + 1). Up to [`SEARCH_WINDOW`]
    /// matches are all ranked by bm25. Beyond that only the newest
    /// [`SEARCH_WINDOW`] matches are candidates (the filter applies within
    /// them): ranked by bm25 while the count is at most [`RANKED_MATCHES_MAX`],
    /// newest first above it. [`SearchResults`] says which happened.
    pub fn search_results(&self, query: &str, filter: &Filter, limit: usize) -> Result<SearchResults> {
        let Plan { table, matching: m, ranking, bm25 } = plan(query)?;
        if table == "packets_bytes" && self.schema < 5 {
            return Err(LibraryError::Invalid(format!(
                "a 1- or 2-byte hex search needs the byte index of schema 5; {} has version {} (opened read-only): open it read-write once to migrate",
                self.path.display(),
                self.schema
            )));
        }
        let (window_size, ranked_max) = self.search_limits;
        let (matches, matches_exact, window) = if limit == 0 {
            (0, false, None)
        } else {
            let n: i64 = self
                .conn
                .prepare_cached(&format!(
                    "SELECT count(*) FROM (SELECT rowid FROM {table} WHERE {table} MATCH ? LIMIT ?)"
                ))?
                .query_row(params![m, ranked_max as i64 + 1], |r| r.get(0))
                .map_err(bad_query)?;
            let n = n as u64;
            (n, n <= ranked_max as u64, (n > window_size as u64).then_some(window_size))
        };
        let ranked = window.is_none() || matches_exact;
        // The oldest rowid of the window: the SEARCH_WINDOW-th newest match.
        let lowest: Option<i64> = match window {
            Some(w) => self
                .conn
                .prepare_cached(&format!(
                    "SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?"
                ))?
                .query_row(params![m, w as i64 - 1], |r| r.get(0))
                .optional()
                .map_err(bad_query)?,
            None => None,
        };
        // Only the ids and scores first: reading whole rows of every candidate costs more than ranking them.
        let join = *filter != Filter::default();
        let mut sql = format!(
            "SELECT {table}.rowid, {} FROM {table}{} WHERE {table} MATCH ?",
            if ranked { bm25 } else { "0.0" },
            if join { format!(" JOIN packets p ON p.id = {table}.rowid") } else { String::new() }
        );
        let mut args = vec![Value::Text(if ranked { ranking } else { m })];
        if let Some(lo) = lowest {
            sql.push_str(&format!(" AND {table}.rowid >= ?"));
            args.push(Value::Integer(lo));
        }
        filter_sql(filter, &mut sql, &mut args);
        // Equal scores: the newest first.
        sql.push_str(&if ranked {
            format!(" ORDER BY 2, {table}.rowid DESC")
        } else {
            format!(" ORDER BY {table}.rowid DESC")
        });
        sql.push_str(" LIMIT ?");
        args.push(Value::Integer(if limit == 0 { -1 } else { limit as i64 }));
        let scored: Vec<(i64, f64)> = {
            let mut st = self.conn.prepare(&sql)?;
            let rows =
                st.query_map(rusqlite::params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?))).map_err(bad_query)?;
            rows.collect::<rusqlite::Result<_>>().map_err(bad_query)?
        };
        let hits = scored
            .into_iter()
            .map(|(id, score)| Ok(SearchHit { score, packet: self.packet(id)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(SearchResults { hits, matches, matches_exact, window, ranked })
    }
}

/// FTS5 syntax errors become a readable complaint about the query.
fn bad_query(e: rusqlite::Error) -> LibraryError {
    // SQLITE_ERROR (plain code 1) from a MATCH is the query's fault; busy, I/O... are not.
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        if f.extended_code == 1 {
            return LibraryError::Invalid(format!("bad search query: {}", msg.as_deref().unwrap_or("syntax error")));
        }
    }
    e.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_translate() {
        assert_eq!(build_match("47 45 54").unwrap(), "payload_hex : \"474554\"");
        assert_eq!(build_match("hex:474554AB").unwrap(), "payload_hex : \"474554 4554ab\"");
        assert_eq!(build_match("0x4745").unwrap(), "payload_hex : \"4745\"*");
        assert_eq!(build_match("hex:47").unwrap(), "payload_hex : \"47\"*");
        assert_eq!(build_match("tag:x").unwrap(), "tags : \"x\"");
        assert_eq!(build_match("a\"b").unwrap(), "{name description tags comm payload_text} : \"a\"\"b\"");
        assert!(build_match("hex:4").is_err());
        assert!(build_match("   ").is_err());
    }
}
