//! Full-text search: turning what a user types into an FTS5 query, and running
//! it together with metadata filters, ranked by bm25 (within a bounded window
//! of the newest matches when a query matches very many packets).
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

/// Translate a user query into an FTS5 MATCH expression.
pub fn build_match(query: &str) -> Result<String> {
    let q = query.trim();
    if q.is_empty() {
        return Err(LibraryError::Invalid("empty search query".into()));
    }
    if let Some(raw) = q.strip_prefix("fts:") {
        return Ok(raw.trim().to_string());
    }
    let hex = q.strip_prefix("hex:").or_else(|| q.strip_prefix("0x"));
    if let Some(h) = hex {
        return hex_bytes(h)
            .map(|b| hex_match(&b))
            .ok_or_else(|| LibraryError::Invalid(format!("{q:?} is not a byte sequence in hex")));
    }
    let words: Vec<&str> = q.split_whitespace().collect();
    // `47 45 54`: at least two byte-sized hex tokens, one of them with a digit.
    if words.len() >= 2
        && words.iter().all(|w| is_hex_byte(w))
        && words.iter().any(|w| w.bytes().any(|b| b.is_ascii_digit()))
    {
        return Ok(hex_match(&hex_bytes(q).unwrap_or_default()));
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
        if word.is_empty() {
            continue;
        }
        let mut t = quote(word);
        if prefix {
            t.push('*');
        }
        terms.push(match col {
            Some(c) => format!("{c} : {t}"),
            // Not the hex column: `45` should not match every packet holding byte 0x45.
            None => format!("{{name description tags comm payload_text}} : {t}"),
        });
    }
    if terms.is_empty() {
        return Err(LibraryError::Invalid(format!("nothing to search for in {q:?}")));
    }
    Ok(terms.join(" AND "))
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
        let m = build_match(query)?;
        let (window_size, ranked_max) = self.search_limits;
        let (matches, matches_exact, window) = if limit == 0 {
            (0, false, None)
        } else {
            let n: i64 = self
                .conn
                .prepare_cached(
                    "SELECT count(*) FROM (SELECT rowid FROM packets_fts WHERE packets_fts MATCH ? LIMIT ?)",
                )?
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
                .prepare_cached(
                    "SELECT rowid FROM packets_fts WHERE packets_fts MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                )?
                .query_row(params![m, w as i64 - 1], |r| r.get(0))
                .optional()
                .map_err(bad_query)?,
            None => None,
        };
        // Only the ids and scores first: reading whole rows of every candidate costs more than ranking them.
        let join = *filter != Filter::default();
        let mut sql = format!(
            "SELECT packets_fts.rowid, {} FROM packets_fts{} WHERE packets_fts MATCH ?",
            if ranked { BM25 } else { "0.0" },
            if join { " JOIN packets p ON p.id = packets_fts.rowid" } else { "" }
        );
        let mut args = vec![Value::Text(m)];
        if let Some(lo) = lowest {
            sql.push_str(" AND packets_fts.rowid >= ?");
            args.push(Value::Integer(lo));
        }
        filter_sql(filter, &mut sql, &mut args);
        sql.push_str(if ranked { " ORDER BY 2" } else { " ORDER BY packets_fts.rowid DESC" });
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
