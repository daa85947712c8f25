//! Runs the state machine's [`Effect`]s: daemon calls (through
//! [`pidcap_api::Client`]) and library calls (SQLite), on blocking threads;
//! their results come back as [`Msg`]s through a channel. Also the live feed:
//! one connection subscribed to the daemon's packets and counters, per UI
//! session, whose protocol [`Event`]s become messages.

use crate::error::{Problem, Task};
use crate::state::{
    AppMsg, CaptureMsg, Download, Effect, LibraryMsg, Msg, PacketsMsg, ProcessesMsg, ResendMsg, RulesMsg,
};
use pidcap_api::protocol::{Event, FilterInfo, InjectArgs};
use pidcap_api::{Client, ClientError};
use pidcap_engine::rules::Action as RuleAction;
use pidcap_library::{
    ExportFormat, Filter, Library, LibraryError, MetaEdit, NewPacket, PacketMeta, SavedPacket, Selection, TagCount,
};
use pidcap_packet::CapturedPacket;
use pidcap_pcapfile::PcapError;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// How long the feed waits before reconnecting to a daemon that is away.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// A file name and its bytes.
type NamedFile = (String, Vec<u8>);

/// Files prepared for download (`/download/KEY`), shared with the HTTP side.
#[derive(Clone, Default)]
pub struct Downloads {
    inner: Arc<Mutex<HashMap<String, NamedFile>>>,
    next: Arc<AtomicU64>,
}

impl Downloads {
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> String {
        let key = format!("{}-{}", self.next.fetch_add(1, Ordering::Relaxed), crate::server::random_token(8));
        let mut m = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if m.len() >= 32 {
            m.clear();
        }
        m.insert(key.clone(), (name.to_string(), bytes));
        format!("/download/{key}")
    }

    pub fn get(&self, key: &str) -> Option<(String, Vec<u8>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }
}

/// What every session of one UI server shares.
#[derive(Clone)]
pub struct Context {
    pub socket: PathBuf,
    pub library: PathBuf,
    pub downloads: Downloads,
    /// "A file was imported" messages, to every session.
    pub imports: tokio::sync::broadcast::Sender<String>,
}

/// The message for one event of a subscription or of a watched job.
pub fn event_msg(event: Event) -> Msg {
    match event {
        Event::Packet { packet } => PacketsMsg::Arrived(vec![packet]).into(),
        Event::Counters { stats, running } => CaptureMsg::Counters { stats, running }.into(),
        Event::Missed { count } => PacketsMsg::Missed(count).into(),
        Event::SendStatus { job, status } => ResendMsg::Status { job, status }.into(),
        Event::JobDone { job, summary } => ResendMsg::Done { job, summary }.into(),
    }
}

/// The live feed: subscribe (backlog included) and forward every event, until
/// the session's channel closes. Reconnects while the daemon is away.
pub fn spawn_feed(ctx: Context, tx: UnboundedSender<Msg>) {
    std::thread::Builder::new()
        .name("pidcap-ui-feed".into())
        .spawn(move || {
            // The newest packet forwarded: a reconnection resumes after it.
            let mut since: u64 = 0;
            while !tx.is_closed() {
                let subscribed = Client::connect(&ctx.socket).and_then(|mut c| c.subscribe(Some(since)).map(|_| c));
                let mut client = match subscribed {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(AppMsg::Disconnected(e.into()).into());
                        std::thread::sleep(RECONNECT_AFTER);
                        continue;
                    }
                };
                if tx.send(AppMsg::Connected.into()).is_err() {
                    return;
                }
                loop {
                    match client.next_event() {
                        Ok(event) => {
                            if let Event::Packet { packet } = &event {
                                since = since.max(packet.id);
                            }
                            if tx.send(event_msg(event)).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(AppMsg::Disconnected(e.into()).into());
                            break;
                        }
                    }
                }
            }
        })
        .ok();
}

/// The command connection of a session (reconnected when it breaks).
#[derive(Clone)]
pub struct Runner {
    pub ctx: Context,
    client: Arc<Mutex<Option<Client>>>,
    tx: UnboundedSender<Msg>,
}

impl Runner {
    pub fn new(ctx: Context, tx: UnboundedSender<Msg>) -> Runner {
        Runner { ctx, client: Arc::new(Mutex::new(None)), tx }
    }

    fn send(&self, m: impl Into<Msg>) {
        let _ = self.tx.send(m.into());
    }

    fn daemon<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, ClientError>) -> Result<T, Problem> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Client::connect(&self.ctx.socket)?);
        }
        let r = f(guard.as_mut().expect("connected above"));
        if let Err(e) = &r {
            if !matches!(e, ClientError::Api(_)) {
                *guard = None; // broken connection: reconnect next time
            }
        }
        Ok(r?)
    }

    fn library(&self) -> Result<Library, LibraryError> {
        Library::open(&self.ctx.library)
    }

    fn failed(&self, task: Task, error: impl Into<Problem>) {
        self.send(AppMsg::Failed { task, error: error.into() })
    }

    /// Send `ok(value)` when `r` succeeded, else the failure of `task`.
    fn reply<T, M: Into<Msg>>(&self, task: Task, r: Result<T, impl Into<Problem>>, ok: impl FnOnce(T) -> M) {
        match r {
            Ok(v) => self.send(ok(v)),
            Err(e) => self.failed(task, e),
        }
    }

    /// Run one effect (blocking).
    pub fn run(&self, effect: Effect) {
        match effect {
            Effect::ListProcesses => self.send(ProcessesMsg::Loaded(crate::procs::list_processes())),
            Effect::GetState => match self.daemon(|c| c.get_state()) {
                Ok(st) => self.send(AppMsg::DaemonState(Box::new(st))),
                Err(e) => self.send(AppMsg::Disconnected(e)),
            },
            Effect::StartCapture { pids, follow_children } => {
                let r = self.daemon(|c| c.start_capture(pids, vec![], None, None, follow_children));
                self.reply(Task::StartCapture, r, CaptureMsg::Started)
            }
            Effect::RunCommand { command, follow_children } => self.run_command(&command, follow_children),
            Effect::StopCapture => {
                let r = self.daemon(|c| c.stop_capture());
                self.reply(Task::StopCapture, r, |st| AppMsg::DaemonState(Box::new(st)))
            }
            Effect::ClearBuffer => {
                let r = self.daemon(|c| c.clear_buffer());
                self.reply(Task::ClearBuffer, r, |_| PacketsMsg::Cleared)
            }
            Effect::AddFilter { spec } => self.filters(Task::AddRule, |c| {
                c.add_filter(&spec, RuleAction::Block, None).and_then(|_| c.get_state()).map(|s| s.filters)
            }),
            Effect::RemoveFilter(id) => self.filters(Task::RemoveRule, |c| c.remove_filter(id).map(|f| f.filters)),
            Effect::SetFilterEnabled(id, en) => {
                self.filters(Task::ChangeRule, |c| c.set_filter_enabled(id, en).map(|f| f.filters))
            }
            Effect::ClearFilters => self.filters(Task::ClearRules, |c| c.clear_filters().map(|f| f.filters)),
            Effect::Inject(args) => self.inject(*args),
            Effect::StopJob(job) => {
                let r = self.daemon(|c| c.stop_job(job));
                self.reply(Task::StopResend, r, |j| ResendMsg::Job(Box::new(j)))
            }
            Effect::LibraryQuery { query, tag } => {
                let r = self.query_library(&query, tag);
                self.reply(Task::ReadLibrary, r, |(items, tags, total)| LibraryMsg::Loaded {
                    query,
                    items,
                    tags,
                    total,
                })
            }
            Effect::LibrarySave { packets, name, description, tags } => {
                let meta = PacketMeta { name, description, tags };
                let new: Vec<NewPacket> = packets.into_iter().map(|p| NewPacket::new(p, &meta, "ui")).collect();
                let r = self.library().and_then(|mut l| l.save_many(&new));
                self.reply(Task::SaveLibrary, r, |ids| LibraryMsg::Saved(ids.len()))
            }
            Effect::LibraryEdit { id, name, description, add_tags, remove_tags } => {
                let r = self.library().and_then(|mut l| {
                    l.edit(id, &MetaEdit { name: Some(name), description: Some(description) })?;
                    if !add_tags.is_empty() {
                        l.tag(&[id], &add_tags)?;
                    }
                    if !remove_tags.is_empty() {
                        l.untag(&[id], &remove_tags)?;
                    }
                    Ok(())
                });
                if let Err(e) = r {
                    self.failed(Task::EditLibrary, e);
                }
            }
            Effect::LibraryDelete(ids) => {
                if let Err(e) = self.library().and_then(|mut l| l.delete(&ids)) {
                    self.failed(Task::DeleteLibrary, e);
                }
            }
            Effect::LibraryExportDpp(ids) => {
                let mut buf = Vec::new();
                let r = self.library().and_then(|l| l.export_to(&Selection::Ids(ids), ExportFormat::Dpp, &mut buf));
                self.reply(Task::ExportLibrary, r, |_| self.download("pidcap-library.dpp", buf))
            }
            Effect::ExportPcapng(packets) => {
                let r = pcapng(&packets);
                self.reply(Task::ExportPcapng, r, |bytes| self.download("pidcap-selection.pcapng", bytes))
            }
            // -- rules, library (issue 14) --
            Effect::MoveFilter { id, spec, action, enabled, insert_at } => self.filters(Task::ChangeRule, |c| {
                // The copy first, then the rule: it stays in force throughout.
                let copy = c.add_filter(&spec, action, Some(insert_at))?;
                let mut list = match c.remove_filter(id) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = c.remove_filter(copy.id); // no duplicate left behind
                        return Err(e);
                    }
                };
                if !enabled {
                    list = c.set_filter_enabled(copy.id, false)?;
                }
                Ok(list.filters)
            }),
            Effect::LibraryExportAll => {
                let mut buf = Vec::new();
                let r = self.library().and_then(|l| l.export_to(&Selection::All, ExportFormat::Dpp, &mut buf));
                self.reply(Task::ExportLibrary, r, |_| self.download("pidcap-library-all.dpp", buf))
            } // -- end rules, library --
        }
    }

    /// Offer `bytes` for download as `name`.
    fn download(&self, name: &str, bytes: Vec<u8>) -> LibraryMsg {
        let url = self.ctx.downloads.put(name, bytes);
        LibraryMsg::DownloadReady(Download { name: name.into(), url })
    }

    fn filters(&self, task: Task, f: impl FnOnce(&mut Client) -> Result<Vec<FilterInfo>, ClientError>) {
        let r = self.daemon(f);
        self.reply(task, r, RulesMsg::Changed)
    }

    fn query_library(
        &self,
        query: &str,
        tag: Option<String>,
    ) -> Result<(Vec<SavedPacket>, Vec<TagCount>, u64), LibraryError> {
        let lib = self.library()?;
        let filter = Filter { tag, ..Filter::default() };
        let items = if query.trim().is_empty() {
            lib.list(&filter, 500, 0)?
        } else {
            lib.search(query, &filter, 500)?.into_iter().map(|h| h.packet).collect()
        };
        Ok((items, lib.tags()?, lib.count(&Filter::default())?))
    }

    /// Start `command` (`/bin/sh -c`, stdin from /dev/null) held before it
    /// executes, make it a target, then let it run: its first packet is captured.
    fn run_command(&self, command: &str, follow_children: bool) {
        use pidcap_engine::spawn::{spawn_gated, Output, Stdio};
        let spawn_failed = |e| Problem::Spawn { program: "/bin/sh".into(), source: Arc::new(e) };
        // The held shell execs a second one with stdin from /dev/null: the
        // command does not read the UI server's terminal. Same pid throughout.
        let argv: [OsString; 4] =
            ["/bin/sh".into(), "-c".into(), "exec /bin/sh -c \"$0\" </dev/null".into(), command.into()];
        let held = match spawn_gated(&argv, &Stdio { stdout: Output::Null, stderr: Output::Null }) {
            Ok(h) => h,
            Err(e) => return self.failed(Task::RunCommand, spawn_failed(e)),
        };
        match self.daemon(|c| c.start_capture(vec![held.pid], vec![], None, None, follow_children)) {
            Ok(started) => match held.release() {
                Ok(mut child) => {
                    self.send(CaptureMsg::Started(started));
                    std::thread::spawn(move || child.wait_blocking());
                }
                Err(e) => self.failed(Task::RunCommand, spawn_failed(e)),
            },
            Err(e) => {
                held.abort();
                self.failed(Task::StartCapture, e);
            }
        }
    }

    /// Start a send job, then follow it on a connection of its own until it ends.
    fn inject(&self, args: InjectArgs) {
        let args = match with_ca_text(args) {
            Ok(a) => a,
            Err(e) => return self.failed(Task::Resend, e),
        };
        let job = match self.daemon(|c| c.inject(args)) {
            Ok(j) => j,
            Err(e) => return self.failed(Task::Resend, e),
        };
        let id = job.id;
        self.send(ResendMsg::Job(Box::new(job)));
        let (socket, tx) = (self.ctx.socket.clone(), self.tx.clone());
        std::thread::spawn(move || {
            if let Err(e) = watch_job(&socket, id, &tx) {
                let _ = tx.send(AppMsg::Failed { task: Task::WatchResend, error: e.into() }.into());
            }
        });
    }
}

/// A TLS resend's CA file, read here with the UI's rights and sent as its
/// text: the daemon (root) never opens a path a client names.
pub fn with_ca_text(mut args: InjectArgs) -> Result<InjectArgs, Problem> {
    if let Some(tls) = args.tls.as_mut() {
        if let Some(path) = tls.ca.take() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Problem::ReadFile { path: path.clone(), source: Arc::new(e) })?;
            tls.ca_pem = Some(text);
        }
    }
    Ok(args)
}

/// Forward a job's statuses and its end (the ones made so far first).
fn watch_job(socket: &Path, job: u64, tx: &UnboundedSender<Msg>) -> Result<(), ClientError> {
    let mut client = Client::connect(socket)?;
    client.watch_job(job)?;
    loop {
        let event = client.next_event()?;
        let done = matches!(event, Event::JobDone { .. });
        if tx.send(event_msg(event)).is_err() || done {
            return Ok(());
        }
    }
}

/// The packets as a pcapng file.
pub fn pcapng(packets: &[CapturedPacket]) -> Result<Vec<u8>, PcapError> {
    use pidcap_pcapfile::{Format, PacketWriter, WriterOptions};
    let mut w = PacketWriter::new(Format::Pcapng, Vec::new(), &WriterOptions::default())?;
    for p in packets {
        w.write_packet(p)?;
    }
    w.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_resend::TlsOptions;

    #[test]
    fn a_tls_resends_ca_file_goes_to_the_daemon_as_its_text_never_as_a_path() {
        let dir = std::env::temp_dir().join(format!("pidcap-ui-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").unwrap();
        let tls = |ca: Option<PathBuf>| InjectArgs {
            data: Some("41".into()),
            tls: Some(TlsOptions { ca, ..TlsOptions::default() }),
            ..InjectArgs::default()
        };
        let sent = with_ca_text(tls(Some(pem.clone()))).unwrap().tls.unwrap();
        assert_eq!(sent.ca, None);
        assert_eq!(sent.ca_pem.as_deref(), Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"));
        // No CA, or no TLS: unchanged.
        assert_eq!(with_ca_text(tls(None)).unwrap(), tls(None));
        let plain = InjectArgs { data: Some("41".into()), ..InjectArgs::default() };
        assert_eq!(with_ca_text(plain.clone()).unwrap(), plain);
        // A file the UI cannot read is its error, naming the file, before anything is asked of the daemon.
        let missing = dir.join("missing.pem");
        let e = with_ca_text(tls(Some(missing.clone()))).unwrap_err();
        assert!(e.to_string().starts_with(&format!("cannot read {}: ", missing.display())), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
