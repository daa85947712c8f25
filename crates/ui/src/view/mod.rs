//! The Dioxus components. They only render an [`App`] and dispatch
//! [`Msg`]s; [`Root`] owns the state, the message loop and the runner.
//!
//! Every form field also carries the value the state machine holds as
//! `data-value` (the library list: the query it answers as `data-query`),
//! so that a test can wait for what it typed to have arrived.

use crate::editor::format_hex;
use crate::runner::{spawn_feed, Context, Runner};
use crate::state::{
    update, App, AppMsg, CaptureMsg, EditorMsg, Level, LibraryMsg, Msg, PacketsMsg, ProcessesMsg, ResendMsg, RulesMsg,
    Tab, VISIBLE_ROWS,
};
use dioxus::prelude::*;
use pidcap_engine::rules::Action as RuleAction;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_resend::Mode;

mod capture;
mod edit;
mod library;
mod packets;
mod processes;
pub mod rowline;
mod rules;
use capture::*;
use edit::*;
use library::*;
use packets::*;
use processes::*;
use rules::*;
// -- conversations and follow (issue 14) --
mod conversations;
mod follow;
use conversations::conversations_tab;
use follow::follow_bar;

/// Dispatches a message of any area.
#[derive(Clone, Copy)]
struct D(Callback<Msg>);

impl D {
    fn call(&self, m: impl Into<Msg>) {
        self.0.call(m.into())
    }
}

#[derive(Props, Clone)]
pub struct RootProps {
    pub ctx: Context,
}

impl PartialEq for RootProps {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

/// The whole UI, one per browser tab (or window).
#[allow(non_snake_case)]
pub fn Root(props: RootProps) -> Element {
    let mut app = use_signal(App::new);
    let ctx = props.ctx.clone();
    let (tx, rx) = use_hook(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Msg>();
        let _ = tx.send(AppMsg::Init.into());
        (tx, std::rc::Rc::new(std::cell::RefCell::new(Some(rx))))
    });
    let d = D(use_callback({
        let tx = tx.clone();
        move |m: Msg| {
            let _ = tx.send(m);
        }
    }));
    // The message loop: apply messages in batches (consecutive packets as one), hand effects to the runner thread.
    use_future({
        let (ctx, tx) = (ctx.clone(), tx.clone());
        move || {
            let rx = rx.borrow_mut().take();
            let (ctx, tx) = (ctx.clone(), tx.clone());
            async move {
                let Some(mut rx) = rx else { return };
                let runner = Runner::new(ctx.clone(), tx.clone());
                let (etx, erx) = std::sync::mpsc::channel::<crate::state::Effect>();
                std::thread::Builder::new()
                    .name("pidcap-ui-effects".into())
                    .spawn(move || {
                        while let Ok(e) = erx.recv() {
                            runner.run(e);
                        }
                    })
                    .ok();
                spawn_feed(ctx.clone(), tx.clone());
                while let Some(first) = rx.recv().await {
                    let mut batch = vec![first];
                    while let Ok(a) = rx.try_recv() {
                        batch.push(a);
                        if batch.len() >= 20_000 {
                            break;
                        }
                    }
                    let mut effects = Vec::new();
                    {
                        let mut st = app.write();
                        let mut packets = Vec::new();
                        for m in batch {
                            match m {
                                Msg::Packets(PacketsMsg::Arrived(p)) => packets.extend(p),
                                other => {
                                    if !packets.is_empty() {
                                        let arrived = PacketsMsg::Arrived(std::mem::take(&mut packets));
                                        effects.extend(update(&mut st, arrived));
                                    }
                                    effects.extend(update(&mut st, other));
                                }
                            }
                        }
                        if !packets.is_empty() {
                            effects.extend(update(&mut st, PacketsMsg::Arrived(packets)));
                        }
                    }
                    for e in effects {
                        let _ = etx.send(e);
                    }
                }
            }
        }
    });
    // Once a second: the chart moves on, counters and rule hits refresh.
    use_future({
        let tx = tx.clone();
        move || {
            let tx = tx.clone();
            async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    if tx.send(AppMsg::Tick { now_ns: now_ns() }.into()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    // Imports made through the upload route.
    use_future({
        let (ctx, tx) = (ctx.clone(), tx.clone());
        move || {
            let mut sub = ctx.imports.subscribe();
            let tx = tx.clone();
            async move {
                while let Ok(msg) = sub.recv().await {
                    let _ = tx.send(LibraryMsg::Imported(msg).into());
                }
            }
        }
    });

    let app = app.read();
    rsx! {
        {header(&app, d)}
        if let Some(e) = &app.daemon_error {
            div { class: "banner", id: "daemon-error", "⚠ {e}" }
        }
        // -- notices (issue 14) --
        // In the page's flow, under the header: they take their own space and never cover a control.
        div { class: "notices", id: "notices",
            for n in app.notices.iter() {
                div {
                    key: "{n.id}",
                    class: if n.level == Level::Error { "notice error" } else { "notice info" },
                    "data-notice": "{n.id}",
                    span { class: "notice-text", "{n.text}" }
                    button { class: "notice-close", title: "dismiss", onclick: { let id = n.id; move |_| d.call(AppMsg::DismissNotice(id)) }, "✕" }
                }
            }
        }
        {rules_after_capture(&app, d)}
        // -- end notices --
        main {
            match app.tab {
                Tab::Processes => processes_tab(&app, d),
                // -- conversations and follow (issue 14) --: the bar above the list follows the packet shown
                Tab::Capture => rsx! { {follow_bar(&app, d)} {capture_tab(&app, d)} },
                Tab::Filters => filters_tab(&app, d),
                Tab::Library => library_tab(&app, d),
                // -- conversations and follow (issue 14) --
                Tab::Conversations => conversations_tab(&app, d),
            }
        }
    }
}

fn header(app: &App, d: D) -> Element {
    let tabs = [
        (Tab::Processes, "Processes"),
        (Tab::Capture, "Capture"),
        // -- conversations and follow (issue 14) --
        (Tab::Conversations, "Conversations"),
        (Tab::Filters, "Filters"),
        (Tab::Library, "Library"),
    ];
    let status = if app.capture.running {
        let t: Vec<String> = app
            .capture
            .targets
            .iter()
            .filter(|t| t.alive)
            .map(|t| format!("{} {}", t.pid, t.comm.clone().unwrap_or_default()))
            .collect();
        format!("● capturing {} — {} packets", t.join(", "), app.captured_count())
    } else {
        "○ idle".to_string()
    };
    rsx! {
        header {
            h1 { "pidcap" }
            nav {
                for (t, name) in tabs {
                    button {
                        id: "tab-{name.to_lowercase()}",
                        class: if app.tab == t { "active" } else { "" },
                        onclick: move |_| d.call(AppMsg::SetTab(t)),
                        "{name}"
                    }
                }
            }
            span { class: "status", id: "status", "{status}" }
        }
    }
}

pub(super) fn fmt_time(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let (h, m, sec) = ((s / 3600) % 24, (s / 60) % 60, s % 60);
    format!("{h:02}:{m:02}:{sec:02}.{:06}", (ns / 1000) % 1_000_000)
}

pub(super) fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
        a => format!("{a}:{port}"),
    }
}
