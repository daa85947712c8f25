//! The UI's state machine, without a browser: actions in, state and effects out.

use pidcap_api::protocol::FilterInfo;
use pidcap_engine::rules::{Action as RuleAction, Rule};
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_ui::state::{update, Action, App, Effect, ResendMode, SendStatusView, SummaryView, Tab, VISIBLE_ROWS};

fn udp(id: u64, port: u16, dir: Direction, payload: &[u8]) -> CapturedPacket {
    let mut data = Vec::new();
    etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [127, 0, 0, 2], 64)
        .udp(40000, port)
        .write(&mut data, payload)
        .unwrap();
    let len = data.len() as u32;
    CapturedPacket::new(
        id,
        1_700_000_000_000_000_000 + id * 1_000_000,
        42,
        "target".into(),
        7,
        dir,
        Verdict::Pass,
        len,
        data,
    )
}

fn tcp(id: u64, port: u16) -> CapturedPacket {
    let mut data = Vec::new();
    etherparse::PacketBuilder::ipv4([127, 0, 0, 1], [10, 0, 0, 9], 64)
        .tcp(40000, port, 1, 100)
        .write(&mut data, b"GET /")
        .unwrap();
    let len = data.len() as u32;
    CapturedPacket::new(
        id,
        1_700_000_000_000_000_000 + id * 1_000_000,
        42,
        "target".into(),
        7,
        Direction::Outbound,
        Verdict::Pass,
        len,
        data,
    )
}

#[test]
fn init_asks_for_everything() {
    let mut app = App::new();
    let fx = update(&mut app, Action::Init);
    assert!(fx.contains(&Effect::GetState));
    assert!(fx.contains(&Effect::ListProcesses));
    assert!(fx.iter().any(|e| matches!(e, Effect::LibraryQuery { .. })));
}

#[test]
fn capture_needs_a_process_and_starts_with_the_picked_ones() {
    let mut app = App::new();
    assert!(update(&mut app, Action::StartCapture).is_empty());
    assert!(app.notices.last().unwrap().text.contains("Pick at least one process"));
    update(&mut app, Action::ToggleProc(10));
    update(&mut app, Action::ToggleProc(20));
    update(&mut app, Action::ToggleProc(10));
    update(&mut app, Action::SetFollowChildren(true));
    assert_eq!(
        update(&mut app, Action::StartCapture),
        vec![Effect::StartCapture { pids: vec![20], follow_children: true }]
    );
    update(&mut app, Action::CaptureStarted { targets: vec![20] });
    assert!(app.running);
    assert_eq!(app.tab, Tab::Capture);
    // Run a command: empty is refused, otherwise follows children.
    assert!(update(&mut app, Action::RunCommand).is_empty());
    update(&mut app, Action::SetRunCommand("  curl x ".into()));
    assert_eq!(
        update(&mut app, Action::RunCommand),
        vec![Effect::RunCommand { command: "curl x".into(), follow_children: true }]
    );
}

#[test]
fn packets_arrive_filter_scroll_and_evict() {
    let mut app = App::new();
    app.capacity = 100;
    let packets: Vec<_> =
        (1..=150).map(|i| if i % 2 == 0 { tcp(i, 80) } else { udp(i, 53, Direction::Inbound, b"dns") }).collect();
    update(&mut app, Action::Packets(packets));
    assert_eq!(app.packets.len(), 100, "the ring keeps the newest");
    assert_eq!(app.packets.front().unwrap().id, 51);
    assert_eq!(app.shown.len(), 100);
    // Auto-scroll follows the newest.
    assert_eq!(app.scroll, 100 - VISIBLE_ROWS);
    assert_eq!(app.visible_rows().last().unwrap().1.id, 150);
    assert_eq!(app.visible_rows().len(), VISIBLE_ROWS);
    // Display filter.
    update(&mut app, Action::SetDisplayFilter("tcp port:80".into()));
    assert_eq!(app.shown.len(), 50);
    assert!(app.shown.iter().all(|id| id % 2 == 0));
    update(&mut app, Action::SetDisplayFilter("port:99999".into()));
    assert!(app.filter_error.is_some());
    assert_eq!(app.shown.len(), 50, "a bad filter keeps the last good one");
    update(&mut app, Action::SetDisplayFilter("".into()));
    assert_eq!(app.shown.len(), 100);
    // Scrolling up stops auto-scroll; new packets then do not move the view.
    update(&mut app, Action::Scroll(-10));
    assert!(!app.autoscroll);
    let at = app.scroll;
    update(&mut app, Action::Packets(vec![tcp(151, 80)]));
    assert_eq!(app.scroll, at - 1, "the view stays on the same packets when the oldest is evicted");
    update(&mut app, Action::ScrollTo(usize::MAX));
    assert!(app.autoscroll);
    update(&mut app, Action::ToggleAutoscroll);
    assert!(!app.autoscroll);
    // Duplicates (backlog overlap) are ignored.
    update(&mut app, Action::Packets(vec![tcp(120, 80)]));
    assert_eq!(app.packets.back().unwrap().id, 151);
    // Chart buckets by second.
    assert!(app.rate.series().iter().map(|(i, o)| i + o).sum::<u32>() > 0);
    // Clear.
    assert_eq!(update(&mut app, Action::ClearBuffer), vec![Effect::ClearBuffer]);
    assert!(app.packets.is_empty() && app.shown.is_empty());
}

#[test]
fn select_edit_and_resend() {
    let mut app = App::new();
    update(
        &mut app,
        Action::Packets(vec![udp(1, 9000, Direction::Outbound, b"hello"), udp(2, 9000, Direction::Outbound, b"x")]),
    );
    // Nothing picked: resend refuses.
    assert!(update(&mut app, Action::StartResend).is_empty());
    assert!(app.resend.error.is_some());
    update(&mut app, Action::SelectPacket { id: 1, extend: false });
    update(&mut app, Action::OpenEditor);
    assert_eq!(app.editor.as_ref().unwrap().hex_text, "68 65 6c 6c 6f");
    update(&mut app, Action::EditAscii("HELLO".into()));
    assert_eq!(app.editor.as_ref().unwrap().hex_text, "48 45 4c 4c 4f");
    update(&mut app, Action::EditHex("48 49 zz".into()));
    assert!(app.editor.as_ref().unwrap().hex_error.is_some());
    assert!(update(&mut app, Action::StartResend).is_empty(), "invalid hex is never sent");
    update(&mut app, Action::EditHex("48 49".into()));
    update(&mut app, Action::SetResendMode(ResendMode::Connect));
    update(&mut app, Action::SetResendCount("x".into()));
    assert!(update(&mut app, Action::StartResend).is_empty());
    update(&mut app, Action::SetResendCount("3".into()));
    update(&mut app, Action::SetResendInterval("50".into()));
    let fx = update(&mut app, Action::StartResend);
    let [Effect::Inject(req)] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(
        (req.packet, req.data_hex.as_str(), req.mode, req.count, req.interval_ms),
        (Some(1), "4849", ResendMode::Connect, 3, 50)
    );
    assert!(app.resend.running());
    let job = serde_json::from_str(r#"{"id":5,"state":"running","mode":"connect","proto":"udp","sent":0,"extra":1}"#)
        .unwrap();
    update(&mut app, Action::JobStarted(job));
    for seq in 1..=3 {
        update(
            &mut app,
            Action::SendStatus { job: 5, status: SendStatusView { seq, ok: true, bytes: 2, ..Default::default() } },
        );
    }
    update(&mut app, Action::SendStatus { job: 99, status: SendStatusView::default() });
    assert_eq!(app.resend.statuses.len(), 3);
    assert_eq!(update(&mut app, Action::StopResend), vec![Effect::StopJob(5)]);
    update(
        &mut app,
        Action::JobDone {
            job: 5,
            summary: SummaryView { sent: 3, failed: 0, bytes: 6, duration_ms: 100, reason: "done".into() },
        },
    );
    assert!(!app.resend.running());
    assert_eq!(app.resend.job.as_ref().unwrap().sent, 3);
    // A daemon refusal is shown on the resend panel.
    update(&mut app, Action::Failed { what: "resend".into(), error: "that process is gone".into() });
    assert_eq!(app.resend.error.as_deref(), Some("that process is gone"));
}

#[test]
fn rules_form_builds_checked_specs() {
    let mut app = App::new();
    assert_eq!(update(&mut app, Action::AddRule), vec![Effect::AddFilter { spec: "block:any".into() }]);
    update(&mut app, Action::SetRuleProtocol("tcp".into()));
    update(&mut app, Action::SetRulePort("8080".into()));
    update(&mut app, Action::SetRuleDirection("out".into()));
    update(&mut app, Action::SetRuleAddress("10.1.2.3/8".into()));
    assert_eq!(
        update(&mut app, Action::AddRule),
        vec![Effect::AddFilter { spec: "block:out:tcp:10.1.2.3/8:8080".into() }]
    );
    update(&mut app, Action::SetRuleAddress("::1".into()));
    update(&mut app, Action::SetRuleAction(RuleAction::Allow));
    assert_eq!(update(&mut app, Action::AddRule), vec![Effect::AddFilter { spec: "allow:out:tcp:[::1]:8080".into() }]);
    update(&mut app, Action::SetRulePort("70000".into()));
    assert!(update(&mut app, Action::AddRule).is_empty());
    assert!(app.rule_form.error.as_deref().unwrap().contains("70000"));
    update(&mut app, Action::SetRulePort("".into()));
    update(&mut app, Action::SetRuleAddress("10.0.0.300".into()));
    assert!(update(&mut app, Action::AddRule).is_empty(), "the engine's parser rejects it before the daemon");
    // The daemon's list replaces ours; toggles and removal go to the daemon.
    let rule = Rule::parse_spec("tcp:443", RuleAction::Block).unwrap();
    update(&mut app, Action::FiltersChanged(vec![FilterInfo { id: 3, index: 0, spec: rule.spec(), rule, hits: 12 }]));
    assert_eq!(app.filters[0].hits, 12);
    assert_eq!(update(&mut app, Action::SetRuleEnabled(3, false)), vec![Effect::SetFilterEnabled(3, false)]);
    assert_eq!(update(&mut app, Action::RemoveRule(3)), vec![Effect::RemoveFilter(3)]);
    assert_eq!(update(&mut app, Action::ClearRules), vec![Effect::ClearFilters]);
    update(&mut app, Action::Failed { what: "add the rule".into(), error: "the rule was rejected: bad".into() });
    assert!(app.rule_form.error.as_deref().unwrap().contains("rejected"));
}

#[test]
fn library_save_search_edit_export() {
    let mut app = App::new();
    update(
        &mut app,
        Action::Packets(vec![udp(1, 9000, Direction::Outbound, b"hello"), udp(2, 9000, Direction::Inbound, b"world")]),
    );
    assert!(update(&mut app, Action::SaveSelected).is_empty());
    update(&mut app, Action::SelectPacket { id: 1, extend: false });
    update(&mut app, Action::SelectPacket { id: 2, extend: true });
    assert!(update(&mut app, Action::SaveSelected).is_empty(), "a name is required");
    update(&mut app, Action::SetSaveName("greeting".into()));
    update(&mut app, Action::SetSaveTags("demo, udp ,".into()));
    let fx = update(&mut app, Action::SaveSelected);
    let [Effect::LibrarySave { packets, name, tags, .. }] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(
        (packets.len(), name.as_str(), tags.clone()),
        (2, "greeting", vec!["demo".to_string(), "udp".to_string()])
    );
    // Saving an edited packet saves the edited bytes.
    update(&mut app, Action::SelectPacket { id: 1, extend: false });
    update(&mut app, Action::OpenEditor);
    update(&mut app, Action::EditAscii("HELLO!".into()));
    update(&mut app, Action::SetSaveName("edited".into()));
    let fx = update(&mut app, Action::SaveSelected);
    let [Effect::LibrarySave { packets, .. }] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(packets[0].payload(), b"HELLO!");
    // Search and tag chips query the library.
    assert_eq!(
        update(&mut app, Action::SetLibQuery("hello".into())),
        vec![Effect::LibraryQuery { query: "hello".into(), tag: None }]
    );
    assert_eq!(
        update(&mut app, Action::SetLibTag(Some("demo".into()))),
        vec![Effect::LibraryQuery { query: "hello".into(), tag: Some("demo".into()) }]
    );
    assert_eq!(
        update(&mut app, Action::SetLibTag(Some("demo".into()))),
        vec![Effect::LibraryQuery { query: "hello".into(), tag: None }]
    );
    // Export with nothing loaded is refused; pcapng export takes the selection.
    assert!(update(&mut app, Action::LibExportDpp).is_empty());
    assert!(matches!(update(&mut app, Action::ExportPcapng).as_slice(), [Effect::ExportPcapng(p)] if p.len() == 1));
}

#[test]
fn errors_become_plain_notices_and_never_a_blank_screen() {
    let mut app = App::new();
    update(&mut app, Action::Disconnected("No pidcap daemon is running".into()));
    assert!(app.daemon_error.is_some());
    update(&mut app, Action::Failed { what: "start the capture".into(), error: "that process is gone".into() });
    assert_eq!(app.notices.last().unwrap().text, "Could not start the capture: that process is gone");
    for i in 0..10 {
        update(&mut app, Action::Failed { what: "x".into(), error: i.to_string() });
    }
    assert_eq!(app.notices.len(), 5, "old notices go");
    let id = app.notices[0].id;
    update(&mut app, Action::DismissNotice(id));
    assert_eq!(app.notices.len(), 4);
    update(&mut app, Action::DaemonConnected);
    assert!(app.daemon_error.is_none());
}

#[test]
fn the_captured_counter_never_lags_the_packets_shown() {
    let mut app = App::new();
    update(&mut app, Action::CaptureStarted { targets: vec![42] });
    update(&mut app, Action::Packets((1..=5).map(|i| udp(i, 53, Direction::Outbound, b"x")).collect()));
    // A counters refresh taken before the last packets arrived.
    let mut stats = app.stats;
    stats.received = 3;
    update(&mut app, Action::Counters { stats, running: true });
    assert_eq!(app.captured_count(), 5);
    // A newer refresh wins.
    stats.received = 9;
    update(&mut app, Action::Counters { stats, running: true });
    assert_eq!(app.captured_count(), 9);
}
