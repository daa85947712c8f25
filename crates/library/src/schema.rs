//! The database schema and its versioned migrations (`PRAGMA user_version`).
//!
//! Migration `n` (1-based) turns a version `n-1` database into version `n`;
//! each runs in its own transaction together with the `user_version` bump, so
//! a crash mid-migration leaves the previous version intact. Never edit a
//! released migration: append a new one.

use crate::error::{LibraryError, Result};
use rusqlite::Connection;
use std::path::Path;

/// Version 1: packets, tags and the full-text index.
const V1: &str = r#"
CREATE TABLE packets (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL DEFAULT '',
    description   TEXT    NOT NULL DEFAULT '',
    saved_at_ns   INTEGER NOT NULL,
    source        TEXT    NOT NULL DEFAULT '',
    capture_id    INTEGER NOT NULL DEFAULT 0,
    timestamp_ns  INTEGER NOT NULL,
    pid           INTEGER NOT NULL,
    comm          TEXT    NOT NULL,
    socket_cookie INTEGER NOT NULL DEFAULT 0,
    direction     TEXT    NOT NULL CHECK (direction IN ('in', 'out')),
    verdict       TEXT    NOT NULL DEFAULT 'pass' CHECK (verdict IN ('pass', 'blocked')),
    rule          INTEGER,
    ip_version    INTEGER NOT NULL,
    protocol      INTEGER NOT NULL,
    local_addr    TEXT    NOT NULL,
    local_port    INTEGER NOT NULL,
    remote_addr   TEXT    NOT NULL,
    remote_port   INTEGER NOT NULL,
    orig_len      INTEGER NOT NULL,
    data          BLOB    NOT NULL,
    payload       BLOB    NOT NULL
);
CREATE INDEX packets_by_time ON packets(timestamp_ns);
CREATE TABLE tags (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE
);
CREATE TABLE packet_tags (
    packet_id INTEGER NOT NULL REFERENCES packets(id) ON DELETE CASCADE,
    tag_id    INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
    PRIMARY KEY (packet_id, tag_id)
) WITHOUT ROWID;
CREATE INDEX packet_tags_by_tag ON packet_tags(tag_id, packet_id);
CREATE VIRTUAL TABLE packets_fts USING fts5(
    name, description, tags, comm, payload_text, payload_hex,
    content = '', contentless_delete = 1
);
"#;

/// Version 2: synthesised packets (from DioProcess `.dpp` v1) and sequences.
const V2: &str = r#"
ALTER TABLE packets ADD COLUMN synthesized INTEGER NOT NULL DEFAULT 0;
CREATE TABLE sequences (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL DEFAULT '',
    description   TEXT    NOT NULL DEFAULT '',
    created_at_ns INTEGER NOT NULL
);
CREATE TABLE sequence_packets (
    sequence_id INTEGER NOT NULL REFERENCES sequences(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    packet_id   INTEGER NOT NULL REFERENCES packets(id) ON DELETE CASCADE,
    PRIMARY KEY (sequence_id, position)
) WITHOUT ROWID;
CREATE INDEX sequence_packets_by_packet ON sequence_packets(packet_id);
"#;

/// Version 3: the hex column indexes overlapping byte trigrams (`474554` for
/// the bytes at offset i, i+1, i+2; shorter at the end of the payload) instead
/// of single bytes, so that a byte-sequence search starts from rare tokens.
/// The index is contentless, so it is rebuilt from the packets
/// ([`crate::store::rebuild_index`]) in the migration's transaction.
const V3: &str = r#"
DROP TABLE packets_fts;
CREATE VIRTUAL TABLE packets_fts USING fts5(
    name, description, tags, comm, payload_text, payload_hex,
    content = '', contentless_delete = 1
);
"#;

/// Version 4: TLS plaintext records (`CapturedPacket::tls`): the library
/// that carried the plaintext (`openssl`, `gnutls`, `nss`) and the thread
/// that made the call; both NULL for a packet (every row of an older database).
/// The record's plaintext is its payload, indexed like any payload.
const V4: &str = r#"
ALTER TABLE packets ADD COLUMN tls_library TEXT;
ALTER TABLE packets ADD COLUMN tls_tid INTEGER;
"#;

// -- 1- and 2-byte hex queries (issue 13) --
/// Version 5: a byte-presence index for 1- and 2-byte hex queries, which on
/// the trigram column are prefix queries over thousands of terms (1-1.6 s at
/// 1,000,000 packets). One row per packet, its tokens each distinct byte
/// (`47`) and each distinct pair of consecutive bytes (`4745`) of the payload
/// ([`crate::store::payload_bytes`]), `detail=none` (no positions: presence is
/// all a 1- or 2-byte query needs), so such a query is one term. A trigger
/// keeps it in step with every delete; [`crate::store::rebuild_bytes_index`]
/// fills it from the packets in the migration's transaction.
const V5: &str = r#"
CREATE VIRTUAL TABLE packets_bytes USING fts5(
    bytes, content = '', contentless_delete = 1, detail = none
);
CREATE TRIGGER packets_bytes_delete AFTER DELETE ON packets BEGIN
    DELETE FROM packets_bytes WHERE rowid = old.id;
END;
"#;

/// Work a migration does after its SQL (rebuilding derived data).
type Step = fn(&rusqlite::Transaction<'_>) -> Result<()>;

const MIGRATIONS: &[(&str, Option<Step>)] = &[
    (V1, None),
    (V2, None),
    (V3, Some(crate::store::rebuild_index)),
    (V4, None),
    (V5, Some(crate::store::rebuild_bytes_index)),
];

/// The oldest schema a read-only open reads without migrating: version 5
/// only added the byte-presence index (searches that need it say so).
pub const READ_ONLY_FROM: i64 = 4;

/// The schema version this build writes; older databases are migrated on open.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The SQL of migration `version` (1-based), for tests that build old databases.
#[doc(hidden)]
pub fn migration_sql(version: i64) -> Option<&'static str> {
    usize::try_from(version).ok()?.checked_sub(1).and_then(|i| MIGRATIONS.get(i)).map(|m| m.0)
}

/// The database's schema version.
pub(crate) fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Bring the database up to [`SCHEMA_VERSION`], one transaction per step.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(LibraryError::TooNew { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    for (i, (sql, step)) in MIGRATIONS.iter().enumerate().skip(found.max(0) as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while this one waited for the lock.
        if version(&tx)? > i as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        if let Some(step) = step {
            step(&tx)?;
        }
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
