//! The capture: starting it (on the processes ticked, or on a command run for
//! it), stopping it, its targets (with their TLS coverage) and the daemon's
//! counters (the TLS plaintext records' among them).

use super::{App, Effect, Level, Tab};
use pidcap_api::protocol::{Started, TargetInfo};
use pidcap_engine::CaptureStats;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Capture {
    pub running: bool,
    pub targets: Vec<TargetInfo>,
    /// The daemon's counters (refreshed about once a second).
    pub stats: CaptureStats,
}

/// What happens to the capture.
#[derive(Debug, Clone)]
pub enum CaptureMsg {
    /// Capture the ticked processes.
    Start,
    /// Run the command of the "run a command" box and capture it from its first packet.
    Run,
    Stop,
    /// The daemon started capturing (for [`CaptureMsg::Start`] or [`CaptureMsg::Run`]).
    Started(Started),
    /// The live feed's counters.
    Counters {
        stats: CaptureStats,
        running: bool,
    },
}

/// The TLS libraries the kernel layer looks for, as the coverage notice names them.
pub const TLS_LIBRARIES_LOOKED_FOR: &str = "OpenSSL/LibreSSL/BoringSSL (libssl), GnuTLS, NSS";

/// What the capture view says about one target's TLS traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsNotice {
    pub pid: u32,
    /// Its plaintext is taken (from these libraries) or not (none mapped).
    pub covered: bool,
    pub text: String,
}

impl Capture {
    /// For each live target whose coverage the daemon reports: which TLS
    /// library its plaintext comes from, or that it maps none (its TLS
    /// traffic is then seen encrypted only).
    pub fn tls_notices(&self) -> Vec<TlsNotice> {
        self.targets
            .iter()
            .filter(|t| t.alive)
            .filter_map(|t| {
                let libs = t.tls.as_ref()?;
                let who = match &t.comm {
                    Some(c) => format!("pid {} ({c})", t.pid),
                    None => format!("pid {}", t.pid),
                };
                Some(if libs.is_empty() {
                    TlsNotice {
                        pid: t.pid,
                        covered: false,
                        text: format!(
                            "{who} maps no supported TLS library: its TLS traffic is encrypted only \
                             (looked for {TLS_LIBRARIES_LOOKED_FOR})"
                        ),
                    }
                } else {
                    let names: Vec<String> =
                        libs.iter().map(|l| format!("{} ({})", l.library, l.path.display())).collect();
                    TlsNotice {
                        pid: t.pid,
                        covered: true,
                        text: format!("{who}: TLS plaintext taken from {}", names.join(", ")),
                    }
                })
            })
            .collect()
    }

    pub(super) fn apply_state(&mut self, running: bool, targets: Vec<TargetInfo>, stats: CaptureStats) {
        self.running = running;
        self.targets = targets;
        self.stats = stats;
    }
}

pub(super) fn update(app: &mut App, msg: CaptureMsg) -> Vec<Effect> {
    let mut fx = Vec::new();
    match msg {
        CaptureMsg::Start => {
            let procs = &app.processes;
            if procs.selected.is_empty() {
                app.notify(Level::Error, "Pick at least one process to capture (tick it in the list).");
            } else {
                fx.push(Effect::StartCapture {
                    pids: procs.selected.iter().copied().collect(),
                    follow_children: procs.follow_children,
                });
            }
        }
        CaptureMsg::Run => {
            let command = app.processes.run_command.trim().to_string();
            if command.is_empty() {
                app.notify(Level::Error, "Type a command to run first.");
            } else {
                fx.push(Effect::RunCommand { command, follow_children: true });
            }
        }
        CaptureMsg::Stop => fx.push(Effect::StopCapture),
        CaptureMsg::Started(started) => {
            app.capture.running = true;
            app.packets.restart();
            app.tab = Tab::Capture;
            let list = started.targets.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            app.notify(Level::Info, format!("Capturing process {list}."));
            fx.push(Effect::GetState);
        }
        CaptureMsg::Counters { stats, running } => {
            app.capture.stats = stats;
            app.capture.running = running;
        }
    }
    fx
}
