//! `pidcap daemon`: load the kernel layer once and serve it on a Unix socket.

use anyhow::{Context, Result};
use clap::Args;
use pidcap_api::protocol::{DEFAULT_GROUP, DEFAULT_SOCKET};
use pidcap_daemon::{Daemon, DaemonConfig};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct DaemonArgs {
    /// The socket to serve on (PIDCAP_SOCKET sets it for ctl, send, lib, ui and daemon).
    #[arg(long, value_name = "PATH", env = "PIDCAP_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// Members of this group may use the daemon (besides root), when it exists.
    #[arg(long, value_name = "GROUP", default_value = DEFAULT_GROUP)]
    pub group: String,

    /// Clients served at once (at least 1); one more is told `busy` and disconnected.
    #[arg(long, value_name = "N", default_value_t = pidcap_daemon::server::DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
}

/// The kernel layer of `pidcap daemon` (and of the daemon `pidcap ui` starts):
/// loaded with nothing attached; the daemon attaches its programs where each
/// capture's targets live while it runs, and takes them off when it stops.
pub fn load_ebpf() -> Result<Box<dyn pidcap_engine::KernelBackend>, pidcap_engine::EngineError> {
    let opts = pidcap_ebpf::LoadOptions { attach: None, ..pidcap_ebpf::LoadOptions::default() };
    Ok(Box::new(pidcap_ebpf::EbpfBackend::load(opts)?))
}

pub fn run(args: DaemonArgs) -> Result<u8> {
    // -- isolate (issue 13): what a SIGKILLed `capture --isolate` left is put back --
    pidcap_ebpf::sweep_isolations();
    let config = DaemonConfig {
        socket: args.socket.clone(),
        group: Some(args.group.clone()),
        max_clients: args.max_clients,
        ..Default::default()
    };
    let daemon = Daemon::bind(config, load_ebpf)
        .with_context(|| format!("cannot start the daemon on {}", args.socket.display()))?;
    let access = match daemon.gid() {
        Some(_) => format!("root and group {}", args.group),
        None => format!("root only: group {} does not exist", args.group),
    };
    eprintln!("pidcap daemon: listening on {} ({access}), pid {}", daemon.socket().display(), std::process::id());
    daemon.run().context("daemon")?;
    eprintln!("pidcap daemon: stopped");
    Ok(0)
}
