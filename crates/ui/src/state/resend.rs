//! Resending: the form (mode, count, interval, loop, TLS), the `inject`
//! request it makes from the editor, the focused packet or a library entry,
//! and the job the daemon runs, followed send by send until its summary.
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
}

impl Resend {
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
    } else {
        let r = &mut app.resend;
        r.error = None;
        r.starting = true;
        r.job = None;
        r.summary = None;
        r.statuses.clear();
        return vec![Effect::Inject(Box::new(InjectArgs {
            packet,
            template,
            data: Some(pidcap_packet::to_hex(&payload)),
            mode: Some(form.mode),
            count: (!form.forever).then(|| count.unwrap_or(1)),
            forever: form.forever,
            interval_ms: interval,
            tls: form.tls.then(|| form.tls_options()),
            ..InjectArgs::default()
        }))];
    }
    Vec::new()
}
