//! The pidcap UI (Dioxus).
//!
//! - [`state`]: the state machine, split by area (processes, capture,
//!   packets, editor, resend, rules, library): [`state::App`], one message
//!   enum per area in [`state::Msg`], [`state::update`] → [`state::Effect`]s.
//!   Plain Rust, unit-tested.
//! - [`editor`]: the payload editor's hex and escaped-ASCII views (the display
//!   filter is `pidcap_packet::dfilter`);
//!   [`procs`]: the process list;
//!   [`error`]: what failed ([`error::Task`]) and why ([`error::Problem`]).
//! - [`view`]: the components; they render an `App` and dispatch messages.
//! - [`runner`]: runs effects (the daemon through `pidcap_api::Client`, the
//!   library in SQLite) and the live feed, whose protocol events come back as
//!   messages.
//! - [`server`]: `pidcap ui`: axum + Dioxus liveview on loopback, guarded by
//!   an access token (query once, then an HttpOnly SameSite=Strict cookie),
//!   the Host header and the Origin of websockets and POSTs.
//! - `desktop` (cargo feature): the same components in a native window.

pub mod editor;
pub mod error;
pub mod procs;
pub mod runner;
pub mod server;
pub mod state;
pub mod view;

pub use server::{start, Running, ServeConfig};

/// Open the UI in a native window (system webview); blocks until it closes.
#[cfg(feature = "desktop")]
pub fn run_desktop(socket: std::path::PathBuf, library: std::path::PathBuf) {
    let (imports, _) = tokio::sync::broadcast::channel(16);
    let ctx = runner::Context { socket, library, downloads: runner::Downloads::default(), imports };
    dioxus::LaunchBuilder::desktop().with_context(ctx.clone()).launch(desktop_root);
}

#[cfg(feature = "desktop")]
fn desktop_root() -> dioxus::prelude::Element {
    use dioxus::prelude::*;
    let ctx: runner::Context = use_context();
    rsx! {
        style { {include_str!("style.css")} }
        view::Root { ctx }
    }
}
