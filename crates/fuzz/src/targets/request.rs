//! The daemon's request decoding, as `crates/daemon/src/server.rs` does it:
//! the bytes a client sends are cut into lines (at `\n`, at most
//! `MAX_REQUEST_BYTES` each, blank lines skipped, a last line without `\n`
//! kept), each line goes through `pidcap_api::protocol::parse_request`, and
//! then the arguments the daemon parses further are: `add_filter`'s SPEC
//! (`Rule::parse_spec`) and `inject`'s job (`pidcap_resend::prepare`, then
//! the send loop on a sender that sends nothing, the way the daemon's job
//! thread runs it).
//!
//! Checked: a request that parses serializes and parses back to itself; an
//! error carries the request's own `id` when it had one, and its reply is
//! one JSON line that a client reads back; the job loop neither panics nor
//! waits (its first send is immediate, and it is stopped after it).

use super::{outcome, text_shape};
use pidcap_api::protocol::{parse_request, Reply, MAX_REQUEST_BYTES, OLDEST_VERSION, VERSION};
use pidcap_engine::rules::{Action, Rule};
use pidcap_resend::send::{Sender, Sent};
use pidcap_resend::{InjectArgs, SendError};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// One frame of the connection, as the server's `LineReader` yields them.
#[derive(Debug, PartialEq)]
enum Frame<'a> {
    Line(&'a [u8]),
    TooLarge,
}

/// The frames of a connection that sent `data` and closed.
fn frames(data: &[u8]) -> Vec<Frame<'_>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        out.push(if line.len() > MAX_REQUEST_BYTES { Frame::TooLarge } else { Frame::Line(line) });
        rest = next;
    }
    out
}

pub fn run(data: &[u8]) -> u64 {
    let mut parts = Vec::new();
    for frame in frames(data).into_iter().take(64) {
        match frame {
            Frame::TooLarge => parts.push(1),
            Frame::Line(line) if line.iter().all(u8::is_ascii_whitespace) => {}
            Frame::Line(line) => parts.push(line_outcome(line)),
        }
    }
    outcome(&parts)
}

fn line_outcome(line: &[u8]) -> u64 {
    let value: Option<Value> = serde_json::from_slice(line).ok();
    let own_id = value.as_ref().and_then(|v| v.get("id")).and_then(Value::as_u64);
    match parse_request(line) {
        Err((id, e)) => {
            if value.as_ref().is_some_and(Value::is_object) {
                assert_eq!(id, own_id, "the error reply does not carry the request's id");
            } else {
                assert_eq!(id, None, "an id for a line that is not a JSON object");
            }
            assert!(
                e.message.len() <= 3 * line.len() + 1024,
                "a {}-byte request gives a {}-byte error message",
                line.len(),
                e.message.len()
            );
            let reply: Reply = Reply::err(id, e);
            let bytes = serde_json::to_vec(&reply).expect("an error reply serializes");
            assert!(!bytes.contains(&b'\n'), "a reply is one line");
            let back: Reply = serde_json::from_slice(&bytes).expect("a client reads the error reply");
            assert_eq!(back, reply);
            outcome(&[2, text_shape(&reply.error.map(|e| e.message).unwrap_or_default())])
        }
        Ok(req) => {
            assert!((OLDEST_VERSION..=VERSION).contains(&req.v), "version {} read", req.v);
            assert_eq!(value.as_ref().and_then(|v| v.get("v")).and_then(Value::as_u64), Some(u64::from(req.v)));
            assert_eq!(Some(req.id), own_id);
            let bytes = serde_json::to_vec(&req).expect("a request serializes");
            let back = parse_request(&bytes).unwrap_or_else(|e| panic!("a request written back fails: {:?}", e.1));
            assert_eq!(back, req, "a request written back parses to another");
            let obj = value.as_ref().and_then(Value::as_object).expect("a request is an object");
            let op = obj.get("op").and_then(Value::as_str).unwrap_or_default();
            let then = match op {
                "add_filter" => add_filter(obj),
                "inject" => inject(obj),
                _ => 0,
            };
            outcome(&[3, super::hash(op.as_bytes()), then])
        }
    }
}

/// `add_filter`: the daemon's engine thread parses the SPEC with the action given.
fn add_filter(obj: &serde_json::Map<String, Value>) -> u64 {
    let rule = obj.get("rule").and_then(Value::as_str).expect("add_filter parsed without a rule string");
    let action = match obj.get("action").and_then(Value::as_str) {
        Some("allow") => Action::Allow,
        _ => Action::Block,
    };
    match Rule::parse_spec(rule, action) {
        Ok(r) => {
            assert_eq!(r.to_string().parse::<Rule>().as_ref(), Ok(&r));
            1
        }
        Err(e) => 2 + text_shape(&e.reason) % 64,
    }
}

/// A sender that sends nothing.
struct Nowhere {
    sends: u64,
}

impl Sender for Nowhere {
    fn send(&mut self, payload: &[u8], _wait: Duration) -> Result<Sent, SendError> {
        self.sends += 1;
        Ok(Sent { bytes: payload.len(), reply: None })
    }

    fn describe(&self) -> String {
        "nowhere".into()
    }
}

/// `inject`: the arguments as the daemon gets them (a `packet` id it would
/// resolve against its ring is dropped: there is none here), planned, then
/// run for one send.
fn inject(obj: &serde_json::Map<String, Value>) -> u64 {
    let mut args = obj.clone();
    for k in ["v", "id", "op"] {
        args.remove(k);
    }
    let mut args: InjectArgs =
        serde_json::from_value(Value::Object(args)).expect("inject parsed, its arguments do not");
    args.packet = None;
    let prepared = match pidcap_resend::prepare(&args) {
        Ok(p) => p,
        Err(e) => return 10 + text_shape(&e.to_string()) % 64,
    };
    let (stop, mut sender) = (AtomicBool::new(false), Nowhere { sends: 0 });
    let summary = pidcap_resend::run_loop(&mut sender, &prepared, &stop, &mut |_| stop.store(true, Ordering::Relaxed));
    assert_eq!((summary.sent, sender.sends), (1, 1), "a job's first send is at once");
    assert_eq!(summary.bytes, prepared.payload.len() as u64);
    3 + prepared.mode as u64
}

/// The protocol's words: envelope, operations, arguments, JSON pieces.
pub const DICTIONARY: &[&[u8]] = &[
    b"{\"v\":1,\"id\":1,\"op\":\"",
    b"\"v\":1",
    b"\"v\":\"1\"",
    b"\"id\":",
    b"\"op\":",
    b"\"start_capture\"",
    b"\"stop_capture\"",
    b"\"get_packets\"",
    b"\"subscribe\"",
    b"\"inject\"",
    b"\"add_filter\"",
    b"\"remove_filter\"",
    b"\"set_filter_enabled\"",
    b"\"clear_filters\"",
    b"\"clear_buffer\"",
    b"\"get_state\"",
    b"\"list_jobs\"",
    b"\"watch_job\"",
    b"\"stop_job\"",
    b"\"pids\":[1]",
    b"\"names\":[\"curl\"]",
    b"\"snaplen\":",
    b"\"ring_size\":",
    b"\"since\":",
    b"\"limit\":",
    b"\"rule\":\"tcp:443\"",
    b"\"action\":\"allow\"",
    b"\"index\":",
    b"\"filter\":",
    b"\"enabled\":",
    b"\"job\":",
    b"\"data\":\"474554\"",
    b"\"ascii\":\"GET\\\\r\\\\n\"",
    b"\"patches\":[\"0:50\"]",
    b"\"replaces\":[\"41:4141\"]",
    b"\"mode\":\"raw\"",
    b"\"mode\":\"connect\"",
    b"\"mode\":\"socket\"",
    b"\"proto\":\"udp\"",
    b"\"to\":\"127.0.0.1:9\"",
    b"\"from\":\"[::1]:9\"",
    b"\"pid\":",
    b"\"count\":",
    b"\"forever\":true",
    b"\"interval_ms\":",
    b"\"max_rate\":",
    b"\"stop_on_error\":true",
    b"\"timeout_ms\":",
    b"\"template\":",
    b"1e-300",
    b"1e300",
    b"5e-324",
    b"18446744073709551615",
    b"18446744073709551616",
    b"-1",
    b"0.5",
    b"null",
    b"\n",
    b"}",
    b",",
];
