//! Planning a send job: checking [`InjectArgs`] and resolving them, against
//! the captured packet they start from, into a [`Prepared`] job (mode,
//! [`Target`], edited payload, loop parameters). Nothing is sent here.

use crate::edit::{apply_edits, parse_ascii, parse_hex, Edit, EditError};
use crate::{InjectArgs, Mode, Proto, TlsOptions};
use pidcap_packet::build::TcpFields;
use pidcap_packet::{CapturedPacket, Direction, Protocol};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Duration;

/// Default cap on the send rate, packets per second.
pub const DEFAULT_MAX_RATE: f64 = 1000.0;
/// Lowest rate cap accepted (one send every ~11.6 days): below it, the
/// interval it implies does not fit a `Duration` or an `Instant` (the send
/// loop panicked on `max_rate` 1e-300; found by fuzzing, see docs/RELIABILITY.md).
pub const MIN_MAX_RATE: f64 = 1e-6;
/// Default interval between sends of a loop.
pub const DEFAULT_INTERVAL_MS: u64 = 1000;
/// Default wait for a reply (connect mode) and for a full send buffer.
pub const DEFAULT_TIMEOUT_MS: u64 = 1000;

/// Where a job sends, resolved. Socket and connect modes: `local` is our
/// (the process's) end, `remote` the peer. Raw mode: `local` is the source
/// and `remote` the destination of the crafted packet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub proto: Proto,
    pub local: Option<SocketAddr>,
    pub remote: SocketAddr,
    pub pid: Option<u32>,
    pub cookie: Option<u64>,
    pub tcp: Option<TcpFields>,
    pub ttl: Option<u8>,
}

/// A checked job, ready to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prepared {
    pub mode: Mode,
    pub target: Target,
    /// The payload after the edits.
    #[serde(with = "pidcap_packet::hex::serde_hex")]
    pub payload: Vec<u8>,
    pub count: u64,
    pub forever: bool,
    pub interval: Duration,
    pub max_rate: f64,
    pub stop_on_error: bool,
    pub timeout: Duration,
    /// Connect mode over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,
    /// Connect mode: one connection for every send (else a new one per send).
    #[serde(default)]
    pub keep_connection: bool,
}

/// Ports of this range or above look like a client's (Linux's default
/// ephemeral range starts at 32768, IANA's at 49152).
const EPHEMERAL_FROM: u16 = 32768;

/// Where connect mode sends a packet by default: the server side of its
/// conversation. That is where the packet went (for a packet the target
/// received, the target's own address and port; for one it sent, the
/// peer's), except for a reply: a packet going to a port that looks like a
/// client's (32768 or above) from one that does not is a server's answer,
/// and the server is where it came from. None for a packet that is not IP.
pub fn default_destination(p: &CapturedPacket) -> Option<SocketAddr> {
    if p.decoded.ip_version == 0 {
        return None;
    }
    let local = SocketAddr::new(p.decoded.local_addr, p.decoded.local_port);
    let remote = SocketAddr::new(p.decoded.remote_addr, p.decoded.remote_port);
    let (src, dst) = match p.direction {
        Direction::Inbound => (remote, local),
        Direction::Outbound => (local, remote),
    };
    let clientish = |a: SocketAddr| a.port() >= EPHEMERAL_FROM;
    Some(if clientish(dst) && !clientish(src) && src.port() != 0 { src } else { dst })
}

/// Parse `ADDR:PORT` or `[V6]:PORT`.
pub fn parse_endpoint(s: &str) -> Result<SocketAddr, EditError> {
    s.trim().parse().map_err(|source| EditError::Address { text: s.into(), source })
}

fn alive(pid: u32) -> bool {
    pid != 0 && std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// The payload the job sends: data/ascii or the template's, then the edits.
pub fn edited_payload(args: &InjectArgs) -> Result<Vec<u8>, EditError> {
    let base = match (&args.data, &args.ascii, &args.template) {
        (Some(_), Some(_), _) => {
            return Err(EditError::Invalid("give the payload as hex or as ASCII, not both".into()))
        }
        (Some(h), None, _) => parse_hex(h).map_err(|e| EditError::within("payload hex", e, ""))?,
        (None, Some(a), _) => parse_ascii(a).map_err(|e| EditError::within("payload text", e, ""))?,
        (None, None, Some(p)) => p.payload().to_vec(),
        (None, None, None) => return Err(EditError::Invalid("no payload: give a packet, hex or ASCII".into())),
    };
    let mut edits = Vec::new();
    for p in &args.patches {
        edits.push(Edit::parse_patch(p)?);
    }
    for r in &args.replaces {
        edits.push(Edit::parse_replace(r)?);
    }
    apply_edits(&base, &edits)
}

/// Check `args` and resolve the target; nothing is sent. Errors say what is wrong.
pub fn prepare(args: &InjectArgs) -> Result<Prepared, EditError> {
    let payload = edited_payload(args)?;
    let t = args.template.as_deref();
    let to = args.to.as_deref().map(parse_endpoint).transpose()?;
    let from = args.from.as_deref().map(parse_endpoint).transpose()?;
    let pid = args.pid.or(t.map(|p| p.pid).filter(|&p| p != 0));
    if let Some(r) = t.filter(|p| p.is_tls()) {
        check_tls_record(r, args)?;
    }
    let mode = match args.mode {
        Some(m) => m,
        None if args.tls.is_some() => Mode::Connect,
        None if t.is_some() && pid.is_some_and(alive) => Mode::Socket,
        None if t.is_none() && args.pid.is_some() => Mode::Socket,
        None => Mode::Connect,
    };
    let proto = match (args.proto, t.map(|p| p.decoded.protocol)) {
        (Some(p), _) => p,
        (None, Some(Protocol::Tcp)) => Proto::Tcp,
        (None, Some(Protocol::Udp)) => Proto::Udp,
        (None, Some(other)) => {
            return Err(EditError::Invalid(format!("the packet is {}, not TCP or UDP; give --proto", other.name())))
        }
        (None, None) => Proto::Tcp,
    };
    // The packet's ends: the process's and the peer's; raw mode keeps the packet's own direction.
    let ends = t.filter(|p| p.decoded.ip_version != 0).map(|p| {
        let local = SocketAddr::new(p.decoded.local_addr, p.decoded.local_port);
        let remote = SocketAddr::new(p.decoded.remote_addr, p.decoded.remote_port);
        match (mode, p.direction) {
            (Mode::Raw, Direction::Inbound) => (remote, local),
            _ => (local, remote),
        }
    });
    // Connect mode: a new client of the conversation's server (see default_destination).
    let server = t.filter(|_| mode == Mode::Connect).and_then(default_destination);
    let remote = to.or(server).or(ends.map(|e| e.1)).ok_or_else(|| {
        EditError::Invalid("no destination: give --to ADDR:PORT (or start from a captured packet)".into())
    })?;
    let local = from.or(ends.map(|e| e.0));
    if let Some(l) = local {
        if l.is_ipv4() != remote.is_ipv4() && mode == Mode::Raw {
            return Err(EditError::Invalid(format!("source {l} and destination {remote} are not the same IP version")));
        }
    }
    let same_flow = to.is_none() && from.is_none();
    let tcp = t.and_then(tcp_fields).filter(|_| proto == Proto::Tcp);
    let target = Target {
        proto,
        // Connect mode binds only when asked; socket mode matches the packet's local end.
        local: if mode == Mode::Connect { from } else { local },
        remote,
        pid,
        cookie: t.map(|p| p.socket_cookie).filter(|&c| c != 0 && same_flow),
        tcp,
        ttl: t.and_then(ttl_of),
    };
    if mode == Mode::Socket && target.pid.is_none() {
        return Err(EditError::Invalid("socket mode needs the process: --pid PID, or a captured packet".into()));
    }
    if mode == Mode::Raw && target.local.is_none() {
        return Err(EditError::Invalid("raw mode needs a source: --from ADDR:PORT (or a captured packet)".into()));
    }
    let count = if args.forever { 0 } else { args.count.unwrap_or(1) };
    if !args.forever && count == 0 {
        return Err(EditError::Invalid("--count must be at least 1 (or --forever)".into()));
    }
    let tls = match &args.tls {
        None => None,
        Some(o) => {
            if mode != Mode::Connect {
                return Err(EditError::Invalid(format!(
                    "TLS (--tls) works only with --mode connect (a fresh connection), not --mode {mode}"
                )));
            }
            if proto != Proto::Tcp {
                return Err(EditError::Invalid("TLS (--tls) needs TCP, not UDP".into()));
            }
            if o.insecure && (o.ca.is_some() || o.ca_pem.is_some()) {
                return Err(EditError::Invalid("give --ca FILE or --insecure, not both".into()));
            }
            if o.ca.is_some() && o.ca_pem.is_some() {
                return Err(EditError::Invalid(
                    "give the CA certificates as a file (ca) or as PEM text (ca_pem), not both".into(),
                ));
            }
            if let Some(name) = &o.sni {
                crate::tls::server_name(name).map_err(|e| EditError::Invalid(e.message))?;
            }
            Some(o.clone())
        }
    };
    if tls.is_some() && (remote.ip().is_unspecified() || remote.port() == 0) {
        return Err(EditError::Invalid(format!(
            "no destination: the record's peer is not known ({remote}); give --to ADDR:PORT"
        )));
    }
    if args.keep_connection && mode != Mode::Connect {
        return Err(EditError::Invalid(format!(
            "keeping the connection (--keep-connection) is for --mode connect, not --mode {mode}"
        )));
    }
    if args.keep_connection && tls.is_some() {
        return Err(EditError::Invalid(
            "--keep-connection does not go with --tls: a TLS replay makes a new connection and handshake per send"
                .into(),
        ));
    }
    let max_rate = args.max_rate.unwrap_or(DEFAULT_MAX_RATE);
    if !(max_rate.is_finite() && max_rate >= MIN_MAX_RATE) {
        return Err(EditError::Invalid(format!(
            "--max-rate must be a positive number (at least {MIN_MAX_RATE}), not {max_rate}"
        )));
    }
    Ok(Prepared {
        mode,
        target,
        payload,
        count,
        forever: args.forever,
        interval: Duration::from_millis(args.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS)),
        max_rate,
        stop_on_error: args.stop_on_error,
        timeout: Duration::from_millis(args.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)),
        tls,
        keep_connection: args.keep_connection,
    })
}

/// A TLS plaintext record goes out only over a fresh TLS connection: its
/// plaintext in clear (a plain connection), or inside the process's TLS
/// stream (socket, raw), would leak or break it.
fn check_tls_record(r: &CapturedPacket, args: &InjectArgs) -> Result<(), EditError> {
    let what = match r.tls {
        Some(i) => format!("plaintext from a TLS connection ({}, tid {})", i.library, i.tid),
        None => return Ok(()),
    };
    match (args.mode, &args.tls) {
        (None | Some(Mode::Connect), Some(_)) => Ok(()),
        (Some(Mode::Connect), None) => Err(EditError::Invalid(format!(
            "packet {} is {what}: --mode connect would send it in clear; add --tls to send it over a new TLS connection",
            r.id
        ))),
        (None, None) => Err(EditError::Invalid(format!(
            "packet {} is {what}: replay it over a new TLS connection with --mode connect --tls",
            r.id
        ))),
        (Some(m), _) => Err(EditError::Invalid(format!(
            "packet {} is {what}: --mode {m} would put plaintext where the process's TLS stream is; use --mode \
             connect --tls",
            r.id
        ))),
    }
}

fn tcp_fields(p: &CapturedPacket) -> Option<TcpFields> {
    pidcap_packet::headers(&p.data).tcp().map(|t| t.fields())
}

fn ttl_of(p: &CapturedPacket) -> Option<u8> {
    pidcap_packet::headers(&p.data).ip.map(|ip| ip.hop_limit())
}

/// The time between two sends: the interval, but never above the rate cap.
pub fn effective_interval(p: &Prepared) -> Duration {
    p.interval.max(Duration::from_secs_f64(1.0 / p.max_rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_packet::Verdict;

    fn udp_packet(dir: Direction) -> CapturedPacket {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 33)
            .udp(4000, 53)
            .write(&mut data, b"hello")
            .unwrap();
        CapturedPacket::new(1, 0, 4242, "x".into(), 77, dir, Verdict::Pass, data.len() as u32, data)
    }

    #[test]
    fn prepare_from_a_packet() {
        let t = Some(Box::new(udp_packet(Direction::Outbound)));
        let args = InjectArgs {
            template: t.clone(),
            mode: Some(Mode::Socket),
            patches: vec!["0:4a".into()],
            ..Default::default()
        };
        let p = prepare(&args).unwrap();
        assert_eq!(p.payload, b"Jello");
        assert_eq!(p.target.proto, Proto::Udp);
        assert_eq!(p.target.local, Some("127.0.0.1:4000".parse().unwrap()));
        assert_eq!(p.target.remote, "127.0.0.2:53".parse().unwrap());
        assert_eq!((p.target.pid, p.target.cookie, p.target.ttl), (Some(4242), Some(77), Some(33)));
        assert_eq!((p.count, p.forever), (1, false));
        // Raw mode on an inbound packet replays it towards the process.
        let args = InjectArgs {
            template: Some(Box::new(udp_packet(Direction::Inbound))),
            mode: Some(Mode::Raw),
            ..Default::default()
        };
        let p = prepare(&args).unwrap();
        // Inbound: decoded local is the destination (127.0.0.2:53), remote the source.
        assert_eq!(p.target.remote, "127.0.0.2:53".parse().unwrap());
        assert_eq!(p.target.local, Some("127.0.0.1:4000".parse().unwrap()));
        // A dead pid and no mode: connect.
        let args = InjectArgs { template: t, to: Some("127.0.0.1:9".into()), ..Default::default() };
        let p = prepare(&args).unwrap();
        assert_eq!(p.mode, Mode::Connect);
        assert_eq!(p.target.remote, "127.0.0.1:9".parse().unwrap());
        assert_eq!(p.target.cookie, None);
    }

    fn tcp_packet(dir: Direction, local: u16, remote: u16) -> CapturedPacket {
        // Decoded local/remote follow the direction: outbound src is local.
        let (src, dst) = match dir {
            Direction::Outbound => (([10, 0, 0, 1], local), ([10, 0, 0, 2], remote)),
            Direction::Inbound => (([10, 0, 0, 2], remote), ([10, 0, 0, 1], local)),
        };
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4(src.0, dst.0, 64)
            .tcp(src.1, dst.1, 1, 512)
            .write(&mut data, b"GET / HTTP/1.0\r\n\r\n")
            .unwrap();
        CapturedPacket::new(1, 0, 0, "x".into(), 0, dir, Verdict::Pass, data.len() as u32, data)
    }

    #[test]
    fn connect_mode_goes_to_the_server_side_of_the_conversation() {
        let addr = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        // Captured at the server (local 8089): a request it received goes to the server itself,
        // not to the client's old ephemeral port; its answer too.
        assert_eq!(default_destination(&tcp_packet(Direction::Inbound, 8089, 51284)), addr("10.0.0.1:8089"));
        assert_eq!(default_destination(&tcp_packet(Direction::Outbound, 8089, 51284)), addr("10.0.0.1:8089"));
        // Captured at the client: its request and the answer it got go to the server.
        assert_eq!(default_destination(&tcp_packet(Direction::Outbound, 51284, 80)), addr("10.0.0.2:80"));
        assert_eq!(default_destination(&tcp_packet(Direction::Inbound, 51284, 80)), addr("10.0.0.2:80"));
        // Both ports look like a client's: where the packet went.
        assert_eq!(default_destination(&tcp_packet(Direction::Inbound, 40000, 50000)), addr("10.0.0.1:40000"));
        // prepare uses it in connect mode (the pid 0 of the template is no live process).
        let t = Some(Box::new(tcp_packet(Direction::Inbound, 8089, 51284)));
        let p = prepare(&InjectArgs { template: t.clone(), mode: Some(Mode::Connect), ..Default::default() }).unwrap();
        assert_eq!(
            (p.target.remote, p.target.local, p.keep_connection),
            ("10.0.0.1:8089".parse().unwrap(), None, false)
        );
        let p = prepare(&InjectArgs { template: t.clone(), ..Default::default() }).unwrap();
        assert_eq!((p.mode, p.target.remote), (Mode::Connect, "10.0.0.1:8089".parse().unwrap()));
        // --to wins; --keep-connection is kept, and refused outside connect mode and with TLS.
        let p = prepare(&InjectArgs {
            template: t.clone(),
            to: Some("127.0.0.1:9".into()),
            keep_connection: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((p.target.remote, p.keep_connection), ("127.0.0.1:9".parse().unwrap(), true));
        let e = |a: InjectArgs| prepare(&a).unwrap_err().to_string();
        let keep = InjectArgs { template: t, keep_connection: true, ..Default::default() };
        assert!(e(InjectArgs { mode: Some(Mode::Raw), ..keep.clone() }).contains("--mode connect"));
        assert!(e(InjectArgs { tls: Some(TlsOptions::default()), ..keep }).contains("--tls"));
    }

    #[test]
    fn prepare_refuses_bad_input() {
        let e = |a: InjectArgs| prepare(&a).unwrap_err().to_string();
        assert!(e(InjectArgs::default()).contains("no payload"));
        assert!(e(InjectArgs { data: Some("4x".into()), ..Default::default() }).contains("position 1"));
        assert!(e(InjectArgs { data: Some("41".into()), ..Default::default() }).contains("no destination"));
        assert!(e(InjectArgs { data: Some("41".into()), to: Some("nowhere".into()), ..Default::default() })
            .contains("invalid address"));
        let base = InjectArgs { data: Some("41".into()), to: Some("127.0.0.1:1".into()), ..Default::default() };
        assert!(e(InjectArgs { mode: Some(Mode::Socket), ..base.clone() }).contains("--pid"));
        assert!(e(InjectArgs { mode: Some(Mode::Raw), ..base.clone() }).contains("--from"));
        assert!(e(InjectArgs { count: Some(0), ..base.clone() }).contains("at least 1"));
        assert!(e(InjectArgs { max_rate: Some(0.0), ..base.clone() }).contains("max-rate"));
        assert!(e(InjectArgs { ascii: Some("A".into()), ..base.clone() }).contains("not both"));
        assert!(e(InjectArgs { patches: vec!["9:41".into()], ..base.clone() }).contains("past the end"));
        let p = prepare(&InjectArgs { interval_ms: Some(0), max_rate: Some(100.0), ..base }).unwrap();
        assert_eq!(effective_interval(&p), Duration::from_millis(10));
    }

    /// Found by the `request` fuzz target (crates/fuzz/corpus/request/regress-max-rate-tiny.jsonl):
    /// a tiny positive `max_rate` made `effective_interval` (and so every send
    /// loop, in the daemon's job thread too) panic converting 1e300 seconds.
    #[test]
    fn a_tiny_max_rate_is_refused_not_a_panic() {
        let line = r#"{"data":"47","to":"127.0.0.1:9","mode":"connect","max_rate":1e-300}"#;
        let args: InjectArgs = serde_json::from_str(line).unwrap();
        assert!(prepare(&args).unwrap_err().to_string().contains("max-rate"));
        for rate in [5e-324, 1e-19, MIN_MAX_RATE / 2.0] {
            assert!(prepare(&InjectArgs { max_rate: Some(rate), ..args.clone() }).is_err(), "{rate}");
        }
        // The lowest accepted rate gives an interval the loop can add up.
        let p = prepare(&InjectArgs { max_rate: Some(MIN_MAX_RATE), forever: true, ..args }).unwrap();
        let every = effective_interval(&p);
        assert_eq!(every, Duration::from_secs(1_000_000));
        assert!(std::time::Instant::now().checked_add(every * 5).is_some());
    }
}
