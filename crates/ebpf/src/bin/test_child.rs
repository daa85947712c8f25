//! A helper of crates/ebpf/tests/tls.rs, not a tool: loads the eBPF backend
//! with TLS plaintext on, makes the pid given as the only argument a target,
//! waits until its TLS library has probes attached, prints `ready`, and then
//! holds everything until its stdin closes. The SIGKILL test kills it and
//! checks that no program and no uprobe outlives it.

use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::{Capture, CaptureOptions};
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(pid) = std::env::args().nth(1).and_then(|a| a.parse::<u32>().ok()) else {
        eprintln!("usage: pidcap-ebpf-test-child PID");
        return ExitCode::from(2);
    };
    let run = || -> Result<Capture, pidcap_engine::EngineError> {
        let backend = EbpfBackend::load(LoadOptions::with_ring(1 << 20))?;
        let mut cap = Capture::new(Box::new(backend), CaptureOptions { tls: true, ..CaptureOptions::default() })?;
        cap.add_pid(pid)?;
        Ok(cap)
    };
    let mut cap = match run() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pidcap-ebpf-test-child: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cap.tls_coverage() {
        Ok(c) if c.iter().any(|t| !t.libraries.is_empty()) => {}
        other => {
            eprintln!("pidcap-ebpf-test-child: pid {pid} has no covered TLS library: {other:?}");
            return ExitCode::FAILURE;
        }
    }
    println!("ready");
    let _ = std::io::stdout().flush();
    // EOF (or an error): whoever started us is gone.
    let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
    ExitCode::SUCCESS
}
