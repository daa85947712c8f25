//! Command-line grammar (clap derive). Every option is documented here; this is
//! what `pidcap help` shows.

use clap::{Args, Parser, Subcommand};
use pidcap_pcapfile::Format;
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "pidcap", version, about = "See, filter, edit and replay the network traffic of one process.")]
pub struct Cli {
    /// More logging on stderr (-v, -vv, -vvv); PIDCAP_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a command and capture its traffic from its very first packet.
    ///
    /// The kernel hooks are attached and the command registered as a target
    /// before it executes. pidcap exits with the command's exit status.
    Run(RunArgs),
    /// Capture the traffic of running processes until Ctrl-C, -c COUNT, or
    /// until every target has exited.
    Capture(CaptureArgs),
    /// The packet library: save, tag, search, import and export packets (SQLite).
    Lib(crate::cmd_lib::LibArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub opts: CaptureOpts,

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

    #[command(flatten)]
    pub opts: CaptureOpts,
}

#[derive(Args, Debug, Clone)]
pub struct CaptureOpts {
    /// Write packets to FILE (pcapng by default; `-` for stdout) instead of printing them.
    #[arg(short = 'w', long = "write", value_name = "FILE")]
    pub write: Option<PathBuf>,

    /// File format for -w: pcapng (keeps the process on every packet) or pcap.
    /// Default: from the file's extension, else pcapng.
    #[arg(short = 'F', long = "format", value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Bytes kept of each packet, from its IP header (1..=65535).
    #[arg(short = 's', long = "snaplen", default_value_t = pidcap_engine::DEFAULT_SNAPLEN,
          value_parser = clap::value_parser!(u32).range(1..=65535))]
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
    #[arg(long, default_value_t = pidcap_engine::DEFAULT_RING_SIZE as u64, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub ring_size: u64,

    /// Also capture the processes the targets start (fork), and theirs.
    /// Use it for commands that run others (shells, scripts, build tools).
    #[arg(short = 'f', long)]
    pub follow_children: bool,
}
