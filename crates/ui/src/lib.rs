//! The pidcap UI (Dioxus).
//!
//! - [`state`]: the state machine: [`state::App`], [`state::Action`],
//!   [`state::update`] → [`state::Effect`]s. Plain Rust, unit-tested.
//! - [`view`]: the components; they render an `App` and dispatch actions.
//! - [`runner`]: runs effects (daemon over its socket, library in SQLite) and
//!   the live packet feed, feeding results back as actions.
//! - [`server`]: `pidcap ui`: axum + Dioxus liveview on loopback, guarded by
//!   an access token (query once, then an HttpOnly SameSite=Strict cookie),
//!   the Host header and the Origin of websockets and POSTs.
//! - `desktop` (cargo feature): the same components in a native window.

pub mod editor;
pub mod error;
pub mod filter;
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
