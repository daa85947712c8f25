//! Capture files on disk: created private and never through a link
//! ([`create`]), written in whole blocks and cut back to the last complete
//! one when a write fails ([`CaptureFile`]), and the [`PacketOutput`] over
//! one ([`FileOutput`]).
//!
//! # Creating an output file ([`create`])
//!
//! * A new file is created with `O_EXCL` and given exactly `mode` (0600 by
//!   default in pidcap: captured traffic is private), whatever the umask.
//! * An existing path is opened with `O_NOFOLLOW`: a symbolic link is
//!   refused, dangling or not (a link planted in `/tmp` cannot redirect a
//!   write by root). A regular file is refused when it has other hard links,
//!   or when it belongs to another user in a sticky directory (`/tmp`: a file
//!   planted there for root to fill); otherwise it is truncated and given
//!   `mode`. A FIFO or a character device (`/dev/null`) is written as it is.
//!   Anything else (a directory, a block device, a socket) is refused.
//!
//! # Writing in blocks ([`CaptureFile`])
//!
//! The pcap and pcapng writers hand over each header and each packet with
//! one `write_all`; a [`CaptureFile`] takes every `write` whole (it never
//! accepts part of a buffer), so each `write` is one block. It gathers
//! blocks in a batch and hands the batch to a writer thread of its own
//! (`pidcap-writer`) on `flush` or when 1 MiB is gathered, so that the
//! caller (the capture loop draining the kernel ring) never waits for the
//! file system: at most 4 batches wait for the writer, then the caller
//! does; the batches' buffers come back for reuse. The writer writes them
//! in order. `flush` does not wait; [`CaptureFile::sync`] and
//! [`CaptureFile::close`] do, and report the writer's error. When writing
//! fails (a full disk), the writer cuts the file back to the end of its
//! last complete block, so that it reads without error, and drops what
//! comes after; the caller gets that error (the `io::Error` itself, with
//! its errno) from its next `write`, `flush` or `sync`, and "an earlier
//! write failed" after that; [`CaptureFile::blocks`] (which waits for the
//! writer) says how many blocks the file holds.

use crate::keylog::KeyLogLine;
use crate::{Format, PacketOutput, PacketWriter, PcapError, RecordRef, TlsFileStats, WriterOptions};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The mode of capture and export files unless the user asks otherwise.
pub const DEFAULT_FILE_MODE: u32 = 0o600;

/// Bytes buffered before they are written out.
const BUFFER: usize = 1 << 20;

/// Parse a file mode given on the command line: octal, `600`, `0600` or
/// `0o600`, at most `0777` (no setuid, setgid or sticky bits).
pub fn parse_file_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty() && digits.len() <= 4)
        .ok_or_else(|| format!("{s:?} is not an octal file mode like 600 or 0640"))?;
    if mode > 0o777 {
        return Err(format!("{s:?}: only permission bits (at most 0777) can be given"));
    }
    Ok(mode)
}

fn refused(kind: ErrorKind, why: String) -> io::Error {
    io::Error::new(kind, why)
}

/// Which file an open file is (device and inode): a rotation's ring
/// overwrites only the files it made itself ([`CaptureFile::reopen_own`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(f: &File) -> io::Result<FileId> {
        let m = f.metadata()?;
        Ok(FileId { dev: m.dev(), ino: m.ino() })
    }
}

/// Open `path` for writing as the module documentation says; the file, and
/// whether this call created it. Refusals are [`io::Error`]s whose message
/// says why (the caller names the path).
pub fn create(path: &Path, mode: u32) -> io::Result<(File, bool)> {
    open_checked(path, mode, None)
}

/// [`create`], and when `own` is given, an existing file at `path` must be
/// that one (a file this process made: a rotation's ring going round), else
/// it is refused before anything is changed. The existing file is then
/// opened non-blocking, so that a FIFO put there meanwhile cannot hang the
/// open before it is refused.
fn open_checked(path: &Path, mode: u32, own: Option<FileId>) -> io::Result<(File, bool)> {
    // A path that disappears between the two opens is tried again, a few times.
    for _ in 0..8 {
        match OpenOptions::new().write(true).create_new(true).mode(mode).custom_flags(libc::O_NOFOLLOW).open(path) {
            Ok(f) => {
                f.set_permissions(Permissions::from_mode(mode))?;
                return Ok((f, true));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let flags = libc::O_NOFOLLOW | if own.is_some() { libc::O_NONBLOCK } else { 0 };
        match OpenOptions::new().write(true).custom_flags(flags).open(path) {
            Ok(f) => {
                if let Some(own) = own {
                    if FileId::of(&f)? != own {
                        return Err(refused(
                            ErrorKind::AlreadyExists,
                            "it is no longer the file pidcap created there in this capture (something replaced \
                             it): refusing to overwrite it"
                                .into(),
                        ));
                    }
                    blocking(&f)?;
                }
                return existing(path, f, mode).map(|f| (f, false));
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(refused(
                    ErrorKind::InvalidInput,
                    "it is a symbolic link, and pidcap does not write through one (remove it, or choose another name)"
                        .into(),
                ))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        }
    }
    Err(refused(ErrorKind::Other, "it keeps appearing and disappearing; giving up".into()))
}

/// Clear `O_NONBLOCK` on `f`.
fn blocking(f: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor we own, with F_GETFL/F_SETFL only.
    let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Check an existing file opened without following a link; truncate and
/// chmod it when it is a regular file pidcap may replace.
fn existing(path: &Path, f: File, mode: u32) -> io::Result<File> {
    let meta = f.metadata()?;
    let kind = meta.file_type();
    if kind.is_fifo() || kind.is_char_device() {
        return Ok(f);
    }
    if !kind.is_file() {
        return Err(refused(ErrorKind::InvalidInput, "it is not a regular file, a FIFO or a character device".into()));
    }
    if meta.nlink() > 1 {
        return Err(refused(
            ErrorKind::InvalidInput,
            format!(
                "it has {} hard links: refusing to overwrite a file that has other names (remove it, or choose another name)",
                meta.nlink()
            ),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let sticky = std::fs::metadata(dir).map(|d| d.mode() & 0o1000 != 0)?;
        if sticky {
            return Err(refused(
                ErrorKind::PermissionDenied,
                format!(
                    "it belongs to uid {}, in a sticky directory where anyone may create files: refusing to write into \
                     another user's file there (remove it, or choose another name)",
                    meta.uid()
                ),
            ));
        }
    }
    f.set_len(0)?;
    f.set_permissions(Permissions::from_mode(mode))?;
    Ok(f)
}

/// A file written in whole blocks by a thread of its own, cut back to the
/// last complete block when a write fails. See the module documentation.
#[derive(Debug)]
pub struct CaptureFile {
    file: Arc<File>,
    path: PathBuf,
    created: bool,
    /// The blocks gathered since the last hand-over.
    batch: Batch,
    /// Bytes handed to the writer so far.
    handed: u64,
    /// A write failed and the caller was told: every later call fails.
    failed: bool,
    shared: Arc<Shared>,
    writer: Option<std::thread::JoinHandle<()>>,
}

/// Blocks on their way to the file, and where each ends.
#[derive(Debug, Default)]
struct Batch {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }
}

/// What the caller's thread and the writer share.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// A batch was queued, or the file is closing (the writer waits on it).
    work: Condvar,
    /// A batch is done (the caller waits on it, for room or in [`CaptureFile::sync`]).
    done: Condvar,
    /// A write failed (read on every block without taking the lock).
    failed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Batches handed over, in file order.
    queue: VecDeque<Batch>,
    /// Emptied batches, for reuse (their memory stays mapped).
    spare: Vec<Batch>,
    /// The writer holds a batch it took from the queue.
    writing: bool,
    /// In the file: whole blocks only.
    len: u64,
    blocks: u64,
    /// The write error, until the caller has been given it.
    error: Option<io::Error>,
    closing: bool,
}

/// Most batches handed over and not yet written; the caller waits beyond.
const QUEUED: usize = 4;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves counters only: go on with them.
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread: writes the batches in order; after a failure, cuts
/// the file back to its last complete block and drops what comes next.
fn write_batches(file: Arc<File>, shared: Arc<Shared>) {
    let mut state = lock(&shared);
    loop {
        let Some(mut batch) = state.queue.pop_front() else {
            if state.closing {
                return;
            }
            state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        state.writing = true;
        let len = state.len;
        drop(state);
        let outcome = (!shared.failed.load(Ordering::Acquire)).then(|| write_batch(&file, &batch, len));
        batch.clear();
        state = lock(&shared);
        state.writing = false;
        if let Some((blocks, bytes, result)) = outcome {
            state.blocks += blocks;
            state.len += bytes;
            if let Err(e) = result {
                state.error = Some(e);
                shared.failed.store(true, Ordering::Release);
            }
        }
        state.spare.push(batch);
        shared.done.notify_all();
    }
}

/// Write one batch at the end of a file that holds `len` bytes of whole
/// blocks: the blocks and bytes it now holds more, and how the write went
/// (on an error, the file is cut back to its last complete block).
fn write_batch(file: &File, batch: &Batch, len: u64) -> (u64, u64, io::Result<()>) {
    let mut done = 0;
    let result = loop {
        if done == batch.buf.len() {
            break Ok(());
        }
        match (&*file).write(&batch.buf[done..]) {
            Ok(0) => break Err(io::Error::from(ErrorKind::WriteZero)),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    let whole = batch.ends.iter().take_while(|&&end| end <= done).count();
    let keep = if whole == 0 { 0 } else { batch.ends[whole - 1] };
    if result.is_err() && keep < done {
        // Not possible on a FIFO or a device: nothing to cut there.
        let _ = file.set_len(len + keep as u64);
    }
    (whole as u64, keep as u64, result)
}

impl CaptureFile {
    /// [`create`] `path` with `mode`.
    pub fn create(path: &Path, mode: u32) -> io::Result<CaptureFile> {
        let (file, created) = create(path, mode)?;
        CaptureFile::start(file, path, created)
    }

    /// Open `path` again for a rotation's ring going round: as [`create`]
    /// does, and an existing file there must be `own` (the file this capture
    /// made at that path, [`CaptureFile::id`]): a file put there meanwhile,
    /// a link included, is refused and left as it is.
    pub fn reopen_own(path: &Path, mode: u32, own: FileId) -> io::Result<CaptureFile> {
        let (file, created) = open_checked(path, mode, Some(own))?;
        CaptureFile::start(file, path, created)
    }

    /// Which file this is (for [`CaptureFile::reopen_own`]).
    pub fn id(&self) -> io::Result<FileId> {
        FileId::of(&self.file)
    }

    /// Bytes taken so far: written, on their way, and gathered to go.
    pub fn bytes(&self) -> u64 {
        self.handed + self.batch.buf.len() as u64
    }

    /// Write blocks into an open file from its current position (tests, or
    /// a file opened otherwise).
    pub fn from_file(file: File, path: &Path, created: bool) -> io::Result<CaptureFile> {
        CaptureFile::start(file, path, created)
    }

    fn start(file: File, path: &Path, created: bool) -> io::Result<CaptureFile> {
        let file = Arc::new(file);
        let shared = Arc::new(Shared::default());
        let writer = std::thread::Builder::new().name("pidcap-writer".into()).spawn({
            let (file, shared) = (Arc::clone(&file), Arc::clone(&shared));
            move || write_batches(file, shared)
        })?;
        Ok(CaptureFile {
            file,
            path: path.to_path_buf(),
            created,
            batch: Batch { buf: Vec::with_capacity(64 * 1024), ends: Vec::new() },
            handed: 0,
            failed: false,
            shared,
            writer: Some(writer),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when [`CaptureFile::create`] made the file (it did not exist).
    pub fn created(&self) -> bool {
        self.created
    }

    /// Complete blocks in the file (after a failed write: the ones it
    /// kept), once the writer has written what was handed to it.
    pub fn blocks(&self) -> u64 {
        self.idle().blocks
    }

    /// True once a write has failed (the file was cut back; nothing more is written).
    pub fn failed(&self) -> bool {
        self.failed || self.shared.failed.load(Ordering::Acquire)
    }

    /// Hand what is gathered to the writer and wait until it is in the
    /// file: the write error, if one happened since the caller was last told.
    pub fn sync(&mut self) -> io::Result<()> {
        self.hand_over()?;
        drop(self.idle());
        self.check()
    }

    /// [`CaptureFile::sync`], then end the writer.
    pub fn close(mut self) -> io::Result<()> {
        let r = self.sync();
        self.stop_writer();
        r
    }

    /// The state once the writer has nothing left to do.
    fn idle(&self) -> MutexGuard<'_, State> {
        let mut state = lock(&self.shared);
        while state.writing || !state.queue.is_empty() {
            state = self.shared.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state
    }

    /// An error for the caller if a write failed: the writer's own error the
    /// first time, then that an earlier one failed.
    fn check(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write to this file failed"));
        }
        if !self.shared.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        self.failed = true;
        let error = lock(&self.shared).error.take();
        Err(error.unwrap_or_else(|| io::Error::other("an earlier write to this file failed")))
    }

    /// Queue the gathered blocks for the writer (waiting while
    /// [`QUEUED`] batches are), and start a new batch.
    fn hand_over(&mut self) -> io::Result<()> {
        self.check()?;
        if self.batch.buf.is_empty() {
            return Ok(());
        }
        let mut state = lock(&self.shared);
        while state.queue.len() >= QUEUED && !self.shared.failed.load(Ordering::Acquire) {
            state = self.shared.done.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        let next = state.spare.pop().unwrap_or_default();
        self.handed += self.batch.buf.len() as u64;
        state.queue.push_back(std::mem::replace(&mut self.batch, next));
        self.shared.work.notify_one();
        Ok(())
    }

    fn stop_writer(&mut self) {
        let Some(writer) = self.writer.take() else { return };
        lock(&self.shared).closing = true;
        self.shared.work.notify_one();
        let _ = writer.join();
    }
}

impl Write for CaptureFile {
    /// Take all of `b` as one block (never part of it).
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.check()?;
        if !self.batch.buf.is_empty() && self.batch.buf.len() + b.len() > BUFFER {
            self.hand_over()?;
        }
        self.batch.buf.extend_from_slice(b);
        self.batch.ends.push(self.batch.buf.len());
        Ok(b.len())
    }

    /// Take all of `bufs` as one block (a block given in parts: the
    /// pcapng writer's packet fields and the packet's bytes from the ring).
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.check()?;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if !self.batch.buf.is_empty() && self.batch.buf.len() + len > BUFFER {
            self.hand_over()?;
        }
        for b in bufs {
            self.batch.buf.extend_from_slice(b);
        }
        self.batch.ends.push(self.batch.buf.len());
        Ok(len)
    }

    /// Hand the gathered blocks to the writer, without waiting for it to
    /// write them ([`CaptureFile::sync`] waits); fails if a write has failed.
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Drop for CaptureFile {
    /// What was taken is written (errors go unreported: see [`CaptureFile::close`]).
    fn drop(&mut self) {
        let _ = self.hand_over();
        self.stop_writer();
    }
}

/// A capture file as a [`PacketOutput`]: the headers are written (and
/// flushed) when it is made, so a full disk shows before any packet.
#[derive(Debug)]
pub struct FileOutput {
    w: PacketWriter<CaptureFile>,
    /// Blocks of the file header(s): SHB + IDB, or the pcap header.
    headers: u64,
}

impl FileOutput {
    /// Write `format`'s header(s) to `file` and push them to the disk.
    pub fn new(format: Format, file: CaptureFile, opts: &WriterOptions) -> Result<FileOutput, PcapError> {
        let mut w = PacketWriter::new(format, file, opts)?;
        sync(&mut w)?;
        let headers = w.get_ref().blocks();
        Ok(FileOutput { w, headers })
    }

    pub fn file(&self) -> &CaptureFile {
        self.w.get_ref()
    }
}

impl PacketOutput for FileOutput {
    fn write_record(&mut self, r: &RecordRef<'_>) -> Result<(), PcapError> {
        self.w.write_record(r)
    }

    fn add_tls_keys(&mut self, lines: &[KeyLogLine]) -> Result<usize, PcapError> {
        self.w.add_keys(lines)
    }

    fn hold_for_tls_keys(&mut self) -> Result<(), PcapError> {
        self.w.hold_for_keys(true)
    }

    fn tls_stats(&self) -> TlsFileStats {
        self.w.tls_stats()
    }

    fn takes_tls_keys(&self) -> bool {
        self.w.format() == Format::Pcapng
    }

    fn flush(&mut self) -> Result<(), PcapError> {
        self.w.flush()
    }

    fn finish(self: Box<Self>) -> Result<(), PcapError> {
        Ok(self.w.into_inner()?.close()?)
    }

    /// The packets in the file (its blocks but the headers, TLS interface and key blocks).
    fn packets_kept(&self) -> Option<u64> {
        Some(self.w.packets_in(self.file().blocks().saturating_sub(self.headers)))
    }
}

/// Flush `w` and wait until its file holds everything written so far (a
/// write error shows here, not at some later packet).
pub(crate) fn sync(w: &mut PacketWriter<CaptureFile>) -> Result<(), PcapError> {
    w.flush()?;
    Ok(w.get_mut().sync()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_modes_parse_as_octal_permission_bits() {
        assert_eq!(parse_file_mode("600"), Ok(0o600));
        assert_eq!(parse_file_mode("0640"), Ok(0o640));
        assert_eq!(parse_file_mode("0o644"), Ok(0o644));
        assert_eq!(parse_file_mode("0"), Ok(0));
        for bad in ["", "0o", "8", "rw", "4755", "01777", "77777", "-600"] {
            assert!(parse_file_mode(bad).is_err(), "{bad:?}");
        }
    }
}
