//! Runs the state machine's [`Effect`]s: daemon calls (over its socket) and
//! library calls (SQLite), on blocking threads; their results come back as
//! [`Action`]s through a channel. Also the live feed: one connection
//! subscribed to the daemon's packets and counters, per UI session.

use crate::state::{Action, Download, Effect, InjectRequest, JobView, SendStatusView, SummaryView};
use pidcap_api::protocol::{code_name, ErrorCode, FilterInfo, State, MAX_REPLY_BYTES};
use pidcap_api::{ApiError, Client, ClientError};
use pidcap_engine::rules::Action as RuleAction;
use pidcap_engine::CaptureStats;
use pidcap_library::{ExportFormat, Filter, Library, MetaEdit, NewPacket, PacketMeta, Selection};
use pidcap_packet::CapturedPacket;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::UnboundedSender;

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

/// A daemon error in plain words.
pub fn plain(e: &ClientError) -> String {
    match e {
        ClientError::Api(a) => plain_api(a),
        ClientError::NotRunning(p) => format!(
            "No pidcap daemon is running on {}. Start one with `sudo pidcap daemon` (or run `sudo pidcap ui`).",
            p.display()
        ),
        ClientError::PermissionDenied(p) => format!(
            "You do not have the rights to use the pidcap daemon ({}): run as root, or join the `pidcap` group.",
            p.display()
        ),
        other => other.to_string(),
    }
}

fn plain_api(a: &ApiError) -> String {
    match a.code {
        ErrorCode::PermissionDenied => {
            "you do not have the rights to use the pidcap daemon: run as root, or join the `pidcap` group".into()
        }
        ErrorCode::NoSuchProcess => format!("that process is gone ({})", a.message),
        ErrorCode::InvalidRule => format!("the rule was rejected: {}", a.message),
        ErrorCode::NotRunning => "no capture is running".into(),
        ErrorCode::AlreadyRunning => "a capture is already running; stop it first".into(),
        ErrorCode::NotImplemented => format!("this daemon cannot do that yet ({})", a.message),
        ErrorCode::Kernel => format!("the kernel refused: {}", a.message),
        _ => format!("{} ({})", a.message, code_name(a.code)),
    }
}

/// A raw newline-JSON connection (for operations and events the typed client does not know).
pub struct RawConn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl RawConn {
    pub fn connect(path: &std::path::Path) -> Result<RawConn, String> {
        let s = UnixStream::connect(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                plain(&ClientError::NotRunning(path.into()))
            }
            std::io::ErrorKind::PermissionDenied => plain(&ClientError::PermissionDenied(path.into())),
            _ => format!("cannot reach the daemon on {}: {e}", path.display()),
        })?;
        let writer = s.try_clone().map_err(|e| e.to_string())?;
        Ok(RawConn { reader: BufReader::new(s), writer, next_id: 1 })
    }

    /// A clone of the socket, to shut it down from elsewhere.
    pub fn handle(&self) -> Option<UnixStream> {
        self.writer.try_clone().ok()
    }

    /// The next line the daemon sends, as JSON.
    pub fn next_line(&mut self) -> Result<Value, String> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY_BYTES as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("reading from the daemon: {e}"))?;
        if n == 0 {
            return Err("the daemon closed the connection".into());
        }
        serde_json::from_slice(&line).map_err(|e| format!("unexpected reply from the daemon: {e}"))
    }

    /// Send `op` (an object with `op` and its arguments); its result, or the error in plain words.
    /// Events that arrive meanwhile go to `on_event`.
    pub fn call(&mut self, mut op: Value, on_event: &mut dyn FnMut(Value)) -> Result<Value, String> {
        let id = self.next_id;
        self.next_id += 1;
        op["v"] = json!(1);
        op["id"] = json!(id);
        let mut line = serde_json::to_vec(&op).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| format!("writing to the daemon: {e}"))?;
        loop {
            let v = self.next_line()?;
            if v.get("event").is_some() {
                on_event(v);
                continue;
            }
            if v.get("id").and_then(Value::as_u64).is_some_and(|i| i != id) {
                continue;
            }
            if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
                return Err(match serde_json::from_value::<ApiError>(e.clone()) {
                    Ok(a) => plain_api(&a),
                    Err(_) => e.to_string(),
                });
            }
            return Ok(v.get("result").cloned().unwrap_or(Value::Null));
        }
    }
}

/// Turn one subscription event into an action.
pub fn event_action(v: &Value) -> Option<Action> {
    match v.get("event")?.as_str()? {
        "packet" => {
            serde_json::from_value::<CapturedPacket>(v.get("packet")?.clone()).ok().map(|p| Action::Packets(vec![p]))
        }
        "counters" => Some(Action::Counters {
            stats: serde_json::from_value::<CaptureStats>(v.get("stats")?.clone()).ok()?,
            running: v.get("running").and_then(Value::as_bool).unwrap_or(false),
        }),
        "missed" => Some(Action::Missed(v.get("count").and_then(Value::as_u64).unwrap_or(0))),
        "send_status" => Some(Action::SendStatus {
            job: v.get("job")?.as_u64()?,
            status: serde_json::from_value::<SendStatusView>(v.get("status")?.clone()).ok()?,
        }),
        "job_done" => Some(Action::JobDone {
            job: v.get("job")?.as_u64()?,
            summary: serde_json::from_value::<SummaryView>(v.get("summary")?.clone()).ok()?,
        }),
        _ => None,
    }
}

/// The live feed: subscribe (backlog included) and forward every event, until
/// the session's channel closes. Reconnects every 2 s while the daemon is away.
pub fn spawn_feed(ctx: Context, tx: UnboundedSender<Action>) {
    std::thread::Builder::new()
        .name("pidcap-ui-feed".into())
        .spawn(move || {
            let mut since: u64 = 0;
            while !tx.is_closed() {
                let mut conn = match RawConn::connect(&ctx.socket) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Action::Disconnected(e));
                        std::thread::sleep(std::time::Duration::from_secs(2));
                        continue;
                    }
                };
                let mut pending = Vec::new();
                match conn.call(json!({"op":"subscribe","since":since}), &mut |v| pending.push(v)) {
                    Ok(_) => {
                        let _ = tx.send(Action::DaemonConnected);
                    }
                    Err(e) => {
                        let _ = tx.send(Action::Disconnected(e));
                        std::thread::sleep(std::time::Duration::from_secs(2));
                        continue;
                    }
                }
                let mut forward = |v: Value| -> bool {
                    if let Some(a) = event_action(&v) {
                        if let Action::Packets(p) = &a {
                            since = since.max(p.last().map_or(0, |p| p.id));
                        }
                        return tx.send(a).is_ok();
                    }
                    !tx.is_closed()
                };
                let mut alive = pending.into_iter().all(&mut forward);
                while alive {
                    match conn.next_line() {
                        Ok(v) => alive = forward(v),
                        Err(e) => {
                            let _ = tx.send(Action::Disconnected(e));
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
    tx: UnboundedSender<Action>,
}

impl Runner {
    pub fn new(ctx: Context, tx: UnboundedSender<Action>) -> Runner {
        Runner { ctx, client: Arc::new(Mutex::new(None)), tx }
    }

    fn send(&self, a: Action) {
        let _ = self.tx.send(a);
    }

    fn daemon<T>(&self, f: impl FnOnce(&mut Client) -> Result<T, ClientError>) -> Result<T, String> {
        let mut guard = self.client.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(Client::connect(&self.ctx.socket).map_err(|e| plain(&e))?);
        }
        let client = guard.as_mut().expect("connected above");
        let r = f(client);
        if let Err(e) = &r {
            if !matches!(e, ClientError::Api(_)) {
                *guard = None; // broken connection: reconnect next time
            }
        }
        r.map_err(|e| plain(&e))
    }

    fn library(&self) -> Result<Library, String> {
        Library::open(&self.ctx.library)
            .map_err(|e| format!("cannot open the library {}: {e}", self.ctx.library.display()))
    }

    fn failed(&self, what: &str, error: String) {
        self.send(Action::Failed { what: what.into(), error })
    }

    /// Run one effect (blocking).
    pub fn run(&self, effect: Effect) {
        match effect {
            Effect::ListProcesses => self.send(Action::ProcessesLoaded(crate::procs::list_processes())),
            Effect::GetState => match self.daemon(|c| c.get_state()) {
                Ok(st) => self.send(Action::DaemonState(Box::new(st))),
                Err(e) => self.send(Action::Disconnected(e)),
            },
            Effect::StartCapture { pids, follow_children } => {
                match self.daemon(|c| c.start_capture(pids.clone(), vec![], None, None, follow_children)) {
                    Ok(s) => self.send(Action::CaptureStarted { targets: s.targets }),
                    Err(e) => self.failed("start the capture", e),
                }
            }
            Effect::RunCommand { command, follow_children } => self.run_command(&command, follow_children),
            Effect::StopCapture => match self.daemon(|c| c.stop_capture()) {
                Ok(st) => {
                    self.send(Action::DaemonState(Box::new(st)));
                }
                Err(e) => self.failed("stop the capture", e),
            },
            Effect::ClearBuffer => match self.daemon(|c| c.clear_buffer()) {
                Ok(_) => self.send(Action::BufferCleared),
                Err(e) => self.failed("clear the buffer", e),
            },
            Effect::AddFilter { spec } => self.filters("add the rule", |c| {
                c.add_filter(&spec, RuleAction::Block, None).and_then(|_| c.get_state()).map(|s| s.filters)
            }),
            Effect::RemoveFilter(id) => self.filters("remove the rule", |c| c.remove_filter(id).map(|f| f.filters)),
            Effect::SetFilterEnabled(id, en) => {
                self.filters("change the rule", |c| c.set_filter_enabled(id, en).map(|f| f.filters))
            }
            Effect::ClearFilters => self.filters("clear the rules", |c| c.clear_filters().map(|f| f.filters)),
            Effect::Inject(req) => self.inject(req),
            Effect::StopJob(job) => {
                let r = RawConn::connect(&self.ctx.socket)
                    .and_then(|mut c| c.call(json!({"op":"stop_job","job":job}), &mut |_| {}));
                match r.and_then(|v| serde_json::from_value::<JobView>(v["job"].clone()).map_err(|e| e.to_string())) {
                    Ok(j) => self.send(Action::JobStarted(j)),
                    Err(e) => self.failed("stop the resend", e),
                }
            }
            Effect::LibraryQuery { query, tag } => match self.query_library(&query, tag) {
                Ok((items, tags)) => self.send(Action::LibraryLoaded { items, tags }),
                Err(e) => self.failed("read the library", e),
            },
            Effect::LibrarySave { packets, name, description, tags } => {
                let meta = PacketMeta { name, description, tags };
                let new: Vec<NewPacket> = packets.into_iter().map(|p| NewPacket::new(p, &meta, "ui")).collect();
                match self.library().and_then(|mut l| l.save_many(&new).map_err(|e| e.to_string())) {
                    Ok(ids) => self.send(Action::Saved(ids.len())),
                    Err(e) => self.failed("save in the library", e),
                }
            }
            Effect::LibraryEdit { id, name, description, add_tags, remove_tags } => {
                let edit = |l: &mut Library| -> Result<(), pidcap_library::LibraryError> {
                    l.edit(id, &MetaEdit { name: Some(name), description: Some(description) })?;
                    if !add_tags.is_empty() {
                        l.tag(&[id], &add_tags)?;
                    }
                    if !remove_tags.is_empty() {
                        l.untag(&[id], &remove_tags)?;
                    }
                    Ok(())
                };
                let r = self.library().and_then(|mut l| edit(&mut l).map_err(|e| e.to_string()));
                if let Err(e) = r {
                    self.failed("edit the library entry", e);
                }
            }
            Effect::LibraryDelete(ids) => {
                if let Err(e) = self.library().and_then(|mut l| l.delete(&ids).map_err(|e| e.to_string())) {
                    self.failed("delete from the library", e);
                }
            }
            Effect::LibraryExportDpp(ids) => {
                let mut buf = Vec::new();
                match self.library().and_then(|l| {
                    l.export_to(&Selection::Ids(ids), ExportFormat::Dpp, &mut buf).map_err(|e| e.to_string())
                }) {
                    Ok(_) => {
                        let name = "pidcap-library.dpp";
                        let url = self.ctx.downloads.put(name, buf);
                        self.send(Action::DownloadReady(Download { name: name.into(), url }));
                    }
                    Err(e) => self.failed("export the library", e),
                }
            }
            Effect::ExportPcapng(packets) => match pcapng(&packets) {
                Ok(bytes) => {
                    let name = "pidcap-selection.pcapng";
                    let url = self.ctx.downloads.put(name, bytes);
                    self.send(Action::DownloadReady(Download { name: name.into(), url }));
                }
                Err(e) => self.failed("export to pcapng", e),
            },
        }
    }

    fn filters(&self, what: &str, f: impl FnOnce(&mut Client) -> Result<Vec<FilterInfo>, ClientError>) {
        match self.daemon(f) {
            Ok(list) => self.send(Action::FiltersChanged(list)),
            Err(e) => self.failed(what, e),
        }
    }

    fn query_library(
        &self,
        query: &str,
        tag: Option<String>,
    ) -> Result<(Vec<pidcap_library::SavedPacket>, Vec<pidcap_library::TagCount>), String> {
        let lib = self.library()?;
        let filter = Filter { tag, ..Filter::default() };
        let items = if query.trim().is_empty() {
            lib.list(&filter, 500, 0).map_err(|e| e.to_string())?
        } else {
            lib.search(query, &filter, 500).map_err(|e| e.to_string())?.into_iter().map(|h| h.packet).collect()
        };
        let tags = lib.tags().map_err(|e| e.to_string())?;
        Ok((items, tags))
    }

    /// Start `command` held at a gate, make it a target, then let it run.
    fn run_command(&self, command: &str, follow_children: bool) {
        use std::process::{Command, Stdio};
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg("read -r _gate; exec /bin/sh -c \"$0\"")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => return self.failed("run the command", format!("cannot start /bin/sh: {e}")),
        };
        let pid = child.id();
        match self.daemon(|c| c.start_capture(vec![pid], vec![], None, None, follow_children)) {
            Ok(s) => {
                if let Some(mut gate) = child.stdin.take() {
                    let _ = gate.write_all(b"go\n");
                }
                self.send(Action::CaptureStarted { targets: s.targets });
            }
            Err(e) => {
                let _ = child.kill();
                self.failed("start the capture", e);
            }
        }
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }

    fn inject(&self, req: InjectRequest) {
        let mut op = json!({"op":"inject","data":req.data_hex,"mode":req.mode.as_str(),"interval_ms":req.interval_ms});
        if let Some(p) = req.packet {
            op["packet"] = json!(p);
        }
        if let Some(t) = &req.template {
            op["template"] = serde_json::to_value(t).unwrap_or(Value::Null);
        }
        if req.forever {
            op["forever"] = json!(true);
        } else {
            op["count"] = json!(req.count);
        }
        let started = RawConn::connect(&self.ctx.socket).and_then(|mut c| c.call(op, &mut |_| {})).and_then(|v| {
            serde_json::from_value::<JobView>(v["job"].clone()).map_err(|e| format!("unexpected reply: {e}"))
        });
        let job = match started {
            Ok(j) => j,
            Err(e) => return self.failed("resend", e),
        };
        let id = job.id;
        self.send(Action::JobStarted(job));
        // Watch it on a connection of its own until it ends.
        let (socket, tx) = (self.ctx.socket.clone(), self.tx.clone());
        std::thread::spawn(move || {
            let mut conn = match RawConn::connect(&socket) {
                Ok(c) => c,
                Err(e) => return drop(tx.send(Action::Failed { what: "watch the resend".into(), error: e })),
            };
            let mut pending = Vec::new();
            if let Err(e) = conn.call(json!({"op":"watch_job","job":id}), &mut |v| pending.push(v)) {
                let _ = tx.send(Action::Failed { what: "watch the resend".into(), error: e });
                return;
            }
            let mut handle = |v: Value| -> bool {
                let done = v.get("event").and_then(Value::as_str) == Some("job_done");
                if let Some(a) = event_action(&v) {
                    if tx.send(a).is_err() {
                        return false;
                    }
                }
                !done
            };
            if !pending.into_iter().all(&mut handle) {
                return;
            }
            while let Ok(v) = conn.next_line() {
                if !handle(v) {
                    break;
                }
            }
        });
    }
}

/// The packets as a pcapng file.
pub fn pcapng(packets: &[CapturedPacket]) -> Result<Vec<u8>, String> {
    use pidcap_pcapfile::{Format, PacketWriter, WriterOptions};
    let mut w = PacketWriter::new(Format::Pcapng, Vec::new(), &WriterOptions::default()).map_err(|e| e.to_string())?;
    for p in packets {
        w.write_packet(p).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

/// A state fetched synchronously (tests, the CLI's startup check).
pub fn fetch_state(socket: &std::path::Path) -> Result<State, String> {
    Client::connect(socket).and_then(|mut c| c.get_state()).map_err(|e| plain(&e))
}
