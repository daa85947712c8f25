//! Rotation like tcpdump's `-C`, `-W` and `-G`: [`RotatingOutput`], one
//! [`PacketOutput`] over a sequence of capture files, each complete and
//! readable on its own.
//!
//! * **`-C` ([`Rotation::max_bytes`])**: a packet that would take the file
//!   past the limit starts a new one (so a file never exceeds it, but a file
//!   whose one packet is larger; tcpdump checks before each packet whether
//!   the file is *already* past it, so its files may exceed it by a packet).
//!   The accounting is exact: [`PacketWriter::bytes_for`] says what a packet
//!   adds (its block, and the interface or key block that would go first),
//!   blocks held back for TLS keys count as in the file, and so does a key
//!   block ([`PacketWriter::bytes_for_keys`]).
//! * **`-W N` ([`Rotation::files`])**: with `-C`, a ring of N files, the
//!   oldest overwritten; with `-G` alone, stop after N files
//!   ([`PacketOutput::accepts`] turns false, tcpdump exits there).
//! * **`-G S` ([`Rotation::seconds`])**: the first packet S seconds or more
//!   after the current file was started starts a new one (as tcpdump: no
//!   packet, no new file); the name is the template through `strftime(3)`
//!   in local time, at that moment.
//! * **Names** ([`file_name`]), tcpdump's `MakeFilename`: the template
//!   (through strftime with `-G`), then, with `-C`, a counter: none on the
//!   first file and 1, 2, ... after it; with `-W`, on every file, zero-padded
//!   to the width of N-1 (`-W 3`: `x0 x1 x2`; `-W 11`: `x00` ... `x10`). A
//!   `-G` rotation starts the counter again.
//! * **Each file** is made by [`CaptureFile::create`] as `-w` makes its one
//!   file (mode, no links, no other user's file in a sticky directory); a
//!   name the ring (or a coarse strftime name) comes back to is opened with
//!   [`CaptureFile::reopen_own`]: only if it is still the file this output
//!   made there. Its preamble is the writer's ([`PacketWriter::start_file`]):
//!   its own section and interface blocks, and every TLS key written so far.
//! * **Errors** name the file ([`PcapError::InFile`]); a failed write leaves
//!   that file cut back to its last complete block ([`CaptureFile`]).

use crate::file::FileId;
use crate::keylog::KeyLogLine;
use crate::{CaptureFile, Format, PacketOutput, PacketWriter, PcapError, RecordRef, TlsFileStats, WriterOptions};
use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// What starts a new file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rotation {
    /// `-C`: most bytes a file holds (tcpdump's unit is 1,000,000 bytes).
    pub max_bytes: Option<u64>,
    /// `-W`: with `max_bytes`, a ring of this many files; with `seconds`
    /// alone, the number of files after which the output takes no more.
    pub files: Option<u32>,
    /// `-G`: seconds after which the next packet starts a new file.
    pub seconds: Option<u64>,
}

impl Rotation {
    /// True when this rotates at all (`-C` or `-G`).
    pub fn rotates(&self) -> bool {
        self.max_bytes.is_some() || self.seconds.is_some()
    }
}

/// Digits of the counter with `-W files`: those of `files - 1` (tcpdump's
/// `getWflagChars`): 1 file: none, 2..=10: 1, 11..=100: 2.
pub fn counter_width(files: u32) -> usize {
    let mut x = files.saturating_sub(1);
    let mut digits = 0;
    while x > 0 {
        digits += 1;
        x /= 10;
    }
    digits
}

/// A file's name as tcpdump makes it: `template` through strftime (local
/// time) when `time` is given, then `count` zero-padded to `width` digits,
/// unless both are 0 (then no counter).
pub fn file_name(template: &Path, time: Option<i64>, count: u32, width: usize) -> io::Result<PathBuf> {
    let mut name = match time {
        Some(t) => strftime_local(template.as_os_str(), t)?,
        None => template.as_os_str().to_os_string(),
    };
    if count != 0 || width != 0 {
        name.push(format!("{count:0width$}"));
    }
    Ok(PathBuf::from(name))
}

/// `strftime(3)` of `format` at `t` (seconds since the epoch) in local time.
pub fn strftime_local(format: &OsStr, t: i64) -> io::Result<OsString> {
    let invalid = |why: &str| io::Error::new(ErrorKind::InvalidInput, why.to_string());
    if format.is_empty() {
        return Err(invalid("an empty file name"));
    }
    let c = CString::new(format.as_bytes()).map_err(|_| invalid("the file name has a NUL byte"))?;
    let time = t as libc::time_t;
    // SAFETY: an all-zero `tm` is a valid value (integers and a null zone pointer).
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    extern "C" {
        /// POSIX `tzset(3)` (not in the libc crate).
        fn tzset();
    }
    // SAFETY: tzset takes no arguments; it reads TZ and the zone files (pidcap never changes TZ).
    unsafe { tzset() };
    // SAFETY: both pointers are to live values of the right types.
    if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
        return Err(io::Error::last_os_error());
    }
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: `buf` is writable for its length, `c` is NUL-terminated, `tm` was filled by localtime_r.
    let n = unsafe { libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c.as_ptr(), &tm) };
    if n == 0 {
        return Err(invalid("the file name is empty or longer than PATH_MAX after strftime"));
    }
    buf.truncate(n);
    Ok(OsString::from_vec(buf))
}

/// The files a rotating output has written and still holds, oldest first,
/// and how many it opened in all (more when the ring or a repeated name
/// overwrote some). Its `Display` is the summary's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilesWritten {
    pub names: Vec<PathBuf>,
    pub opened: u64,
}

impl std::fmt::Display for FilesWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.names.len();
        let show = |p: &PathBuf| p.display().to_string();
        let list = if n <= 4 {
            self.names.iter().map(show).collect::<Vec<_>>().join(", ")
        } else {
            format!("{}, {} ... {}", show(&self.names[0]), show(&self.names[1]), show(&self.names[n - 1]))
        };
        write!(f, "{n} file{} written", if n == 1 { "" } else { "s" })?;
        if self.opened > n as u64 {
            write!(f, " ({} opened, the oldest overwritten; oldest first)", self.opened)?;
        }
        write!(f, ": {list}")
    }
}

/// Seconds since the epoch, for `-G`.
pub type Clock = Box<dyn FnMut() -> i64 + Send>;

/// The wall clock (what tcpdump's `-G` reads, `time(NULL)`).
pub fn wall_clock() -> Clock {
    Box::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
}

/// Capture files in rotation: see the module doc.
pub struct RotatingOutput {
    template: PathBuf,
    rotation: Rotation,
    width: usize,
    mode: u32,
    clock: Clock,
    w: PacketWriter<CaptureFile>,
    /// When the current `-G` period started.
    period_start: i64,
    /// tcpdump's `Cflag_count` and `Gflag_count`.
    size_count: u32,
    time_count: u32,
    /// Bytes of the current file's preamble: a file that holds nothing
    /// more (blocks held back for keys aside) takes the next packet whatever
    /// its size, so a hold larger than the limit does not make a file per packet.
    preamble: u64,
    /// Every file made, by name: the ring may overwrite these only.
    made: HashMap<PathBuf, FileId>,
    /// The files holding packets of this output, oldest first (the current
    /// one last), with their packets once closed.
    files: Vec<(PathBuf, u64)>,
    opened: u64,
    /// `-G -W`: the last file is done, nothing more is taken.
    full: bool,
}

impl std::fmt::Debug for RotatingOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotatingOutput")
            .field("template", &self.template)
            .field("rotation", &self.rotation)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl RotatingOutput {
    /// Make the first file (named as [`file_name`] says) and write its
    /// headers to the disk, so that an output that cannot be written fails
    /// here. A file this call created is removed again if its headers
    /// cannot be written.
    pub fn create(
        template: &Path,
        format: Format,
        opts: &WriterOptions,
        mode: u32,
        rotation: Rotation,
        mut clock: Clock,
    ) -> Result<RotatingOutput, PcapError> {
        let width = rotation.files.map_or(0, counter_width);
        let now = clock();
        let first_width = if rotation.max_bytes.is_some() { width } else { 0 };
        let name = file_name(template, rotation.seconds.map(|_| now), 0, first_width)
            .map_err(|source| PcapError::Create { path: template.to_path_buf(), source })?;
        let file =
            CaptureFile::create(&name, mode).map_err(|source| PcapError::Create { path: name.clone(), source })?;
        let created = file.created();
        let id = file.id()?;
        let start = PacketWriter::new(format, file, opts).and_then(|mut w| crate::file::sync(&mut w).map(|()| w));
        let w = match start {
            Ok(w) => w,
            Err(e) => {
                if created {
                    let _ = std::fs::remove_file(&name);
                }
                return Err(PcapError::InFile { path: name, source: Box::new(e) });
            }
        };
        let preamble = w.get_ref().bytes();
        Ok(RotatingOutput {
            template: template.to_path_buf(),
            rotation,
            width,
            mode,
            clock,
            w,
            period_start: now,
            size_count: 0,
            time_count: 0,
            preamble,
            made: HashMap::from([(name.clone(), id)]),
            files: vec![(name, 0)],
            opened: 1,
            full: false,
        })
    }

    /// The file being written.
    pub fn current(&self) -> &Path {
        &self.files.last().expect("always a current file").0
    }

    /// True when [`RotatingOutput::create`] made the first file (it did not
    /// exist): the caller may remove it if the capture never starts.
    pub fn first_created(&self) -> bool {
        self.opened == 1 && self.w.get_ref().created()
    }

    /// Bytes the current file holds, blocks held back for keys included.
    fn size(&self) -> u64 {
        self.w.get_ref().bytes() + self.w.held_bytes()
    }

    /// True when the current file holds more than its preamble (held blocks aside).
    fn has_packets(&self) -> bool {
        self.w.get_ref().bytes() > self.preamble
    }

    fn in_file<T>(&self, r: Result<T, PcapError>) -> Result<T, PcapError> {
        r.map_err(|e| PcapError::InFile { path: self.current().to_path_buf(), source: Box::new(e) })
    }

    /// A `-G` period is over: the next file, or the end with `-W` (no `-C`).
    fn rotate_time(&mut self, now: i64) -> Result<(), PcapError> {
        self.time_count += 1;
        if self.rotation.max_bytes.is_none() && self.rotation.files.is_some_and(|n| self.time_count >= n) {
            self.full = true;
            return Ok(());
        }
        self.size_count = 0;
        self.period_start = now;
        let width = if self.rotation.max_bytes.is_some() { self.width } else { 0 };
        let name = self.name(Some(now), 0, width)?;
        self.open_next(name)
    }

    /// The current file is full (`-C`): the next one, round the ring with `-W`.
    fn rotate_size(&mut self) -> Result<(), PcapError> {
        self.size_count += 1;
        if self.rotation.files.is_some_and(|n| self.size_count >= n) {
            self.size_count = 0;
        }
        let time = self.rotation.seconds.map(|_| self.period_start);
        let name = self.name(time, self.size_count, self.width)?;
        self.open_next(name)
    }

    fn name(&self, time: Option<i64>, count: u32, width: usize) -> Result<PathBuf, PcapError> {
        file_name(&self.template, time, count, width)
            .map_err(|source| PcapError::Create { path: self.template.clone(), source })
    }

    /// Close the current file and go on in `name`.
    fn open_next(&mut self, name: PathBuf) -> Result<(), PcapError> {
        let flushed = crate::file::sync(&mut self.w);
        self.in_file(flushed)?;
        let kept = self.w.packets_in(self.w.get_ref().blocks().saturating_sub(self.w.header_blocks()));
        if let Some(last) = self.files.last_mut() {
            last.1 = kept;
        }
        let file = match self.made.get(&name) {
            Some(&own) => CaptureFile::reopen_own(&name, self.mode, own),
            None => CaptureFile::create(&name, self.mode),
        }
        .map_err(|source| PcapError::Create { path: name.clone(), source })?;
        let id = file.id()?;
        // The old file holds everything (synced above): closing it ends its writer.
        let started = self.w.start_file(file).and_then(|old| Ok(old.close()?)).and_then(|()| self.w.flush());
        self.files.retain(|(n, _)| *n != name);
        self.files.push((name.clone(), 0));
        self.made.insert(name, id);
        self.opened += 1;
        self.preamble = self.w.get_ref().bytes();
        self.in_file(started)
    }
}

impl PacketOutput for RotatingOutput {
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        if self.full {
            return Ok(());
        }
        if let Some(seconds) = self.rotation.seconds {
            let now = (self.clock)();
            if now.saturating_sub(self.period_start) >= seconds as i64 {
                self.rotate_time(now)?;
                if self.full {
                    return Ok(());
                }
            }
        }
        if let Some(limit) = self.rotation.max_bytes {
            if self.has_packets() && self.size() + self.w.bytes_for(r) > limit {
                self.rotate_size()?;
            }
        }
        let written = self.w.write_record(r);
        self.in_file(written)
    }

    fn flush(&mut self) -> Result<(), PcapError> {
        let r = self.w.flush();
        self.in_file(r)
    }

    fn finish(self: Box<Self>) -> Result<(), PcapError> {
        let path = self.current().to_path_buf();
        let closed = self.w.into_inner().and_then(|file| Ok(file.close()?));
        closed.map_err(|e| PcapError::InFile { path, source: Box::new(e) })
    }

    /// The packets in the files this output still has (after a failed
    /// write: the current file's complete blocks).
    fn packets_kept(&self) -> Option<u64> {
        let closed: u64 = self.files[..self.files.len() - 1].iter().map(|(_, n)| n).sum();
        let blocks = self.w.get_ref().blocks().saturating_sub(self.w.header_blocks());
        Some(closed + self.w.packets_in(blocks))
    }

    fn add_tls_keys(&mut self, lines: &[KeyLogLine]) -> Result<usize, PcapError> {
        if let Some(limit) = self.rotation.max_bytes {
            let need = self.w.bytes_for_keys(lines);
            if need > 0 && self.has_packets() && self.size() + need > limit {
                self.rotate_size()?;
            }
        }
        let r = self.w.add_keys(lines);
        self.in_file(r)
    }

    fn hold_for_tls_keys(&mut self) -> Result<(), PcapError> {
        let r = self.w.hold_for_keys(true);
        self.in_file(r)
    }

    fn tls_stats(&self) -> TlsFileStats {
        self.w.tls_stats()
    }

    fn takes_tls_keys(&self) -> bool {
        self.w.format() == Format::Pcapng
    }

    fn files(&self) -> Option<FilesWritten> {
        Some(FilesWritten { names: self.files.iter().map(|(n, _)| n.clone()).collect(), opened: self.opened })
    }

    fn accepts(&self) -> bool {
        !self.full
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_packets, PcapWriter, PcapngWriter};
    use pidcap_packet::{CapturedPacket, Direction, TlsInfo, TlsLibrary, TlsRecord, Verdict};
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    #[test]
    fn the_counter_is_as_wide_as_the_largest_number_of_the_ring() {
        for (files, width) in [(1, 0), (2, 1), (3, 1), (10, 1), (11, 2), (100, 2), (101, 3), (1000, 3)] {
            assert_eq!(counter_width(files), width, "-W {files}");
        }
    }

    #[test]
    fn names_are_tcpdumps() {
        let name = |t: Option<i64>, c, w| file_name(Path::new("dir/x.pcap"), t, c, w).unwrap();
        // -C alone: x, x1, x2 ...
        assert_eq!(name(None, 0, 0), Path::new("dir/x.pcap"));
        assert_eq!(name(None, 1, 0), Path::new("dir/x.pcap1"));
        assert_eq!(name(None, 12, 0), Path::new("dir/x.pcap12"));
        // -C -W 3: x0 x1 x2; -W 11: x00 ... x10.
        assert_eq!(name(None, 0, counter_width(3)), Path::new("dir/x.pcap0"));
        assert_eq!(name(None, 2, counter_width(3)), Path::new("dir/x.pcap2"));
        assert_eq!(name(None, 3, counter_width(11)), Path::new("dir/x.pcap03"));
        // -G: strftime, local time; the counter after it. %s and %% do not depend on the zone.
        let t = 1_700_000_000;
        let g = |c, w| file_name(Path::new("cap-%s-%%.pcapng"), Some(t), c, w).unwrap();
        assert_eq!(g(0, 0), Path::new("cap-1700000000-%.pcapng"));
        assert_eq!(g(4, 1), Path::new("cap-1700000000-%.pcapng4"));
        // Local time as localtime_r says.
        let local = file_name(Path::new("%Y%m%d-%H%M%S"), Some(t), 0, 0).unwrap();
        let tt = t as libc::time_t;
        // SAFETY: as in strftime_local.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: pointers to live values.
        assert!(!unsafe { libc::localtime_r(&tt, &mut tm) }.is_null());
        let want = format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        );
        assert_eq!(local, Path::new(&want));
        // Without -G a % is a character like any other.
        assert_eq!(file_name(Path::new("a%H"), None, 1, 0).unwrap(), Path::new("a%H1"));
        assert!(file_name(Path::new(""), Some(t), 0, 0).is_err());
    }

    #[test]
    fn the_summary_lists_few_files_and_shortens_many() {
        let f = |names: &[&str], opened| FilesWritten { names: names.iter().map(PathBuf::from).collect(), opened };
        assert_eq!(f(&["x"], 1).to_string(), "1 file written: x");
        assert_eq!(f(&["x", "x1", "x2"], 3).to_string(), "3 files written: x, x1, x2");
        assert_eq!(f(&["x", "x1", "x2", "x3", "x4", "x5"], 6).to_string(), "6 files written: x, x1 ... x5");
        assert_eq!(
            f(&["x1", "x2", "x0"], 7).to_string(),
            "3 files written (7 opened, the oldest overwritten; oldest first): x1, x2, x0"
        );
    }

    fn udp(id: u64, ts_ns: u64, payload_len: usize) -> CapturedPacket {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .udp(40000, 9)
            .write(&mut data, &[id as u8; 1][..].repeat(payload_len))
            .unwrap();
        let len = data.len() as u32;
        CapturedPacket::new(id, ts_ns, 4242, "python3".into(), 7, Direction::Outbound, Verdict::Pass, len, data)
    }

    fn tls_record(id: u64, v6: bool, len: usize) -> CapturedPacket {
        let (local, remote) = if v6 { ("[::1]:40000", "[::1]:443") } else { ("127.0.0.1:40000", "127.0.0.1:443") };
        CapturedPacket::tls_record(TlsRecord {
            id,
            timestamp_ns: 1_700_000_000_000_000_000 + id,
            pid: 4242,
            comm: "curl".into(),
            socket_cookie: 77,
            direction: Direction::Outbound,
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
            info: TlsInfo { tid: 4243, library: TlsLibrary::Openssl },
            plaintext: &vec![b'G'; len],
            true_len: len as u64,
            stream_offset: 1000,
        })
    }

    /// A TCP segment from 127.0.0.1:40000 to :443 carrying a ClientHello with random `r`.
    fn client_hello(id: u64, r: u8) -> CapturedPacket {
        let mut hello = vec![22, 3, 1, 0, 100, 1, 0, 0, 96, 3, 3];
        hello.extend([r; 32]);
        hello.extend([0; 10]);
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 1], 64)
            .tcp(40000, 443, 1, 65535)
            .write(&mut data, &hello)
            .unwrap();
        let len = data.len() as u32;
        CapturedPacket::new(id, id, 4242, "curl".into(), 77, Direction::Outbound, Verdict::Pass, len, data)
    }

    fn key(r: u8, label: crate::keylog::Label) -> KeyLogLine {
        KeyLogLine { label, client_random: [r; 32], secret: vec![0xab; 48] }
    }

    #[test]
    fn bytes_for_says_exactly_what_a_packet_adds_to_the_file() {
        use crate::keylog::Label;
        let opts = WriterOptions { snaplen: 200, application: "t".into() };
        let mut ng = PcapngWriter::with_os(Vec::new(), &opts, None).unwrap();
        let packets = [
            udp(1, 5, 0),
            udp(2, 6, 1),
            udp(3, 7, 3),
            udp(4, 8, 500),                                                  // cut to the snap length
            CapturedPacket { pid: 77, ..udp(11, 8, 2) },                     // a new process: its IDB first
            CapturedPacket { pid: 0, comm: String::new(), ..udp(12, 8, 2) }, // no process: the whole comment
            // Nothing of its own (cookie 0, its thread the process's): no comment.
            CapturedPacket { socket_cookie: 0, tid: 4242, thread: "python3".into(), ..udp(13, 8, 2) },
            tls_record(5, false, 10), // the TLS interface's IDB first
            tls_record(6, false, 11),
            tls_record(7, true, 1000),
        ];
        for p in &packets {
            let before = ng.out.w.len();
            let r = RecordRef::from(p);
            let said = ng.bytes_for(&r);
            ng.write_record(&r).unwrap();
            assert_eq!(said, (ng.out.w.len() - before) as u64, "pcapng, packet {}", p.id);
        }
        // Keys waiting for their ClientHello go in before it, and are counted with it.
        assert_eq!(ng.add_keys(&[key(9, Label::ClientRandom)]).unwrap(), 1);
        let hello = client_hello(8, 9);
        let before = ng.out.w.len();
        let said = ng.bytes_for(&RecordRef::from(&hello));
        ng.write_packet(&hello).unwrap();
        assert_eq!(said, (ng.out.w.len() - before) as u64);
        assert!(said > 200, "a DSB and the packet: {said}");
        // A key block for a connection in the file.
        let lines = [key(9, Label::ClientHandshakeTrafficSecret), key(9, Label::ClientRandom)];
        let before = ng.out.w.len();
        let said = ng.bytes_for_keys(&lines);
        ng.add_keys(&lines).unwrap();
        assert_eq!(said, (ng.out.w.len() - before) as u64);
        assert_eq!(ng.bytes_for_keys(&lines), 0, "written: nothing more");
        assert_eq!(ng.bytes_for_keys(&[key(1, Label::ClientRandom)]), 0, "no ClientHello yet: it waits");

        let mut pcap = PcapWriter::new(Vec::new(), &opts).unwrap();
        for p in &packets {
            let before = pcap.out.w.len();
            let said = pcap.bytes_for(&RecordRef::from(p));
            pcap.write_packet(p).unwrap();
            assert_eq!(said, (pcap.out.w.len() - before) as u64, "pcap, packet {}", p.id);
        }
    }

    /// A directory of its own, removed on drop.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let d = std::env::temp_dir().join(format!("pidcap-rotate-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Dir(d)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn fixed_clock() -> (Arc<AtomicI64>, Clock) {
        let now = Arc::new(AtomicI64::new(1_700_000_000));
        let c = Arc::clone(&now);
        (now, Box::new(move || c.load(Ordering::SeqCst)))
    }

    fn rotating(dir: &Dir, format: Format, rotation: Rotation, clock: Clock) -> Box<RotatingOutput> {
        let opts = WriterOptions { snaplen: 1500, application: "t".into() };
        Box::new(RotatingOutput::create(&dir.0.join("x"), format, &opts, 0o600, rotation, clock).unwrap())
    }

    /// The ids of the packets in each file, in order.
    fn ids(files: &[PathBuf]) -> Vec<Vec<u8>> {
        files
            .iter()
            .map(|f| read_packets(std::fs::File::open(f).unwrap()).unwrap().iter().map(|p| p.data[28]).collect())
            .collect()
    }

    #[test]
    fn c_cuts_files_at_the_limit_and_loses_nothing() {
        for format in [Format::Pcapng, Format::Pcap] {
            let dir = Dir::new(&format!("c-{format}"));
            let limit = 1000;
            let rotation = Rotation { max_bytes: Some(limit), ..Rotation::default() };
            let mut out = rotating(&dir, format, rotation, wall_clock());
            for i in 1..=20 {
                out.write_packet(&udp(i, i, 100)).unwrap();
            }
            out.flush().unwrap();
            assert_eq!(out.packets_kept(), Some(20));
            let files = out.files().unwrap();
            out.finish().unwrap();
            let names: Vec<String> =
                files.names.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
            let n = names.len();
            assert!(n >= 3, "{names:?}");
            let want: Vec<String> = (0..n).map(|i| if i == 0 { "x".into() } else { format!("x{i}") }).collect();
            assert_eq!(names, want);
            for f in &files.names {
                let len = std::fs::metadata(f).unwrap().len();
                assert!(len <= limit, "{} is {len} bytes", f.display());
                // Full: one more packet would not have fit (but the last file).
                if f != files.names.last().unwrap() {
                    assert!(len + one_packet(format) > limit, "{} is {len} bytes: room for another", f.display());
                }
            }
            let got: Vec<u8> = ids(&files.names).concat();
            assert_eq!(got, (1..=20).collect::<Vec<u8>>(), "every packet once, in order");
            assert!(std::fs::metadata(&files.names[0]).unwrap().permissions().mode() & 0o777 == 0o600);
        }
    }

    use std::os::unix::fs::PermissionsExt;

    /// What one of the test's packets adds to a file of `format`.
    fn one_packet(format: Format) -> u64 {
        let mut w = PacketWriter::new(format, Vec::new(), &WriterOptions::default()).unwrap();
        let before = w.get_ref().len();
        w.write_packet(&udp(1, 1, 100)).unwrap();
        (w.get_ref().len() - before) as u64
    }

    #[test]
    fn c_with_w_is_a_ring_of_the_newest_files() {
        let dir = Dir::new("ring");
        let rotation = Rotation { max_bytes: Some(1000), files: Some(3), ..Rotation::default() };
        let mut out = rotating(&dir, Format::Pcapng, rotation, wall_clock());
        for i in 1..=40 {
            out.write_packet(&udp(i, i, 100)).unwrap();
        }
        out.flush().unwrap();
        let files = out.files().unwrap();
        let kept = out.packets_kept().unwrap();
        out.finish().unwrap();
        assert_eq!(files.names.len(), 3);
        assert!(files.opened > 3, "{files}");
        let mut on_disk: Vec<String> =
            std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        on_disk.sort();
        assert_eq!(on_disk, ["x0", "x1", "x2"]);
        // Oldest first; the packets run on from file to file and end with the newest.
        let got = ids(&files.names);
        let all: Vec<u8> = got.concat();
        assert_eq!(all.len() as u64, kept);
        assert_eq!(*all.last().unwrap(), 40);
        assert!(all.windows(2).all(|w| w[1] == w[0] + 1), "{got:?}");
        assert!(all[0] > 1, "the oldest packets were overwritten: {got:?}");
    }

    #[test]
    fn the_ring_never_overwrites_a_file_it_did_not_make() {
        let dir = Dir::new("ring-swap");
        let rotation = Rotation { max_bytes: Some(600), files: Some(2), ..Rotation::default() };
        let mut out = rotating(&dir, Format::Pcapng, rotation, wall_clock());
        let mut i = 0;
        while out.files().unwrap().names.len() < 2 {
            i += 1;
            out.write_packet(&udp(i, i, 100)).unwrap();
        }
        // x0 is replaced by a link to a file of value before the ring comes back to it.
        let precious = dir.0.join("precious");
        std::fs::write(&precious, b"keep me").unwrap();
        std::fs::remove_file(dir.0.join("x0")).unwrap();
        std::os::unix::fs::symlink(&precious, dir.0.join("x0")).unwrap();
        let err = loop {
            i += 1;
            if let Err(e) = out.write_packet(&udp(i, i, 100)) {
                break e;
            }
            assert!(i < 100, "the ring never came back to x0");
        };
        assert!(err.to_string().contains("x0"), "{err}");
        assert_eq!(std::fs::read(&precious).unwrap(), b"keep me");
        // A plain file put where the ring's file was: refused, untouched.
        let file = dir.0.join("other");
        std::fs::write(&file, b"someone else's").unwrap();
        let mine = CaptureFile::create(&dir.0.join("mine"), 0o600).unwrap().id().unwrap();
        let e = CaptureFile::reopen_own(&file, 0o600, mine).unwrap_err();
        assert!(e.to_string().contains("no longer the file pidcap created"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"someone else's");
        // A FIFO put there (no reader): refused at once, not a write that blocks for ever.
        let fifo = dir.0.join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(CaptureFile::reopen_own(&fifo, 0o600, mine).is_err());
        // The file it made is opened again, emptied.
        let again = CaptureFile::reopen_own(&dir.0.join("mine"), 0o600, mine).unwrap();
        assert_eq!(again.id().unwrap(), mine);
    }

    #[test]
    fn a_hold_larger_than_the_limit_goes_into_one_file_not_one_per_packet() {
        let dir = Dir::new("hold");
        let rotation = Rotation { max_bytes: Some(2000), ..Rotation::default() };
        let mut out = rotating(&dir, Format::Pcapng, rotation, wall_clock());
        out.hold_for_tls_keys().unwrap();
        out.write_packet(&udp(1, 1, 100)).unwrap();
        out.write_packet(&udp(2, 2, 100)).unwrap();
        // A ClientHello whose keys never come: what follows is held back (for up to 500 ms).
        out.write_packet(&client_hello(3, 5)).unwrap();
        for i in 4..=30 {
            out.write_packet(&udp(i, i, 100)).unwrap();
        }
        let files = out.files().unwrap();
        out.finish().unwrap();
        assert_eq!(files.names.len(), 2, "{files}");
        let got: Vec<Vec<u64>> = files
            .names
            .iter()
            .map(|f| read_packets(std::fs::File::open(f).unwrap()).unwrap().iter().map(|p| p.timestamp_ns).collect())
            .collect();
        assert_eq!(got, [vec![1, 2], (3..=30).collect::<Vec<u64>>()], "the handshake and what it held, together");
    }

    #[test]
    fn g_starts_a_file_per_period_named_by_strftime_and_w_stops_it() {
        let dir = Dir::new("g");
        let (now, clock) = fixed_clock();
        let opts = WriterOptions { snaplen: 1500, application: "t".into() };
        let template = dir.0.join("cap-%s.pcapng");
        let rotation = Rotation { seconds: Some(2), files: Some(3), ..Rotation::default() };
        let mut out: Box<RotatingOutput> =
            Box::new(RotatingOutput::create(&template, Format::Pcapng, &opts, 0o600, rotation, clock).unwrap());
        let mut id = 0;
        let mut send = |out: &mut Box<RotatingOutput>, n| {
            for _ in 0..n {
                id += 1;
                out.write_packet(&udp(id, id, 10)).unwrap();
            }
        };
        send(&mut out, 2);
        now.fetch_add(1, Ordering::SeqCst);
        send(&mut out, 1); // same period
        now.fetch_add(1, Ordering::SeqCst);
        send(&mut out, 2); // a new file
        now.fetch_add(5, Ordering::SeqCst);
        send(&mut out, 1); // the third file
        assert!(out.accepts());
        now.fetch_add(2, Ordering::SeqCst);
        send(&mut out, 1); // a fourth would start: -W 3 stops here
        assert!(!out.accepts());
        let files = out.files().unwrap();
        out.finish().unwrap();
        let names: Vec<String> =
            files.names.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["cap-1700000000.pcapng", "cap-1700000002.pcapng", "cap-1700000007.pcapng"]);
        assert_eq!(ids(&files.names), [vec![1, 2, 3], vec![4, 5], vec![6]]);
    }

    #[test]
    fn g_with_c_appends_the_counter_and_starts_it_again_each_period() {
        let dir = Dir::new("gc");
        let (now, clock) = fixed_clock();
        let opts = WriterOptions { snaplen: 1500, application: "t".into() };
        let template = dir.0.join("c-%s-");
        let rotation = Rotation { seconds: Some(1), max_bytes: Some(700), files: None };
        let mut out = Box::new(RotatingOutput::create(&template, Format::Pcap, &opts, 0o600, rotation, clock).unwrap());
        for i in 1..=12 {
            out.write_packet(&udp(i, i, 100)).unwrap();
        }
        now.fetch_add(1, Ordering::SeqCst);
        for i in 13..=14 {
            out.write_packet(&udp(i, i, 100)).unwrap();
        }
        let files = out.files().unwrap();
        out.finish().unwrap();
        let names: Vec<String> =
            files.names.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["c-1700000000-", "c-1700000000-1", "c-1700000000-2", "c-1700000001-"]);
        assert_eq!(ids(&files.names).concat(), (1..=14).collect::<Vec<u8>>());
    }
}
