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
    init_tracing(cli.log_level.as_deref());
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

/// tcpdump's fingers: `pidcap -r FILE ...` is `pidcap read FILE ...`, and
/// `-v`s typed before it (`pidcap -vv -r FILE`, `pidcap -v run ...`) go to
/// the subcommand that prints packets (`-v` is one of its output options).
fn tcpdump_read(mut args: Vec<OsString>) -> Vec<OsString> {
    let vs = args.iter().skip(1).take_while(|a| is_verbose(a)).count();
    let at = 1 + vs;
    let Some(arg) = args.get(at).and_then(|a| a.to_str()).map(str::to_owned) else { return args };
    let verbose: Vec<OsString> = args[1..at].to_vec();
    // The subcommand, and `read`'s file when it came glued to -r (`-rFILE`, `-r=FILE`).
    let (sub, file) = if arg == "-r" {
        ("read", None)
    } else if let Some(file) = arg.strip_prefix("-r").filter(|f| !f.is_empty()) {
        ("read", Some(OsString::from(file.strip_prefix('=').unwrap_or(file))))
    } else if vs > 0 && ["run", "capture", "read"].contains(&arg.as_str()) {
        (arg.as_str(), None)
    } else {
        return args;
    };
    let rest = args.split_off(at + 1);
    args.truncate(1);
    args.push(sub.into());
    args.extend(verbose);
    args.extend(file);
    args.extend(rest);
    args
}

fn is_verbose(arg: &OsString) -> bool {
    arg.to_str()
        .is_some_and(|a| a == "--verbose" || (a.len() > 1 && a.starts_with('-') && a[1..].bytes().all(|b| b == b'v')))
}

/// Logging on stderr: `--log-level`, else PIDCAP_LOG, else warnings; ANSI
/// colours only on a terminal (and not with NO_COLOR).
fn init_tracing(level: Option<&str>) {
    use std::io::IsTerminal;
    let filter = match level {
        Some(l) => tracing_subscriber::EnvFilter::new(l),
        None => tracing_subscriber::EnvFilter::try_from_env("PIDCAP_LOG").unwrap_or_else(|_| "warn".into()),
    };
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
}

#[cfg(test)]
mod tests {
    use super::tcpdump_read;

    fn args(line: &str) -> Vec<String> {
        let v = tcpdump_read(line.split(' ').map(Into::into).collect());
        v.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn r_becomes_read_and_leading_vs_follow_the_subcommand() {
        assert_eq!(args("pidcap -r f.pcap -A"), ["pidcap", "read", "f.pcap", "-A"]);
        assert_eq!(args("pidcap -rf.pcap"), ["pidcap", "read", "f.pcap"]);
        assert_eq!(args("pidcap -r=f.pcap"), ["pidcap", "read", "f.pcap"]);
        assert_eq!(args("pidcap -vv -r f.pcap --pid 1"), ["pidcap", "read", "-vv", "f.pcap", "--pid", "1"]);
        assert_eq!(args("pidcap -v -rf.pcap"), ["pidcap", "read", "-v", "f.pcap"]);
        assert_eq!(args("pidcap -v run -- curl"), ["pidcap", "run", "-v", "--", "curl"]);
        assert_eq!(args("pidcap -v --verbose capture --pid 1"), ["pidcap", "capture", "-v", "--verbose", "--pid", "1"]);
        // Left alone: no -r, or -v before a subcommand that prints no packets (clap says why).
        assert_eq!(args("pidcap run -v -- curl"), ["pidcap", "run", "-v", "--", "curl"]);
        assert_eq!(args("pidcap -v ctl state"), ["pidcap", "-v", "ctl", "state"]);
        assert_eq!(args("pidcap"), ["pidcap"]);
    }
}
