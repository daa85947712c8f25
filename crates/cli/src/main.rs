//! The `pidcap` command. `main` only parses and reports: the work is in the
//! `cmd_*` modules, one per subcommand.

mod cli;
mod cmd_capture;
mod cmd_ctl;
mod cmd_daemon;
mod cmd_lib;
mod cmd_read;
mod cmd_send;
#[cfg(feature = "ui")]
mod cmd_ui;
mod keylog;
mod output;

use clap::{CommandFactory, FromArgMatches};
use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches_from(tcpdump_read(std::env::args_os().collect()));
    let mut cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // --block and --allow interleave: their order comes from the raw matches.
    if let (
        Some((_, sub)),
        cli::Command::Run(cli::RunArgs { opts, .. }) | cli::Command::Capture(cli::CaptureArgs { opts, .. }),
    ) = (matches.subcommand(), &mut cli.command)
    {
        opts.rules = cli::ordered_rules(sub);
    }
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // The whole chain of causes on one line, each once.
            eprintln!("pidcap: {}", output::error_text(&err));
            ExitCode::from(2)
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<u8> {
    init_tracing(cli.verbose);
    match cli.command {
        cli::Command::Run(args) => cmd_capture::run(args),
        cli::Command::Capture(args) => cmd_capture::capture(args),
        cli::Command::Daemon(args) => cmd_daemon::run(args),
        cli::Command::Ctl(args) => cmd_ctl::run(args),
        cli::Command::Read(args) => cmd_read::run(args),
        cli::Command::Lib(args) => cmd_lib::run(args).map(|code| code.clamp(0, 255) as u8),
        cli::Command::Send(args) => cmd_send::run(args),
        #[cfg(feature = "ui")]
        cli::Command::Ui(args) => cmd_ui::run(args),
    }
}

/// tcpdump's `-r FILE` (after any -v): `pidcap -r FILE ...` is `pidcap read FILE ...`.
fn tcpdump_read(mut args: Vec<OsString>) -> Vec<OsString> {
    let at = 1 + args.iter().skip(1).take_while(|a| is_verbose(a)).count();
    if let Some(arg) = args.get(at).and_then(|a| a.to_str()) {
        if arg == "-r" {
            args[at] = "read".into();
        } else if let Some(file) = arg.strip_prefix("-r").filter(|f| !f.is_empty()) {
            let file = OsString::from(file.strip_prefix('=').unwrap_or(file));
            args.splice(at..=at, [OsString::from("read"), file]);
        }
    }
    args
}

fn is_verbose(arg: &OsString) -> bool {
    arg.to_str()
        .is_some_and(|a| a == "--verbose" || (a.len() > 1 && a.starts_with('-') && a[1..].bytes().all(|b| b == b'v')))
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PIDCAP_LOG").unwrap_or_else(|_| level.into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
