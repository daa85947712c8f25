//! The `pidcap` command. `main` only parses and reports: the work is in the
//! `cmd_*` modules, one per subcommand.

mod cli;
mod cmd_capture;
mod cmd_ctl;
mod cmd_daemon;
mod cmd_lib;
mod cmd_send;
#[cfg(feature = "ui")]
mod cmd_ui;
mod keylog;
mod output;

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
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
        cli::Command::Lib(args) => cmd_lib::run(args).map(|code| code.clamp(0, 255) as u8),
        cli::Command::Send(args) => cmd_send::run(args),
        #[cfg(feature = "ui")]
        cli::Command::Ui(args) => cmd_ui::run(args),
    }
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
