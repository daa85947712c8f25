//! Saving, reading, listing, editing and deleting packets, tags and
//! sequences; each public write is one transaction and keeps the full-text
//! index in step with the rows.

use crate::error::{LibraryError, Result};
use crate::model::{Filter, MetaEdit, NewPacket, PacketId, SavedPacket, Sequence, SequenceId, TagCount};
use crate::{now_ns, Library};
use pidcap_packet::tls::{TlsInfo, TlsLibrary};
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use rusqlite::types::Value;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use std::fmt::Write as _;

/// Payload bytes indexed as text; a word past this is not found by search.
pub const FTS_TEXT_BYTES: usize = 65_536;
/// Payload bytes indexed as hex; a byte sequence past this is not found by search.
pub const FTS_HEX_BYTES: usize = 4_096;

/// Columns read into a [`SavedPacket`] by [`row_to_packet`], from table alias `p`.
pub(crate) const COLS: &str = "p.id, p.name, p.description, p.saved_at_ns, p.source, p.synthesized, p.capture_id, \
     p.timestamp_ns, p.pid, p.comm, p.socket_cookie, p.direction, p.verdict, p.rule, p.orig_len, p.data, \
     p.tls_library, p.tls_tid";

pub(crate) fn row_to_packet(r: &Row<'_>) -> rusqlite::Result<SavedPacket> {
    // Written by `insert_packet` as `Direction::as_str` / `Verdict::as_str`; anything else reads as the default.
    let direction = r.get_ref(11)?.as_str()?.parse().unwrap_or(Direction::Outbound);
    let verdict = r.get_ref(12)?.as_str()?.parse().unwrap_or(Verdict::Pass);
    let mut packet = CapturedPacket::new(
        r.get::<_, i64>(6)? as u64,
        r.get::<_, i64>(7)? as u64,
        r.get::<_, i64>(8)? as u32,
        r.get(9)?,
        r.get::<_, i64>(10)? as u64,
        direction,
        verdict,
        r.get::<_, i64>(14)? as u32,
        r.get(15)?,
    );
    packet.rule = r.get::<_, Option<i64>>(13)?.map(|v| v as u16);
    // Written by `insert_packet` as `TlsLibrary::as_str`.
    let library = r.get::<_, Option<String>>(16)?.and_then(|l| l.parse::<TlsLibrary>().ok());
    if let Some(library) = library {
        packet.tls = Some(TlsInfo { tid: r.get::<_, Option<i64>>(17)?.unwrap_or(0) as u32, library });
        // A record's true length is in orig_len (as `CapturedPacket::tls_record` builds it).
        packet.decoded.payload_size = packet.orig_len.saturating_sub(packet.decoded.payload_offset);
    }
    Ok(SavedPacket {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        tags: Vec::new(),
        saved_at_ns: r.get::<_, i64>(3)? as u64,
        source: r.get(4)?,
        synthesized: r.get(5)?,
        packet,
    })
}

/// Check and normalise a tag name: trimmed, 1..=128 characters, no control
/// characters and no commas (the CLI separates tags with commas).
pub(crate) fn clean_tag(tag: &str) -> Result<String> {
    let t = tag.trim();
    if t.is_empty() {
        return Err(LibraryError::Invalid("a tag cannot be empty".into()));
    }
    if t.chars().count() > crate::MAX_TAG_CHARS {
        return Err(LibraryError::Invalid(format!("tag {t:?} is longer than {} characters", crate::MAX_TAG_CHARS)));
    }
    if t.chars().any(|c| c.is_control() || c == ',') {
        return Err(LibraryError::Invalid(format!("tag {t:?} contains a comma or a control character")));
    }
    Ok(t.to_string())
}

/// Printable ASCII of the payload, everything else turned into spaces (word breaks for the index).
fn payload_text(payload: &[u8]) -> String {
    pidcap_packet::ascii::lossy(&payload[..payload.len().min(FTS_TEXT_BYTES)], ' ')
}

/// Bytes per hex token: each token is the payload's bytes at offsets i, i+1
/// and i+2 (`474554`), the last two tokens shorter, so that a sequence of n >= 3
/// bytes is a phrase of n-2 tokens (each one rare next to a single byte value)
/// and a sequence of 1 or 2 bytes is a prefix query.
pub(crate) const HEX_GRAM: usize = 3;

/// `474554 455420 5420 20`: one token per payload offset (see [`HEX_GRAM`]).
pub(crate) fn payload_hex(payload: &[u8]) -> String {
    let p = &payload[..payload.len().min(FTS_HEX_BYTES)];
    let mut s = String::with_capacity(p.len() * (2 * HEX_GRAM + 1));
    for i in 0..p.len() {
        for b in &p[i..(i + HEX_GRAM).min(p.len())] {
            let _ = write!(s, "{b:02x}");
        }
        s.push(' ');
    }
    s
}

// -- 1- and 2-byte hex queries (issue 13) --
/// The tokens of the byte-presence index (`packets_bytes`, schema 5): each
/// distinct byte of the payload's first [`FTS_HEX_BYTES`] as 2 hex digits
/// and each distinct pair of consecutive bytes as 4 (`47 4745 45 4554 ...`),
/// so that a 1- or 2-byte query is one term whose list holds each packet once.
pub(crate) fn payload_bytes(payload: &[u8]) -> String {
    let p = &payload[..payload.len().min(FTS_HEX_BYTES)];
    let mut one = [false; 256];
    let mut two = std::collections::HashSet::with_capacity(p.len());
    let mut s = String::with_capacity(p.len() * 8);
    for (i, &b) in p.iter().enumerate() {
        if !std::mem::replace(&mut one[b as usize], true) {
            let _ = write!(s, "{b:02x} ");
        }
        if let Some(&next) = p.get(i + 1) {
            if two.insert((b, next)) {
                let _ = write!(s, "{b:02x}{next:02x} ");
            }
        }
    }
    s
}

/// Write packet `id`'s row of the byte-presence index.
fn index_bytes(tx: &Transaction<'_>, id: PacketId, payload: &[u8]) -> Result<()> {
    tx.prepare_cached("INSERT INTO packets_bytes(rowid, bytes) VALUES (?, ?)")?
        .execute(params![id, payload_bytes(payload)])?;
    Ok(())
}

/// Fill the (new, empty) byte-presence index from every packet (schema 5's migration).
pub(crate) fn rebuild_bytes_index(tx: &Transaction<'_>) -> Result<()> {
    let mut read = tx.prepare("SELECT id, payload FROM packets ORDER BY id")?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let payload: Vec<u8> = r.get(1)?;
        index_bytes(tx, r.get(0)?, &payload)?;
    }
    Ok(())
}

/// Refill the (empty) full-text index from every packet; used by the schema
/// migration that changes the index layout.
pub(crate) fn rebuild_index(tx: &Transaction<'_>) -> Result<()> {
    let mut read = tx.prepare(
        "SELECT p.id, p.name, p.description, p.comm, p.payload, \
         (SELECT group_concat(t.name, ' ') FROM packet_tags pt JOIN tags t ON t.id = pt.tag_id WHERE pt.packet_id = p.id) \
         FROM packets p ORDER BY p.id",
    )?;
    let mut write = tx.prepare(
        "INSERT INTO packets_fts(rowid, name, description, tags, comm, payload_text, payload_hex) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let payload: Vec<u8> = r.get(4)?;
        write.execute(params![
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(5)?.unwrap_or_default(),
            r.get::<_, String>(3)?,
            payload_text(&payload),
            payload_hex(&payload)
        ])?;
    }
    Ok(())
}

/// SQL conditions (on alias `p`) and their parameters for a filter.
pub(crate) fn filter_sql(f: &Filter, sql: &mut String, args: &mut Vec<Value>) {
    if let Some(p) = f.protocol {
        sql.push_str(" AND p.protocol = ?");
        args.push(Value::Integer(p.number().into()));
    }
    if let Some(port) = f.port {
        sql.push_str(" AND (p.local_port = ? OR p.remote_port = ?)");
        args.push(Value::Integer(port.into()));
        args.push(Value::Integer(port.into()));
    }
    if let Some(d) = f.direction {
        sql.push_str(" AND p.direction = ?");
        args.push(Value::Text(d.as_str().into()));
    }
    if let Some(tag) = &f.tag {
        sql.push_str(
            " AND p.id IN (SELECT pt.packet_id FROM packet_tags pt JOIN tags t ON t.id = pt.tag_id WHERE t.name = ?)",
        );
        args.push(Value::Text(tag.trim().into()));
    }
    if let Some(pid) = f.pid {
        sql.push_str(" AND p.pid = ?");
        args.push(Value::Integer(pid.into()));
    }
    if let Some(t) = f.since_ns {
        sql.push_str(" AND p.timestamp_ns >= ?");
        args.push(Value::Integer(t as i64));
    }
    if let Some(t) = f.until_ns {
        sql.push_str(" AND p.timestamp_ns <= ?");
        args.push(Value::Integer(t as i64));
    }
}

/// Tags of one packet, sorted.
fn tags_of(tx: &rusqlite::Connection, id: PacketId) -> Result<Vec<String>> {
    let mut st = tx.prepare_cached(
        "SELECT t.name FROM packet_tags pt JOIN tags t ON t.id = pt.tag_id WHERE pt.packet_id = ? ORDER BY t.name COLLATE NOCASE",
    )?;
    let rows = st.query_map([id], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Attach a tag (creating it) to a packet.
fn attach_tag(tx: &Transaction<'_>, id: PacketId, tag: &str) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO tags(name) VALUES (?)")?.execute([tag])?;
    tx.prepare_cached("INSERT OR IGNORE INTO packet_tags(packet_id, tag_id) SELECT ?, id FROM tags WHERE name = ?")?
        .execute(params![id, tag])?;
    Ok(())
}

/// Rewrite the full-text row of a packet from its current state.
fn reindex(tx: &Transaction<'_>, id: PacketId) -> Result<()> {
    tx.prepare_cached("DELETE FROM packets_fts WHERE rowid = ?")?.execute([id])?;
    let row = tx
        .prepare_cached("SELECT name, description, comm, payload FROM packets WHERE id = ?")?
        .query_row([id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Vec<u8>>(3)?))
        })
        .optional()?;
    let Some((name, description, comm, payload)) = row else { return Ok(()) };
    let tags = tags_of(tx, id)?.join(" ");
    tx.prepare_cached(
        "INSERT INTO packets_fts(rowid, name, description, tags, comm, payload_text, payload_hex) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![id, name, description, tags, comm, payload_text(&payload), payload_hex(&payload)])?;
    Ok(())
}

/// Drop tags no packet carries any more.
fn drop_unused_tags(tx: &Transaction<'_>) -> Result<()> {
    tx.execute("DELETE FROM tags WHERE id NOT IN (SELECT tag_id FROM packet_tags)", [])?;
    Ok(())
}

/// Insert one packet (and its tags and index row) inside a transaction.
pub(crate) fn insert_packet(tx: &Transaction<'_>, p: &NewPacket) -> Result<PacketId> {
    let c = &p.packet;
    let d = &c.decoded;
    let tags = p.tags.iter().map(|t| clean_tag(t)).collect::<Result<Vec<_>>>()?;
    tx.prepare_cached(
        "INSERT INTO packets(name, description, saved_at_ns, source, synthesized, capture_id, timestamp_ns, pid, comm, \
         socket_cookie, direction, verdict, rule, ip_version, protocol, local_addr, local_port, remote_addr, remote_port, \
         orig_len, data, payload, tls_library, tls_tid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    )?
    .execute(params![
        p.name,
        p.description,
        p.saved_at_ns.unwrap_or_else(now_ns) as i64,
        p.source,
        p.synthesized,
        c.id as i64,
        c.timestamp_ns as i64,
        c.pid,
        c.comm,
        c.socket_cookie as i64,
        c.direction.as_str(),
        c.verdict.as_str(),
        c.rule,
        d.ip_version,
        d.protocol.number(),
        d.local_addr.to_string(),
        d.local_port,
        d.remote_addr.to_string(),
        d.remote_port,
        c.orig_len,
        c.data,
        c.payload(),
        c.tls.map(|t| t.library.as_str()),
        c.tls.map(|t| t.tid),
    ])?;
    let id = tx.last_insert_rowid();
    for t in &tags {
        attach_tag(tx, id, t)?;
    }
    reindex(tx, id)?;
    index_bytes(tx, id, c.payload())?;
    Ok(id)
}

/// Insert a sequence of already-inserted packets inside a transaction.
pub(crate) fn insert_sequence(
    tx: &Transaction<'_>,
    name: &str,
    description: &str,
    created_at_ns: Option<u64>,
    ids: &[PacketId],
) -> Result<SequenceId> {
    tx.execute(
        "INSERT INTO sequences(name, description, created_at_ns) VALUES (?, ?, ?)",
        params![name, description, created_at_ns.unwrap_or_else(now_ns) as i64],
    )?;
    let sid = tx.last_insert_rowid();
    insert_members(tx, sid, 0, ids)?;
    Ok(sid)
}

/// Put packets into a sequence at positions `first`, `first + 1`...
fn insert_members(tx: &Transaction<'_>, sid: SequenceId, first: i64, ids: &[PacketId]) -> Result<()> {
    let mut st =
        tx.prepare_cached("INSERT INTO sequence_packets(sequence_id, position, packet_id) VALUES (?, ?, ?)")?;
    for (pos, id) in ids.iter().enumerate() {
        st.execute(params![sid, first + pos as i64, id]).map_err(|e| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => LibraryError::NotFound { what: "packet", id: *id },
            _ => e.into(),
        })?;
    }
    Ok(())
}

impl Library {
    /// Run `f` in one write transaction (BEGIN IMMEDIATE); roll back on error.
    pub(crate) fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Save one packet; returns its library id once committed.
    pub fn save(&mut self, packet: &NewPacket) -> Result<PacketId> {
        self.write(|tx| insert_packet(tx, packet))
    }

    /// Save several packets in one transaction (all or nothing); ids in order.
    pub fn save_many(&mut self, packets: &[NewPacket]) -> Result<Vec<PacketId>> {
        self.write(|tx| packets.iter().map(|p| insert_packet(tx, p)).collect())
    }

    /// One packet with its tags, or `None`.
    pub fn get(&self, id: PacketId) -> Result<Option<SavedPacket>> {
        let sql = format!("SELECT {COLS} FROM packets p WHERE p.id = ?");
        let p = self.conn.prepare_cached(&sql)?.query_row([id], row_to_packet).optional()?;
        match p {
            Some(mut p) => {
                p.tags = tags_of(&self.conn, id)?;
                Ok(Some(p))
            }
            None => Ok(None),
        }
    }

    /// One packet, or [`LibraryError::NotFound`].
    pub fn packet(&self, id: PacketId) -> Result<SavedPacket> {
        self.get(id)?.ok_or(LibraryError::NotFound { what: "packet", id })
    }

    /// Packets matching `filter`, by id, `limit` from `offset` (`limit` 0: all).
    pub fn list(&self, filter: &Filter, limit: usize, offset: usize) -> Result<Vec<SavedPacket>> {
        let mut sql = format!("SELECT {COLS} FROM packets p WHERE 1");
        let mut args = Vec::new();
        filter_sql(filter, &mut sql, &mut args);
        sql.push_str(" ORDER BY p.id LIMIT ? OFFSET ?");
        args.push(Value::Integer(if limit == 0 { -1 } else { limit as i64 }));
        args.push(Value::Integer(offset as i64));
        self.query_packets(&sql, args)
    }

    /// How many packets match `filter`.
    pub fn count(&self, filter: &Filter) -> Result<u64> {
        let mut sql = "SELECT count(*) FROM packets p WHERE 1".to_string();
        let mut args = Vec::new();
        filter_sql(filter, &mut sql, &mut args);
        Ok(self.conn.query_row(&sql, rusqlite::params_from_iter(args), |r| r.get::<_, i64>(0))? as u64)
    }

    pub(crate) fn query_packets(&self, sql: &str, args: Vec<Value>) -> Result<Vec<SavedPacket>> {
        let mut st = self.conn.prepare(sql)?;
        let mut out =
            st.query_map(rusqlite::params_from_iter(args), row_to_packet)?.collect::<rusqlite::Result<Vec<_>>>()?;
        for p in &mut out {
            p.tags = tags_of(&self.conn, p.id)?;
        }
        Ok(out)
    }

    /// Change a packet's name and/or description.
    pub fn edit(&mut self, id: PacketId, edit: &MetaEdit) -> Result<()> {
        self.write(|tx| {
            update_meta(tx, "packets", "packet", id, edit)?;
            reindex(tx, id)
        })
    }

    /// Delete packets (and their place in sequences); returns how many existed.
    pub fn delete(&mut self, ids: &[PacketId]) -> Result<usize> {
        self.write(|tx| {
            let mut n = 0;
            for id in ids {
                tx.prepare_cached("DELETE FROM packets_fts WHERE rowid = ?")?.execute([id])?;
                n += tx.prepare_cached("DELETE FROM packets WHERE id = ?")?.execute([id])?;
            }
            drop_unused_tags(tx)?;
            Ok(n)
        })
    }

    /// Add tags to packets. Fails (changing nothing) if a packet does not exist.
    pub fn tag(&mut self, ids: &[PacketId], tags: &[String]) -> Result<()> {
        let tags = tags.iter().map(|t| clean_tag(t)).collect::<Result<Vec<_>>>()?;
        self.write(|tx| {
            for &id in ids {
                ensure(tx, "packet", id)?;
                for t in &tags {
                    attach_tag(tx, id, t)?;
                }
                reindex(tx, id)?;
            }
            Ok(())
        })
    }

    /// Remove tags from packets (a tag a packet lacks is ignored).
    pub fn untag(&mut self, ids: &[PacketId], tags: &[String]) -> Result<()> {
        self.write(|tx| {
            for &id in ids {
                ensure(tx, "packet", id)?;
                for t in tags {
                    tx.prepare_cached(
                        "DELETE FROM packet_tags WHERE packet_id = ? AND tag_id IN (SELECT id FROM tags WHERE name = ?)",
                    )?
                    .execute(params![id, t.trim()])?;
                }
                reindex(tx, id)?;
            }
            drop_unused_tags(tx)
        })
    }

    /// Rename a tag on every packet; renaming onto an existing tag merges them.
    /// Returns how many packets carry the new name afterwards.
    pub fn rename_tag(&mut self, old: &str, new: &str) -> Result<u64> {
        let new = clean_tag(new)?;
        let old = old.trim().to_string();
        self.write(|tx| {
            let old_id: i64 = tx
                .query_row("SELECT id FROM tags WHERE name = ?", [&old], |r| r.get(0))
                .optional()?
                .ok_or_else(|| LibraryError::NoSuchTag(old.clone()))?;
            let existing: Option<i64> = tx.query_row("SELECT id FROM tags WHERE name = ?", [&new], |r| r.get(0)).optional()?;
            let ids: Vec<i64> = {
                let mut st = tx.prepare("SELECT packet_id FROM packet_tags WHERE tag_id = ?")?;
                let rows = st.query_map([old_id], |r| r.get(0))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            match existing {
                Some(new_id) if new_id != old_id => {
                    tx.execute(
                        "INSERT OR IGNORE INTO packet_tags(packet_id, tag_id) SELECT packet_id, ? FROM packet_tags WHERE tag_id = ?",
                        params![new_id, old_id],
                    )?;
                    tx.execute("DELETE FROM tags WHERE id = ?", [old_id])?;
                }
                _ => {
                    tx.execute("UPDATE tags SET name = ? WHERE id = ?", params![new, old_id])?;
                }
            }
            for id in ids {
                reindex(tx, id)?;
            }
            Ok(tx.query_row(
                "SELECT count(*) FROM packet_tags pt JOIN tags t ON t.id = pt.tag_id WHERE t.name = ?",
                [&new],
                |r| r.get::<_, i64>(0),
            )? as u64)
        })
    }

    /// Every tag with the number of packets carrying it, by name.
    pub fn tags(&self) -> Result<Vec<TagCount>> {
        let mut st = self.conn.prepare(
            "SELECT t.name, count(pt.packet_id) FROM tags t LEFT JOIN packet_tags pt ON pt.tag_id = t.id \
             GROUP BY t.id ORDER BY t.name COLLATE NOCASE",
        )?;
        let rows = st.query_map([], |r| Ok(TagCount { name: r.get(0)?, count: r.get::<_, i64>(1)? as u64 }))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Group existing packets, in this order, into a new sequence.
    pub fn create_sequence(&mut self, name: &str, description: &str, ids: &[PacketId]) -> Result<SequenceId> {
        check_len("name", Some(name), crate::MAX_NAME_CHARS)?;
        check_len("description", Some(description), crate::MAX_DESCRIPTION_CHARS)?;
        self.write(|tx| insert_sequence(tx, name, description, None, ids))
    }

    /// Add existing packets at the end of a sequence, in this order.
    pub fn append_to_sequence(&mut self, id: SequenceId, ids: &[PacketId]) -> Result<()> {
        self.write(|tx| {
            ensure(tx, "sequence", id)?;
            let next: i64 = tx.query_row(
                "SELECT coalesce(max(position) + 1, 0) FROM sequence_packets WHERE sequence_id = ?",
                [id],
                |r| r.get(0),
            )?;
            insert_members(tx, id, next, ids)
        })
    }

    /// Replace a sequence's members by `ids`, in this order (to reorder, drop
    /// or repeat packets); the packets themselves are not touched.
    pub fn set_sequence_packets(&mut self, id: SequenceId, ids: &[PacketId]) -> Result<()> {
        self.write(|tx| {
            ensure(tx, "sequence", id)?;
            tx.execute("DELETE FROM sequence_packets WHERE sequence_id = ?", [id])?;
            insert_members(tx, id, 0, ids)
        })
    }

    /// One sequence, or [`LibraryError::NotFound`].
    pub fn sequence(&self, id: SequenceId) -> Result<Sequence> {
        let (name, description, created): (String, String, i64) = self
            .conn
            .query_row("SELECT name, description, created_at_ns FROM sequences WHERE id = ?", [id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?
            .ok_or(LibraryError::NotFound { what: "sequence", id })?;
        let mut st = self
            .conn
            .prepare_cached("SELECT packet_id FROM sequence_packets WHERE sequence_id = ? ORDER BY position")?;
        let packet_ids = st.query_map([id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        Ok(Sequence { id, name, description, created_at_ns: created as u64, packet_ids })
    }

    /// Every sequence, by id.
    pub fn sequences(&self) -> Result<Vec<Sequence>> {
        let ids: Vec<i64> = {
            let mut st = self.conn.prepare("SELECT id FROM sequences ORDER BY id")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        ids.into_iter().map(|id| self.sequence(id)).collect()
    }

    /// Change a sequence's name and/or description.
    pub fn edit_sequence(&mut self, id: SequenceId, edit: &MetaEdit) -> Result<()> {
        self.write(|tx| update_meta(tx, "sequences", "sequence", id, edit))
    }

    /// Delete a sequence; with `with_packets` its packets too.
    pub fn delete_sequence(&mut self, id: SequenceId, with_packets: bool) -> Result<()> {
        let seq = self.sequence(id)?;
        self.write(|tx| {
            tx.execute("DELETE FROM sequences WHERE id = ?", [id])?;
            if with_packets {
                for pid in &seq.packet_ids {
                    tx.execute("DELETE FROM packets_fts WHERE rowid = ?", [pid])?;
                    tx.execute("DELETE FROM packets WHERE id = ?", [pid])?;
                }
                drop_unused_tags(tx)?;
            }
            Ok(())
        })
    }
}

/// Set the name and/or description of a row of `table` (`packets` or `sequences`).
fn update_meta(tx: &Transaction<'_>, table: &str, what: &'static str, id: i64, edit: &MetaEdit) -> Result<()> {
    check_len("name", edit.name.as_deref(), crate::MAX_NAME_CHARS)?;
    check_len("description", edit.description.as_deref(), crate::MAX_DESCRIPTION_CHARS)?;
    let sql =
        format!("UPDATE {table} SET name = coalesce(?, name), description = coalesce(?, description) WHERE id = ?");
    if tx.execute(&sql, params![edit.name, edit.description, id])? == 0 {
        return Err(LibraryError::NotFound { what, id });
    }
    Ok(())
}

/// [`LibraryError::NotFound`] unless the row `id` of `{what}s` (packets, sequences) exists.
fn ensure(tx: &Transaction<'_>, what: &'static str, id: i64) -> Result<()> {
    let sql = format!("SELECT 1 FROM {what}s WHERE id = ?");
    let found: Option<i64> = tx.prepare_cached(&sql)?.query_row([id], |r| r.get(0)).optional()?;
    found.map(|_| ()).ok_or(LibraryError::NotFound { what, id })
}

pub(crate) fn check_len(field: &str, value: Option<&str>, max: usize) -> Result<()> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(LibraryError::Invalid(format!("{field} is longer than {max} characters")))
        }
        _ => Ok(()),
    }
}
