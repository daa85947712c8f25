//! Resending: the form (mode, count, interval, loop, TLS, destination, one
//! connection or one per send), the `inject` request it makes from the
//! editor, the focused packet or a library entry, and the job the daemon
//! runs, followed send by send until its summary, each reply kept whole (the
//! reply view shows the chosen one).
//!
//! A TLS plaintext record is resent in connect mode over TLS only (a fresh
//! TLS connection; its plaintext in clear, in the process's own socket or in
//! a raw packet would be plaintext where the peer expects TLS): picking a
//! record switches the form to connect mode with TLS on; picking a packet
//! again switches it back. The TLS options are pidcap-resend's `TlsOptions`.

use super::{App, Effect, Level};
use crate::error::Problem;
use pidcap_api::protocol::{InjectArgs, JobInfo, SendStatus, Summary};
use pidcap_packet::CapturedPacket;
use pidcap_resend::{JobState, Mode, TlsOptions};
use std::collections::VecDeque;

/// Send statuses kept for the resend view.
pub const MAX_STATUSES: usize = 200;
/// The newest statuses whose replies are kept whole (up to 1 MiB each);
/// older ones keep their first [`REPLY_KEPT`] bytes (marked cut).
pub const WHOLE_REPLIES: usize = 16;
/// Bytes kept of an older status's reply.
pub const REPLY_KEPT: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResendForm {
    pub mode: Mode,
    pub count: String,
    pub interval_ms: String,
    pub forever: bool,
    /// Connect mode over TLS (a fresh TLS connection per send).
    pub tls: bool,
    /// The server name to send and check the certificate against (empty: none, for an IP address).
    pub sni: String,
    /// Do not check the server's certificate.
    pub insecure: bool,
    /// A PEM file of certificates to trust instead of the system's (read by the UI; empty: the system's).
    pub ca: String,
    /// The form was last set up for a TLS plaintext record.
    pub for_record: bool,
    // -- resend that replays what you mean (issue 14) --
    /// Connect mode: where to send, `ADDR:PORT` (empty: the server side of the
    /// packet's conversation, [`pidcap_resend::default_destination`], shown
    /// beside the field; also raw mode's destination).
    pub to: String,
    /// Connect mode: one connection for every send (default: a new one per send).
    pub keep_connection: bool,
}

impl Default for ResendForm {
    fn default() -> Self {
        ResendForm {
            mode: Mode::Socket,
            count: "1".into(),
            interval_ms: "1000".into(),
            forever: false,
            tls: false,
            sni: String::new(),
            insecure: false,
            ca: String::new(),
            for_record: false,
            to: String::new(),
            keep_connection: false,
        }
    }
}

impl ResendForm {
    /// The TLS options the form says (empty fields: the defaults). `ca` is
    /// the path typed; the runner reads it with the UI's rights and sends
    /// its text (`ca_pem`), never the path, to the daemon.
    pub fn tls_options(&self) -> TlsOptions {
        let field = |s: &str| Some(s.trim()).filter(|s| !s.is_empty()).map(String::from);
        TlsOptions { sni: field(&self.sni), insecure: self.insecure, ca: field(&self.ca).map(Into::into), ca_pem: None }
    }

    /// A packet or a record is about to be resent: a record switches the
    /// form to connect mode with TLS on, a packet after a record back to
    /// socket mode without TLS (nothing changes while the kind stays).
    pub fn follow(&mut self, p: &CapturedPacket) {
        // Another packet: its own destination (a typed one belonged to the last).
        self.to.clear();
        if p.is_tls() == self.for_record {
            return;
        }
        self.for_record = p.is_tls();
        self.mode = if self.for_record { Mode::Connect } else { Mode::Socket };
        self.tls = self.for_record;
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Resend {
    pub form: ResendForm,
    /// Asked the daemon, no job yet.
    pub starting: bool,
    /// The job, as the daemon last reported it (its counters follow the statuses).
    pub job: Option<JobInfo>,
    /// The newest [`MAX_STATUSES`] sends of the job.
    pub statuses: VecDeque<SendStatus>,
    pub summary: Option<Summary>,
    /// Why the last resend could not start.
    pub error: Option<String>,
    /// The send whose reply the reply view shows (its `seq`); None: the newest with a reply.
    pub reply_of: Option<u64>,
}

/// What happens on the resend panel.
#[derive(Debug, Clone)]
pub enum ResendMsg {
    SetMode(Mode),
    SetCount(String),
    SetInterval(String),
    /// "loop until stopped".
    SetForever(bool),
    /// "over TLS" (connect mode).
    SetTls(bool),
    SetSni(String),
    SetInsecure(bool),
    SetCa(String),
    /// Send what the editor shows (or the focused packet as captured).
    Start,
    Stop,
    /// The daemon's job: just started (`inject`) or stopped (`stop_job`).
    Job(Box<JobInfo>),
    /// One send of a job.
    Status {
        job: u64,
        status: SendStatus,
    },
    /// A job ended.
    Done {
        job: u64,
        summary: Summary,
    },
    // -- resend that replays what you mean (issue 14) --
    /// The destination field (empty: the default, the conversation's server side).
    SetTo(String),
    /// "keep one connection" (connect mode).
    SetKeepConnection(bool),
    /// Show this send's reply (its `seq`) in the reply view.
    ShowReply(u64),
}

impl Resend {
    /// The status whose reply the reply view shows: the chosen one while it
    /// is kept, else the newest with a reply.
    pub fn shown_reply(&self) -> Option<&SendStatus> {
        let chosen = self.reply_of.and_then(|seq| self.statuses.iter().find(|s| s.seq == seq && s.reply.is_some()));
        chosen.or_else(|| self.statuses.iter().rev().find(|s| s.reply.is_some()))
    }

    /// Being started, or running and not yet summed up.
    pub fn running(&self) -> bool {
        self.starting || self.job.as_ref().is_some_and(|j| j.state == JobState::Running && self.summary.is_none())
    }

    /// The daemon refused the resend.
    pub(super) fn failed(&mut self, error: &Problem) {
        self.starting = false;
        self.error = Some(error.to_string());
    }

    fn refuse(app: &mut App, why: &str) {
        app.resend.error = Some(why.to_string());
        app.notify(Level::Error, why);
    }
}

pub(super) fn update(app: &mut App, msg: ResendMsg) -> Vec<Effect> {
    let r = &mut app.resend;
    match msg {
        ResendMsg::SetMode(m) => r.form.mode = m,
        ResendMsg::SetCount(c) => r.form.count = c,
        ResendMsg::SetInterval(i) => r.form.interval_ms = i,
        ResendMsg::SetForever(f) => r.form.forever = f,
        ResendMsg::SetTls(t) => r.form.tls = t,
        ResendMsg::SetSni(n) => r.form.sni = n,
        ResendMsg::SetInsecure(i) => r.form.insecure = i,
        ResendMsg::SetCa(c) => r.form.ca = c,
        ResendMsg::SetTo(t) => r.form.to = t,
        ResendMsg::SetKeepConnection(k) => r.form.keep_connection = k,
        ResendMsg::ShowReply(seq) => r.reply_of = Some(seq),
        ResendMsg::Start => return start(app),
        ResendMsg::Stop => {
            if let Some(j) = &r.job {
                return vec![Effect::StopJob(j.id)];
            }
        }
        ResendMsg::Job(job) => {
            r.starting = false;
            if let Some(s) = job.summary.clone() {
                r.summary = Some(s);
            }
            r.job = Some(*job);
        }
        ResendMsg::Status { job, status } => {
            if let Some(j) = r.job.as_mut().filter(|j| j.id == job) {
                if status.ok {
                    j.sent = j.sent.max(status.seq);
                    j.bytes += status.bytes as u64;
                } else {
                    j.failed += 1;
                }
                r.statuses.push_back(status);
                while r.statuses.len() > MAX_STATUSES {
                    r.statuses.pop_front();
                }
                let n = r.statuses.len();
                if let Some(old) = n.checked_sub(WHOLE_REPLIES + 1).and_then(|i| r.statuses.get_mut(i)) {
                    old.reply = old.reply.as_ref().map(|rep| rep.cut(REPLY_KEPT));
                }
            }
        }
        ResendMsg::Done { job, summary } => {
            if let Some(j) = r.job.as_mut().filter(|j| j.id == job) {
                j.sent = summary.sent;
                j.failed = summary.failed;
                j.state = summary.reason.into();
                j.summary = Some(summary.clone());
                r.summary = Some(summary);
            }
        }
    }
    Vec::new()
}

/// The packet a resend starts from: the editor's (a captured packet's, or
/// the open library entry's), else the focused packet.
pub fn source_packet(app: &App) -> Option<&CapturedPacket> {
    match &app.editor {
        Some(e) if e.packet_id != 0 => app.packets.packet(e.packet_id).map(|p| &**p),
        Some(_) => app.library.open.as_ref().map(|l| &*l.packet),
        None => app.packets.focused_packet().map(|p| &**p),
    }
}

/// Where connect mode sends when the destination field is empty: the
/// server side of the packet's conversation (for a packet the target
/// received, its own address and port).
pub fn default_destination(app: &App) -> Option<std::net::SocketAddr> {
    source_packet(app).and_then(pidcap_resend::default_destination)
}

/// The `inject` request for what is to be sent, or why not.
fn start(app: &mut App) -> Vec<Effect> {
    let form = app.resend.form.clone();
    let count = form.count.trim().parse::<u64>().ok().filter(|c| *c >= 1);
    let interval = form.interval_ms.trim().parse::<u64>().ok();
    let (packet, template, payload, record) = match &app.editor {
        Some(e) if !e.is_valid() => {
            Resend::refuse(app, "The edited payload is not valid; fix it before sending.");
            return Vec::new();
        }
        Some(e) if e.packet_id != 0 => (Some(e.packet_id), None, e.payload.clone(), e.record.is_some()),
        Some(e) => (None, app.library.open.as_ref().map(|l| l.packet.clone()), e.payload.clone(), e.record.is_some()),
        None => match app.packets.focused_packet() {
            Some(p) => (Some(p.id), None, p.payload().to_vec(), p.is_tls()),
            None => (None, None, Vec::new(), false),
        },
    };
    if packet.is_none() && template.is_none() {
        Resend::refuse(app, "Pick a packet to resend first.");
    } else if record && (form.mode != Mode::Connect || !form.tls) {
        Resend::refuse(
            app,
            "A TLS plaintext record is resent in connect mode only, over TLS: its connection is encrypted, \
             so its plaintext must not go out in clear, into the process's socket or into a raw packet.",
        );
    } else if form.tls && form.mode != Mode::Connect {
        Resend::refuse(app, "TLS works in connect mode only (a fresh connection).");
    } else if count.is_none() && !form.forever {
        Resend::refuse(app, "The count is a whole number of sends, 1 or more.");
    } else if interval.is_none() {
        Resend::refuse(app, "The interval is a number of milliseconds.");
    } else if !form.to.trim().is_empty() && pidcap_resend::parse_endpoint(&form.to).is_err() {
        Resend::refuse(app, "The destination is ADDR:PORT (or [V6]:PORT), or empty for the conversation's server.");
    } else {
        let r = &mut app.resend;
        r.error = None;
        r.starting = true;
        r.job = None;
        r.summary = None;
        r.statuses.clear();
        r.reply_of = None;
        let connect = form.mode == Mode::Connect;
        let to = Some(form.to.trim().to_string()).filter(|t| !t.is_empty() && form.mode != Mode::Socket);
        return vec![Effect::Inject(Box::new(InjectArgs {
            packet,
            template,
            data: Some(pidcap_packet::to_hex(&payload)),
            mode: Some(form.mode),
            count: (!form.forever).then(|| count.unwrap_or(1)),
            forever: form.forever,
            interval_ms: interval,
            tls: form.tls.then(|| form.tls_options()),
            to,
            keep_connection: connect && !form.tls && form.keep_connection,
            ..InjectArgs::default()
        }))];
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{update, EditorMsg, PacketsMsg};
    use pidcap_packet::build::{build, flags, TcpFields, Transport};
    use pidcap_packet::{Direction, Verdict};
    use pidcap_resend::ReplyInfo;
    use std::sync::Arc;

    /// A request the target (a server on 10.0.0.1:8089) received from a client's ephemeral port.
    fn received_request(id: u64) -> CapturedPacket {
        let fields = TcpFields { seq: 1, ack: 1, flags: flags::PSH | flags::ACK, window: 100 };
        let data = build(
            "10.0.0.2:51284".parse().unwrap(),
            "10.0.0.1:8089".parse().unwrap(),
            64,
            Transport::Tcp(fields),
            b"GET / HTTP/1.0\r\n\r\n",
        )
        .unwrap();
        let len = data.len() as u32;
        CapturedPacket::new(id, 1, 42, "server".into(), 7, Direction::Inbound, Verdict::Pass, len, data)
    }

    fn status(seq: u64, reply: Option<&[u8]>) -> SendStatus {
        SendStatus {
            seq,
            ok: true,
            bytes: 18,
            time_ns: 0,
            elapsed_us: 0,
            error: None,
            error_kind: None,
            reply: reply.map(ReplyInfo::new),
        }
    }

    fn app_with_request() -> App {
        let mut app = App::new();
        update(&mut app, PacketsMsg::Arrived(vec![Arc::new(received_request(1))]));
        update(&mut app, PacketsMsg::Select { id: 1, extend: false });
        app
    }

    #[test]
    fn the_destination_defaults_to_the_server_side_and_a_typed_one_is_sent() {
        let mut app = app_with_request();
        assert_eq!(default_destination(&app), Some("10.0.0.1:8089".parse().unwrap()), "not the client's old port");
        update(&mut app, ResendMsg::SetMode(Mode::Connect));
        // Empty: the daemon picks the same default (no `to` in the request).
        let fx = update(&mut app, ResendMsg::Start);
        let [Effect::Inject(req)] = fx.as_slice() else { panic!("{fx:?}") };
        assert_eq!((req.to.as_deref(), req.keep_connection), (None, false), "a new connection per send by default");
        let p =
            pidcap_resend::prepare(&InjectArgs { template: Some(Box::new(received_request(1))), ..(**req).clone() })
                .unwrap();
        assert_eq!(p.target.remote, "10.0.0.1:8089".parse().unwrap());
        // Typed: sent as `to`; a bad one refused before anything is asked.
        app.resend = Resend::default();
        update(&mut app, ResendMsg::SetMode(Mode::Connect));
        update(&mut app, ResendMsg::SetTo("127.0.0.1:9".into()));
        update(&mut app, ResendMsg::SetKeepConnection(true));
        let fx = update(&mut app, ResendMsg::Start);
        let [Effect::Inject(req)] = fx.as_slice() else { panic!("{fx:?}") };
        assert_eq!((req.to.as_deref(), req.keep_connection), (Some("127.0.0.1:9"), true));
        app.resend.starting = false;
        update(&mut app, ResendMsg::SetTo("nowhere".into()));
        assert!(update(&mut app, ResendMsg::Start).is_empty());
        assert!(app.resend.error.as_deref().unwrap().contains("ADDR:PORT"));
        // Socket mode sends through the process's socket: no destination, no kept connection.
        update(&mut app, ResendMsg::SetTo("127.0.0.1:9".into()));
        update(&mut app, ResendMsg::SetMode(Mode::Socket));
        let fx = update(&mut app, ResendMsg::Start);
        let [Effect::Inject(req)] = fx.as_slice() else { panic!("{fx:?}") };
        assert_eq!((req.to.as_deref(), req.keep_connection), (None, false));
        // Opening the editor on a packet forgets a destination typed for another.
        update(&mut app, EditorMsg::Open);
        assert_eq!(app.resend.form.to, "");
    }

    #[test]
    fn the_reply_view_shows_the_newest_reply_or_the_chosen_one() {
        let mut app = app_with_request();
        update(&mut app, ResendMsg::SetMode(Mode::Connect));
        update(&mut app, ResendMsg::Start);
        let job: JobInfo = serde_json::from_value(serde_json::json!({
            "id": 5, "state": "running", "mode": "connect", "proto": "tcp", "local": null,
            "remote": "10.0.0.1:8089", "pid": 42, "payload_len": 18, "count": 3, "forever": false,
            "interval_ms": 50, "sent": 0, "failed": 0, "bytes": 0, "started_ns": 1, "last": null, "summary": null
        }))
        .unwrap();
        update(&mut app, ResendMsg::Job(Box::new(job)));
        assert!(app.resend.shown_reply().is_none());
        let big = vec![b'x'; 5000];
        update(&mut app, ResendMsg::Status { job: 5, status: status(1, Some(b"HTTP/1.0 200 OK\r\n\r\none")) });
        update(&mut app, ResendMsg::Status { job: 5, status: status(2, Some(&big)) });
        update(&mut app, ResendMsg::Status { job: 5, status: status(3, None) });
        assert_eq!(app.resend.shown_reply().map(|s| s.seq), Some(2), "the newest with a reply");
        assert_eq!(app.resend.shown_reply().unwrap().reply.as_ref().unwrap().data().len(), 5000, "whole");
        update(&mut app, ResendMsg::ShowReply(1));
        assert_eq!(app.resend.shown_reply().map(|s| s.seq), Some(1));
        update(&mut app, ResendMsg::ShowReply(3)); // no reply: the newest with one
        assert_eq!(app.resend.shown_reply().map(|s| s.seq), Some(2));
        // Only the newest WHOLE_REPLIES replies stay whole; older ones keep their start, marked cut.
        for seq in 4..=(3 + WHOLE_REPLIES as u64) {
            update(&mut app, ResendMsg::Status { job: 5, status: status(seq, Some(&big)) });
        }
        let reply = |seq: u64| app.resend.statuses.iter().find(|s| s.seq == seq).unwrap().reply.clone().unwrap();
        assert_eq!((reply(2).bytes, reply(2).truncated), (REPLY_KEPT, true));
        assert_eq!((reply(4).bytes, reply(4).truncated), (5000, false));
        assert_eq!(reply(1).bytes, 22, "short replies stay as they were");
        // A new job starts with the newest again.
        update(&mut app, ResendMsg::ShowReply(1));
        app.resend.job = None;
        update(&mut app, ResendMsg::Start);
        assert_eq!((app.resend.reply_of, app.resend.statuses.len()), (None, 0));
    }
}
