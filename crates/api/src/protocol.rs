//! The daemon's API, version 1: the types shared by the server and its
//! clients. One JSON object per line, both ways (see docs/API.md).
//!
//! Request: `{"v":1,"id":7,"op":"get_packets","since":0,"limit":100}`
//! Reply:   `{"v":1,"id":7,"ok":true,"result":{...}}`
//!          `{"v":1,"id":7,"ok":false,"error":{"code":"unknown_op","message":"..."}}`
//! Event (after `subscribe`, carrying the subscribe request's id):
//!          `{"v":1,"id":7,"event":"packet","packet":{...}}`

use pidcap_engine::rules::{Action, Rule};
use pidcap_engine::CaptureStats;
use pidcap_packet::CapturedPacket;
pub use pidcap_resend::{InjectArgs, JobInfo, SendStatus, Summary};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// The protocol version this crate speaks.
pub const VERSION: u32 = 1;
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

/// The operations, named after the seed's IOCTLs.
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Start capturing the given processes (IOCTL_..._START_CAPTURE).
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
    },
    /// Stop capturing; targets are forgotten, captured packets are kept.
    StopCapture,
    /// Up to `limit` packets with an id greater than `since`, oldest first.
    GetPackets {
        #[serde(default)]
        since: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Stream packets and counters on this connection. With `since`, the
    /// packets still held with a greater id come first.
    Subscribe {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<u64>,
    },
    /// Start a send job (one packet, once or in a loop); answered with the job.
    Inject(Box<InjectArgs>),
    /// Add a filter rule; `rule` is a SPEC (`tcp:443`, `block:in:udp:53`).
    AddFilter {
        rule: String,
        /// Action when the SPEC names none (default block).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        action: Option<Action>,
        /// Insert at this index (default: at the end).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        index: Option<usize>,
    },
    RemoveFilter {
        filter: u64,
    },
    SetFilterEnabled {
        filter: u64,
        enabled: bool,
    },
    ClearFilters,
    /// Drop every packet held by the daemon (ids keep increasing).
    ClearBuffer,
    GetState,
    /// Running jobs and the last finished ones.
    ListJobs,
    /// Stream a job's statuses (the ones made so far first) on this connection.
    WatchJob {
        job: u64,
    },
    /// Stop a job; answered once it has stopped.
    StopJob {
        job: u64,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::StartCapture { .. } => "start_capture",
            Op::StopCapture => "stop_capture",
            Op::GetPackets { .. } => "get_packets",
            Op::Subscribe { .. } => "subscribe",
            Op::Inject { .. } => "inject",
            Op::AddFilter { .. } => "add_filter",
            Op::RemoveFilter { .. } => "remove_filter",
            Op::SetFilterEnabled { .. } => "set_filter_enabled",
            Op::ClearFilters => "clear_filters",
            Op::ClearBuffer => "clear_buffer",
            Op::GetState => "get_state",
            Op::ListJobs => "list_jobs",
            Op::WatchJob { .. } => "watch_job",
            Op::StopJob { .. } => "stop_job",
        }
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

/// Everything the daemon writes: a reply to a request, or an event of a subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub v: u32,
    /// The request's id (null when the request was too broken to have one).
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
}

impl Reply {
    pub fn ok(id: u64, result: serde_json::Value) -> Reply {
        Reply { v: VERSION, id: Some(id), ok: Some(true), result: Some(result), error: None, event: None }
    }
    pub fn err(id: Option<u64>, error: ApiError) -> Reply {
        Reply { v: VERSION, id, ok: Some(false), result: None, error: Some(error), event: None }
    }
    pub fn event(id: u64, event: Event) -> Reply {
        Reply { v: VERSION, id: Some(id), ok: None, result: None, error: None, event: Some(event) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Shared with the capture's ring and every other subscriber: serialized
    /// from there, never copied per subscriber.
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

/// Parse one request line. Errors carry the request id when it could be read.
pub fn parse_request(line: &[u8]) -> Result<Request, (Option<u64>, ApiError)> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| (None, ApiError::new(ErrorCode::BadRequest, format!("not JSON: {e}"))))?;
    let obj =
        value.as_object().ok_or_else(|| (None, ApiError::new(ErrorCode::BadRequest, "a request is a JSON object")))?;
    let id = obj.get("id").and_then(|v| v.as_u64());
    let bad = |code, msg: String| Err((id, ApiError::new(code, msg)));
    if id.is_none() {
        return bad(ErrorCode::BadRequest, "`id` (an unsigned integer) is required".into());
    }
    match obj.get("v").map(|v| v.as_u64()) {
        None => return bad(ErrorCode::BadRequest, format!("`v` is required (this daemon speaks v{VERSION})")),
        Some(Some(v)) if v == u64::from(VERSION) => {}
        Some(v) => {
            return bad(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {} is not supported; this daemon speaks v{VERSION}",
                    v.map_or("?".into(), |v| v.to_string())
                ),
            )
        }
    }
    let op = match obj.get("op") {
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return bad(ErrorCode::BadRequest, "`op` must be a string".into()),
        None => return bad(ErrorCode::BadRequest, format!("`op` is required, one of: {}", OPS.join(", "))),
    };
    if !OPS.contains(&op) {
        return bad(ErrorCode::UnknownOp, format!("unknown operation `{op}`; known: {}", OPS.join(", ")));
    }
    serde_json::from_value::<Request>(value.clone())
        .map_err(|e| (id, ApiError::new(ErrorCode::BadRequest, format!("bad arguments for `{op}`: {e}"))))
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
        assert_eq!(r, Request { v: 1, id: 3, op: Op::GetPackets { since: 5, limit: Some(10) } });
        let back = serde_json::to_vec(&r).unwrap();
        assert_eq!(parse_request(&back).unwrap(), r);
        assert_eq!(parse_request(br#"{"v":1,"id":1,"op":"stop_capture"}"#).unwrap().op, Op::StopCapture);
        assert_eq!(code("nope"), ErrorCode::BadRequest);
        assert_eq!(code("[1]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"v":1,"op":"get_state"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"v":2,"id":1,"op":"get_state"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"format_disk"}"#), ErrorCode::UnknownOp);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"remove_filter"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"v":1,"id":1,"op":"get_packets","sincе":1}"#), ErrorCode::BadRequest);
        let (id, e) = parse_request(br#"{"v":1,"id":9,"op":"remove_filter","filter":"x"}"#).unwrap_err();
        assert_eq!(id, Some(9));
        assert!(e.message.contains("remove_filter"), "{}", e.message);
    }

    #[test]
    fn replies_and_events_round_trip() {
        let r = Reply::err(Some(4), ApiError::new(ErrorCode::NotImplemented, "later"));
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(j, r#"{"v":1,"id":4,"ok":false,"error":{"code":"not_implemented","message":"later"}}"#);
        assert_eq!(serde_json::from_str::<Reply>(&j).unwrap(), r);
        let e = Reply::event(2, Event::Missed { count: 3 });
        let j = serde_json::to_string(&e).unwrap();
        assert_eq!(j, r#"{"v":1,"id":2,"event":"missed","count":3}"#);
        assert_eq!(serde_json::from_str::<Reply>(&j).unwrap(), e);
        let ok = Reply::ok(1, serde_json::json!({"a":1}));
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
        for op in [
            Op::StartCapture {
                pids: vec![1],
                names: vec!["curl".into()],
                snaplen: Some(100),
                ring_size: None,
                follow_children: true,
            },
            Op::Subscribe { since: Some(3) },
            Op::Inject(Box::new(InjectArgs {
                packet: Some(1),
                data: Some("4142".into()),
                count: Some(3),
                ..Default::default()
            })),
            Op::ListJobs,
            Op::WatchJob { job: 2 },
            Op::StopJob { job: 2 },
            Op::AddFilter { rule: "tcp:443".into(), action: Some(Action::Allow), index: Some(0) },
            Op::SetFilterEnabled { filter: 2, enabled: false },
            Op::ClearFilters,
            Op::ClearBuffer,
            Op::GetState,
        ] {
            let r = Request { v: 1, id: 1, op };
            assert_eq!(parse_request(&serde_json::to_vec(&r).unwrap()).unwrap(), r);
        }
    }
}
