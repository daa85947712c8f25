//! `pidcap run` and `pidcap capture`: load the kernel layer, open the output
//! (before `run`'s command exists), register the targets, and stream packets
//! to stdout or a capture file until the targets exit, -c COUNT is reached,
//! Ctrl-C/SIGTERM, or the output fails (then the capture stops cleanly:
//! summary, file cut back to its last complete block, `run`'s command stopped).

use crate::cli::{CaptureArgs, CaptureOpts, RunArgs};
use crate::output;
use crate::output::{LineFormat, Lines};
use anyhow::{bail, Context, Result};
use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::spawn::{self, Child, Output, Stdio};
use pidcap_engine::{Capture, CaptureOptions, Drain, EngineError, Process, Schedule, Session};
use pidcap_engine::{Raw, RawPacket};
use pidcap_pcapfile::{
    CaptureFile, FileOutput, Format, PacketOutput, PacketWriter, PcapError, RecordRef, WriterOptions,
};
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After the last target exits, packets still in flight (a FIN's ACK) get this long.
const GRACE: Duration = Duration::from_millis(50);

/// When the output fails, how long `run`'s command has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where packets go: one [`PacketOutput`] (a capture file, text or JSON
/// lines, nothing), and what to call it in errors.
struct Sink {
    out: Box<dyn PacketOutput>,
    what: String,
    /// The capture file this sink created: removed if the capture never
    /// starts (the command could not run), kept once it does ([`Sink::keep`]).
    created: Option<PathBuf>,
    /// A write failed: nothing more is written (a file was cut back to its
    /// last complete block).
    failed: bool,
}

impl Sink {
    /// Open the output: for a file, create it (refusing links, see
    /// pidcap_pcapfile::file) and write its headers to the disk, so that an
    /// output that cannot be written is an error before anything runs.
    fn open(opts: &CaptureOpts) -> Result<Sink> {
        if let Some(path) = &opts.write {
            let format = opts.format.or_else(|| Format::from_path(path)).unwrap_or(Format::Pcapng);
            let wopts =
                WriterOptions { snaplen: opts.snaplen, application: format!("pidcap {}", env!("CARGO_PKG_VERSION")) };
            if path.as_os_str() == "-" {
                let w = PacketWriter::new(format, BufWriter::with_capacity(1 << 20, std::io::stdout()), &wopts)
                    .context("cannot write to stdout")?;
                return Ok(Sink {
                    out: Box::new(w),
                    what: "cannot write to stdout".into(),
                    created: None,
                    failed: false,
                });
            }
            let file = CaptureFile::create(path, opts.file_mode)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let what = format!("cannot write the capture file {}", path.display());
            // Made first, so that a file it created goes if its headers cannot be written.
            let mut sink = Sink {
                out: Box::new(output::Discard),
                what,
                created: file.created().then(|| path.clone()),
                failed: false,
            };
            sink.out = Box::new(FileOutput::new(format, file, &wopts).with_context(|| sink.what.clone())?);
            return Ok(sink);
        }
        let out: Box<dyn PacketOutput> = if opts.quiet {
            Box::new(output::Discard)
        } else {
            let format = if opts.json { LineFormat::Json } else { LineFormat::Text };
            Box::new(Lines::new(BufWriter::with_capacity(1 << 16, std::io::stdout()), format))
        };
        Ok(Sink { out, what: "cannot write to stdout".into(), created: None, failed: false })
    }

    /// The capture has started: its file stays, whatever happens next.
    fn keep(&mut self) {
        self.created = None;
    }

    /// Run `drain` (a session step, or its end) with this sink taking the
    /// packets, decoded or raw as the output prefers, up to `limit` in all
    /// (`written` counts them). A write error stops writing and is returned
    /// beside `drain`'s result, once the kernel's batch has been taken.
    fn drain<R>(
        &mut self,
        limit: u64,
        written: &mut u64,
        drain: impl FnOnce(Drain<'_>) -> R,
    ) -> (R, Option<anyhow::Error>) {
        let mut err = None;
        let decoded = self.out.wants_decoded();
        let failed = self.failed;
        let out = &mut self.out;
        let mut accept = |write: &mut dyn FnMut(&mut dyn PacketOutput) -> Result<(), PcapError>| {
            if *written < limit && err.is_none() && !failed {
                match write(out.as_mut()) {
                    Ok(()) => *written += 1,
                    Err(e) => err = Some(e),
                }
            }
        };
        let r = if decoded {
            drain(Drain::Decoded(&mut |p| accept(&mut |out| out.write_packet(p))))
        } else {
            drain(Drain::Raw(&mut |raw| match raw {
                Raw::Packet { id, timestamp_ns, packet } => accept(&mut |out| {
                    out.write_record(&record(id, timestamp_ns, packet, &String::from_utf8_lossy(packet.comm)))
                }),
                Raw::Tls(p) => accept(&mut |out| out.write_packet(p)),
            }))
        };
        self.failed |= err.is_some();
        (r, err.map(|e| anyhow::Error::new(e).context(self.what.clone())))
    }

    fn flush(&mut self) -> Result<()> {
        if self.failed {
            return Ok(());
        }
        let r = self.out.flush().with_context(|| self.what.clone());
        self.failed |= r.is_err();
        r
    }

    /// Flush and close (after a failed write: close only, nothing more can be written).
    fn finish(mut self) -> Result<()> {
        let out = std::mem::replace(&mut self.out, Box::new(output::Discard));
        if self.failed {
            return Ok(());
        }
        out.finish().with_context(|| self.what.clone())
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(path) = self.created.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One packet as the output sees it, borrowed from the kernel's buffer.
fn record<'a>(id: u64, timestamp_ns: u64, raw: &RawPacket<'a>, comm: &'a str) -> RecordRef<'a> {
    RecordRef {
        id,
        timestamp_ns,
        pid: raw.pid,
        comm,
        socket_cookie: raw.socket_cookie,
        direction: raw.direction,
        verdict: raw.verdict,
        rule: raw.rule,
        orig_len: raw.orig_len,
        data: raw.data,
        tls: None,
    }
}

/// Load the programs, with errors that say what to do.
fn load_capture(opts: &CaptureOpts) -> Result<Session> {
    let load = LoadOptions { ring_bytes: opts.buffer_mib << 20, ..LoadOptions::default() };
    let backend = EbpfBackend::load(load).map_err(|e| match e {
        EngineError::Permission { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context("cannot load the kernel layer"),
    })?;
    let copts = CaptureOptions {
        snaplen: opts.snaplen,
        ring_size: opts.ring_size,
        follow_children: opts.follow_children,
        tls: true,
    };
    let mut cap = Capture::new(Box::new(backend), copts)?;
    cap.set_rules(&opts.rules).context("cannot install the filter rules")?;
    Ok(Session::new(cap, Schedule::CLI))
}

/// SIGINT/SIGTERM/SIGHUP: the number received, read by the capture loop.
fn install_signals() -> Result<Arc<AtomicUsize>> {
    let count = Arc::new(AtomicUsize::new(0));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        let c = Arc::clone(&count);
        // SAFETY: the handler only does an atomic increment, which is async-signal-safe.
        unsafe {
            signal_hook::low_level::register(sig, move || {
                c.fetch_add(1, Ordering::SeqCst);
            })
        }
        .context("installing signal handlers")?;
    }
    Ok(count)
}

pub fn run(args: RunArgs) -> Result<u8> {
    let mut session = load_capture(&args.opts)?;
    // Every output is open before the command exists: if one cannot be written, the command never runs.
    let sink = Sink::open(&args.opts)?;
    let to_stdout = args.opts.write.as_ref().is_some_and(|p| p.as_os_str() == "-");
    // When our stdout carries the capture file, the command's goes to stderr.
    let stdio = Stdio { stdout: if to_stdout { Output::Stderr } else { Output::Inherit }, ..Stdio::default() };
    let gated = spawn::spawn_gated(&args.command, &stdio)
        .with_context(|| format!("cannot run {}", args.command[0].to_string_lossy()))?;
    if let Err(e) = session.capture_mut().add_pid(gated.pid) {
        gated.abort();
        return Err(e).context("cannot register the command as a target");
    }
    let signals = install_signals()?;
    announce(&args.opts, &format!("pid {} ({})", gated.pid, args.command[0].to_string_lossy()));
    let child = gated.release().with_context(|| format!("cannot run {}", args.command[0].to_string_lossy()))?;
    let mut ended = Ended::Child(child);
    capture_loop(session, sink, &args.opts, &signals, &mut ended)
}

pub fn capture(args: CaptureArgs) -> Result<u8> {
    // Hold each process the user named from now on (a pidfd): if it exits
    // before the capture starts, whatever is given its pid meanwhile is not
    // it. Checked first: a typo should not need root to be reported.
    let mut processes = Vec::with_capacity(args.pids.len());
    for &pid in &args.pids {
        match Process::open(pid) {
            Ok(p) if !p.has_exited()? => processes.push(p),
            Ok(_) | Err(EngineError::NoSuchProcess(_)) => {
                bail!("no process with pid {pid} (list processes with `ps -e`)")
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot capture pid {pid}"))),
        }
    }
    let mut session = load_capture(&args.opts)?;
    let sink = Sink::open(&args.opts)?;
    let cap = session.capture_mut();
    for process in processes {
        let pid = process.pid();
        cap.add_process(process).map_err(|e| match e {
            EngineError::NoSuchProcess(pid) => anyhow::anyhow!("process {pid} exited before the capture started"),
            e => anyhow::Error::new(e).context(format!("cannot capture pid {pid}")),
        })?;
    }
    for name in &args.names {
        cap.add_name(name).with_context(|| format!("cannot capture processes named {name}"))?;
    }
    let signals = install_signals()?;
    let what: Vec<String> =
        args.pids.iter().map(|p| format!("pid {p}")).chain(args.names.iter().map(|n| format!("name {n}"))).collect();
    announce(&args.opts, &what.join(", "));
    let mut ended = if args.names.is_empty() { Ended::AllTargets } else { Ended::Never };
    capture_loop(session, sink, &args.opts, &signals, &mut ended)
}

/// Say on stderr that the capture is live (tests wait for this line).
fn announce(opts: &CaptureOpts, what: &str) {
    let to = match &opts.write {
        Some(p) if p.as_os_str() == "-" => "stdout".to_string(),
        Some(p) => p.display().to_string(),
        None => "stdout".to_string(),
    };
    eprintln!("pidcap: capturing {what}, snap length {}, to {to}", opts.snaplen);
}

/// When a capture ends by itself.
enum Ended {
    /// `run`: when the command (and, with -f, its children) have exited.
    Child(Child),
    /// `capture --pid`: when every target has exited.
    AllTargets,
    /// `capture --name`: only on a signal or -c (more may start).
    Never,
}

fn capture_loop(
    mut session: Session,
    mut sink: Sink,
    opts: &CaptureOpts,
    signals: &AtomicUsize,
    ended: &mut Ended,
) -> Result<u8> {
    sink.keep();
    let limit = opts.count.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let mut signals_seen = 0;
    let mut exit_code = 0u8;
    // A write error that ends the capture: reported after the summary.
    let mut failure = None;

    loop {
        let (tick, write_err) = sink.drain(limit, &mut written, |d| session.step(d));
        tick.drained?;
        if let Some(e) = write_err.map_or_else(|| sink.flush().err(), Some) {
            // stdout closed (`| head`) is a normal way to stop.
            if !is_broken_pipe(&e) {
                failure = Some(e);
            }
            break;
        }
        if written >= limit || tick.finished {
            break;
        }
        let sigs = signals.load(Ordering::SeqCst);
        if sigs > signals_seen {
            signals_seen = sigs;
            match ended {
                // Pass the signal on, then wait for the command to exit; a
                // second signal stops at once.
                Ended::Child(child) if sigs == 1 => child.signal(libc::SIGTERM),
                _ => break,
            }
        }
        if let Some(live) = tick.live {
            let live = live?;
            let done = match ended {
                Ended::Child(child) => match child.try_wait() {
                    Some(code) => {
                        exit_code = code;
                        live.is_empty() || !opts.follow_children
                    }
                    None => false,
                },
                Ended::AllTargets => live.is_empty(),
                Ended::Never => false,
            };
            if done {
                session.wind_down(GRACE);
            }
        }
    }
    // A file keeps the packets of its complete blocks (it was cut back to the last one).
    let kept = failure.as_ref().and_then(|_| sink.out.packets_kept());
    if failure.is_some() {
        written = kept.map_or(written, |kept| kept.min(written));
        match ended {
            Ended::Child(child) => stop_command(&mut session, child),
            _ => {
                eprintln!("pidcap: the output failed: the capture stops; its targets keep running, no longer captured")
            }
        }
    }
    // Whatever the kernel already pushed belongs to this capture; a write
    // error here (stdout closed) only ends it.
    let (stats, _) = sink.drain(limit, &mut written, |d| session.finish(d));
    let stats = stats?;
    let finished = sink.finish();
    if let Err(e) = finished {
        if !is_broken_pipe(&e) {
            return Err(e);
        }
    }
    eprintln!("{}", output::summary(&stats, written));
    if let Some(failure) = failure {
        eprintln!("pidcap: {}", output::error_text(&failure));
        if let (Some(kept), Some(path)) = (kept, &opts.write) {
            eprintln!(
                "pidcap: {} holds the {kept} packets written before, cut back to its last complete block",
                path.display()
            );
        }
        return Ok(2);
    }
    if let Ended::Child(child) = ended {
        if let Some(code) = child.try_wait() {
            exit_code = code;
        } else if written >= limit || signals_seen > 0 {
            // We stop before the command does: leave it running, report success.
            eprintln!("pidcap: capture ended; the command (pid {}) is still running", child.pid);
        }
    }
    Ok(exit_code)
}

/// The output failed while `run`'s command runs: stop the command (SIGTERM,
/// then SIGKILL after [`STOP_GRACE`]) rather than let it run uncaptured, and
/// without its block rules once pidcap exits. The kernel layer stays until
/// it is gone; its packets are let go.
fn stop_command(session: &mut Session, child: &mut Child) {
    if child.try_wait().is_some() {
        return;
    }
    eprintln!(
        "pidcap: the output failed: stopping the command (pid {}), whose traffic can no longer be captured",
        child.pid
    );
    child.signal(libc::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    let mut killed = false;
    while child.try_wait().is_none() {
        let _ = session.step(Drain::Raw(&mut |_| {}));
        if !killed && Instant::now() >= deadline {
            eprintln!("pidcap: the command (pid {}) did not stop on SIGTERM within {STOP_GRACE:?}: SIGKILL", child.pid);
            child.signal(libc::SIGKILL);
            killed = true;
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}
