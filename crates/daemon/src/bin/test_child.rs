//! A helper of the daemon's privileged tests, not a tool: a daemon on the
//! real eBPF backend (1 MiB kernel ring) serving the socket given as the only
//! argument, that prints `ready` once it accepts clients. The SIGKILL test
//! kills it and checks that nothing it attached outlives it. It also exits
//! when its stdin closes, so that a test that dies does not leave it behind.

use pidcap_daemon::{Daemon, DaemonConfig};
use pidcap_ebpf::{EbpfBackend, LoadOptions};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(socket) = std::env::args_os().nth(1) else {
        eprintln!("usage: pidcap-daemon-test-child SOCKET");
        return ExitCode::from(2);
    };
    let config = DaemonConfig { socket: socket.into(), group: None, ..Default::default() };
    let load = || -> Result<Box<dyn pidcap_engine::KernelBackend>, pidcap_engine::EngineError> {
        // Nothing attached until a capture starts, as `pidcap daemon`.
        Ok(Box::new(EbpfBackend::load(LoadOptions { attach: None, ..LoadOptions::with_ring(1 << 20) })?))
    };
    let daemon = match Daemon::bind(config, load) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pidcap-daemon-test-child: {e}");
            return ExitCode::FAILURE;
        }
    };
    std::thread::spawn(|| {
        // EOF (or an error): whoever started us is gone.
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        std::process::exit(3);
    });
    println!("ready");
    let _ = std::io::stdout().flush();
    match daemon.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pidcap-daemon-test-child: {e}");
            ExitCode::FAILURE
        }
    }
}
