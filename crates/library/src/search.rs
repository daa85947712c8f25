//! Full-text search: turning what a user types into an FTS5 query, and running
//! it together with metadata filters, ranked by bm25.
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
use crate::store::{filter_sql, row_to_packet, COLS};
use crate::Library;
use rusqlite::types::Value;

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

/// Bytes of a contiguous hex string, as space-separated lower-case pairs.
fn hex_phrase(s: &str) -> Option<String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
    if s.is_empty() || !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let pairs: Vec<String> = (0..s.len()).step_by(2).map(|i| s[i..i + 2].to_ascii_lowercase()).collect();
    Some(pairs.join(" "))
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
        return hex_phrase(h)
            .map(|p| format!("payload_hex : \"{p}\""))
            .ok_or_else(|| LibraryError::Invalid(format!("{q:?} is not a byte sequence in hex")));
    }
    let words: Vec<&str> = q.split_whitespace().collect();
    // `47 45 54`: at least two byte-sized hex tokens, one of them with a digit.
    if words.len() >= 2 && words.iter().all(|w| is_hex_byte(w)) && words.iter().any(|w| w.bytes().any(|b| b.is_ascii_digit()))
    {
        return Ok(format!("payload_hex : \"{}\"", words.join(" ").to_ascii_lowercase()));
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

impl Library {
    /// Full-text search combined with `filter`, best first (bm25), at most `limit` (0: no limit).
    pub fn search(&self, query: &str, filter: &Filter, limit: usize) -> Result<Vec<SearchHit>> {
        let m = build_match(query)?;
        let mut sql = format!(
            "SELECT {COLS}, {BM25} AS score FROM packets_fts JOIN packets p ON p.id = packets_fts.rowid \
             WHERE packets_fts MATCH ?"
        );
        let mut args = vec![Value::Text(m)];
        filter_sql(filter, &mut sql, &mut args);
        sql.push_str(" ORDER BY score LIMIT ?");
        args.push(Value::Integer(if limit == 0 { -1 } else { limit as i64 }));
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map(rusqlite::params_from_iter(args), |r| Ok((row_to_packet(r)?, r.get::<_, f64>(16)?)));
        let mut hits = Vec::new();
        for row in rows.map_err(bad_query)? {
            let (packet, score) = row.map_err(bad_query)?;
            hits.push(SearchHit { score, packet });
        }
        for h in &mut hits {
            h.packet.tags = self.packet(h.packet.id)?.tags;
        }
        Ok(hits)
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
        assert_eq!(build_match("47 45 54").unwrap(), "payload_hex : \"47 45 54\"");
        assert_eq!(build_match("hex:474554").unwrap(), "payload_hex : \"47 45 54\"");
        assert_eq!(build_match("0x4745").unwrap(), "payload_hex : \"47 45\"");
        assert_eq!(build_match("tag:x").unwrap(), "tags : \"x\"");
        assert_eq!(build_match("a\"b").unwrap(), "{name description tags comm payload_text} : \"a\"\"b\"");
        assert!(build_match("hex:4").is_err());
        assert!(build_match("   ").is_err());
    }
}
