//! Getting packets in and out: saving frames of a pcap/pcapng file, importing
//! `.dpp` files (one transaction each), exporting a selection to `.dpp` v2,
//! pcapng or pcap, and the seam through which the daemon will hand over live
//! packets by id.

use crate::dpp::{parse_dpp, write_dpp};
use crate::error::{LibraryError, Result};
use crate::model::{NewPacket, PacketId, PacketMeta, SavedPacket, Selection, Sequence, SequenceId};
use crate::store::{insert_packet, insert_sequence};
use crate::Library;
use pidcap_packet::CapturedPacket;
use pidcap_pcapfile::{Format, PacketWriter, PcapError, Skipped, WriterOptions};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::ops::RangeInclusive;
use std::path::Path;

/// Where live packets come from when saved by their capture id. The CLI
/// implements it over the daemon's socket (`pidcap lib save --packet`); tests
/// can implement it over a `Vec`.
pub trait PacketSource {
    /// The packets with these capture ids, in the same order; an unknown id is an error.
    fn packets_by_id(&self, ids: &[u64]) -> Result<Vec<CapturedPacket>>;
}

/// What [`Library::save_pcap`] saved, and what it did not.
#[derive(Debug)]
pub struct PcapSaved {
    /// The new packets' ids, in frame order.
    pub ids: Vec<PacketId>,
    /// Frames in the file (up to the cut, if it was cut).
    pub frames: u64,
    /// Frames asked for that are not IP packets, and why (not saved).
    pub skipped: Vec<Skipped>,
    /// Where the file ends inside a block (cut short); the frames before it were read.
    pub cut: Option<PcapError>,
}

/// What an import added.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportReport {
    /// `.dpp` version read (1 or 2); 0 for pcap files.
    pub version: u64,
    pub packet_ids: Vec<PacketId>,
    pub sequence_ids: Vec<SequenceId>,
}

/// An export file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `.dpp` version 2.
    Dpp,
    Pcapng,
    Pcap,
}

impl ExportFormat {
    /// From a file name's extension: `.dpp`, `.pcapng`/`.ntar`, `.pcap`/`.cap`.
    pub fn from_path(path: &Path) -> Option<ExportFormat> {
        if path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("dpp")) {
            return Some(ExportFormat::Dpp);
        }
        Format::from_path(path).map(|f| match f {
            Format::Pcap => ExportFormat::Pcap,
            Format::Pcapng => ExportFormat::Pcapng,
        })
    }
}

impl std::str::FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<ExportFormat, String> {
        match s.to_ascii_lowercase().as_str() {
            "dpp" => Ok(ExportFormat::Dpp),
            "pcapng" => Ok(ExportFormat::Pcapng),
            "pcap" => Ok(ExportFormat::Pcap),
            _ => Err(format!("unknown export format {s:?}: expected dpp, pcapng or pcap")),
        }
    }
}

/// Parse 1-based frame numbers and ranges: `1-5,9,12-`. An open range (`12-`) runs to the end.
pub fn parse_frames(spec: &str) -> Result<Vec<RangeInclusive<usize>>> {
    let bad = |part: &str| LibraryError::Invalid(format!("bad frame range {part:?} (expected e.g. 1-5,9)"));
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |s: &str| s.trim().parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| bad(part));
        let r = match part.split_once('-') {
            Some((a, "")) => num(a)?..=usize::MAX,
            Some((a, b)) => num(a)?..=num(b)?,
            None => num(part)?..=num(part)?,
        };
        if r.start() > r.end() {
            return Err(bad(part));
        }
        out.push(r);
    }
    if out.is_empty() {
        return Err(LibraryError::Invalid("no frames given".into()));
    }
    Ok(out)
}

fn file_label(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| path.display().to_string())
}

impl Library {
    /// Save frames of a pcap or pcapng file (all, or those in `frames`: frame
    /// numbers from 1 as Wireshark counts them, every record included) in one
    /// transaction. Packets without a name get `FILE #N`, N the frame number.
    ///
    /// Frames that are not IP packets (ARP in an Ethernet capture, an
    /// unsupported link type) are not saved: [`PcapSaved::skipped`] lists
    /// the ones asked for, and why. When every frame asked for is skipped,
    /// it is an error that says why. A file that ends inside its last block
    /// (cut short) is read up to there, and [`PcapSaved::cut`] says where.
    pub fn save_pcap(
        &mut self,
        path: &Path,
        frames: Option<&[RangeInclusive<usize>]>,
        meta: &PacketMeta,
    ) -> Result<PcapSaved> {
        let f = File::open(path).map_err(|e| LibraryError::io(format!("cannot open {}", path.display()), e))?;
        let pcap = |source| LibraryError::Pcap { path: Some(path.to_path_buf()), source };
        let contents =
            pidcap_pcapfile::PacketReader::new(BufReader::new(f)).and_then(|r| r.read_to_end()).map_err(pcap)?;
        let label = file_label(path);
        let wanted = |frame: u64| {
            let frame = usize::try_from(frame).unwrap_or(usize::MAX);
            frames.is_none_or(|rs| rs.iter().any(|r| r.contains(&frame)))
        };
        if let Some(ranges) = frames {
            for r in ranges {
                if *r.start() as u64 > contents.frames {
                    let cut = if contents.cut.is_some() { ", up to where it was cut" } else { "" };
                    return Err(LibraryError::Invalid(format!(
                        "frame {} is past the end of {label} ({} frames{cut})",
                        r.start(),
                        contents.frames
                    )));
                }
            }
        }
        // The skipped frames asked for, as runs cut to the ranges asked for.
        let mut skipped: Vec<Skipped> = Vec::new();
        for s in &contents.skipped {
            for frame in s.frames.clone().filter(|&f| wanted(f)) {
                match skipped.last_mut() {
                    Some(last) if last.reason == s.reason && *last.frames.end() + 1 == frame => {
                        last.frames = *last.frames.start()..=frame;
                    }
                    _ => skipped.push(Skipped { frames: frame..=frame, reason: s.reason }),
                }
            }
        }
        let new: Vec<NewPacket> = contents
            .packets
            .into_iter()
            .filter(|p| wanted(p.id))
            .map(|p| {
                let frame = p.id;
                let mut n = NewPacket::new(p, meta, format!("pcap:{label}"));
                if n.name.is_empty() {
                    n.name = format!("{label} #{frame}");
                }
                n
            })
            .collect();
        if new.is_empty() && !skipped.is_empty() {
            return Err(LibraryError::Invalid(format!(
                "no packet to save in {label}: {}",
                pidcap_pcapfile::describe_skipped(&skipped).join("; ")
            )));
        }
        let ids = self.save_many(&new)?;
        Ok(PcapSaved { ids, frames: contents.frames, skipped, cut: contents.cut })
    }

    /// Save live packets by their capture ids, fetched from `source` (the daemon).
    pub fn save_from_source(
        &mut self,
        source: &dyn PacketSource,
        ids: &[u64],
        meta: &PacketMeta,
    ) -> Result<Vec<PacketId>> {
        let packets = source.packets_by_id(ids)?;
        if packets.len() != ids.len() || packets.iter().zip(ids).any(|(p, id)| p.id != *id) {
            return Err(LibraryError::Source(
                "the packet source returned other packets than the ones asked for".into(),
            ));
        }
        let new: Vec<NewPacket> = packets
            .into_iter()
            .map(|p| {
                let id = p.id;
                let mut n = NewPacket::new(p, meta, "daemon");
                if n.name.is_empty() {
                    n.name = format!("capture #{id}");
                }
                n
            })
            .collect();
        self.save_many(&new)
    }

    /// Import a `.dpp` file (version 1 or 2): everything or nothing.
    pub fn import_dpp(&mut self, path: &Path) -> Result<ImportReport> {
        let f = File::open(path).map_err(|e| LibraryError::io(format!("cannot open {}", path.display()), e))?;
        if let Ok(m) = f.metadata() {
            if m.len() > crate::MAX_FILE_BYTES {
                return Err(LibraryError::dpp(
                    "(file)",
                    format!("larger than the {} MiB cap", crate::MAX_FILE_BYTES >> 20),
                ));
            }
        }
        let file = parse_dpp(BufReader::new(f), &file_label(path))?;
        self.write(|tx| {
            let mut report = ImportReport { version: file.version, ..ImportReport::default() };
            for p in &file.packets {
                report.packet_ids.push(insert_packet(tx, p)?);
            }
            for s in &file.sequences {
                let ids: Vec<PacketId> = s.members.iter().map(|&i| report.packet_ids[i]).collect();
                report.sequence_ids.push(insert_sequence(tx, &s.name, &s.description, s.created_at_ns, &ids)?);
            }
            Ok(report)
        })
    }

    /// The packets (in order) and sequences a selection covers. A sequence is
    /// included when the selection is that sequence, or the whole library.
    pub fn select(&self, sel: &Selection) -> Result<(Vec<SavedPacket>, Vec<Sequence>)> {
        Ok(match sel {
            Selection::All => (self.list(&Default::default(), 0, 0)?, self.sequences()?),
            Selection::Ids(ids) => (ids.iter().map(|&id| self.packet(id)).collect::<Result<_>>()?, Vec::new()),
            Selection::Filter(f) => (self.list(f, 0, 0)?, Vec::new()),
            Selection::Search { query, filter, limit } => {
                (self.search(query, filter, *limit)?.into_iter().map(|h| h.packet).collect(), Vec::new())
            }
            Selection::Sequence(id) => {
                let seq = self.sequence(*id)?;
                let packets = seq.packet_ids.iter().map(|&id| self.packet(id)).collect::<Result<_>>()?;
                (packets, vec![seq])
            }
        })
    }

    /// Write a selection to `w`; returns how many packets were written.
    pub fn export_to(&self, sel: &Selection, format: ExportFormat, w: impl Write) -> Result<usize> {
        let (packets, sequences) = self.select(sel)?;
        match format {
            ExportFormat::Dpp => write_dpp(w, &packets, &sequences)?,
            ExportFormat::Pcapng | ExportFormat::Pcap => {
                let f = if format == ExportFormat::Pcap { Format::Pcap } else { Format::Pcapng };
                let opts = WriterOptions { snaplen: crate::MAX_PACKET_BYTES as u32, ..WriterOptions::default() };
                let pcap = |source| LibraryError::Pcap { path: None, source };
                let mut pw = PacketWriter::new(f, BufWriter::new(w), &opts).map_err(pcap)?;
                for p in &packets {
                    pw.write_packet(&p.packet).map_err(pcap)?;
                }
                pw.flush().map_err(pcap)?;
                pw.into_inner().map_err(pcap)?.flush().map_err(|e| LibraryError::io("cannot write the export", e))?;
            }
        }
        Ok(packets.len())
    }

    /// Write a selection to a file (mode 0600), created next to `path` and
    /// renamed into place once complete (a failed export leaves no
    /// half-written file). See [`Library::export_with_mode`].
    pub fn export(&self, sel: &Selection, format: ExportFormat, path: &Path) -> Result<usize> {
        self.export_with_mode(sel, format, path, pidcap_pcapfile::DEFAULT_FILE_MODE)
    }

    /// [`Library::export`] with the file's mode (exactly, whatever the umask).
    /// A symbolic link at `path` is refused, never followed nor replaced; the
    /// temporary file is created as capture files are
    /// ([`pidcap_pcapfile::file::create`]: new, or refused).
    pub fn export_with_mode(&self, sel: &Selection, format: ExportFormat, path: &Path, mode: u32) -> Result<usize> {
        let ctx = |what: &str| format!("cannot {what} {}", path.display());
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(LibraryError::io(
                ctx("write"),
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "it is a symbolic link, and pidcap does not write through one nor replace it (remove it, or \
                     choose another name)",
                ),
            ));
        }
        let nonce = crate::now_ns() % 1_000_000_007;
        let tmp = path.with_file_name(format!(".{}.tmp{}-{nonce}", file_label(path), std::process::id()));
        let mut created = false;
        let result = (|| {
            let tmp_ctx = || format!("{} (its temporary file {})", ctx("create"), tmp.display());
            let (f, new) = pidcap_pcapfile::file::create(&tmp, mode).map_err(|e| LibraryError::io(tmp_ctx(), e))?;
            created = new;
            if !new {
                // Only a file of our own making is renamed into place.
                let e = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "it already exists");
                return Err(LibraryError::io(tmp_ctx(), e));
            }
            let n = self.export_to(sel, format, &f)?;
            f.sync_all().map_err(|e| LibraryError::io(ctx("write"), e))?;
            std::fs::rename(&tmp, path).map_err(|e| LibraryError::io(ctx("write"), e))?;
            Ok(n)
        })();
        if result.is_err() && created {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ranges() {
        assert_eq!(parse_frames("1-5,9").unwrap(), vec![1..=5, 9..=9]);
        assert_eq!(parse_frames("3-").unwrap(), vec![3..=usize::MAX]);
        assert!(parse_frames("0").is_err());
        assert!(parse_frames("5-2").is_err());
        assert!(parse_frames("x").is_err());
        assert!(parse_frames("").is_err());
    }
}
