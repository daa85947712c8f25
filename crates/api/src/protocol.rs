//! The daemon's API, version 2 (version 1 requests are still served): the
//! types shared by the server and its clients. One JSON object per line,
//! both ways (see docs/API.md).
//!
//! Request: `{"v":2,"id":7,"op":"get_packets","since":0,"limit":100}`
//! Reply:   `{"v":2,"id":7,"ok":true,"result":{...}}`
//!          `{"v":2,"id":7,"ok":false,"error":{"code":"unknown_op","message":"..."}}`
//! Event (after `subscribe`, carrying the subscribe request's id):
//!          `{"v":2,"id":7,"event":"packet","packet":{...}}`
//!
//! Version 2 adds TLS plaintext records: packets whose `tls` object is set
//! (their `data` is synthesized, see [`pidcap_packet::tls`]), the TLS
//! counters in the kernel stats, each target's TLS coverage
//! ([`TargetInfo::tls`]) and `inject`'s `tls` (TLS replay in connect mode). A request with `"v":1` is answered with `"v":1`
//! and never given a TLS record (a version 1 client would take it for a
//! packet seen on the wire).
//!
//! An [`Op`] is either an [`EngineOp`] (answered by the daemon's engine
//! thread) or a [`ConnectionOp`] (answered by the client's connection); each
//! operation's result is a type of this module ([`Started`], [`State`]...).

use pidcap_engine::rules::{Action, Rule};
use pidcap_engine::{CaptureStats, TlsLibraryFile};
pub use pidcap_packet::ascii::{cut_quotes, quote_cut};
use pidcap_packet::CapturedPacket;
pub use pidcap_resend::{InjectArgs, JobInfo, SendStatus, Summary};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The protocol version this crate speaks (and its client sends).
pub const VERSION: u32 = 2;
/// The oldest version the daemon still answers (in that version's terms:
/// no TLS records for it).
pub const OLDEST_VERSION: u32 = 1;
/// Longest request line the daemon accepts (bytes, newline excluded).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;
/// Longest reply line a client accepts; replies are kept well below it.
pub const MAX_REPLY_BYTES: usize = 64 << 20;
/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/pidcap/pidcap.sock";
/// The group whose members may use the daemon.
pub const DEFAULT_GROUP: &str = "pidcap";
/// Most packets one `get_packets` returns.
pub const MAX_PAGE: usize = 1000;
/// Default `get_packets` limit.
pub const DEFAULT_PAGE: usize = 100;
/// A `get_packets` page stops growing past this many captured bytes (hex doubles it).
pub const PAGE_BYTES: usize = 2 << 20;

/// The operations, named after the seed's IOCTLs: [`EngineOp::NAMES`] and
/// [`ConnectionOp::NAMES`].
pub const OPS: &[&str] = &[
    "start_capture",
    "stop_capture",
    "get_packets",
    "subscribe",
    "inject",
    "add_filter",
    "remove_filter",
    "set_filter_enabled",
    "clear_filters",
    "clear_buffer",
    "get_state",
    "list_jobs",
    "watch_job",
    "stop_job",
];

/// A request: the envelope (`v`, `id`) and the operation with its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    pub id: u64,
    #[serde(flatten)]
    pub op: Op,
}

/// Any operation. On the wire one flat object whose `op` names it
/// (`{"op":"get_packets","since":0}`); in Rust, who answers it: the daemon's
/// engine thread ([`EngineOp`]) or the client's connection ([`ConnectionOp`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Op {
    Engine(EngineOp),
    Connection(ConnectionOp),
}

/// A cgroup `start_capture` captures (`{"path":"/system.slice/x.service"}`,
/// `{"unit":"nginx"}`, `{"container":"3f4e2b1c0d9a"}`), resolved by the
/// daemon as `pidcap capture --cgroup/--unit/--container` does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum CgroupSpec {
    /// A path in the cgroup2 hierarchy (as /proc/PID/cgroup shows it) or a directory of its mount.
    Path(String),
    /// A systemd unit, `NAME` or `NAME.service`.
    Unit(String),
    /// A container: its id, a prefix of 4 hex digits or more, or a machine name.
    Container(String),
}

/// What the daemon's engine thread answers: the capture, its packets, the
/// filter list and the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum EngineOp {
    /// Start capturing the given processes (IOCTL_..._START_CAPTURE). Result: [`Started`].
    StartCapture {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        pids: Vec<u32>,
        /// Process names (comm, first 15 bytes): running ones and any that start later.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        names: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snaplen: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ring_size: Option<usize>,
        #[serde(default)]
        follow_children: bool,
        // -- filter expressions --
        /// A pcap-filter expression (tcpdump's language, compiled by
        /// libpcap): only the packets it matches are kept. A malformed one
        /// is refused (`invalid_argument`, with libpcap's message).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        // -- capture by cgroup, unit and container --
        /// Cgroups: every process in each and below it, also those that join later.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cgroups: Vec<CgroupSpec>,
    },
    /// Stop capturing; targets are forgotten, captured packets are kept. Result: [`State`].
    StopCapture,
    /// Up to `limit` packets with an id greater than `since`, oldest first. Result: [`PacketPage`].
    GetPackets {
        #[serde(default)]
        since: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Add a filter rule; `rule` is a SPEC (`tcp:443`, `block:in:udp:53`). Result: [`Filters`].
    AddFilter {
        rule: String,
        /// Action when the SPEC names none (default block).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<Action>,
        /// Insert at this index (default: at the end).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
    },
    /// Result: [`Filters`].
    RemoveFilter { filter: u64 },
    /// Result: [`Filters`].
    SetFilterEnabled { filter: u64, enabled: bool },
    /// Result: [`Filters`].
    ClearFilters,
    /// Drop every packet held by the daemon (ids keep increasing). Result: [`Cleared`].
    ClearBuffer,
    /// Result: [`State`].
    GetState,
}

/// What a client's connection answers itself: its subscription and the
/// send jobs (which stream events on that connection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ConnectionOp {
    /// Stream packets and counters on this connection. With `since`, the
    /// packets still held with a greater id come first. Result: [`Subscribed`].
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Start a send job (one packet, once or in a loop). Result: [`JobReply`].
    Inject(Box<InjectArgs>),
    /// Running jobs and the last finished ones. Result: [`Jobs`].
    ListJobs,
    /// Stream a job's statuses (the ones made so far first) on this connection. Result: [`Watching`].
    WatchJob { job: u64 },
    /// Stop a job; answered once it has stopped. Result: [`JobReply`].
    StopJob { job: u64 },
}

impl EngineOp {
    pub const NAMES: &[&str] = &[
        "start_capture",
        "stop_capture",
        "get_packets",
        "add_filter",
        "remove_filter",
        "set_filter_enabled",
        "clear_filters",
        "clear_buffer",
        "get_state",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            EngineOp::StartCapture { .. } => "start_capture",
            EngineOp::StopCapture => "stop_capture",
            EngineOp::GetPackets { .. } => "get_packets",
            EngineOp::AddFilter { .. } => "add_filter",
            EngineOp::RemoveFilter { .. } => "remove_filter",
            EngineOp::SetFilterEnabled { .. } => "set_filter_enabled",
            EngineOp::ClearFilters => "clear_filters",
            EngineOp::ClearBuffer => "clear_buffer",
            EngineOp::GetState => "get_state",
        }
    }
}

impl ConnectionOp {
    pub const NAMES: &[&str] = &["subscribe", "inject", "list_jobs", "watch_job", "stop_job"];

    pub fn name(&self) -> &'static str {
        match self {
            ConnectionOp::Subscribe { .. } => "subscribe",
            ConnectionOp::Inject(_) => "inject",
            ConnectionOp::ListJobs => "list_jobs",
            ConnectionOp::WatchJob { .. } => "watch_job",
            ConnectionOp::StopJob { .. } => "stop_job",
        }
    }
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Engine(op) => op.name(),
            Op::Connection(op) => op.name(),
        }
    }

    /// The arguments operation `name` takes (None: no such operation).
    /// Anything else in a request is refused ([`unknown_argument`]).
    pub fn arguments(name: &str) -> Option<&'static [&'static str]> {
        Some(match name {
            "start_capture" => &["pids", "names", "snaplen", "ring_size", "follow_children", "filter", "cgroups"],
            "get_packets" => &["since", "limit"],
            "add_filter" => &["rule", "action", "index"],
            "remove_filter" => &["filter"],
            "set_filter_enabled" => &["filter", "enabled"],
            "subscribe" => &["since"],
            "inject" => INJECT_ARGUMENTS,
            "watch_job" | "stop_job" => &["job"],
            "stop_capture" | "clear_filters" | "clear_buffer" | "get_state" | "list_jobs" => &[],
            _ => return None,
        })
    }

    /// Decode an operation object (`op` and its arguments, no envelope),
    /// with the error of the one type its `op` belongs to. An argument the
    /// operation does not take is an error naming it.
    pub fn from_value(value: serde_json::Value) -> Result<Op, serde_json::Error> {
        if let Some(e) = unknown_argument(&value) {
            return Err(serde::de::Error::custom(e));
        }
        let connection = value.get("op").and_then(|o| o.as_str()).is_some_and(|o| ConnectionOp::NAMES.contains(&o));
        if connection {
            ConnectionOp::deserialize(value).map(Op::Connection)
        } else {
            EngineOp::deserialize(value).map(Op::Engine)
        }
    }
}

/// The fields of [`InjectArgs`] (checked against what serde writes in the tests).
const INJECT_ARGUMENTS: &[&str] = &[
    "packet",
    "template",
    "data",
    "ascii",
    "patches",
    "replaces",
    "mode",
    "proto",
    "to",
    "from",
    "pid",
    "count",
    "forever",
    "interval_ms",
    "max_rate",
    "stop_on_error",
    "timeout_ms",
    "tls",
    // -- resend (issue 14) --
    "keep_connection",
];

/// The first field of an operation object (`op` and arguments, no
/// envelope) that its operation does not take, as a message naming it and
/// what the operation takes. serde alone would let a unit variant
/// (`clear_filters`) ignore any field, whatever `deny_unknown_fields` says.
pub fn unknown_argument(value: &serde_json::Value) -> Option<String> {
    let obj = value.as_object()?;
    let name = obj.get("op")?.as_str()?;
    let takes = Op::arguments(name)?;
    let field = obj.keys().find(|k| *k != "op" && !takes.contains(&k.as_str()))?;
    let field = quote_cut(field, 64);
    Some(if takes.is_empty() {
        format!("unknown field {field}: `{name}` takes no arguments")
    } else {
        format!("unknown field {field}: `{name}` takes {}", takes.join(", "))
    })
}

impl<'de> Deserialize<'de> for Op {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Op, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        Op::from_value(value).map_err(serde::de::Error::custom)
    }
}

impl From<EngineOp> for Op {
    fn from(op: EngineOp) -> Op {
        Op::Engine(op)
    }
}

impl From<ConnectionOp> for Op {
    fn from(op: ConnectionOp) -> Op {
        Op::Connection(op)
    }
}

/// Error codes; stable, for programs to match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or mistyped field.
    BadRequest,
    /// `v` is not a version the daemon speaks.
    UnsupportedVersion,
    UnknownOp,
    /// The request line is longer than [`MAX_REQUEST_BYTES`].
    TooLarge,
    InvalidRule,
    /// An argument out of range (snap length, ring size, too many rules...).
    InvalidArgument,
    NotRunning,
    AlreadyRunning,
    NoSuchProcess,
    NoSuchFilter,
    /// A job id that does not exist (or was forgotten).
    NoSuchJob,
    /// `inject`: bad hex, patch, replacement or address (the message says where).
    InvalidPayload,
    NotImplemented,
    PermissionDenied,
    /// The kernel layer refused an operation.
    Kernel,
    /// The daemon serves as many clients as it may (`--max-clients`); the
    /// connection is closed after this error. Try again later.
    Busy,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} ({})", code_name(*.code))]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

/// The code as it appears on the wire (`not_implemented`).
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into() }
    }
}

/// Everything the daemon writes: a reply to a request, or an event of a
/// subscription. `R` is the result's type: the daemon writes typed results,
/// a client reads them as JSON values and decodes each as its call expects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<R = serde_json::Value> {
    pub v: u32,
    /// The request's id (null when the request was too broken to have one).
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

impl<R> Reply<R> {
    pub fn ok(id: u64, result: R) -> Reply<R> {
        Reply { v: VERSION, id: Some(id), ok: Some(true), result: Some(result), error: None, event: None }
    }
    pub fn err(id: Option<u64>, error: ApiError) -> Reply<R> {
        Reply { v: VERSION, id, ok: Some(false), result: None, error: Some(error), event: None }
    }
    pub fn event(id: u64, event: Event) -> Reply<R> {
        Reply { v: VERSION, id: Some(id), ok: None, result: None, error: None, event: Some(event) }
    }
    /// The same line in the terms of protocol version `v` (the request's).
    pub fn at_version(mut self, v: u32) -> Reply<R> {
        self.v = v;
        self
    }
}

/// The line of a packet event, built around the packet's JSON (`packet_json`,
/// as `serde_json` writes a [`CapturedPacket`]) so that a daemon serializes
/// each packet once for all its subscribers. The same bytes as
/// [`Reply::event`] with [`Event::Packet`] at version `v`, newline included.
pub fn packet_event_line(v: u32, id: u64, packet_json: &[u8]) -> Vec<u8> {
    let head = packet_event_head(v, id);
    let mut line = Vec::with_capacity(head.len() + packet_json.len() + PACKET_EVENT_TAIL.len());
    line.extend_from_slice(head.as_bytes());
    line.extend_from_slice(packet_json);
    line.extend_from_slice(PACKET_EVENT_TAIL);
    line
}

// -- daemon fan-out (issue 13) --
/// What comes before the packet's JSON in [`packet_event_line`]: the same for
/// every packet of one subscription, so a daemon makes it once per subscriber
/// and appends head, shared JSON and [`PACKET_EVENT_TAIL`] to its batch.
pub fn packet_event_head(v: u32, id: u64) -> String {
    format!(r#"{{"v":{v},"id":{id},"event":"packet","packet":"#)
}
/// What ends a packet event's line after the packet's JSON (newline included).
pub const PACKET_EVENT_TAIL: &[u8] = b"}\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Shared with the capture's ring and every other subscriber: serialized
    /// from there, never copied per subscriber. A TLS plaintext record is a
    /// packet whose `tls` is set (version 2 subscribers only).
    Packet { packet: Arc<CapturedPacket> },
    /// Sent about once a second while subscribed.
    Counters { stats: CaptureStats, running: bool },
    /// This subscriber read too slowly: `count` packets were skipped for it
    /// (they are still in the daemon's ring, see get_packets).
    Missed { count: u64 },
    /// One send of a watched job.
    SendStatus { job: u64, status: SendStatus },
    /// A watched job ended.
    JobDone { job: u64, summary: Summary },
}

/// `start_capture`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Counts captures since the daemon started.
    pub session: u64,
    /// The id the first packet of this capture gets (ids never repeat within a daemon's life).
    pub first_id: u64,
    pub targets: Vec<u32>,
}

/// `get_packets`' result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PacketPage {
    pub packets: Vec<CapturedPacket>,
    /// Pass this as `since` for the next page.
    pub next_since: u64,
    /// More packets are held after this page.
    pub more: bool,
    /// Packets after `since` that are no longer held (evicted or cleared):
    /// the gap between `since` and the first packet returned.
    pub missed: u64,
}

/// A filter rule as the daemon holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterInfo {
    /// Stable id (for remove_filter / set_filter_enabled).
    pub id: u64,
    /// Position in the list: the `rule` number packets carry.
    pub index: usize,
    /// The canonical SPEC (`block:tcp:443`).
    pub spec: String,
    pub rule: Rule,
    /// Packets and connect/send calls this rule decided since it was added.
    pub hits: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetInfo {
    pub pid: u32,
    pub comm: Option<String>,
    pub alive: bool,
    /// Asked for by start_capture (false: added by the kernel: a child or a name match).
    pub requested: bool,
    /// The TLS libraries whose plaintext is taken for this target (version
    /// 2): empty when it maps none that pidcap supports (its TLS traffic is
    /// then captured encrypted only); absent when not known (the target is
    /// not alive, or the kernel layer takes no TLS plaintext).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Vec<TlsLibraryFile>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureSettings {
    pub snaplen: u32,
    pub ring_size: usize,
    pub follow_children: bool,
}

/// `get_state`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub running: bool,
    pub session: u64,
    pub settings: Option<CaptureSettings>,
    pub targets: Vec<TargetInfo>,
    pub names: Vec<String>,
    /// Counters at every stage (kernel since the capture started, user ring).
    pub stats: CaptureStats,
    /// Ids of the oldest and newest packets held.
    pub oldest_id: Option<u64>,
    pub newest_id: Option<u64>,
    pub filters: Vec<FilterInfo>,
    pub subscribers: usize,
    pub daemon_pid: u32,
    pub protocol: u32,
}

/// `clear_buffer`'s result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleared {
    /// Packets dropped.
    pub cleared: usize,
    /// The id the next packet gets (ids go on after a clear).
    pub next_id: u64,
}

/// `subscribe`'s result; the backlog's packets follow as events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    pub subscribed: bool,
    /// Held packets sent first (those with an id greater than `since`).
    pub backlog: usize,
    pub protocol: u32,
}

/// `watch_job`'s result; the job's statuses follow as events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watching {
    pub watching: u64,
    pub job: JobInfo,
}

/// `inject`'s and `stop_job`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    pub job: JobInfo,
}

/// `list_jobs`' result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Jobs {
    pub jobs: Vec<JobInfo>,
}

/// Results of the filter operations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// The filter added or changed, if any.
    pub filter: Option<FilterInfo>,
    /// The whole list after the change.
    pub filters: Vec<FilterInfo>,
}

/// What an unsupported `v` was, and what is supported.
fn unsupported_version(v: &serde_json::Value) -> String {
    let sent = match v {
        serde_json::Value::Number(n) => format!("protocol version {n}"),
        serde_json::Value::String(t) => format!("`v` {} (a string)", quote_cut(&format!("{t:?}"), 64)),
        other => {
            let kind = match other {
                serde_json::Value::Null => "null",
                serde_json::Value::Bool(_) => "a boolean",
                serde_json::Value::Array(_) => "an array",
                _ => "an object",
            };
            format!("`v` {kind}")
        }
    };
    format!(
        "{sent} is not supported; this daemon speaks version {VERSION} (\"v\":{VERSION}, a number; version {OLDEST_VERSION} is still served)"
    )
}

/// Parse one request line. Errors carry the request id when it could be read.
pub fn parse_request(line: &[u8]) -> Result<Request, (Option<u64>, ApiError)> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| (None, ApiError::new(ErrorCode::BadRequest, format!("not JSON: {e}"))))?;
    let obj =
        value.as_object().ok_or_else(|| (None, ApiError::new(ErrorCode::BadRequest, "a request is a JSON object")))?;
    let Some(id) = obj.get("id").and_then(|v| v.as_u64()) else {
        return Err((None, ApiError::new(ErrorCode::BadRequest, "`id` (an unsigned integer) is required")));
    };
    let bad = |code, msg: String| Err((Some(id), ApiError::new(code, msg)));
    match obj.get("v") {
        None => {
            return bad(
                ErrorCode::BadRequest,
                format!("`v` is required (this daemon speaks v{VERSION}: \"v\":{VERSION})"),
            )
        }
        Some(v) if v.as_u64().is_some_and(|v| (u64::from(OLDEST_VERSION)..=u64::from(VERSION)).contains(&v)) => {}
        Some(v) => return bad(ErrorCode::UnsupportedVersion, unsupported_version(v)),
    }
    let version = obj.get("v").and_then(|v| v.as_u64()).map_or(VERSION, |v| v as u32);
    let name = match obj.get("op") {
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return bad(ErrorCode::BadRequest, "`op` must be a string".into()),
        None => return bad(ErrorCode::BadRequest, format!("`op` is required, one of: {}", OPS.join(", "))),
    };
    let Some(op) = OPS.iter().copied().find(|&o| o == name) else {
        let name = quote_cut(name, 64);
        return bad(ErrorCode::UnknownOp, format!("unknown operation {name}; known: {}", OPS.join(", ")));
    };
    let mut fields = value;
    if let Some(obj) = fields.as_object_mut() {
        obj.remove("v");
        obj.remove("id");
    }
    if let Some(e) = unknown_argument(&fields) {
        return bad(ErrorCode::InvalidArgument, format!("bad arguments for `{op}`: {e}"));
    }
    let op = Op::from_value(fields)
        .map_err(|e| (Some(id), ApiError::new(ErrorCode::BadRequest, format!("bad arguments for `{op}`: {e}"))))?;
    Ok(Request { v: version, id, op })
}

impl fmt::Display for FilterInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{} [{}] {} ({} hits)", self.id, self.index, self.spec, self.hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(line: &str) -> ErrorCode {
        parse_request(line.as_bytes()).unwrap_err().1.code
    }

    #[test]
    fn requests_round_trip_and_bad_ones_get_precise_codes() {
        let r = parse_request(br#"{"v":1,"id":3,"op":"get_packets","since":5,"limit":10}"#).unwrap();
        assert_eq!(r, Request { v: 1, id: 3, op: EngineOp::GetPackets { since: 5, limit: Some(10) }.into() });
        let back = serde_json::to_vec(&r).unwrap();
        assert_eq!(parse_request(&back).unwrap(), r);
        assert_eq!(
            parse_request(br#"{"v":1,"id":1,"op":"stop_capture"}"#).unwrap().op,
            Op::Engine(EngineOp::StopCapture)
        );
        assert_eq!(
            parse_request(br#"{"v":1,"id":1,"op":"watch_job","job":4}"#).unwrap().op,
            Op::Connection(ConnectionOp::WatchJob { job: 4 })
        );
        assert_eq!(code("nope"), ErrorCode::BadRequest);
        assert_eq!(code("[1]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"v":1,"op":"get_state"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"v":3,"id":1,"op":"get_state"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(code(r#"{"v":0,"id":1,"op":"get_state"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"format_disk"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"remove_filter"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"get_packets","sincе":1}"#), ErrorCode::InvalidArgument);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"get_state","x":1}"#), ErrorCode::InvalidArgument);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"list_jobs","job":1}"#), ErrorCode::InvalidArgument);
        let (id, e) = parse_request(br#"{"v":1,"id":9,"op":"remove_filter","filter":"x"}"#).unwrap_err();
        assert_eq!(id, Some(9));
        assert!(e.message.contains("remove_filter"), "{}", e.message);
        // The argument errors of either kind of operation name the field.
        let (_, e) = parse_request(br#"{"v":1,"id":9,"op":"watch_job","jb":1}"#).unwrap_err();
        assert!(e.message.contains("bad arguments for `watch_job`") && e.message.contains("jb"), "{}", e.message);
        let (_, e) = parse_request(br#"{"v":1,"id":9,"op":"get_packets","since":"x"}"#).unwrap_err();
        assert!(e.message.contains("bad arguments for `get_packets`"), "{}", e.message);
    }

    #[test]
    fn version_1_and_2_requests_are_read_and_keep_their_version() {
        for v in [OLDEST_VERSION, VERSION] {
            let line = format!(r#"{{"v":{v},"id":3,"op":"get_packets","since":5}}"#);
            let r = parse_request(line.as_bytes()).unwrap();
            assert_eq!(r, Request { v, id: 3, op: EngineOp::GetPackets { since: 5, limit: None }.into() });
            // An old request with an argument no version takes is still refused.
            let line = format!(r#"{{"v":{v},"id":3,"op":"get_packets","tls":true}}"#);
            assert_eq!(code(&line), ErrorCode::InvalidArgument);
        }
        assert_eq!((OLDEST_VERSION, VERSION), (1, 2));
        let at1 = Reply::ok(1, Cleared { cleared: 0, next_id: 1 }).at_version(1);
        assert!(serde_json::to_string(&at1).unwrap().starts_with(r#"{"v":1,"id":1,"ok":true"#));
    }

    #[test]
    fn a_tls_record_and_a_targets_coverage_are_in_the_json() {
        let p = CapturedPacket::tls_record(pidcap_packet::TlsRecord {
            id: 4,
            timestamp_ns: 1,
            pid: 42,
            comm: "curl".into(),
            socket_cookie: 9,
            direction: pidcap_packet::Direction::Outbound,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:8443".parse().unwrap(),
            info: pidcap_packet::TlsInfo { tid: 43, library: pidcap_packet::TlsLibrary::Gnutls },
            plaintext: b"GET / HTTP/1.1\r\n",
            true_len: 100,
            stream_offset: 0,
        });
        let page = PacketPage { packets: vec![p.clone()], next_since: 4, more: false, missed: 0 };
        let j = serde_json::to_value(&page).unwrap();
        assert_eq!(j["packets"][0]["tls"], serde_json::json!({"tid": 43, "library": "gnutls"}));
        assert_eq!(j["packets"][0]["remote_port"], 8443);
        assert_eq!(serde_json::from_value::<PacketPage>(j).unwrap().packets[0], p);
        let covered = TargetInfo {
            pid: 42,
            comm: Some("curl".into()),
            alive: true,
            requested: true,
            tls: Some(vec![TlsLibraryFile {
                library: pidcap_packet::TlsLibrary::Openssl,
                path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into(),
            }]),
        };
        let j = serde_json::to_value(&covered).unwrap();
        assert_eq!(j["tls"][0]["library"], "openssl");
        assert_eq!(serde_json::from_value::<TargetInfo>(j).unwrap(), covered);
        // A version 1 target (no `tls`) still reads: not known.
        let old: TargetInfo = serde_json::from_str(r#"{"pid":1,"comm":null,"alive":false,"requested":true}"#).unwrap();
        assert_eq!(old.tls, None);
        let none = TargetInfo { tls: Some(vec![]), ..old };
        assert_eq!(serde_json::to_value(&none).unwrap()["tls"], serde_json::json!([]));
    }

    #[test]
    fn packets_carry_the_whole_process_and_old_packets_still_read() {
        let mut p = CapturedPacket::new(
            1,
            1,
            42,
            "curl".into(),
            7,
            pidcap_packet::Direction::Outbound,
            pidcap_packet::Verdict::Pass,
            3,
            vec![0x45, 0, 3],
        );
        (p.tid, p.thread) = (43, "worker".into());
        p.process = Some(Arc::new(pidcap_packet::ProcessMeta {
            pid: 42,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
            cmdline: vec!["curl".into(), "-s".into()],
            ppid: 1,
            user: "root".into(),
            ..Default::default()
        }));
        let event: Reply<()> = Reply::event(9, Event::Packet { packet: Arc::new(p.clone()) });
        let j = serde_json::to_value(&event).unwrap();
        assert_eq!((j["packet"]["tid"].clone(), j["packet"]["thread"].clone()), (43.into(), "worker".into()));
        assert_eq!(j["packet"]["process"]["exe"], "/usr/bin/curl");
        assert_eq!(j["packet"]["process"]["cmdline"][1], "-s");
        let back: CapturedPacket = serde_json::from_value(j["packet"].clone()).unwrap();
        assert_eq!(back, p);
        // A daemon of before: no such fields, nothing known.
        let mut old = j["packet"].clone();
        for k in ["tid", "thread", "process"] {
            old.as_object_mut().unwrap().remove(k);
        }
        let old: CapturedPacket = serde_json::from_value(old).unwrap();
        assert_eq!((old.tid, old.thread.as_str(), old.process), (0, "", None));
    }

    /// One request of each operation with every argument it takes.
    fn every_op_with_every_argument() -> Vec<Op> {
        let packet = CapturedPacket::new(
            1,
            1,
            42,
            "curl".into(),
            7,
            pidcap_packet::Direction::Outbound,
            pidcap_packet::Verdict::Pass,
            3,
            vec![0x45, 0, 3],
        );
        let inject = InjectArgs {
            packet: Some(1),
            template: Some(Box::new(packet)),
            data: Some("41".into()),
            ascii: Some("A".into()),
            patches: vec!["0:41".into()],
            replaces: vec!["41:42".into()],
            mode: Some(pidcap_resend::Mode::Connect),
            proto: Some(pidcap_resend::Proto::Udp),
            to: Some("127.0.0.1:1".into()),
            from: Some("127.0.0.1:2".into()),
            pid: Some(1),
            count: Some(2),
            forever: true,
            interval_ms: Some(3),
            max_rate: Some(4.0),
            stop_on_error: true,
            timeout_ms: Some(5),
            tls: Some(pidcap_resend::TlsOptions { sni: Some("h".into()), insecure: true, ..Default::default() }),
            keep_connection: true, // -- resend (issue 14) --
        };
        vec![
            EngineOp::StartCapture {
                pids: vec![1],
                names: vec!["x".into()],
                snaplen: Some(1),
                ring_size: Some(1),
                follow_children: true,
                filter: Some("udp port 1".into()),
                cgroups: vec![
                    CgroupSpec::Path("/a".into()),
                    CgroupSpec::Unit("u".into()),
                    CgroupSpec::Container("3f4e".into()),
                ],
            }
            .into(),
            EngineOp::StopCapture.into(),
            EngineOp::GetPackets { since: 1, limit: Some(1) }.into(),
            EngineOp::AddFilter { rule: "tcp:1".into(), action: Some(Action::Allow), index: Some(0) }.into(),
            EngineOp::RemoveFilter { filter: 1 }.into(),
            EngineOp::SetFilterEnabled { filter: 1, enabled: true }.into(),
            EngineOp::ClearFilters.into(),
            EngineOp::ClearBuffer.into(),
            EngineOp::GetState.into(),
            ConnectionOp::Subscribe { since: Some(1) }.into(),
            ConnectionOp::Inject(Box::new(inject)).into(),
            ConnectionOp::ListJobs.into(),
            ConnectionOp::WatchJob { job: 1 }.into(),
            ConnectionOp::StopJob { job: 1 }.into(),
        ]
    }

    #[test]
    fn the_argument_lists_are_what_serde_reads_and_any_other_field_is_refused_naming_it() {
        let ops = every_op_with_every_argument();
        let mut names: Vec<&str> = ops.iter().map(Op::name).collect();
        names.sort_unstable();
        let mut all = OPS.to_vec();
        all.sort_unstable();
        assert_eq!(names, all, "one of each");
        for op in ops {
            let v = serde_json::to_value(&op).unwrap();
            let mut keys: Vec<&str> =
                v.as_object().unwrap().keys().map(String::as_str).filter(|k| *k != "op").collect();
            keys.sort_unstable();
            let mut takes = Op::arguments(op.name()).unwrap().to_vec();
            takes.sort_unstable();
            assert_eq!(keys, takes, "{}", op.name());
            // Each op, with one field it does not take: invalid_argument naming the field.
            for bad in ["filter", "extra", "v2"] {
                if takes.contains(&bad) {
                    continue;
                }
                let mut req = v.clone();
                req["v"] = 1.into();
                req["id"] = 5.into();
                req[bad] = 3.into();
                let (id, e) = parse_request(&serde_json::to_vec(&req).unwrap()).unwrap_err();
                assert_eq!((id, e.code), (Some(5), ErrorCode::InvalidArgument), "{}: {e}", op.name());
                assert!(e.message.contains(&format!("`{bad}`")) && e.message.contains(op.name()), "{e}");
                req.as_object_mut().unwrap().remove("v");
                req.as_object_mut().unwrap().remove("id");
                let e = Op::from_value(req).unwrap_err().to_string();
                assert!(e.contains(&format!("`{bad}`")), "{e}");
            }
        }
        // A long unknown field is quoted once, cut.
        let long = "f".repeat(10_000);
        let line = format!(r#"{{"v":1,"id":1,"op":"clear_filters","{long}":1}}"#);
        let (_, e) = parse_request(line.as_bytes()).unwrap_err();
        assert!(e.message.len() < 300 && e.message.contains("(10000 bytes)"), "{}", e.message);
    }

    #[test]
    fn versions_and_names_are_reported_as_sent_and_short() {
        let msg = |line: &str| parse_request(line.as_bytes()).unwrap_err().1;
        let e = msg(r#"{"v":"1","id":1,"op":"get_state"}"#);
        assert_eq!(e.code, ErrorCode::UnsupportedVersion);
        assert!(e.message.contains(r#"`"1"` (a string)"#) && e.message.contains("version 1"), "{}", e.message);
        assert!(!e.message.contains('?'), "{}", e.message);
        let e = msg(r#"{"v":3,"id":1,"op":"get_state"}"#);
        assert!(e.message.starts_with("protocol version 3 is not supported"), "{}", e.message);
        assert!(e.message.contains("version 2") && e.message.contains("version 1 is still served"), "{}", e.message);
        let e = msg(r#"{"v":null,"id":1,"op":"get_state"}"#);
        assert!(e.message.contains("`v` null"), "{}", e.message);
        let big = "x".repeat(1 << 19);
        let e = msg(&format!(r#"{{"v":"{big}","id":1,"op":"get_state"}}"#));
        assert!(e.message.len() < 300 && e.message.contains("bytes)"), "{}", &e.message[..200.min(e.message.len())]);
        let e = msg(&format!(r#"{{"v":1,"id":1,"op":"{big}"}}"#));
        assert_eq!(e.code, ErrorCode::UnknownOp);
        assert!(e.message.len() < 400 && !e.message.contains(&"x".repeat(65)), "{}", e.message.len());
        assert_eq!(quote_cut("abc", 64), "`abc`");
        assert_eq!(cut_quotes("a `bcdef` is `xy` and `zzzzzzz", 3), "a `bcd…` (5 bytes) is `xy` and `zzz…` (7 bytes)");
        assert_eq!(quote_cut("é".repeat(70).as_str(), 64), format!("`{}…` (140 bytes)", "é".repeat(64)));
    }

    #[test]
    fn every_op_belongs_to_one_kind_and_is_known() {
        let mut names: Vec<&str> = EngineOp::NAMES.iter().chain(ConnectionOp::NAMES).copied().collect();
        names.sort_unstable();
        let mut ops = OPS.to_vec();
        ops.sort_unstable();
        assert_eq!(names, ops);
        for name in EngineOp::NAMES {
            assert!(!ConnectionOp::NAMES.contains(name), "{name}");
        }
        // Names match what serde writes.
        let check = |op: Op| {
            let v = serde_json::to_value(&op).unwrap();
            assert_eq!(v["op"], op.name(), "{v}");
            assert_eq!(Op::from_value(v).unwrap(), op);
        };
        check(EngineOp::ClearBuffer.into());
        check(ConnectionOp::ListJobs.into());
        check(ConnectionOp::Inject(Box::new(InjectArgs { data: Some("41".into()), ..Default::default() })).into());
    }

    #[test]
    fn a_packet_event_line_is_the_event_serde_writes() {
        let p = CapturedPacket::new(
            9,
            1_700_000_000_000_000_000,
            42,
            "curl".into(),
            7,
            pidcap_packet::Direction::Outbound,
            pidcap_packet::Verdict::Pass,
            3,
            vec![0x45, 0, 3],
        );
        let json = serde_json::to_vec(&p).unwrap();
        let p = Arc::new(p);
        for v in [OLDEST_VERSION, VERSION] {
            let event = Reply::<()>::event(12, Event::Packet { packet: Arc::clone(&p) }).at_version(v);
            let mut want = serde_json::to_vec(&event).unwrap();
            want.push(b'\n');
            assert_eq!(String::from_utf8(packet_event_line(v, 12, &json)).unwrap(), String::from_utf8(want).unwrap());
        }
    }

    #[test]
    fn replies_and_events_round_trip() {
        let r = Reply::err(Some(4), ApiError::new(ErrorCode::NotImplemented, "later"));
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"v":2,"id":4,"ok":false,"error":{"code":"not_implemented","message":"later"}}"#);
        assert_eq!(serde_json::from_str::<Reply>(&j).unwrap(), r);
        let e = Reply::event(2, Event::Missed { count: 3 });
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(j, r#"{"v":2,"id":2,"event":"missed","count":3}"#);
        assert_eq!(serde_json::from_str::<Reply>(&j).unwrap(), e);
        let ok = Reply::ok(1, serde_json::json!({"a":1}));
        // A typed result is written as its JSON.
        let typed = Reply::ok(1, Cleared { cleared: 2, next_id: 9 });
        assert_eq!(
            serde_json::to_string(&typed).unwrap(),
            r#"{"v":2,"id":1,"ok":true,"result":{"cleared":2,"next_id":9}}"#
        );
        assert_eq!(serde_json::from_str::<Reply>(&serde_json::to_string(&ok).unwrap()).unwrap(), ok);
    }

    /// Arbitrary bytes never panic the parser (deterministic generator).
    #[test]
    fn arbitrary_input_never_panics() {
        let pieces: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            "\"v\":1",
            "\"id\":",
            "\"op\":",
            "\"get_packets\"",
            "\"add_filter\"",
            "\"rule\":",
            "\"tcp:443\"",
            ",",
            ":",
            "1",
            "-1",
            "1e99",
            "null",
            "true",
            "\"\\u0000\"",
            "\"since\":",
            "18446744073709551616",
            "\u{ff}",
            " ",
        ];
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..30_000 {
            let mut s: Vec<u8> = Vec::new();
            for _ in 0..next() % 16 {
                if next() % 5 == 0 {
                    s.push(next() as u8);
                } else {
                    s.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize].as_bytes());
                }
            }
            let _ = parse_request(&s);
        }
        // And every well-formed request of each op parses back to itself.
        let ops: [Op; 13] = [
            EngineOp::StartCapture {
                pids: vec![1],
                names: vec!["curl".into()],
                snaplen: Some(100),
                ring_size: None,
                follow_children: true,
                filter: None,
                cgroups: vec![CgroupSpec::Unit("nginx".into())],
            }
            .into(),
            ConnectionOp::Subscribe { since: Some(3) }.into(),
            ConnectionOp::Inject(Box::new(InjectArgs {
                packet: Some(1),
                data: Some("4142".into()),
                count: Some(3),
                ..Default::default()
            }))
            .into(),
            ConnectionOp::ListJobs.into(),
            ConnectionOp::WatchJob { job: 2 }.into(),
            ConnectionOp::StopJob { job: 2 }.into(),
            EngineOp::AddFilter { rule: "tcp:443".into(), action: Some(Action::Allow), index: Some(0) }.into(),
            EngineOp::SetFilterEnabled { filter: 2, enabled: false }.into(),
            EngineOp::ClearFilters.into(),
            EngineOp::ClearBuffer.into(),
            EngineOp::GetState.into(),
            EngineOp::GetPackets { since: 0, limit: None }.into(),
            EngineOp::RemoveFilter { filter: 1 }.into(),
        ];
        for op in ops {
            let r = Request { v: 1, id: 1, op };
            assert_eq!(parse_request(&serde_json::to_vec(&r).unwrap()).unwrap(), r);
        }
    }
}
