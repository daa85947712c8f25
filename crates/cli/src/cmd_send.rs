//! `pidcap send`: edit a packet's payload and send it, once or in a loop,
//! through the owning process's socket, a raw socket or a new connection
//! (pidcap-resend), in connect mode optionally over TLS (`--tls`: the replay
//! of a TLS plaintext record, its decrypted reply printed). Connect mode makes
//! a new connection per send (`--keep-connection`: one) and prints each reply
//! under its status (`--reply-bytes`; whole in `--json`). `--packet ID`
//! (and `--via-daemon`) go through the daemon; everything else runs here (as
//! root for socket and raw modes).

use anyhow::{anyhow, bail, Context};
use clap::Args;
use pidcap_api::protocol::Event;
use pidcap_api::{Client, DEFAULT_SOCKET};
use pidcap_packet::CapturedPacket;
use pidcap_resend::edit::parse_duration;
use pidcap_resend::{EndReason, InjectArgs, Mode, Prepared, Proto, SendStatus, Summary, TlsOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("source").multiple(false))]
pub struct SendArgs {
    /// A packet the daemon holds (its id in `pidcap ctl packets`): payload,
    /// endpoints, process and socket. Sent by the daemon.
    #[arg(long, value_name = "ID", group = "source", help_heading = "Payload")]
    pub packet: Option<u64>,
    /// A packet of the library (`pidcap lib list`).
    #[arg(long = "lib", value_name = "ID", group = "source", help_heading = "Payload")]
    pub lib: Option<i64>,
    /// Library database for --lib (default: $XDG_DATA_HOME/pidcap/library.db).
    #[arg(long, value_name = "PATH", requires = "lib", help_heading = "Payload")]
    pub db: Option<PathBuf>,
    /// A packet of a pcap/pcapng file (pidcap's pcapng carries pid and socket: socket mode works).
    #[arg(long, value_name = "FILE", group = "source", requires = "frame", help_heading = "Payload")]
    pub pcap: Option<PathBuf>,
    /// Frame number in --pcap, from 1, as Wireshark numbers frames (every record counts, non-IP ones too).
    #[arg(long, value_name = "N", requires = "pcap", help_heading = "Payload")]
    pub frame: Option<u64>,
    /// The payload as hex (`47 45 54`, `474554`, `0x47 0x45`); replaces the packet's.
    #[arg(long, value_name = "HEX", conflicts_with = "ascii", help_heading = "Payload")]
    pub hex: Option<String>,
    /// The payload as text with escapes (`GET / HTTP/1.1\r\n\r\n`, `\x00`, `\\`).
    #[arg(long, value_name = "TEXT", help_heading = "Payload")]
    pub ascii: Option<String>,
    /// Overwrite bytes at OFFset (decimal or 0x hex) with HEX (repeatable, in order).
    #[arg(long = "patch", value_name = "OFF:HEX", help_heading = "Payload")]
    pub patches: Vec<String>,
    /// Replace every FROM_HEX with TO_HEX (repeatable; after the patches).
    #[arg(long = "replace", value_name = "FROM_HEX:TO_HEX", help_heading = "Payload")]
    pub replaces: Vec<String>,

    /// socket: the process's own socket (default for a packet of a live
    /// process); raw: a crafted IP packet on a raw socket; connect: a new
    /// TCP connection / UDP socket (the default otherwise).
    #[arg(long, value_name = "MODE")]
    pub mode: Option<Mode>,
    /// tcp or udp (default: the packet's, else tcp).
    #[arg(long, value_name = "PROTO")]
    pub proto: Option<Proto>,
    // (The doc comment is --help's text, which shows "[V6]" as written.)
    #[allow(rustdoc::broken_intra_doc_links)]
    /// The remote end ADDR:PORT or [V6]:PORT (raw: the destination; with --tls also NAME:PORT).
    /// Default: the packet's peer; in connect mode the server side of its
    /// conversation (for a packet the target received: the target's own
    /// address and port).
    #[arg(long, value_name = "ADDR:PORT")]
    pub to: Option<String>,
    /// The local end (socket: which socket; raw: the source; connect: bind to it).
    #[arg(long, value_name = "ADDR:PORT")]
    pub from: Option<String>,
    /// Socket mode: the process whose socket to use (default: the packet's).
    #[arg(long, value_name = "PID")]
    pub pid: Option<u32>,

    /// Connect mode over TLS: a fresh TCP connection and TLS handshake per
    /// send, the payload sent as application data, the decrypted reply
    /// printed (the replay of a TLS plaintext record). Implies --mode connect.
    #[arg(long, help_heading = "TLS")]
    pub tls: bool,
    /// The server name to send (SNI) and to check the certificate against
    /// (default: --to's host when it is a name; none for an IP address).
    #[arg(long, value_name = "NAME", requires = "tls", help_heading = "TLS")]
    pub sni: Option<String>,
    /// Do not verify the server's certificate (anyone on the path could read and change the replay).
    #[arg(long, requires = "tls", conflicts_with = "ca", help_heading = "TLS")]
    pub insecure: bool,
    /// Trust the certificates of this PEM file instead of the system's roots.
    #[arg(long, value_name = "FILE", requires = "tls", help_heading = "TLS")]
    pub ca: Option<PathBuf>,

    /// How many times to send.
    #[arg(short = 'c', long, value_name = "N", help_heading = "Loop")]
    pub count: Option<u64>,
    /// Time between sends: 100ms, 1s, 2.5s (default 1s).
    #[arg(long, value_name = "DUR", value_parser = parse_dur, help_heading = "Loop")]
    pub interval: Option<Duration>,
    /// Send until Ctrl-C.
    #[arg(long, conflicts_with = "count", help_heading = "Loop")]
    pub forever: bool,
    /// Packets per second at most.
    #[arg(long, value_name = "PPS", default_value_t = pidcap_resend::DEFAULT_MAX_RATE, help_heading = "Loop")]
    pub max_rate: f64,
    /// Stop at the first failed send (default: report it and go on).
    #[arg(long, help_heading = "Loop")]
    pub stop_on_error: bool,
    /// Connect mode: how long to wait for a reply (default 1s).
    #[arg(long, value_name = "DUR", value_parser = parse_dur, help_heading = "Loop")]
    pub timeout: Option<Duration>,

    // -- resend that replays what you mean (issue 14) --
    /// Connect mode: one connection (one UDP socket) for every send of the
    /// loop. Default: a new connection per send, as a client makes one per
    /// request (an HTTP/1.0 server answers once and closes).
    #[arg(long)]
    pub keep_connection: bool,
    /// Connect mode: show at most this many bytes of each reply under its
    /// status line (0: none); --json always carries the whole reply (up to 1 MiB).
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_REPLY_BYTES)]
    pub reply_bytes: usize,

    /// Show what would be sent (hex+ASCII dump, mode, endpoints) and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// One JSON object per status, then the summary.
    #[arg(long)]
    pub json: bool,
    /// Let the daemon send (implied by --packet).
    #[arg(long)]
    pub via_daemon: bool,
    /// The daemon's socket (PIDCAP_SOCKET sets it for ctl, send, lib, ui and daemon).
    #[arg(long, value_name = "PATH", env = "PIDCAP_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// Reply bytes shown under a status line by default (`--reply-bytes`).
pub const DEFAULT_REPLY_BYTES: usize = 4096;

fn parse_dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn millis(d: Option<Duration>) -> Option<u64> {
    d.map(|d| d.as_millis() as u64)
}

/// Frame `n` of a capture file, numbered from 1 as Wireshark numbers them
/// (every record counts, those pidcap cannot decode too). A frame that is not
/// an IP packet, or past the end, is an error that says why.
fn pcap_frame(path: &PathBuf, n: u64) -> anyhow::Result<CapturedPacket> {
    if n == 0 {
        bail!("--frame counts from 1");
    }
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = pidcap_pcapfile::PacketReader::new(std::io::BufReader::new(f))
        .with_context(|| format!("reading {}", path.display()))?;
    let mut cut = None;
    for p in reader.by_ref() {
        match p {
            Ok(p) if p.id == n => return Ok(p),
            Ok(p) if p.id > n => break,
            Ok(_) => {}
            Err(e @ pidcap_pcapfile::PcapError::Truncated { .. }) => cut = Some(e),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }
    if let Some(s) = reader.skipped_frames().iter().find(|s| s.frames.contains(&n)) {
        bail!("frame {n} of {} cannot be sent: {}", path.display(), s.reason);
    }
    let frames = reader.frames();
    match cut {
        Some(cut) => {
            bail!("{} has {frames} complete frames, no frame {n}: the file was cut short ({cut})", path.display())
        }
        None => bail!("{} has {frames} frames, no frame {n}", path.display()),
    }
}

/// The TLS options of `--tls`. The CA file is checked before anything is
/// sent; through the daemon (root, elsewhere) it goes as its PEM text, read
/// here with this user's rights.
fn tls_options(a: &SendArgs, via_daemon: bool) -> anyhow::Result<Option<TlsOptions>> {
    if !a.tls {
        return Ok(None);
    }
    // `--to NAME:PORT`: the name is the default SNI (the address is resolved in `resolve_to`).
    let to_name =
        a.to.as_deref().filter(|t| t.parse::<std::net::SocketAddr>().is_err()).and_then(|t| t.rsplit_once(':'));
    let sni = a.sni.clone().or(to_name.map(|(host, _)| host.to_string()));
    let mut o = TlsOptions { sni, insecure: a.insecure, ..TlsOptions::default() };
    if let Some(p) = &a.ca {
        if via_daemon {
            o.ca_pem = Some(std::fs::read_to_string(p).with_context(|| format!("--ca {}", p.display()))?);
        } else {
            o.ca = Some(std::fs::canonicalize(p).with_context(|| format!("--ca {}", p.display()))?);
        }
    }
    Ok(Some(o))
}

/// `--to` as pidcap-resend takes it (`ADDR:PORT`): with `--tls` it may name
/// the server (`example.org:443`), resolved here to its first address.
fn resolve_to(a: &SendArgs) -> anyhow::Result<Option<String>> {
    use std::net::ToSocketAddrs;
    match a.to.as_deref() {
        Some(t) if a.tls && t.trim().parse::<std::net::SocketAddr>().is_err() && t.contains(':') => {
            let addr = t
                .trim()
                .to_socket_addrs()
                .with_context(|| format!("--to {t}: cannot resolve the name"))?
                .next()
                .ok_or_else(|| anyhow!("--to {t}: the name has no address"))?;
            Ok(Some(addr.to_string()))
        }
        other => Ok(other.map(str::to_string)),
    }
}

fn inject_args(a: &SendArgs, template: Option<CapturedPacket>, tls: Option<TlsOptions>) -> anyhow::Result<InjectArgs> {
    Ok(InjectArgs {
        packet: None,
        template: template.map(Box::new),
        data: a.hex.clone(),
        ascii: a.ascii.clone(),
        patches: a.patches.clone(),
        replaces: a.replaces.clone(),
        mode: a.mode,
        proto: a.proto,
        to: resolve_to(a)?,
        from: a.from.clone(),
        pid: a.pid,
        count: a.count,
        forever: a.forever,
        interval_ms: millis(a.interval),
        max_rate: Some(a.max_rate),
        stop_on_error: a.stop_on_error,
        timeout_ms: millis(a.timeout),
        tls,
        keep_connection: a.keep_connection,
    })
}

fn daemon_packet(client: &mut Client, id: u64) -> anyhow::Result<CapturedPacket> {
    client.get_packet(id)?.ok_or_else(|| anyhow!("the daemon holds no packet {id}"))
}

pub fn run(a: SendArgs) -> anyhow::Result<u8> {
    let via_daemon = a.via_daemon || a.packet.is_some();
    let tls = tls_options(&a, via_daemon)?;
    let mut client = if via_daemon { Some(Client::connect(&a.socket)?) } else { None };
    let template = match (&a.lib, &a.pcap, a.packet) {
        (Some(id), _, _) => {
            let lib = match &a.db {
                Some(p) => pidcap_library::Library::open_read_only(p)?,
                None => pidcap_library::Library::open_read_only(pidcap_library::default_db_path()?)?,
            };
            Some(lib.get(*id)?.ok_or_else(|| anyhow!("the library has no packet {id}"))?.packet)
        }
        (_, Some(path), _) => Some(pcap_frame(path, a.frame.unwrap_or(0))?),
        (_, _, Some(id)) if a.dry_run => Some(daemon_packet(client.as_mut().expect("connected"), id)?),
        _ => None,
    };
    let mut args = inject_args(&a, template, tls)?;
    if args.template.is_none() && args.data.is_none() && args.ascii.is_none() && a.packet.is_none() {
        bail!("no payload: give --packet, --lib, --pcap FILE --frame N, --hex or --ascii");
    }
    if a.dry_run {
        let p = pidcap_resend::prepare(&args)?;
        print_plan(&p, a.json)?;
        return Ok(0);
    }
    if a.insecure {
        eprintln!(
            "pidcap: warning: --insecure: the server's certificate is NOT verified; anyone on the path can read and \
             change this replay"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&stop)).context("installing the Ctrl-C handler")?;
    }
    let summary = match client {
        Some(mut c) => {
            args.packet = a.packet;
            via_the_daemon(&mut c, &a, args, &stop)?
        }
        None => {
            let p = pidcap_resend::prepare(&args)?;
            if !a.json {
                eprintln!("{}", plan_line(&p));
            }
            pidcap_resend::run_job(&p, &stop, &mut |s| print_status(s, a.json, a.reply_bytes))
        }
    };
    print_summary(&summary, a.json)?;
    Ok(match summary.reason {
        EndReason::Failed => 2,
        _ if summary.failed > 0 => 1,
        _ => 0,
    })
}

fn via_the_daemon(c: &mut Client, a: &SendArgs, args: InjectArgs, stop: &Arc<AtomicBool>) -> anyhow::Result<Summary> {
    let job = c.inject(args)?;
    if !a.json {
        eprintln!(
            "pidcap: daemon job {}: {} {} bytes via {} {} -> {}",
            job.id,
            if job.forever { "sending forever".to_string() } else { format!("sending {}x", job.count) },
            job.payload_len,
            job.mode,
            job.local.map_or("*".into(), |l| l.to_string()),
            job.remote
        );
    }
    // Ctrl-C: stop the job from a second connection; this one keeps reading to the summary.
    let (stop2, path, id) = (Arc::clone(stop), a.socket.clone(), job.id);
    std::thread::spawn(move || {
        while !stop2.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(mut c2) = Client::connect(&path) {
            let _ = c2.stop_job(id);
        }
    });
    c.watch_job(job.id)?;
    loop {
        match c.next_event()? {
            Event::SendStatus { job: j, status } if j == job.id => print_status(&status, a.json, a.reply_bytes),
            Event::JobDone { job: j, summary } if j == job.id => return Ok(summary),
            _ => {}
        }
    }
}

fn plan_line(p: &Prepared) -> String {
    let times = if p.forever { "forever (Ctrl-C stops)".to_string() } else { format!("{}x", p.count) };
    let every = if p.forever || p.count > 1 {
        format!(" every {:?}", pidcap_resend::effective_interval(p))
    } else {
        String::new()
    };
    let pid = p.target.pid.filter(|_| p.mode == Mode::Socket).map_or(String::new(), |pid| format!(" (pid {pid})"));
    let tls = match &p.tls {
        None => String::new(),
        Some(t) => {
            let sni = t.sni.as_deref().map_or("no SNI".to_string(), |s| format!("SNI {s}"));
            let trust = match (&t.ca, &t.ca_pem, t.insecure) {
                (_, _, true) => "certificate NOT verified".to_string(),
                (Some(ca), _, _) => format!("CA {}", ca.display()),
                (None, Some(_), _) => "CA given".to_string(),
                (None, None, _) => "system roots".to_string(),
            };
            format!(" over TLS ({sni}, {trust}, a new connection per send)")
        }
    };
    let conn = match (p.mode, &p.tls, p.keep_connection) {
        (Mode::Connect, None, false) if p.forever || p.count > 1 => ", a new connection per send",
        (Mode::Connect, None, true) => ", one connection for every send",
        _ => "",
    };
    format!(
        "pidcap: sending {} bytes via {}{pid}{tls}, {} {} -> {}, {times}{every}{conn}",
        p.payload.len(),
        p.mode,
        p.target.proto,
        p.target.local.map_or("*".into(), |l| l.to_string()),
        p.target.remote
    )
}

fn print_plan(p: &Prepared, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&serde_json::json!({ "dry_run": true, "job": p }))?);
    } else {
        println!("{}", plan_line(p).replacen("pidcap: sending", "would send", 1));
        print!("{}", pidcap_packet::hex_dump(&p.payload));
    }
    Ok(())
}

fn print_status(s: &SendStatus, json: bool, reply_bytes: usize) {
    if json {
        println!("{}", serde_json::to_string(s).unwrap_or_default());
        return;
    }
    println!("{s}");
    // The reply (a TLS replay's decrypted one), up to `reply_bytes`: one
    // line per line of the reply, bytes escaped as everywhere in pidcap
    // (`\r`, `\xHH`, ...).
    let Some(r) = s.reply.as_ref().filter(|_| reply_bytes > 0) else { return };
    let bytes = match r.text.as_deref() {
        Some(text) => pidcap_packet::ascii::unescape(text).unwrap_or_else(|_| text.as_bytes().to_vec()),
        None => r.data(),
    };
    let shown = &bytes[..bytes.len().min(reply_bytes)];
    for line in shown.split_inclusive(|&b| b == b'\n') {
        println!("    {}", pidcap_packet::ascii::escape(line));
    }
    if bytes.len() > shown.len() {
        println!(
            "    ... {} more bytes of the reply (--reply-bytes N shows more, --json all)",
            bytes.len() - shown.len()
        );
    }
}

fn print_summary(s: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(&serde_json::json!({ "summary": s }))?);
    } else {
        eprintln!("pidcap: {s}");
    }
    Ok(())
}
