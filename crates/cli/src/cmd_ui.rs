//! `pidcap ui`: the Dioxus UI, served on loopback (liveview: the app runs
//! here, the browser only renders), talking to the daemon; starts a daemon in
//! this process when none answers and we have the rights.

use anyhow::{Context, Result};
use clap::Args;
use pidcap_api::protocol::{DEFAULT_GROUP, DEFAULT_SOCKET};
use pidcap_api::{Client, ClientError};
use pidcap_daemon::{Daemon, DaemonConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct UiArgs {
    /// Address and port to serve on. Loopback by default (port 0: any free
    /// port); another address exposes the UI to the network, guarded only by the token.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,

    /// The daemon's socket (PIDCAP_SOCKET sets it for ctl, send, lib, ui and daemon).
    #[arg(long, value_name = "PATH", env = "PIDCAP_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// The packet library (default: $XDG_DATA_HOME/pidcap/library.db).
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Never start a daemon (by default one is started in this process when
    /// none answers on the socket and we are root).
    #[arg(long)]
    pub no_daemon: bool,

    /// Open the UI in a native window (system webview) instead of serving it.
    #[cfg(feature = "desktop")]
    #[arg(long)]
    pub desktop: bool,
}

pub fn run(args: UiArgs) -> Result<u8> {
    let library = match args.db.clone() {
        Some(p) => p,
        None => pidcap_library::default_db_path().context("where to keep the library")?,
    };
    let mut daemon_thread = None;
    match Client::connect(&args.socket) {
        Ok(_) => {}
        // SAFETY: geteuid has no preconditions and cannot fail.
        Err(ClientError::NotRunning(_)) if !args.no_daemon && unsafe { libc::geteuid() } == 0 => {
            let config =
                DaemonConfig { socket: args.socket.clone(), group: Some(DEFAULT_GROUP.into()), ..Default::default() };
            let daemon = Daemon::bind(config, crate::cmd_daemon::load_ebpf)
                .with_context(|| format!("cannot start a daemon on {}", args.socket.display()))?;
            eprintln!("pidcap ui: started a daemon on {} (it stops with this command)", args.socket.display());
            daemon_thread = Some(std::thread::spawn(move || daemon.run()));
        }
        // Not fatal: the UI says what is wrong and retries.
        Err(e) => eprintln!("pidcap ui: {e}"),
    }
    #[cfg(feature = "desktop")]
    if args.desktop {
        // Blocks until the window closes; an in-process daemon stops with us.
        pidcap_ui::run_desktop(args.socket, library);
        return Ok(0);
    }
    let running =
        pidcap_ui::start(pidcap_ui::ServeConfig { bind: args.listen, socket: args.socket, library, token: None })
            .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!("pidcap ui: open {}", running.url);
    if !running.addr.ip().is_loopback() {
        eprintln!(
            "pidcap ui: warning: listening on {} — reachable from the network, guarded by the token only",
            running.addr
        );
    }
    match daemon_thread {
        // The daemon handles Ctrl-C: when it stops, so does the UI.
        Some(t) => {
            let r = t.join().map_err(|_| anyhow::anyhow!("the daemon thread panicked"))?;
            r.context("daemon")?;
        }
        None => running.wait(),
    }
    Ok(0)
}
