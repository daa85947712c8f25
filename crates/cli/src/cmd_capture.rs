//! `pidcap run` and `pidcap capture`: load the kernel layer, open the output
//! (before `run`'s command exists), register the targets, and stream packets
//! to stdout or a capture file until the targets exit, -c COUNT is reached,
//! Ctrl-C/SIGTERM, or the output fails (then the capture stops cleanly:
//! summary, file cut back to its last complete block, `run`'s command stopped).
//! `run` follows the command's process tree unless `--no-follow`. The
//! summary ([`output::summary`]) puts the targets' counters first; a capture
//! with no packet says why it may have none, from what [`Watch`] saw.
//!
//! TLS: the plaintext records of the targets' TLS library calls come with
//! the packets (unless `--no-tls`); each target's coverage is said once on
//! stderr when known. With a pcapng file, keys come from a key log
//! ([`crate::keylog`]): `run` gives its command a private one in
//! SSLKEYLOGFILE unless `--no-keylog`. The key log is read when a batch has
//! been taken from the kernel and before it is written, and the file holds a
//! handshake back until its keys are in (see pidcap_pcapfile's pcapng
//! writer), so that the keys precede the packets that need them.
//!
//! A filter expression (`pidcap run EXPR -- CMD`, `pidcap capture --pid N
//! EXPR`, `--filter-file`) is compiled first, before anything is loaded or
//! started, and handed to the engine, which keeps only the packets it matches.
//!
//! Where the programs attach (a bystander's packets should not run them):
//! `run` makes its command a cgroup of its own ([`RunCgroup`], the command
//! moved in while held) and attaches there; `capture --pid` at the deepest
//! cgroup holding its targets ([`capture_attach`]); the root when a name or a
//! cgroup is a target, the targets are in the root cgroup, or no cgroup can be made.
//! `capture --isolate` first moves each target into a cgroup of its own below
//! its cgroup ([`pidcap_ebpf::Isolation`]) and attaches there (at each, for
//! targets from several cgroups); they go back when the capture ends.
use crate::cli::{CaptureArgs, CaptureOpts, RunArgs};
use crate::keylog::KeyLog;
use crate::output;
use crate::output::{LineFormat, Lines};
use anyhow::{bail, Context, Result};
use pidcap_ebpf::{AttachPoint, EbpfBackend, LoadOptions, RunCgroup};
use pidcap_engine::cgroup::{CgroupTarget, Cgroupfs};
use pidcap_engine::procfs::{NetTable, Procfs};
use pidcap_engine::spawn::{self, Child, Output, Stdio};
use pidcap_engine::{Capture, CaptureOptions, Drain, EngineError, Process, Schedule, Session};
use pidcap_engine::{Raw, RawPacket};
use pidcap_pcapfile::{
    rotate, CaptureFile, FileOutput, Format, PacketOutput, PacketWriter, PcapError, RecordRef, RotatingOutput,
    WriterOptions,
};
use std::collections::{HashMap, HashSet};
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
    /// Where TLS keys come from, for an output that keeps them.
    keylogs: Vec<KeyLog>,
    /// `-U`: flush after every packet.
    flush_each: bool,
}

impl Sink {
    /// Open the output: for a file, create it (refusing links, see
    /// pidcap_pcapfile::file) and write its headers to the disk, so that an
    /// output that cannot be written is an error before anything runs.
    fn open(opts: &CaptureOpts) -> Result<Sink> {
        let mut sink = Sink::open_output(opts)?;
        sink.flush_each = opts.output.packet_buffered;
        if let (Some(Format::Pcap), Some(path)) = (file_format(opts), &opts.write) {
            let name = if path.as_os_str() == "-" { "stdout".into() } else { path.display().to_string() };
            eprintln!("{}", output::pcap_warning(&name));
        }
        Ok(sink)
    }

    fn open_output(opts: &CaptureOpts) -> Result<Sink> {
        let rotation = opts.rotate.rotation(opts.write.as_deref()).map_err(anyhow::Error::msg)?;
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
                    keylogs: Vec::new(),
                    flush_each: false,
                });
            }
            if let Some(rotation) = rotation {
                // -C/-G: the rotating output makes every file as below, and removes the first if its headers fail.
                let out = RotatingOutput::create(path, format, &wopts, opts.file_mode, rotation, rotate::wall_clock())
                    .with_context(|| format!("cannot start the capture files of -w {}", path.display()))?;
                return Ok(Sink {
                    created: out.first_created().then(|| out.current().to_path_buf()),
                    out: Box::new(out),
                    what: format!("cannot write the capture files of -w {}", path.display()),
                    failed: false,
                    keylogs: Vec::new(),
                    flush_each: false,
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
                keylogs: Vec::new(),
                flush_each: false,
            };
            sink.out = Box::new(FileOutput::new(format, file, &wopts).with_context(|| sink.what.clone())?);
            return Ok(sink);
        }
        let out: Box<dyn PacketOutput> = if opts.quiet {
            Box::new(output::Discard)
        } else {
            let format = if opts.json { LineFormat::Json } else { LineFormat::Text };
            let text = output::TextOptions::from_cli(&opts.output);
            Box::new(Lines::with_options(BufWriter::with_capacity(1 << 16, std::io::stdout()), format, text))
        };
        Ok(Sink {
            out,
            what: "cannot write to stdout".into(),
            created: None,
            failed: false,
            keylogs: Vec::new(),
            flush_each: false,
        })
    }

    /// Follow `keylog` into the output (which must keep keys: pcapng).
    fn take_keys(&mut self, keylog: KeyLog) -> Result<()> {
        self.out.hold_for_tls_keys().with_context(|| self.what.clone())?;
        self.keylogs.push(keylog);
        Ok(())
    }

    /// True when the output is a file that keeps TLS keys (pcapng).
    fn keeps_keys(&self) -> bool {
        self.out.takes_tls_keys()
    }

    /// Read what the key log has gained and hand it to the output.
    fn fold_keys(&mut self, last: bool) -> Result<(), PcapError> {
        if self.failed {
            return Ok(());
        }
        for keylog in &mut self.keylogs {
            let lines = if last { keylog.finish() } else { keylog.poll() };
            if lines.is_empty() {
                continue;
            }
            let r = self.out.add_tls_keys(&lines).map(drop);
            self.failed |= r.is_err();
            r?;
        }
        Ok(())
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
        let flush_each = self.flush_each;
        let out = &mut self.out;
        // The key log is read once the batch's first packet has been taken
        // from the kernel, before it is written: keys a target logged before
        // sending what they decrypt are then in the file first.
        let mut keylogs = Some(&mut self.keylogs).filter(|_| !failed);
        let mut accept = |tls: bool, write: &mut dyn FnMut(&mut dyn PacketOutput) -> Result<(), PcapError>| {
            for k in keylogs.take().into_iter().flatten() {
                let lines = k.poll();
                if !lines.is_empty() {
                    if let Err(e) = out.add_tls_keys(&lines) {
                        err.get_or_insert(e);
                    }
                }
            }
            if *written < limit && err.is_none() && !failed && out.accepts() {
                let left_out = if tls { out.tls_stats().records_left_out } else { 0 };
                let r = write(out.as_mut()).and_then(|()| if flush_each { out.flush() } else { Ok(()) });
                match r {
                    // A record a classic pcap file left out is not written.
                    Ok(()) if tls && out.tls_stats().records_left_out > left_out => {}
                    // Nor the packet that found the last file of -G -W done.
                    Ok(()) if !out.accepts() => {}
                    Ok(()) => *written += 1,
                    Err(e) => err = Some(e),
                }
            }
        };
        let r = if decoded {
            drain(Drain::Decoded(&mut |p| accept(p.is_tls(), &mut |out| out.write_packet(p))))
        } else {
            drain(Drain::Raw(&mut |raw| match raw {
                Raw::Packet { id, timestamp_ns, packet, process } => accept(false, &mut |out| {
                    // (Checked first: a kernel name is nearly always UTF-8, and the check is cheaper than the lossy walk.)
                    let thread = std::str::from_utf8(packet.comm)
                        .map_or_else(|_| String::from_utf8_lossy(packet.comm), std::borrow::Cow::Borrowed);
                    out.write_record(&record(id, timestamp_ns, packet, &thread, process))
                }),
                Raw::Tls(p) => accept(true, &mut |out| out.write_packet(p)),
            }))
        };
        self.failed |= err.is_some();
        // And after the batch, for keys logged meanwhile (a handshake held back waits for them).
        if err.is_none() {
            err = self.fold_keys(false).err();
        }
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

    /// What the output did with TLS keys and records, for the summary.
    fn tls_summary(&self, opts: &CaptureOpts) -> output::TlsFileSummary {
        let stats = self.out.tls_stats();
        output::TlsFileSummary {
            keylogs: self.keylogs.iter().map(|k| (k.path().to_path_buf(), k.is_private())).collect(),
            keys_written: stats.keys_written,
            bad_key_lines: self.keylogs.iter().map(KeyLog::bad_lines).sum(),
            file: opts
                .write
                .as_ref()
                .map(|p| if p.as_os_str() == "-" { "stdout".into() } else { p.display().to_string() }),
            records_left_out: stats.records_left_out,
        }
    }

    /// Take the key log's last lines, flush and close (after a failed
    /// write: close only, nothing more can be written); what the output did
    /// with TLS, for the summary.
    fn finish(mut self, opts: &CaptureOpts) -> (Result<()>, output::TlsFileSummary) {
        if let Err(e) = self.fold_keys(true) {
            let summary = self.tls_summary(opts);
            return (Err(anyhow::Error::new(e).context(self.what.clone())), summary);
        }
        let summary = self.tls_summary(opts);
        let out = std::mem::replace(&mut self.out, Box::new(output::Discard));
        if self.failed {
            return (Ok(()), summary);
        }
        (out.finish().with_context(|| self.what.clone()), summary)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Some(path) = self.created.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One packet as the output sees it, borrowed from the kernel's buffer:
/// `thread` is the kernel's name of its thread, the process's comm the
/// leader's when its metadata is known.
fn record<'a>(
    id: u64,
    timestamp_ns: u64,
    raw: &RawPacket<'a>,
    thread: &'a str,
    process: Option<&'a std::sync::Arc<pidcap_packet::ProcessMeta>>,
) -> RecordRef<'a> {
    RecordRef {
        id,
        timestamp_ns,
        pid: raw.pid,
        comm: process.map_or(thread, |m| m.comm.as_str()),
        tid: raw.tid,
        thread,
        process,
        socket_cookie: raw.socket_cookie,
        direction: raw.direction,
        verdict: raw.verdict,
        rule: raw.rule,
        orig_len: raw.orig_len,
        data: raw.data,
        tls: None,
    }
}

/// Load the programs, with errors that say what to do, attached at
/// `attach` (None: nowhere yet); `filter` (compiled before anything
/// started) decides which packets are kept.
fn load_capture(
    opts: &CaptureOpts,
    filter: Option<Arc<pidcap_filter::Filter>>,
    attach: Option<AttachPoint>,
) -> Result<Session> {
    let load =
        LoadOptions { ring_bytes: opts.buffer_mib << 20, attach, prepare_tls: !opts.no_tls, ..LoadOptions::default() };
    let backend = EbpfBackend::load(load).map_err(|e| match e {
        EngineError::Permission { .. } => anyhow::Error::new(e),
        e => anyhow::Error::new(e).context("cannot load the kernel layer"),
    })?;
    let copts = CaptureOptions {
        snaplen: opts.snaplen,
        ring_size: opts.ring_size,
        follow_children: opts.follow_children,
        tls: !opts.no_tls,
        filter: filter.map(|f| f as Arc<dyn pidcap_engine::PacketFilter>),
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

/// The format -w writes, if any.
fn file_format(opts: &CaptureOpts) -> Option<Format> {
    let path = opts.write.as_ref()?;
    Some(opts.format.or_else(|| Format::from_path(path)).unwrap_or(Format::Pcapng))
}

/// `run`'s key log: `--keylog FILE` or an SSLKEYLOGFILE already set (the
/// user's, kept), else a private one (removed when it is dropped); the
/// command's SSLKEYLOGFILE is set to it. None with --no-keylog or when
/// nothing keeps keys (no pcapng file).
fn run_keylog(args: &RunArgs) -> Result<Option<KeyLog>> {
    if args.no_keylog || file_format(&args.opts) != Some(Format::Pcapng) {
        return Ok(None);
    }
    let log = match (&args.opts.keylog, std::env::var_os("SSLKEYLOGFILE").filter(|v| !v.is_empty())) {
        (Some(path), _) => KeyLog::existing(path),
        (None, Some(path)) => return Ok(Some(KeyLog::existing(std::path::Path::new(&path)))),
        (None, None) => KeyLog::private()?,
    };
    // The command inherits our environment at its exec. Set while pidcap
    // has no other thread (before the kernel layer is loaded), as
    // set_var requires.
    std::env::set_var("SSLKEYLOGFILE", log.path());
    Ok(Some(log))
}

/// -C/-W/-G against -w, checked before anything needs root or runs.
fn check_rotation(opts: &CaptureOpts) -> Result<()> {
    opts.rotate.rotation(opts.write.as_deref()).map(drop).map_err(anyhow::Error::msg)
}

pub fn run(mut args: RunArgs) -> Result<u8> {
    check_rotation(&args.opts)?;
    // Before anything exists: a bad expression starts nothing.
    let filter = args.opts.filter.compile()?;
    warn_expression_after_command(&args);
    // A command is everything it starts, unless --no-follow.
    args.opts.follow_children = !args.no_follow;
    let keylog = run_keylog(&args)?;
    if let (None, Some(path)) = (&keylog, &args.opts.keylog) {
        eprintln!("pidcap: --keylog {}: ignored, only a pcapng file (-w) keeps TLS keys", path.display());
    }
    // -- attach point (issue 13) --
    let scope = run_cgroup();
    let attach = scope.as_ref().map_or(AttachPoint::Root, |s| AttachPoint::Cgroup(s.dir().to_path_buf()));
    let to_stdout = args.opts.write.as_ref().is_some_and(|p| p.as_os_str() == "-");
    // When our stdout carries the capture file, the command's goes to stderr.
    let stdio = Stdio { stdout: if to_stdout { Output::Stderr } else { Output::Inherit }, ..Stdio::default() };
    // The command is held (it has not exec'd) until everything below is in
    // place, and killed if any of it fails: it never runs then. Forked
    // before the programs load (a smaller process to copy), and moved into
    // its cgroup on a thread of its own meanwhile: the move waits for the
    // kernel (an RCU grace period for the cgroup lock, ~10 ms here), which
    // overlaps the load instead of adding to it.
    let gated = spawn::spawn_gated(&args.command, &stdio)
        .with_context(|| format!("cannot run {}", args.command[0].to_string_lossy()))?;
    let (loaded, adopted) = std::thread::scope(|s| {
        // Into its cgroup while held: its sockets, and its children's, are charged there.
        let adopting = scope.as_ref().map(|sc| s.spawn(|| sc.adopt(gated.pid)));
        let loaded = load_capture(&args.opts, filter, Some(attach.clone()));
        let adopted = adopting.map(|h| h.join().unwrap_or_else(|_| panic!("the cgroup move panicked")));
        (loaded, adopted)
    });
    if let Some(Err(e)) = adopted {
        gated.abort();
        return Err(e).context("cannot move the command into its cgroup");
    }
    let mut session = match loaded {
        Ok(s) => s,
        Err(e) => {
            gated.abort();
            return Err(e);
        }
    };
    // Every output is open before the command runs: if one cannot be written, the command never runs.
    let sink = Sink::open(&args.opts).and_then(|mut sink| {
        if let Some(keylog) = keylog {
            sink.take_keys(keylog)?;
        }
        Ok(sink)
    });
    let sink = match sink {
        Ok(s) => s,
        Err(e) => {
            gated.abort();
            return Err(e);
        }
    };
    if let Err(e) = session.capture_mut().add_pid(gated.pid) {
        gated.abort();
        return Err(e).context("cannot register the command as a target");
    }
    let signals = install_signals()?;
    announce(&args.opts, &format!("pid {} ({})", gated.pid, args.command[0].to_string_lossy()));
    let child = gated.release().with_context(|| format!("cannot run {}", args.command[0].to_string_lossy()))?;
    let mut watch = Watch::new(args.no_follow);
    watch.scope = scope.as_ref().and_then(|s| ScopeWatch::new(s.dir()));
    watch.attached = attach;
    watch.hints.command = Some((child.pid, args.command[0].to_string_lossy().into_owned(), None));
    let mut ended = Ended::Child(child);
    capture_loop(session, sink, &args.opts, &signals, &mut ended, watch)
}

pub fn capture(args: CaptureArgs) -> Result<u8> {
    check_rotation(&args.opts)?;
    // Hold each process the user named from now on (a pidfd): if it exits
    // before the capture starts, whatever is given its pid meanwhile is not
    // it. Checked first, with the filter expression: a typo should not need
    // root to be reported.
    let filter = args.opts.filter.compile()?;
    check_isolate(&args)?;
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
    // -- capture by cgroup: resolved before anything is attached --
    let cgroups = resolve_cgroups(&args)?;
    // -- isolate (issue 13): what a SIGKILLed pidcap left is put back first --
    pidcap_ebpf::sweep_isolations();
    // From the move on, a signal ends the capture through its end (which
    // moves the targets back) instead of killing pidcap.
    let early_signals = if args.isolate { Some(install_signals()?) } else { None };
    // With --isolate, loaded with nothing attached (a missing capability is
    // said before anything moves), attached once the targets are moved.
    let attach = (!args.isolate).then(|| capture_attach(&args, &processes, cgroups.as_ref()));
    if attach == Some(AttachPoint::Root) && args.names.is_empty() && cgroups.is_none() && !processes.is_empty() {
        eprintln!(
            "pidcap: the programs are attached at the cgroup2 root (the deepest cgroup holding every target), so \
             every process's packets run them (a few percent of a small-packet flood's rate); --isolate moves the targets \
             into a cgroup of their own for the capture (their sockets from before the move are then not captured)"
        );
    }
    let mut watch = Watch::new(false);
    watch.attached = attach.clone().unwrap_or_default();
    let mut session = load_capture(&args.opts, filter, attach)?;
    let isolation = if args.isolate { Some(isolate(&processes)?) } else { None };
    if let Some(iso) = &isolation {
        // Its iso cgroup, or each of them (targets from several cgroups).
        let at = iso.attach_point();
        session.capture_mut().set_attach(Some(&at)).with_context(|| format!("cannot attach the programs at {at}"))?;
        watch.attached = at;
    }
    let mut sink = Sink::open(&args.opts)?;
    if let Some(path) = &args.opts.keylog {
        if sink.keeps_keys() {
            sink.take_keys(KeyLog::existing(path))?;
        } else {
            eprintln!("pidcap: --keylog {}: ignored, only a pcapng file (-w) keeps TLS keys", path.display());
        }
    }
    if args.opts.keylog.is_none() && sink.keeps_keys() {
        // The targets' own key logs (SSLKEYLOGFILE in their environment), as their mount namespace sees them.
        for p in &processes {
            if let Some(path) = target_keylog(p.pid()) {
                eprintln!("pidcap: TLS keys of pid {} from its SSLKEYLOGFILE ({})", p.pid(), path.display());
                sink.take_keys(KeyLog::existing(&path))?;
            }
        }
    }
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
    if let Some((fs, cgroups)) = &cgroups {
        for cg in cgroups {
            let n = cap.add_cgroup(fs, cg).with_context(|| format!("cannot capture {cg}"))?;
            eprintln!("pidcap: {cg}: {n} process{} now, and those that join it", if n == 1 { "" } else { "es" });
        }
    }
    let signals = match early_signals {
        Some(s) => s,
        None => install_signals()?,
    };
    let what: Vec<String> = args
        .pids
        .iter()
        .map(|p| format!("pid {p}"))
        .chain(args.names.iter().map(|n| format!("name {n}")))
        .chain(cgroups.iter().flat_map(|(_, c)| c.iter().map(ToString::to_string)))
        .collect();
    announce(&args.opts, &what.join(", "));
    // More processes may come by name or into a cgroup: only a signal or -c ends those.
    let mut ended = if args.names.is_empty() && cgroups.is_none() { Ended::AllTargets } else { Ended::Never };
    let code = capture_loop(session, sink, &args.opts, &signals, &mut ended, watch);
    // The programs are detached (the session is gone): the targets go back.
    for (original, r) in isolation.map(pidcap_ebpf::Isolation::end).unwrap_or_default() {
        match r {
            Ok(n) => eprintln!(
                "pidcap: --isolate: {n} process{} moved back to cgroup {original}",
                if n == 1 { "" } else { "es" }
            ),
            Err(e) => eprintln!("pidcap: warning: --isolate: {e} (the next pidcap retries)"),
        }
    }
    code
}

// -- isolate (issue 13) --

/// `--isolate` takes `--pid` targets only: a name or cgroup target's
/// processes are not known in advance (nor are they ours to move).
fn check_isolate(args: &CaptureArgs) -> Result<()> {
    if !args.isolate {
        return Ok(());
    }
    if !args.names.is_empty() || !args.cgroups.is_empty() || !args.units.is_empty() || !args.containers.is_empty() {
        bail!(
            "--isolate moves --pid targets only: it cannot be used with --name, --cgroup, --unit or --container \
             (their processes are not known in advance); nothing was moved"
        );
    }
    if args.pids.is_empty() {
        bail!("--isolate needs --pid targets to move");
    }
    Ok(())
}

/// Move the targets into their iso cgroups (refused, with nothing moved,
/// when one cannot be made or a target cannot be moved), and say what the
/// move does not cover: the sockets a target already had.
fn isolate(processes: &[Process]) -> Result<pidcap_ebpf::Isolation> {
    let pids: Vec<u32> = processes.iter().map(Process::pid).collect();
    let iso = pidcap_ebpf::Isolation::create(&pids)
        .context("--isolate: cannot isolate the targets (nothing was moved; capture without --isolate)")?;
    for (dir, original) in iso.dirs().zip(iso.originals()) {
        eprintln!("pidcap: --isolate: moved into {} (from cgroup {original}) while captured", dir.display());
    }
    let procfs = Procfs::default();
    for &pid in &pids {
        let n = ip_sockets(&procfs, pid);
        if n > 0 {
            eprintln!(
                "pidcap: --isolate: pid {pid} had {n} TCP/UDP socket{} open before its move: they stay charged to \
                 its old cgroup, and their packets are not captured (only the sockets it opens from now on are)",
                if n == 1 { "" } else { "s" }
            );
        }
    }
    Ok(iso)
}

/// How many TCP/UDP sockets `pid` holds (its socket descriptors found in
/// its network namespace's IP tables).
fn ip_sockets(procfs: &Procfs, pid: u32) -> usize {
    let Ok(mine) = procfs.socket_inodes(pid) else { return 0 };
    let ip: HashSet<u64> =
        NetTable::IP.iter().flat_map(|&t| procfs.net_sockets(pid, t).unwrap_or_default()).map(|s| s.inode).collect();
    mine.intersection(&ip).count()
}

/// tcpdump's habit `pidcap run -- curl URL 'tcp port 80'` hands the
/// expression to the command, as everything after `--` is the command's.
/// Said on stderr when the last arguments read like an expression (see
/// [`pidcap_filter::trailing_expression`]); the command gets them unchanged.
fn warn_expression_after_command(args: &RunArgs) {
    let words: Vec<&str> = args.command.iter().map_while(|a| a.to_str()).collect();
    if words.len() < args.command.len() {
        return;
    }
    if let Some(expression) = pidcap_filter::trailing_expression(&words) {
        eprintln!(
            "pidcap: warning: the command's last arguments {expression:?} read like a filter expression; everything \
             after -- is the command's: to filter, put the expression before -- (pidcap run [OPTIONS] EXPRESSION -- CMD)"
        );
    }
}

/// The cgroups of --cgroup, --unit and --container, with the hierarchy
/// they are in (None when none was given): every one must exist, be a
/// cgroup2 directory, and name one cgroup, before anything is attached.
fn resolve_cgroups(args: &CaptureArgs) -> Result<Option<(Cgroupfs, Vec<CgroupTarget>)>> {
    if args.cgroups.is_empty() && args.units.is_empty() && args.containers.is_empty() {
        return Ok(None);
    }
    let fs = Cgroupfs::system()?;
    let mut out: Vec<CgroupTarget> = Vec::new();
    let found = args
        .cgroups
        .iter()
        .map(|c| fs.resolve(c))
        .chain(args.units.iter().map(|u| fs.unit(u)))
        .chain(args.containers.iter().map(|c| fs.container(c)));
    for t in found {
        let t = t?;
        if !out.iter().any(|o| o.id == t.id) {
            out.push(t);
        }
    }
    Ok(Some((fs, out)))
}

/// `run`'s own cgroup for its command, or None (the programs then attach
/// at the root, as before) when none can be made: a read-only cgroupfs, no
/// permission, pidcap's cgroup not in the mounted hierarchy (a cgroup
/// namespace). `run` has no targets but its command's tree (no extra pids,
/// names or cgroups among its options), so the cgroup holds them all.
fn run_cgroup() -> Option<RunCgroup> {
    match RunCgroup::create() {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::debug!(error = %e, "no cgroup of its own for the command: the programs attach at the cgroup2 root");
            None
        }
    }
}

/// Where `capture`'s programs attach: the deepest cgroup that holds every
/// pid target (from /proc/PID/cgroup); the root when a name is a target (a
/// process of that name may start anywhere), the pids are in the root
/// cgroup, or a pid's cgroup cannot be read. A target's children inherit its
/// cgroup (-f).
///
/// Also the root with a --cgroup, --unit or --container target: a process
/// that joins such a cgroup is captured with the sockets it already had
/// (README), and those are charged to the cgroup it made them in, outside.
/// The same limit for a pid: a socket is charged to the cgroup its creator
/// was in when it made it, so one a target made before it moved into its
/// current cgroup is charged to the old one and not seen from there (rare:
/// systemd places processes when they start). The one computation, shared
/// with the daemon: [`pidcap_engine::cgroup::Cgroupfs::attach_point`].
fn capture_attach(
    args: &CaptureArgs,
    processes: &[Process],
    cgroups: Option<&(Cgroupfs, Vec<CgroupTarget>)>,
) -> AttachPoint {
    let by_name_or_cgroup = !args.names.is_empty() || cgroups.is_some_and(|(_, c)| !c.is_empty());
    pidcap_ebpf::attach_for_targets(processes.iter().map(Process::pid), by_name_or_cgroup).unwrap_or_default()
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
    /// `run`: when the command (and, unless --no-follow, what it started) have exited.
    Child(Child),
    /// `capture --pid`: when every target has exited.
    AllTargets,
    /// `capture --name`, `--cgroup`...: only on a signal or -c (more may start).
    Never,
}

fn capture_loop(
    mut session: Session,
    mut sink: Sink,
    opts: &CaptureOpts,
    signals: &AtomicUsize,
    ended: &mut Ended,
    mut watch: Watch,
) -> Result<u8> {
    sink.keep();
    let filtering = session.capture().filter().is_some();
    let mut coverage = Coverage::new(!opts.no_tls);
    coverage.print(&mut session);
    let limit = opts.count.unwrap_or(u64::MAX);
    let mut written = 0u64;
    let mut signals_seen = 0;
    let mut exit_code = 0u8;
    // A write error that ends the capture: reported after the summary.
    let mut failure = None;
    // -G -W wrote its last file.
    let mut files_done = false;
    // `run`'s command has been reaped (its exit seen once).
    let mut reaped = false;

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
        if !sink.out.accepts() {
            // -G with -W: tcpdump's "Maximum file limit reached".
            eprintln!("pidcap: -W {}: the last file is done, the capture ends", opts.rotate.file_count.unwrap_or(0));
            files_done = true;
            break;
        }
        coverage.print(&mut session);
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
        // The command reaped: check the targets now rather than at the next
        // liveness tick (up to 100 ms later), so `run` ends when it does.
        if let Ended::Child(child) = ended {
            if !reaped && child.try_wait().is_some() {
                reaped = true;
                session.check_targets_now();
            }
        }
        if let Some(live) = tick.live {
            let live = live?;
            if written == 0 {
                watch.look(&live);
            }
            if let Some(scope) = &mut watch.scope {
                scope.look(&live);
            }
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
                // Packets in flight need a socket of a target that sent or
                // received something: with none seen there is nothing to wait for.
                let quiet = session.capture().stats().is_ok_and(|s| s.kernel.target == 0 && s.received == 0);
                session.wind_down(if quiet { Duration::ZERO } else { GRACE });
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
    let files = sink.out.files();
    let (finished, tls) = sink.finish(opts);
    if let Err(e) = finished {
        if !is_broken_pipe(&e) {
            return Err(e);
        }
    }
    for line in output::summary(&stats, written, opts.output.verbose, &watch.attached) {
        eprintln!("{line}");
    }
    if filtering {
        eprintln!("pidcap: {} packets did not match the filter expression", stats.filtered);
    }
    if let (Some((_, _, status)), Ended::Child(child)) = (&mut watch.hints.command, &mut *ended) {
        *status = child.try_wait();
    }
    watch.hints.records_left_out = tls.records_left_out;
    for line in output::zero_reasons(&stats, written, &watch.hints) {
        eprintln!("{line}");
    }
    for line in output::tls_summary(&tls) {
        eprintln!("{line}");
    }
    if let Some(files) = &files {
        eprintln!("pidcap: {files}");
    }
    if let Some(failure) = failure {
        eprintln!("pidcap: {}", output::error_text(&failure));
        match (kept, &files, &opts.write) {
            (Some(kept), Some(files), _) => eprintln!(
                "pidcap: the files hold the {kept} packets written before; the last, {}, was cut back to its last \
                 complete block",
                files.names.last().map_or_else(String::new, |p| p.display().to_string())
            ),
            (Some(kept), None, Some(path)) => eprintln!(
                "pidcap: {} holds the {kept} packets written before, cut back to its last complete block",
                path.display()
            ),
            _ => {}
        }
        return Ok(2);
    }
    if let Ended::Child(child) = ended {
        if let Some(code) = child.try_wait() {
            exit_code = code;
        } else if written >= limit || signals_seen > 0 || files_done {
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

/// The key log process `pid` writes, if its environment names one: the
/// path as the process sees it, reached through /proc/PID/root (and
/// /proc/PID/cwd for a relative one).
fn target_keylog(pid: u32) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let value = env.split(|&b| b == 0).find_map(|v| v.strip_prefix(b"SSLKEYLOGFILE=")).filter(|v| !v.is_empty())?;
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(value));
    Some(match path.strip_prefix("/") {
        Ok(rel) => PathBuf::from(format!("/proc/{pid}/root")).join(rel),
        Err(_) => PathBuf::from(format!("/proc/{pid}/cwd")).join(path),
    })
}

/// Says once per target where its TLS plaintext comes from (see
/// [`output::tls_coverage_line`]), when that is known: a target still
/// holding pidcap's own image (`run`'s command before its exec) is not yet;
/// one that maps no library is said after [`Coverage::SETTLE`] (the dynamic
/// loader may still be at work), and again if a library appears later (a
/// `dlopen`, Python's `import ssl`).
struct Coverage {
    on: bool,
    first_seen: HashMap<u32, Instant>,
    /// Per target, the libraries already reported (empty: "none" was said).
    said: HashMap<u32, HashSet<std::path::PathBuf>>,
    last: Option<Instant>,
    started: Instant,
}

impl Coverage {
    /// How long a target that maps no TLS library gets before that is said.
    const SETTLE: Duration = Duration::from_millis(500);
    /// Once every target has been reported, how often to look for new libraries.
    const EVERY: Duration = Duration::from_secs(1);

    fn new(on: bool) -> Coverage {
        Coverage { on, first_seen: HashMap::new(), said: HashMap::new(), last: None, started: Instant::now() }
    }

    /// Say on stderr what [`Coverage::report`] found.
    fn print(&mut self, session: &mut Session) {
        for line in self.report(session, Self::SETTLE) {
            eprintln!("{line}");
        }
    }

    /// The lines due now (see the type's doc); `settle` is [`Coverage::SETTLE`] but in tests.
    fn report(&mut self, session: &mut Session, settle: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        if !self.on {
            return lines;
        }
        // Every step while a target seen is not reported yet, or in the first
        // seconds (`run`'s command has not exec'd yet), else every second.
        let pending = self.first_seen.keys().any(|pid| !self.said.contains_key(pid));
        let early = self.started.elapsed() < Duration::from_secs(2);
        let every = if pending || early { Duration::from_millis(10) } else { Self::EVERY };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return lines;
        }
        self.last = Some(Instant::now());
        let Ok(all) = session.capture_mut().tls_coverage() else { return lines };
        for t in all {
            if pidcap_ebpf::tls::runs_our_executable(t.pid) {
                continue;
            }
            let first = *self.first_seen.entry(t.pid).or_insert_with(Instant::now);
            let paths: HashSet<std::path::PathBuf> = t.libraries.iter().map(|l| l.path.clone()).collect();
            match self.said.get(&t.pid) {
                Some(said) if paths.is_subset(said) => {}
                _ if paths.is_empty() && first.elapsed() < settle => {}
                _ => {
                    let comm = if t.comm.is_empty() { "?" } else { t.comm.as_str() };
                    lines.push(output::tls_coverage_line(t.pid, comm, &t.libraries));
                    self.said.entry(t.pid).or_default().extend(paths);
                }
            }
        }
        lines
    }
}

/// What the zero-packet summary can say ([`output::zero_reasons`]): looked
/// at on the liveness checks while nothing has been written, for a few
/// targets: their network namespace, their sockets (Unix or IP), and with
/// `--no-follow` whether the command has children.
struct Watch {
    hints: output::ZeroHints,
    own_netns: Option<PathBuf>,
    // -- attach point (issue 13) --
    /// `run`: its targets that leave the command's cgroup.
    scope: Option<ScopeWatch>,
    /// Where the programs are (the summary's counters of other processes cover that).
    attached: AttachPoint,
}

impl Watch {
    /// Targets looked at per check.
    const TARGETS: usize = 8;
    /// File descriptors looked at per target.
    const FDS: usize = 1024;

    fn new(no_follow: bool) -> Watch {
        let hints = output::ZeroHints { no_follow, ..Default::default() };
        Watch {
            hints,
            own_netns: std::fs::read_link("/proc/self/ns/net").ok(),
            scope: None,
            attached: AttachPoint::Root,
        }
    }

    fn look(&mut self, live: &[u32]) {
        for &pid in live.iter().take(Self::TARGETS) {
            if pidcap_ebpf::tls::runs_our_executable(pid) {
                continue;
            }
            self.hints.targets_seen = true;
            let netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
            if netns.is_some() && netns != self.own_netns && !self.hints.other_netns.iter().any(|(p, _)| *p == pid) {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                self.hints.other_netns.push((pid, comm.trim_end().to_string()));
            }
            if self.hints.no_follow && !self.hints.started_children {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
                self.hints.started_children = !children.trim().is_empty();
            }
            self.look_at_sockets(pid);
        }
    }

    /// Does `pid` hold Unix sockets, IP sockets? (Its /proc/PID/net is its own namespace's.)
    fn look_at_sockets(&mut self, pid: u32) {
        if self.hints.ip_sockets && self.hints.unix_sockets {
            return;
        }
        let procfs = Procfs::default();
        let Ok(inodes) = procfs.socket_inodes_upto(pid, Self::FDS) else { return };
        if inodes.is_empty() {
            return;
        }
        let listed = |table: NetTable| {
            procfs.net_sockets(pid, table).unwrap_or_default().iter().any(|s| inodes.contains(&s.inode))
        };
        self.hints.unix_sockets |= listed(NetTable::Unix);
        self.hints.ip_sockets |= NetTable::IP.into_iter().any(listed);
    }
}

/// `run`'s targets that moved out of the command's cgroup (where the
/// programs are attached): the sockets they make from there are charged to
/// their new cgroup and not seen, so that is said once per process. Looks at
/// up to [`ScopeWatch::PER_LOOK`] live targets per liveness check, in turn.
struct ScopeWatch {
    /// The command's cgroup as /proc/PID/cgroup shows it (`/pidcap-run-N`).
    path: String,
    next: usize,
    said: HashSet<u32>,
}

impl ScopeWatch {
    const PER_LOOK: usize = 64;

    fn new(dir: &std::path::Path) -> Option<ScopeWatch> {
        // The held child went in first: its path as the kernel shows it.
        let own = pidcap_ebpf::cgroup_of(std::process::id())?;
        let name = dir.file_name()?.to_str()?;
        Some(ScopeWatch { path: format!("{}/{name}", own.trim_end_matches('/')), next: 0, said: HashSet::new() })
    }

    fn look(&mut self, live: &[u32]) {
        if live.is_empty() {
            return;
        }
        for i in 0..live.len().min(Self::PER_LOOK) {
            let pid = live[(self.next + i) % live.len()];
            if self.said.contains(&pid) {
                continue;
            }
            let Some(now) = pidcap_ebpf::cgroup_of(pid) else { continue };
            if now == self.path || now.starts_with(&format!("{}/", self.path)) {
                continue;
            }
            self.said.insert(pid);
            let comm = Procfs::default().comm(pid).unwrap_or_default();
            eprintln!(
                "pidcap: warning: pid {pid} ({comm}) left the command's cgroup for {now}: the sockets it makes there are \
                 not captured"
            );
        }
        self.next = (self.next + Self::PER_LOOK) % live.len();
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_engine::backend::{TlsCoverage, TlsLibraryFile};
    use pidcap_engine::fake::FakeKernel;
    use pidcap_packet::TlsLibrary;

    fn lib(library: TlsLibrary, path: &str) -> TlsLibraryFile {
        TlsLibraryFile { library, path: path.into() }
    }

    #[test]
    fn coverage_is_said_once_per_target_and_again_for_a_new_library() {
        let fake = FakeKernel::default();
        let handle = fake.handle();
        let cap = Capture::new(Box::new(fake), CaptureOptions::default()).unwrap();
        let mut session = Session::new(cap, Schedule::CLI);
        // No process has a pid above pid_max (4194304 at most): never "still pidcap's image".
        let (curl, python) = (4_194_305, 4_194_306);
        let ssl = lib(TlsLibrary::Openssl, "/usr/lib/x86_64-linux-gnu/libssl.so.3");
        handle.set_tls_coverage(vec![
            TlsCoverage { pid: curl, comm: "curl".into(), libraries: vec![ssl.clone()] },
            TlsCoverage { pid: python, comm: "python3".into(), libraries: vec![] },
        ]);
        let mut cov = Coverage::new(true);
        let lines = cov.report(&mut session, Duration::from_secs(3600));
        assert_eq!(lines, [output::tls_coverage_line(curl, "curl", std::slice::from_ref(&ssl))]);
        // python3 maps nothing yet: said once it has had its time to load libraries (here: at once).
        cov.last = None;
        let lines = cov.report(&mut session, Duration::ZERO);
        assert_eq!(lines, [output::tls_coverage_line(python, "python3", &[])]);
        cov.last = None;
        assert!(cov.report(&mut session, Duration::ZERO).is_empty(), "nothing twice");
        // `import ssl` later: said again, with the library.
        handle.set_tls_coverage(vec![
            TlsCoverage { pid: curl, comm: "curl".into(), libraries: vec![ssl.clone()] },
            TlsCoverage { pid: python, comm: "python3".into(), libraries: vec![ssl.clone()] },
        ]);
        cov.last = None;
        let lines = cov.report(&mut session, Duration::ZERO);
        assert_eq!(lines, [output::tls_coverage_line(python, "python3", std::slice::from_ref(&ssl))]);
        // --no-tls: nothing.
        let mut off = Coverage::new(false);
        assert!(off.report(&mut session, Duration::ZERO).is_empty());
    }
}
