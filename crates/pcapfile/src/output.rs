//! The one interface every output of captured packets implements
//! ([`PacketOutput`]): the capture files here ([`PacketWriter`],
//! [`PcapngWriter`], [`PcapWriter`], [`crate::RotatingOutput`]), the CLI's
//! text and JSON lines, and whatever comes next. A capture loop writes
//! through a `Box<dyn PacketOutput>` and does not know which it has.

use crate::keylog::KeyLogLine;
use crate::{PacketWriter, PcapError, PcapWriter, PcapngWriter, RecordRef, TlsFileStats};
use pidcap_packet::CapturedPacket;
use std::io::Write;

/// An output of captured packets.
///
/// Packets come one of two ways, as the output prefers
/// ([`PacketOutput::wants_decoded`]): borrowed records straight from the
/// kernel's buffer ([`PacketOutput::write_record`]: capture files, which
/// only copy bytes), or packets the capture has decoded and keeps
/// ([`PacketOutput::write_packet`]: outputs that show headers).
pub trait PacketOutput {
    /// Append one packet given by its borrowed fields.
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError>;

    /// Append one decoded packet; by default, as its record.
    fn write_packet(&mut self, p: &CapturedPacket) -> Result<(), PcapError> {
        self.write_record(&RecordRef::from(p))
    }

    /// True when this output reads decoded headers: the capture then decodes
    /// each packet once and calls [`PacketOutput::write_packet`].
    fn wants_decoded(&self) -> bool {
        false
    }

    /// Push what is buffered to the destination.
    fn flush(&mut self) -> Result<(), PcapError>;

    /// Flush and close; nothing is written after this.
    fn finish(self: Box<Self>) -> Result<(), PcapError>;

    /// How many packets the destination holds for sure, where it can tell
    /// (a capture file: after a failed write, those before its last complete
    /// block); `None` for a stream.
    fn packets_kept(&self) -> Option<u64> {
        None
    }

    /// TLS key log lines for the output (a pcapng file writes them in a
    /// Decryption Secrets Block, see [`PcapngWriter::add_keys`]); the
    /// number that were new. Other outputs ignore them.
    fn add_tls_keys(&mut self, _lines: &[KeyLogLine]) -> Result<usize, PcapError> {
        Ok(0)
    }

    /// Keys will be added: hold handshakes back until theirs are in (see
    /// [`PcapngWriter::hold_for_keys`]). Other outputs ignore it.
    fn hold_for_tls_keys(&mut self) -> Result<(), PcapError> {
        Ok(())
    }

    /// What the output holds of TLS (keys written, records left out).
    fn tls_stats(&self) -> TlsFileStats {
        TlsFileStats::default()
    }

    /// True when the output keeps key log lines (pcapng).
    fn takes_tls_keys(&self) -> bool {
        false
    }

    /// The files a rotating output ([`crate::RotatingOutput`]) has written;
    /// `None` for any other output (one file, or a stream).
    fn files(&self) -> Option<crate::FilesWritten> {
        None
    }

    /// False once the output takes no more packets (`-G -W`: its last file
    /// is done); the packet that found it so was not written. The capture
    /// then ends as with `-c`.
    fn accepts(&self) -> bool {
        true
    }
}

impl<W: Write> PacketOutput for PacketWriter<W> {
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        PacketWriter::write_record(self, r)
    }

    fn add_tls_keys(&mut self, lines: &[KeyLogLine]) -> Result<usize, PcapError> {
        self.add_keys(lines)
    }

    fn hold_for_tls_keys(&mut self) -> Result<(), PcapError> {
        self.hold_for_keys(true)
    }

    fn tls_stats(&self) -> TlsFileStats {
        PacketWriter::tls_stats(self)
    }

    fn takes_tls_keys(&self) -> bool {
        self.format() == crate::Format::Pcapng
    }

    fn flush(&mut self) -> Result<(), PcapError> {
        PacketWriter::flush(self)
    }

    fn finish(self: Box<Self>) -> Result<(), PcapError> {
        self.into_inner().map(drop)
    }
}

impl<W: Write> PacketOutput for PcapngWriter<W> {
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        PcapngWriter::write_record(self, r)
    }

    fn add_tls_keys(&mut self, lines: &[KeyLogLine]) -> Result<usize, PcapError> {
        self.add_keys(lines)
    }

    fn hold_for_tls_keys(&mut self) -> Result<(), PcapError> {
        self.hold_for_keys(true)
    }

    fn tls_stats(&self) -> TlsFileStats {
        TlsFileStats { keys_written: self.keys_written() as u64, records_left_out: 0 }
    }

    fn takes_tls_keys(&self) -> bool {
        true
    }

    fn flush(&mut self) -> Result<(), PcapError> {
        PcapngWriter::flush(self)
    }

    fn finish(self: Box<Self>) -> Result<(), PcapError> {
        self.into_inner().map(drop)
    }
}

impl<W: Write> PacketOutput for PcapWriter<W> {
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        PcapWriter::write_record(self, r)
    }

    fn tls_stats(&self) -> TlsFileStats {
        TlsFileStats { keys_written: 0, records_left_out: self.tls_left_out() }
    }

    fn flush(&mut self) -> Result<(), PcapError> {
        PcapWriter::flush(self)
    }

    fn finish(self: Box<Self>) -> Result<(), PcapError> {
        self.into_inner().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_packets, Format, WriterOptions};
    use pidcap_packet::{Direction, Verdict};
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes stay readable after the writer that owns it is gone.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn packet(id: u64) -> CapturedPacket {
        let mut p = CapturedPacket::new(
            id,
            1_700_000_000_000_000_000 + id,
            42,
            "curl".into(),
            7,
            Direction::Inbound,
            Verdict::Blocked,
            28,
            vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2, 0, 53, 4, 0, 0, 8, 0, 0],
        );
        p.rule = Some(3);
        p
    }

    #[test]
    fn every_file_writer_is_an_output_and_writes_what_it_writes_directly() {
        let opts = WriterOptions { snaplen: 65535, application: "test".into() };
        for format in [Format::Pcapng, Format::Pcap] {
            let direct = {
                let mut w = PacketWriter::new(format, Vec::new(), &opts).unwrap();
                w.write_packet(&packet(1)).unwrap();
                w.write_packet(&packet(2)).unwrap();
                w.into_inner().unwrap()
            };
            // PacketWriter, then the format's own writer, each on a buffer we keep a handle to.
            for make in 0..2 {
                let buf = Shared::default();
                let mut out: Box<dyn PacketOutput> = match (format, make) {
                    (_, 0) => Box::new(PacketWriter::new(format, buf.clone(), &opts).unwrap()),
                    (Format::Pcapng, _) => Box::new(PcapngWriter::new(buf.clone(), &opts).unwrap()),
                    (Format::Pcap, _) => Box::new(PcapWriter::new(buf.clone(), &opts).unwrap()),
                };
                assert!(!out.wants_decoded(), "files take records");
                out.write_packet(&packet(1)).unwrap();
                out.write_record(&RecordRef::from(&packet(2))).unwrap();
                out.flush().unwrap();
                out.finish().unwrap();
                let bytes = buf.0.lock().unwrap().clone();
                assert_eq!(bytes, direct, "{format} output {make}");
                let back = read_packets(&bytes[..]).unwrap();
                assert_eq!(back.len(), 2);
                assert_eq!(back[1].data, packet(2).data);
            }
        }
    }
}
