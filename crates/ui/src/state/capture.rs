//! The capture: starting it (on the processes ticked and shown, or on a
//! command run for it), stopping it, its targets (with their TLS coverage)
//! and the daemon's counters (the TLS plaintext records' among them).
//!
//! A new capture resets what belonged to the old one's packets: the display
//! filter is emptied and the editor of an old packet closed (an editor opened
//! on a library entry stays), and a notice says what was reset. When a
//! capture ends with rules in the daemon, the rules area offers to clear them
//! (kernel rules outlive the capture).

use super::{packets, App, EditorMsg, Effect, Level, PacketsMsg, Tab, While};
use pidcap_api::protocol::{Started, TargetInfo};
use pidcap_engine::CaptureStats;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Capture {
    pub running: bool,
    pub targets: Vec<TargetInfo>,
    /// The daemon's counters (refreshed about once a second).
    pub stats: CaptureStats,
    // -- workflow (issue 14) --
    /// The daemon's number of the newest capture this UI knows of: a state
    /// from before it (an answer overtaken by a start) is ignored.
    pub session: u64,
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
            let pids = procs.to_capture();
            if pids.is_empty() {
                app.notify_while(
                    Level::Error,
                    "Pick at least one process to capture (tick it in the list).",
                    While::NoProcessPicked,
                );
            } else {
                fx.push(Effect::StartCapture { pids, follow_children: procs.follow_children });
            }
        }
        CaptureMsg::Run => {
            let command = app.processes.run_command.trim().to_string();
            if command.is_empty() {
                app.notify_while(Level::Error, "Type a command to run first.", While::NoCommand);
            } else {
                fx.push(Effect::RunCommand { command, follow_children: true });
            }
        }
        CaptureMsg::Stop => fx.push(Effect::StopCapture),
        CaptureMsg::Started(started) => {
            app.capture.running = true;
            app.capture.session = app.capture.session.max(started.session);
            app.packets.restart();
            app.tab = Tab::Capture;
            let list = started.targets.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", ");
            let s = if started.targets.len() == 1 { "" } else { "es" };
            app.notify_while(Level::Info, format!("Capturing process{s} {list}."), While::Capturing);
            reset_for_new_capture(app);
            app.rules.offer_clear = false;
            fx.push(Effect::GetState);
        }
        CaptureMsg::Counters { stats, running } => {
            let was_running = app.capture.running;
            app.capture.stats = stats;
            app.capture.running = running;
            if was_running && !running {
                ended(app);
            }
        }
    }
    fx
}

/// A new capture: the display filter and the editor of an old packet belonged
/// to the old capture; reset them, and say so.
fn reset_for_new_capture(app: &mut App) {
    let mut reset = Vec::new();
    if !app.packets.filter_text.is_empty() {
        reset.push(format!("the display filter \"{}\" was cleared", app.packets.filter_text));
        packets::update(app, PacketsMsg::SetFilter(String::new()));
    }
    // The editor's state is helper R's (state/editor.rs): closed through its message.
    if let Some(id) = app.editor.as_ref().map(|e| e.packet_id).filter(|id| *id != 0) {
        reset.push(format!("the editor of packet #{id} was closed"));
        super::editor::update(app, EditorMsg::Close);
    }
    if !reset.is_empty() {
        app.notify(Level::Info, format!("New capture: {}.", reset.join(", ")));
    }
}

/// The capture has ended: rules still in the daemon are offered for clearing.
pub(super) fn ended(app: &mut App) {
    if !app.rules.filters.is_empty() {
        app.rules.offer_clear = true;
    }
}
