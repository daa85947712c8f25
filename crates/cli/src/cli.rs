//! Command-line grammar (clap derive). Every option is documented here; this is
//! what `pidcap help` shows.

use clap::{Args, Parser, Subcommand};
use pidcap_engine::rules::{Action, Rule};
use pidcap_pcapfile::Format;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "pidcap", version, about = "See, filter, edit and replay the network traffic of one process.")]
pub struct Cli {
    // -- cli habits --
    /// Logging on stderr: a level (error, warn, info, debug, trace) or
    /// tracing's env-filter directives (`pidcap_engine=debug,info`).
    /// Default: warn, or PIDCAP_LOG (same syntax) when set; this option wins
    /// over PIDCAP_LOG. Colours only when stderr is a terminal (and NO_COLOR
    /// is not set). `-v` is tcpdump's: more decoding of each packet.
    #[arg(long = "log-level", value_name = "LEVEL", global = true, value_parser = parse_log_level)]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a command and capture its traffic from its very first packet.
    ///
    /// The command is everything it starts (what a shell, a script, git or
    /// a build tool runs, and so on): its whole process tree is captured,
    /// and the capture ends when all of it has exited (or on Ctrl-C);
    /// --no-follow keeps to the command's own process.
    ///
    /// The kernel hooks are attached, the output opened and the command
    /// registered as a target before it executes: if the output cannot be
    /// created, the command does not run. pidcap exits with the command's
    /// exit status. A filter EXPRESSION (tcpdump's) goes before `--`:
    /// `pidcap run -w x.pcapng tcp port 80 -- curl http://...`.
    ///
    /// If writing the output fails while the command runs (a full disk),
    /// pidcap stops the command (SIGTERM, then SIGKILL after 5 s; its block
    /// rules would not outlive pidcap), says so, prints the summary, leaves
    /// the file cut back to its last complete packet, and exits with 2.
    Run(RunArgs),
    /// Capture the traffic of running processes (by pid, name, cgroup, unit
    /// or container) until Ctrl-C, -c COUNT, or every target has exited.
    ///
    /// Names and cgroups can gain processes at any time: a capture with one
    /// of them runs until Ctrl-C or -c.
    ///
    /// A filter EXPRESSION (tcpdump's) follows the options: `pidcap capture
    /// --pid 1234 udp port 53`.
    Capture(CaptureArgs),
    /// Read a pcap or pcapng file back: print, select, write (`pidcap -r FILE` too).
    ///
    /// Reads files of pidcap, tcpdump and Wireshark (`-` for stdin) and prints
    /// their packets as a capture does, with the process where the file has it
    /// (pidcap's pcapng); selects with --pid and --name, writes the selection
    /// with -w. Skipped frames (not IP) are listed with why; a summary ends on
    /// stderr. Exit status 2 when the file cannot be read.
    Read(crate::cmd_read::ReadArgs),
    /// The packet library: save, tag, search, import and export packets (SQLite).
    Lib(crate::cmd_lib::LibArgs),
    /// Serve the kernel layer to clients (`pidcap ctl`, the UI) on a Unix socket.
    ///
    /// Loads the eBPF programs once (needs root) and listens on
    /// /run/pidcap/pidcap.sock, or --socket, or PIDCAP_SOCKET (the variable
    /// ctl, send, lib and ui read too) (mode 0660; group `pidcap` if that group
    /// exists, whose members may then use the daemon; directory mode 0750).
    /// Refuses to start if another daemon answers on the socket; removes a
    /// stale one. When it exits, however it exits, every program, rule and
    /// target goes with it. The API is documented in docs/API.md.
    Daemon(crate::cmd_daemon::DaemonArgs),
    /// Talk to a running `pidcap daemon`: start/stop a capture, read packets,
    /// manage filter rules, see the state.
    Ctl(crate::cmd_ctl::CtlArgs),
    /// Edit a packet's payload and send it, once or in a loop: through the
    /// owning process's own socket, a raw socket, or a new connection.
    ///
    /// The payload comes from a daemon packet (--packet), the library (--lib),
    /// a capture file (--pcap FILE --frame N), or is given (--hex, --ascii);
    /// --patch and --replace edit it; --dry-run shows it without sending.
    /// Every send prints a status; a summary ends the run. Exit status: 0 all
    /// sent, 1 some failed, 2 nothing could be sent.
    Send(crate::cmd_send::SendArgs),
    /// The UI in a browser: pick a process, watch its packets, block a port,
    /// edit and resend a packet, keep it in the library.
    ///
    /// Serves on http://127.0.0.1:PORT (a random free port unless --listen)
    /// and prints the URL to open, with its access token; requests without
    /// the token or from another site are refused. Starts a daemon in this
    /// process when none runs and it has the rights.
    #[cfg(feature = "ui")]
    Ui(crate::cmd_ui::UiArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: CaptureOpts,

    /// Do not give the command a TLS key log.
    ///
    /// By default, when packets go to a pcapng file (-w), `run` sets
    /// SSLKEYLOGFILE for the command (curl, Python, Firefox/Chromium and
    /// other OpenSSL, GnuTLS and NSS users honour it) to a private file of
    /// its own (mode 0600 in a fresh 0700 directory, removed when pidcap
    /// ends), reads it as it grows and writes the keys into the file in
    /// Decryption Secrets Blocks, so that Wireshark and tshark decrypt the
    /// command's TLS with no option. If SSLKEYLOGFILE is already set (or
    /// --keylog is given), that file is used and kept.
    #[arg(long = "no-keylog", conflicts_with = "keylog", help_heading = "The command")]
    pub no_keylog: bool,

    // -- cli habits --
    /// Capture the command alone, not the processes it starts.
    ///
    /// By default `run` captures the command's whole process tree (what a
    /// shell, a script, `git` or a build tool starts, and what those start),
    /// as the UI's "Run and capture" does; -f is accepted and changes
    /// nothing here.
    #[arg(long = "no-follow", conflicts_with = "follow_children", help_heading = "The command")]
    pub no_follow: bool,

    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

#[derive(Args, Debug)]
#[command(group = clap::ArgGroup::new("target").required(true).multiple(true))]
pub struct CaptureArgs {
    /// Process id to capture (repeatable).
    #[arg(short, long = "pid", value_name = "PID", group = "target")]
    pub pids: Vec<u32>,

    /// Process name to capture (repeatable): running processes of that name,
    /// and any that start later. Compared on the first 15 bytes, as the kernel keeps it.
    #[arg(long = "name", value_name = "COMM", group = "target")]
    pub names: Vec<String>,

    // -- capture by cgroup, unit and container --
    /// Capture every process in cgroup PATH and in the cgroups below it
    /// (repeatable), including processes that join later: PATH is a
    /// directory of the cgroup2 mount (/sys/fs/cgroup/...) or a path in the
    /// hierarchy as /proc/PID/cgroup shows it (/system.slice/x.service).
    ///
    /// The processes in it when the capture starts are captured with their
    /// open sockets; a process that moves in later is captured from its next
    /// socket operation (a new socket, bind, connect, a UDP send or receive),
    /// or within 100 ms when pidcap looks at the cgroup again. A
    /// process stays captured once taken, also if it leaves the cgroup.
    /// Never a process that was not in it.
    #[arg(long = "cgroup", value_name = "PATH", group = "target")]
    pub cgroups: Vec<String>,

    /// Capture systemd unit NAME's processes (NAME or NAME.service; repeatable),
    /// as --cgroup does with the unit's cgroup: systemd is asked for it
    /// when it runs, else the cgroup directory of that name is looked for.
    #[arg(long = "unit", value_name = "NAME", group = "target")]
    pub units: Vec<String>,

    /// Capture container ID's processes (repeatable), as --cgroup does with
    /// its cgroup: the full id, a prefix of 4 hex digits or more (as `docker
    /// ps` shows 12), or a machine name (systemd-nspawn, LXC). Docker,
    /// podman, containerd, CRI-O, kubernetes, nspawn and LXC cgroups are
    /// recognised by name; a prefix two containers share is refused.
    #[arg(long = "container", value_name = "ID", group = "target")]
    pub containers: Vec<String>,

    // -- isolate (issue 13) --
    /// Move each --pid target into a cgroup of its own while it is captured,
    /// so that no other process runs pidcap's programs (a target in the
    /// root cgroup, or one sharing its cgroup, otherwise puts them where
    /// the others' packets run them too).
    ///
    /// The cgroup is `<its cgroup>/pidcap-iso-<pidcap's pid>` (targets of
    /// one cgroup share one): a child of the cgroup it was in, so its
    /// limits still apply and its service manager still stops it. Its
    /// /proc/PID/cgroup shows the new cgroup during the capture (the
    /// packets' metadata names the original); what it forks stays in it.
    /// At the end (also on Ctrl-C, SIGTERM, an error) every process still
    /// there goes back to the original cgroup; after a SIGKILL the next
    /// pidcap puts them back. Sockets a target opened before the move stay
    /// charged to its old cgroup and are not captured (pidcap says how many).
    /// Only with --pid targets; refused when a cgroup cannot be made or a
    /// process moved (threaded cgroups, permissions), before anything moves.
    #[arg(long)]
    pub isolate: bool,

    #[command(flatten)]
    pub opts: CaptureOpts,
}

#[derive(Args, Debug, Clone)]
pub struct CaptureOpts {
    /// Write packets to FILE (pcapng by default; `-` for stdout) instead of printing them.
    ///
    /// The file is opened before the capture starts (for `run`: before the
    /// command exists), created with mode 0600 (--file-mode), and never
    /// written through a symbolic link: a link at FILE, a file with other hard
    /// links, or another user's file in a sticky directory such as /tmp is
    /// refused. If writing fails (a full disk), the capture stops: the file is
    /// cut back to its last complete packet (it reads without a warning), the
    /// summary is printed, `run` stops the command (SIGTERM, SIGKILL after 5
    /// s: its block rules would not outlive pidcap), `capture` leaves its
    /// targets running and says they are no longer captured, and pidcap exits
    /// with 2.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// Mode of the file -w creates, in octal (default 600: captured traffic is private).
    #[arg(long = "file-mode", value_name = "MODE", default_value = "600",
          value_parser = pidcap_pcapfile::file::parse_file_mode)]
    pub file_mode: u32,

    /// File format for -w: pcapng (keeps the process on every packet) or pcap.
    /// Default: from the file's extension, else pcapng.
    #[arg(short = 'F', long = "format", value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Bytes kept of each packet, from its IP header (1..=65535).
    #[arg(short = 's', long = "snaplen", default_value_t = pidcap_engine::DEFAULT_SNAPLEN,
          value_parser = parse_snaplen)]
    pub snaplen: u32,

    /// Stop after COUNT packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    pub count: Option<u64>,

    /// Print one JSON object per packet on stdout.
    #[arg(long, conflicts_with = "quiet")]
    pub json: bool,

    /// Print no packets, only the summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// Packets kept in memory (the newest; older ones are evicted and counted).
    #[arg(long, default_value_t = pidcap_engine::DEFAULT_RING_SIZE, value_parser = parse_ring_size)]
    pub ring_size: usize,

    // -- kernel ring size (issue 13) --
    /// Kernel ring buffer size in MiB (a power of two): what absorbs bursts
    /// while pidcap is not scheduled. Drops here are counted in the summary.
    /// The ring is mapped into pidcap's memory (the default costs 32 MiB of
    /// RSS: its pages appear twice, so records that wrap read contiguously).
    #[arg(short = 'B', long = "buffer-size", value_name = "MIB", default_value_t = 16,
          value_parser = parse_buffer_mib)]
    pub buffer_mib: u32,

    /// Also capture the processes the targets start (fork), and theirs.
    /// `capture`: off by default. `run`: always on unless --no-follow (a
    /// command is everything it starts).
    #[arg(short = 'f', long)]
    pub follow_children: bool,

    /// Drop the targets' packets that match SPEC (repeatable; see --help).
    #[arg(long = "block", value_name = "SPEC", value_parser = parse_block, help_heading = "Filter rules",
          long_help = RULE_HELP)]
    pub block: Vec<Rule>,

    /// Let the targets' packets that match SPEC through (repeatable); it
    /// decides before any later rule, e.g. `--allow [::1] --block tcp`.
    #[arg(long = "allow", value_name = "SPEC", value_parser = parse_allow, help_heading = "Filter rules")]
    pub allow: Vec<Rule>,

    /// Do not capture TLS plaintext.
    ///
    /// By default pidcap also records what the targets hand to their TLS
    /// library (OpenSSL/LibreSSL/BoringSSL libssl.so.3 and .so.1.1, GnuTLS
    /// libgnutls.so.30, NSS libnspr4.so) and get from it, with uprobes: each
    /// call is a "TLS plaintext record" on its connection, printed as
    /// decrypted text, written into pcapng files on an interface of its own
    /// (classic pcap leaves them out). Statically linked TLS (Go programs,
    /// OpenSSL built in) is not covered; pidcap says which targets it covers.
    #[arg(long = "no-tls")]
    pub no_tls: bool,

    /// Read TLS keys from FILE (an NSS key log, as SSLKEYLOGFILE writes) as
    /// it grows, into the pcapng file (-w). With `run`, the command's
    /// SSLKEYLOGFILE is set to FILE, which is kept afterwards. Lines that are
    /// not valid keys are ignored and counted.
    #[arg(long = "keylog", value_name = "FILE")]
    pub keylog: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputOpts,

    // -- filter expressions --
    #[command(flatten)]
    pub filter: FilterOpts,
    // -- rotation (tcpdump's -C, -W, -G) --
    #[command(flatten)]
    pub rotate: RotateOpts,

    /// --block and --allow merged in command-line order (filled by main).
    #[arg(skip)]
    pub rules: Vec<Rule>,
}

/// tcpdump's output letters (for the text lines; --json is not changed by
/// them). A struct of its own, to flatten into any command that prints packets.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Output (tcpdump's letters)")]
pub struct OutputOpts {
    /// Print each packet's payload in ASCII after its line (printable bytes,
    /// tab and newline as themselves, `.` for the rest); for a TLS record, its plaintext.
    #[arg(short = 'A')]
    pub ascii: bool,

    /// Print each packet in hex from its IP header after its line, as
    /// tcpdump does (`0x0000:  4500 0054 ...`); for a TLS record, its plaintext.
    #[arg(short = 'x', action = clap::ArgAction::Count)]
    pub hex: u8,

    /// Print each packet in hex and ASCII side by side, as tcpdump does.
    /// -XX is the same: pidcap's packets start at the IP header, there is
    /// no link-level header to add. Wins over -x and -A.
    #[arg(short = 'X', action = clap::ArgAction::Count)]
    pub hex_ascii: u8,

    /// Timestamps: -t none, -tt seconds.microseconds since the epoch, -ttt
    /// the time since the previous packet, -tttt date and time, -ttttt the
    /// time since the first packet (default: HH:MM:SS.microseconds). Times
    /// of day and dates are in the local time zone, as tcpdump's (TZ is
    /// respected: TZ=UTC for UTC).
    #[arg(short = 't', action = clap::ArgAction::Count)]
    pub time: u8,

    /// Accepted for tcpdump's habits; no effect: pidcap never resolves names or ports.
    #[arg(short = 'n')]
    pub numeric: bool,

    /// Line-buffered stdout: every packet's line is written out at once (for `| grep`, `| tee`).
    #[arg(short = 'l')]
    pub line_buffered: bool,

    /// Packet-buffered output: the -w file (or stdout) is flushed after every
    /// packet, so that `tail -f` or `tshark -r -` on a growing file sees each at once.
    #[arg(short = 'U')]
    pub packet_buffered: bool,

    // -- cli habits --
    /// More decoding on each packet's line, as tcpdump's -v: IP ttl (hop
    /// limit), id and total length; TCP seq, ack, window and options (mss,
    /// wscale, sackOK, timestamps); UDP length; one-line summaries of DNS
    /// questions and answers (`DNS 4660+ A? example.com.`, `... 1/0/0 A
    /// 10.0.0.1`), HTTP request and status lines, TLS ClientHello's server
    /// name. -vv adds IP tos and flags, checksums, and every DNS answer.
    /// (Logging is --log-level.)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
}

// -- filter expressions --
/// A pcap-filter expression (tcpdump's language), on the command line or in
/// a file. A struct of its own, flattened into run, capture and read.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterOpts {
    /// Keep only the packets that match EXPRESSION (pcap-filter, as tcpdump:
    /// `man 7 pcap-filter`).
    ///
    /// The words are joined by spaces, as tcpdump joins them: `tcp port 80`
    /// or 'tcp port 80'. For `run` they go before `--` (everything after it
    /// is the command's); for `capture` and `read`, after the options. The
    /// expression is compiled by libpcap for raw IP packets (pidcap's start
    /// at the IP header): ip, ip6, tcp, udp, icmp, host, net, port,
    /// portrange, src/dst, len, and byte offsets such as `ip[8] < 64` work
    /// for IPv4 and IPv6; link-level primitives (ether, vlan) do not apply.
    /// `len` is the packet's whole length, also when -s cut it. A TLS
    /// plaintext record is matched as a TCP packet of its connection.
    /// Filter rules (--block/--allow) are separate and unaffected: a packet
    /// an expression leaves out is still blocked if a rule says so.
    ///
    /// A malformed expression is refused with libpcap's message before
    /// anything starts (exit status 2). Packets that do not match are
    /// counted in the summary, and -c counts only those that match.
    #[arg(value_name = "EXPRESSION", help_heading = "Filter expression (tcpdump's)")]
    pub expression: Vec<String>,

    /// Read the filter expression from FILE (tcpdump's -F; `#` starts a
    /// comment to the end of the line). An expression on the command line
    /// as well is refused. A malformed one is reported by the file's name
    /// (its text is not repeated).
    #[arg(
        long = "filter-file",
        value_name = "FILE",
        conflicts_with = "expression",
        help_heading = "Filter expression (tcpdump's)"
    )]
    pub filter_file: Option<PathBuf>,
}

impl FilterOpts {
    /// The filter these options give, compiled (None: no expression, keep
    /// everything). Called before anything starts: a bad expression is an
    /// error with libpcap's message.
    pub fn compile(&self) -> anyhow::Result<Option<std::sync::Arc<pidcap_filter::Filter>>> {
        let filter = match &self.filter_file {
            Some(path) => pidcap_filter::compile_file(path)?,
            None => match pidcap_filter::expression_from_words(&self.expression) {
                Some(expression) => Some(pidcap_filter::Filter::compile(&expression)?),
                None => None,
            },
        };
        Ok(filter.map(std::sync::Arc::new))
    }
}

// -- rotation (tcpdump's -C, -W, -G) --
/// tcpdump's rotation of the -w file: by size, by time, in a ring. A struct
/// of its own, flattened into `run`, `capture` and `read`.
#[derive(Args, Debug, Clone, Default)]
#[command(next_help_heading = "Rotation of the -w file (tcpdump's -C, -W, -G)")]
pub struct RotateOpts {
    /// Start a new file before one would exceed MB millions of bytes
    /// (1,000,000, as tcpdump counts; a file holds at least one packet).
    ///
    /// The files are named as tcpdump names them: FILE, then FILE1, FILE2,
    /// ...; with -W, FILE0, FILE1, ... with the counter zero-padded to the
    /// width of N-1 (-W 3: x0 x1 x2; -W 12: x00 ... x11). Every file is
    /// complete on its own (its own section and interface blocks, and the
    /// TLS keys its packets need) and created as -w creates its file (mode,
    /// no symbolic links). Needs -w FILE (not `-`).
    #[arg(short = 'C', value_name = "MB", value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub file_size: Option<u64>,

    /// With -C: a ring of N files, the oldest overwritten (only files this
    /// capture made: anything else found at such a name is refused). With
    /// -G alone: stop after N files, as tcpdump does.
    #[arg(short = 'W', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub file_count: Option<u32>,

    /// Start a new file every SECONDS seconds (with the first packet after
    /// them, as tcpdump does). FILE is passed through strftime(3) in local
    /// time: `-G 3600 -w 'cap-%Y%m%d-%H%M.pcapng'`. With -C too, the counter
    /// goes after that name and starts again in each period.
    #[arg(short = 'G', value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub rotate_seconds: Option<u64>,
}

impl RotateOpts {
    /// The rotation asked for with `-w write`; `None` when none. Refused:
    /// -C/-G without -w or with `-w -` (stdout cannot be rotated), -W alone.
    pub fn rotation(&self, write: Option<&std::path::Path>) -> Result<Option<pidcap_pcapfile::Rotation>, String> {
        let rotates = self.file_size.is_some() || self.rotate_seconds.is_some();
        if !rotates {
            if self.file_count.is_some() {
                return Err("-W N needs -C MB (a ring of N files) or -G SECONDS (stop after N files)".into());
            }
            return Ok(None);
        }
        match write {
            None => return Err("-C and -G rotate the -w file: add -w FILE".into()),
            Some(p) if p.as_os_str() == "-" => {
                return Err("-C and -G rotate files: they cannot be used with -w - (stdout)".into())
            }
            Some(_) => {}
        }
        Ok(Some(pidcap_pcapfile::Rotation {
            max_bytes: self.file_size.map(|mb| mb * 1_000_000),
            files: self.file_count,
            seconds: self.rotate_seconds,
        }))
    }
}

const RULE_HELP: &str = "Drop the targets' packets that match SPEC (repeatable).

Rules are evaluated in command-line order across --block and --allow; the \
first enabled rule that matches decides; no match = allow. A blocked packet \
is dropped in the kernel but still captured (verdict `blocked`; pcapng \
comment `verdict=blocked rule=N`, N counting rules from 0); a blocked \
outgoing connect() or UDP send fails at once with EPERM. The address is the \
remote one. At most 64 rules.

SPEC = PART[:PART]...  (each kind of part at most once, in any order)
  direction:  in | out | both                 (default both)
  protocol:   tcp | udp | any                 (default any)
  address:    IPv4 or IPv4/len, [IPv6] or [IPv6]/len   (default any)
  port side:  local | remote                  (default either; needs a port)
  port:       0..65535                        (0 or absent = any)
examples: tcp:443  udp:53  10.0.0.0/8  [::1]:8080  out:tcp:80  in:udp:10.0.0.0/8:53  tcp:local:8080";

fn parse_block(s: &str) -> Result<Rule, String> {
    Rule::parse_spec(s, Action::Block).map_err(|e| e.to_string())
}

fn parse_allow(s: &str) -> Result<Rule, String> {
    Rule::parse_spec(s, Action::Allow).map_err(|e| e.to_string())
}

/// The rules of --block/--allow in `m` (a run/capture subcommand's matches), in command-line order.
pub fn ordered_rules(m: &clap::ArgMatches) -> Vec<Rule> {
    let mut v: Vec<(usize, Rule)> = Vec::new();
    for id in ["block", "allow"] {
        if let (Some(idx), Some(vals)) = (m.indices_of(id), m.get_many::<Rule>(id)) {
            v.extend(idx.zip(vals.copied()));
        }
    }
    v.sort_by_key(|(i, _)| *i);
    v.into_iter().map(|(_, r)| r).collect()
}

/// --log-level: a level or env-filter directives, checked here so that a typo is refused.
fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::builder().parse(s).map_err(|e| format!("{s:?}: {e}"))?;
    Ok(s.to_string())
}

/// Clap already says "invalid value": keep only what was wrong.
fn what_is_invalid(e: pidcap_engine::EngineError) -> String {
    match e {
        pidcap_engine::EngineError::Invalid(what) => what.to_string(),
        e => e.to_string(),
    }
}

/// -s: the engine's one snap-length check.
fn parse_snaplen(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number of bytes"))?;
    pidcap_engine::capture::check_snaplen(n).map_err(what_is_invalid)?;
    Ok(n)
}

/// --ring-size: the engine's one ring-size check.
fn parse_ring_size(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("{s:?} is not a number of packets"))?;
    pidcap_engine::capture::check_ring_size(n).map_err(what_is_invalid)?;
    Ok(n)
}

fn parse_buffer_mib(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|_| format!("{s:?} is not a number of MiB"))?;
    if !(1..=1024).contains(&n) || !n.is_power_of_two() {
        return Err(format!("{n} MiB: the kernel ring buffer must be a power of two between 1 and 1024 MiB"));
    }
    Ok(n)
}
