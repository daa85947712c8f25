//! The UI's state machine, without a browser: messages in, state and effects out.

use pidcap_api::protocol::{ApiError, ErrorCode, FilterInfo, SendStatus, Started, Summary};
use pidcap_api::ClientError;
use pidcap_engine::rules::{Action as RuleAction, Rule};
use pidcap_packet::build::{build, flags, TcpFields, Transport};
use pidcap_packet::{CapturedPacket, Direction, TlsInfo, TlsLibrary, TlsRecord, Verdict};
use pidcap_resend::{EndReason, Mode, TlsOptions};
use pidcap_ui::error::{Problem, Task};
use pidcap_ui::state::{
    update, App, AppMsg, CaptureMsg, EditorMsg, Effect, LibraryMsg, PacketsMsg, ProcessesMsg, ResendMsg, RulesMsg, Tab,
    VISIBLE_ROWS,
};
use std::sync::Arc;

/// A captured packet from 127.0.0.1:40000 to `dst` (built by pidcap_packet::build).
fn packet(id: u64, dst: &str, transport: Transport, dir: Direction, payload: &[u8]) -> CapturedPacket {
    let data = build("127.0.0.1:40000".parse().unwrap(), dst.parse().unwrap(), 64, transport, payload).unwrap();
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

fn udp(id: u64, port: u16, dir: Direction, payload: &[u8]) -> CapturedPacket {
    packet(id, &format!("127.0.0.2:{port}"), Transport::Udp, dir, payload)
}

fn tcp_with(id: u64, port: u16, payload: &[u8]) -> CapturedPacket {
    let fields = TcpFields { seq: 1, ack: 0, flags: flags::PSH, window: 100 };
    packet(id, &format!("10.0.0.9:{port}"), Transport::Tcp(fields), Direction::Outbound, payload)
}

fn tcp(id: u64, port: u16) -> CapturedPacket {
    tcp_with(id, port, b"GET /")
}

/// Packets as the live feed hands them over.
fn arrived(packets: Vec<CapturedPacket>) -> PacketsMsg {
    PacketsMsg::Arrived(packets.into_iter().map(Arc::new).collect())
}

fn started(targets: Vec<u32>) -> CaptureMsg {
    CaptureMsg::Started(Started { session: 1, first_id: 1, targets })
}

/// A daemon refusal: "that process is gone (pid 5)" in plain words.
fn process_gone() -> Problem {
    Problem::from(ClientError::Api(ApiError::new(ErrorCode::NoSuchProcess, "pid 5")))
}

#[test]
fn init_asks_for_everything() {
    let mut app = App::new();
    let fx = update(&mut app, AppMsg::Init);
    assert!(fx.contains(&Effect::GetState));
    assert!(fx.contains(&Effect::ListProcesses));
    assert!(fx.iter().any(|e| matches!(e, Effect::LibraryQuery { .. })));
}

#[test]
fn capture_needs_a_process_and_starts_with_the_picked_ones() {
    let mut app = App::new();
    assert!(update(&mut app, CaptureMsg::Start).is_empty());
    assert!(app.notices.last().unwrap().text.contains("Pick at least one process"));
    update(&mut app, ProcessesMsg::Toggle(10));
    update(&mut app, ProcessesMsg::Toggle(20));
    update(&mut app, ProcessesMsg::Toggle(10));
    update(&mut app, ProcessesMsg::SetFollowChildren(true));
    assert_eq!(
        update(&mut app, CaptureMsg::Start),
        vec![Effect::StartCapture { pids: vec![20], follow_children: true }]
    );
    update(&mut app, started(vec![20]));
    assert!(app.capture.running);
    assert_eq!(app.tab, Tab::Capture);
    // Run a command: empty is refused, otherwise follows children.
    assert!(update(&mut app, CaptureMsg::Run).is_empty());
    update(&mut app, ProcessesMsg::SetRunCommand("  curl x ".into()));
    assert_eq!(
        update(&mut app, CaptureMsg::Run),
        vec![Effect::RunCommand { command: "curl x".into(), follow_children: true }]
    );
}

#[test]
fn packets_arrive_filter_scroll_and_evict() {
    let mut app = App::new();
    app.packets.capacity = 100;
    let packets: Vec<_> =
        (1..=150).map(|i| if i % 2 == 0 { tcp(i, 80) } else { udp(i, 53, Direction::Inbound, b"dns") }).collect();
    update(&mut app, arrived(packets));
    let p = &app.packets;
    assert_eq!(p.held.len(), 100, "the ring keeps the newest");
    assert_eq!(p.held.front().unwrap().id, 51);
    assert_eq!(p.shown.len(), 100);
    // Auto-scroll follows the newest.
    assert_eq!(p.scroll, 100 - VISIBLE_ROWS);
    assert_eq!(p.visible_rows().last().unwrap().1.id, 150);
    assert_eq!(p.visible_rows().len(), VISIBLE_ROWS);
    // Display filter.
    update(&mut app, PacketsMsg::SetFilter("tcp port:80".into()));
    assert_eq!(app.packets.shown.len(), 50);
    assert!(app.packets.shown.iter().all(|id| id % 2 == 0));
    update(&mut app, PacketsMsg::SetFilter("port:99999".into()));
    assert!(app.packets.filter_error.is_some());
    assert_eq!(app.packets.shown.len(), 50, "a bad filter keeps the last good one");
    update(&mut app, PacketsMsg::SetFilter("".into()));
    assert_eq!(app.packets.shown.len(), 100);
    // Scrolling up stops auto-scroll; new packets then do not move the view.
    update(&mut app, PacketsMsg::Scroll(-10));
    assert!(!app.packets.autoscroll);
    let at = app.packets.scroll;
    update(&mut app, arrived(vec![tcp(151, 80)]));
    assert_eq!(app.packets.scroll, at - 1, "the view stays on the same packets when the oldest is evicted");
    update(&mut app, PacketsMsg::ScrollTo(usize::MAX));
    assert!(app.packets.autoscroll);
    update(&mut app, PacketsMsg::ToggleAutoscroll);
    assert!(!app.packets.autoscroll);
    // Duplicates (backlog overlap) are ignored.
    update(&mut app, arrived(vec![tcp(120, 80)]));
    assert_eq!(app.packets.held.back().unwrap().id, 151);
    // Chart buckets by second.
    assert!(app.packets.rate.series().iter().map(|(i, o)| i + o).sum::<u32>() > 0);
    // Clear.
    assert_eq!(update(&mut app, PacketsMsg::Clear), vec![Effect::ClearBuffer]);
    assert!(app.packets.held.is_empty() && app.packets.shown.is_empty());
}

#[test]
fn select_edit_and_resend() {
    let mut app = App::new();
    update(
        &mut app,
        arrived(vec![udp(1, 9000, Direction::Outbound, b"hello"), udp(2, 9000, Direction::Outbound, b"x")]),
    );
    // Nothing picked: resend refuses.
    assert!(update(&mut app, ResendMsg::Start).is_empty());
    assert!(app.resend.error.is_some());
    update(&mut app, PacketsMsg::Select { id: 1, extend: false });
    update(&mut app, EditorMsg::Open);
    assert_eq!(app.editor.as_ref().unwrap().hex_text, "68 65 6c 6c 6f");
    update(&mut app, EditorMsg::Ascii("HELLO".into()));
    assert_eq!(app.editor.as_ref().unwrap().hex_text, "48 45 4c 4c 4f");
    update(&mut app, EditorMsg::Hex("48 49 zz".into()));
    assert!(app.editor.as_ref().unwrap().hex_error.is_some());
    assert!(update(&mut app, ResendMsg::Start).is_empty(), "invalid hex is never sent");
    update(&mut app, EditorMsg::Hex("48 49".into()));
    update(&mut app, ResendMsg::SetMode(Mode::Connect));
    update(&mut app, ResendMsg::SetCount("x".into()));
    assert!(update(&mut app, ResendMsg::Start).is_empty());
    update(&mut app, ResendMsg::SetCount("3".into()));
    update(&mut app, ResendMsg::SetInterval("50".into()));
    let fx = update(&mut app, ResendMsg::Start);
    let [Effect::Inject(req)] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(
        (req.packet, req.data.as_deref(), req.mode, req.count, req.interval_ms),
        (Some(1), Some("4849"), Some(Mode::Connect), Some(3), Some(50))
    );
    assert_eq!(req.tls, None, "a packet's connect mode is plain unless asked");
    assert!(app.resend.running());
    // The job as the daemon reports it (`inject`'s reply).
    let job: pidcap_api::protocol::JobInfo = serde_json::from_value(serde_json::json!({
        "id": 5, "state": "running", "mode": "connect", "proto": "udp", "local": "127.0.0.1:40000",
        "remote": "127.0.0.2:9000", "pid": 42, "payload_len": 2, "count": 3, "forever": false,
        "interval_ms": 50, "sent": 0, "failed": 0, "bytes": 0, "started_ns": 1, "last": null, "summary": null
    }))
    .unwrap();
    update(&mut app, ResendMsg::Job(Box::new(job)));
    let status = |seq| SendStatus {
        seq,
        ok: true,
        bytes: 2,
        time_ns: 0,
        elapsed_us: 0,
        error: None,
        error_kind: None,
        reply: None,
    };
    for seq in 1..=3 {
        update(&mut app, ResendMsg::Status { job: 5, status: status(seq) });
    }
    update(&mut app, ResendMsg::Status { job: 99, status: status(1) });
    assert_eq!(app.resend.statuses.len(), 3);
    assert_eq!(update(&mut app, ResendMsg::Stop), vec![Effect::StopJob(5)]);
    update(
        &mut app,
        ResendMsg::Done {
            job: 5,
            summary: Summary { sent: 3, failed: 0, bytes: 6, duration_ms: 100, reason: EndReason::Done },
        },
    );
    assert!(!app.resend.running());
    assert_eq!(app.resend.job.as_ref().unwrap().sent, 3);
    // A daemon refusal is shown on the resend panel.
    update(&mut app, AppMsg::Failed { task: Task::Resend, error: process_gone() });
    assert_eq!(app.resend.error.as_deref(), Some("that process is gone (pid 5)"));
}

#[test]
fn rules_form_builds_checked_specs() {
    let mut app = App::new();
    assert_eq!(update(&mut app, RulesMsg::Add), vec![Effect::AddFilter { spec: "block:any".into() }]);
    update(&mut app, RulesMsg::SetProtocol("tcp".into()));
    update(&mut app, RulesMsg::SetPort("8080".into()));
    update(&mut app, RulesMsg::SetDirection("out".into()));
    update(&mut app, RulesMsg::SetAddress("10.1.2.3/8".into()));
    assert_eq!(
        update(&mut app, RulesMsg::Add),
        vec![Effect::AddFilter { spec: "block:out:tcp:10.1.2.3/8:8080".into() }]
    );
    update(&mut app, RulesMsg::SetAddress("::1".into()));
    update(&mut app, RulesMsg::SetAction(RuleAction::Allow));
    assert_eq!(update(&mut app, RulesMsg::Add), vec![Effect::AddFilter { spec: "allow:out:tcp:[::1]:8080".into() }]);
    update(&mut app, RulesMsg::SetPort("70000".into()));
    assert!(update(&mut app, RulesMsg::Add).is_empty());
    assert!(app.rules.form.error.as_deref().unwrap().contains("70000"));
    update(&mut app, RulesMsg::SetPort("".into()));
    update(&mut app, RulesMsg::SetAddress("10.0.0.300".into()));
    assert!(update(&mut app, RulesMsg::Add).is_empty(), "the engine's parser rejects it before the daemon");
    // The daemon's list replaces ours; toggles and removal go to the daemon.
    let rule = Rule::parse_spec("tcp:443", RuleAction::Block).unwrap();
    update(&mut app, RulesMsg::Changed(vec![FilterInfo { id: 3, index: 0, spec: rule.spec(), rule, hits: 12 }]));
    assert_eq!(app.rules.filters[0].hits, 12);
    assert_eq!(update(&mut app, RulesMsg::SetEnabled(3, false)), vec![Effect::SetFilterEnabled(3, false)]);
    assert_eq!(update(&mut app, RulesMsg::Remove(3)), vec![Effect::RemoveFilter(3)]);
    assert_eq!(update(&mut app, RulesMsg::Clear), vec![Effect::ClearFilters]);
    let rejected = Problem::from(ClientError::Api(ApiError::new(ErrorCode::InvalidRule, "bad")));
    update(&mut app, AppMsg::Failed { task: Task::AddRule, error: rejected });
    assert!(app.rules.form.error.as_deref().unwrap().contains("rejected"));
}

#[test]
fn library_save_search_edit_export() {
    let mut app = App::new();
    update(
        &mut app,
        arrived(vec![udp(1, 9000, Direction::Outbound, b"hello"), udp(2, 9000, Direction::Inbound, b"world")]),
    );
    assert!(update(&mut app, LibraryMsg::SaveSelected).is_empty());
    update(&mut app, PacketsMsg::Select { id: 1, extend: false });
    update(&mut app, PacketsMsg::Select { id: 2, extend: true });
    assert!(update(&mut app, LibraryMsg::SaveSelected).is_empty(), "a name is required");
    update(&mut app, LibraryMsg::SetSaveName("greeting".into()));
    update(&mut app, LibraryMsg::SetSaveTags("demo, udp ,".into()));
    let fx = update(&mut app, LibraryMsg::SaveSelected);
    let [Effect::LibrarySave { packets, name, tags, .. }] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(
        (packets.len(), name.as_str(), tags.clone()),
        (2, "greeting", vec!["demo".to_string(), "udp".to_string()])
    );
    // Saving an edited packet saves the edited bytes.
    update(&mut app, PacketsMsg::Select { id: 1, extend: false });
    update(&mut app, EditorMsg::Open);
    update(&mut app, EditorMsg::Ascii("HELLO!".into()));
    update(&mut app, LibraryMsg::SetSaveName("edited".into()));
    let fx = update(&mut app, LibraryMsg::SaveSelected);
    let [Effect::LibrarySave { packets, .. }] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(packets[0].payload(), b"HELLO!");
    // Search and tag chips query the library.
    assert_eq!(
        update(&mut app, LibraryMsg::SetQuery("hello".into())),
        vec![Effect::LibraryQuery { query: "hello".into(), tag: None }]
    );
    assert_eq!(
        update(&mut app, LibraryMsg::SetTag(Some("demo".into()))),
        vec![Effect::LibraryQuery { query: "hello".into(), tag: Some("demo".into()) }]
    );
    assert_eq!(
        update(&mut app, LibraryMsg::SetTag(Some("demo".into()))),
        vec![Effect::LibraryQuery { query: "hello".into(), tag: None }]
    );
    // Export with nothing loaded is refused; pcapng export takes the selection.
    assert!(update(&mut app, LibraryMsg::ExportDpp).is_empty());
    assert!(matches!(update(&mut app, PacketsMsg::ExportPcapng).as_slice(), [Effect::ExportPcapng(p)] if p.len() == 1));
}

#[test]
fn errors_become_plain_notices_and_never_a_blank_screen() {
    let mut app = App::new();
    let no_daemon = Problem::from(ClientError::NotRunning("/run/pidcap/pidcap.sock".into()));
    update(&mut app, AppMsg::Disconnected(no_daemon));
    assert!(app.daemon_error.is_some());
    update(&mut app, AppMsg::Failed { task: Task::StartCapture, error: process_gone() });
    assert_eq!(app.notices.last().unwrap().text, "Could not start the capture: that process is gone (pid 5)");
    for _ in 0..10 {
        update(&mut app, AppMsg::Failed { task: Task::ReadLibrary, error: process_gone() });
    }
    assert_eq!(app.notices.len(), 5, "old notices go");
    let id = app.notices[0].id;
    update(&mut app, AppMsg::DismissNotice(id));
    assert_eq!(app.notices.len(), 4);
    update(&mut app, AppMsg::Connected);
    assert!(app.daemon_error.is_none());
}

#[test]
fn the_captured_counter_never_lags_the_packets_shown() {
    let mut app = App::new();
    update(&mut app, started(vec![42]));
    update(&mut app, arrived((1..=5).map(|i| udp(i, 53, Direction::Outbound, b"x")).collect()));
    // A counters refresh taken before the last packets arrived.
    let mut stats = app.capture.stats;
    stats.received = 3;
    update(&mut app, CaptureMsg::Counters { stats, running: true });
    assert_eq!(app.captured_count(), 5);
    // A newer refresh wins.
    stats.received = 9;
    update(&mut app, CaptureMsg::Counters { stats, running: true });
    assert_eq!(app.captured_count(), 9);
}

/// The editor's ASCII pane shows CR and LF as `\r` `\n`: an HTTP request edited
/// there is resent (and saved) with its CRLFs, not with dots.
#[test]
fn an_http_request_edited_in_the_ascii_pane_keeps_its_crlfs() {
    let request = b"GET / HTTP/1.1\r\nHost: 10.0.0.9\r\nAccept: */*\r\n\r\n";
    let edited = b"GET /edited HTTP/1.1\r\nHost: 10.0.0.9\r\nAccept: */*\r\n\r\n";
    let mut app = App::new();
    update(&mut app, arrived(vec![tcp_with(1, 80, request)]));
    update(&mut app, PacketsMsg::Select { id: 1, extend: false });
    update(&mut app, EditorMsg::Open);
    let shown = app.editor.as_ref().unwrap().ascii_text.clone();
    assert_eq!(shown, r"GET / HTTP/1.1\r\nHost: 10.0.0.9\r\nAccept: */*\r\n\r\n");
    // The user changes the path in the text, leaving the rest as shown.
    update(&mut app, EditorMsg::Ascii(shown.replacen("GET / ", "GET /edited ", 1)));
    let e = app.editor.as_ref().unwrap();
    assert!(e.is_valid(), "{:?}", e.ascii_error);
    assert_eq!(e.payload, edited);
    assert!(e.hex_text.starts_with("47 45 54 20 2f 65 64 69 74 65 64 20"), "{}", e.hex_text);
    assert_eq!(e.hex_text.matches("0d 0a").count(), 4, "{}", e.hex_text);
    // Resent with its CRLFs...
    let fx = update(&mut app, ResendMsg::Start);
    let [Effect::Inject(req)] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(req.packet, Some(1));
    assert_eq!(pidcap_packet::hex::parse(req.data.as_deref().unwrap()).unwrap(), edited);
    // ...and saved with them.
    update(&mut app, LibraryMsg::SetSaveName("edited request".into()));
    let fx = update(&mut app, LibraryMsg::SaveSelected);
    let [Effect::LibrarySave { packets, .. }] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!(packets[0].payload(), edited);
}

/// A TLS plaintext record of the connection 127.0.0.1:40000 -> 10.0.0.9:443 (the one `tcp_with` packets are on).
fn record(id: u64, plaintext: &[u8]) -> CapturedPacket {
    CapturedPacket::tls_record(TlsRecord {
        id,
        timestamp_ns: 1_700_000_000_000_000_000 + id * 1_000_000,
        pid: 42,
        comm: "target".into(),
        socket_cookie: 7,
        direction: Direction::Outbound,
        local: "127.0.0.1:40000".parse().unwrap(),
        remote: "10.0.0.9:443".parse().unwrap(),
        info: TlsInfo { tid: 43, library: TlsLibrary::Openssl },
        plaintext,
        true_len: plaintext.len() as u64,
        stream_offset: 0,
    })
}

#[test]
fn tls_records_are_listed_with_their_connection_marked_filterable_and_edited_as_plaintext() {
    let mut app = App::new();
    update(&mut app, started(vec![42]));
    let request = b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n";
    let ciphertext = b"\x17\x03\x03\x00\x20 encrypted bytes";
    update(&mut app, arrived(vec![tcp_with(1, 443, ciphertext), record(2, request), tcp_with(3, 443, ciphertext)]));
    // Listed in capture order, beside the packets of its connection, and told apart.
    assert_eq!(app.packets.shown, [1, 2, 3]);
    let rows = app.packets.visible_rows();
    assert_eq!(rows.iter().map(|(_, p)| p.is_tls()).collect::<Vec<_>>(), [false, true, false]);
    let (wire, rec) = (&rows[0].1, &rows[1].1);
    assert_eq!(
        (rec.decoded.local_port, rec.decoded.remote_port, rec.socket_cookie),
        (wire.decoded.local_port, wire.decoded.remote_port, wire.socket_cookie)
    );
    // The chart counts packets, not records.
    assert_eq!(app.packets.rate.series().iter().map(|(i, o)| i + o).sum::<u32>(), 2);
    // The display filter selects records, and packets without them.
    for (f, want) in [
        ("tls", vec![2]),
        ("wire", vec![1, 3]),
        ("tls secret", vec![2]),
        ("tls:openssl port:443", vec![2]),
        ("tls:gnutls", vec![]),
        ("", vec![1, 2, 3]),
    ] {
        update(&mut app, PacketsMsg::SetFilter(f.into()));
        assert_eq!(app.packets.filter_error, None, "{f}");
        assert_eq!(app.packets.shown.iter().copied().collect::<Vec<_>>(), want, "{f}");
    }
    // Picking the record sets the resend form up for it: connect mode, over TLS.
    assert_eq!((app.resend.form.mode, app.resend.form.tls), (Mode::Socket, false));
    update(&mut app, PacketsMsg::Select { id: 2, extend: false });
    assert_eq!((app.resend.form.mode, app.resend.form.tls), (Mode::Connect, true));
    // It opens in the editor with its plaintext, as the record's.
    update(&mut app, EditorMsg::Open);
    let e = app.editor.as_ref().unwrap();
    assert_eq!(e.record, Some(TlsInfo { tid: 43, library: TlsLibrary::Openssl }));
    assert_eq!((e.packet_id, e.payload.as_slice()), (2, &request[..]));
    assert_eq!(e.ascii_text, "GET /secret HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n");
    let edited = e.ascii_text.replacen("/secret", "/edited", 1);
    update(&mut app, EditorMsg::Ascii(edited));
    // Its plaintext never goes into the process's own (encrypted) connection, a raw packet, or a plain connection.
    for (mode, tls) in [(Mode::Socket, true), (Mode::Raw, true), (Mode::Connect, false)] {
        update(&mut app, ResendMsg::SetMode(mode));
        update(&mut app, ResendMsg::SetTls(tls));
        assert!(update(&mut app, ResendMsg::Start).is_empty(), "{mode} tls {tls}");
        let error = app.resend.error.as_deref().unwrap_or_default();
        assert!(error.contains("connect mode only, over TLS"), "{error}");
    }
    update(&mut app, ResendMsg::SetMode(Mode::Connect));
    update(&mut app, ResendMsg::SetTls(true));
    let fx = update(&mut app, ResendMsg::Start);
    let [Effect::Inject(args)] = fx.as_slice() else { panic!("{fx:?}") };
    assert_eq!((args.packet, args.mode), (Some(2), Some(Mode::Connect)));
    assert_eq!(
        args.tls,
        Some(TlsOptions::default()),
        "empty fields: the defaults (no SNI for an address, system roots)"
    );
    update(&mut app, ResendMsg::SetSni(" example.org ".into()));
    update(&mut app, ResendMsg::SetCa("/etc/test-ca.pem".into()));
    update(&mut app, ResendMsg::SetInsecure(true));
    let fx = update(&mut app, ResendMsg::Start);
    let [Effect::Inject(args)] = fx.as_slice() else { panic!("{fx:?}") };
    let want = TlsOptions {
        sni: Some("example.org".into()),
        insecure: true,
        ca: Some("/etc/test-ca.pem".into()),
        ..TlsOptions::default()
    };
    assert_eq!(args.tls, Some(want));
    assert_eq!(args.data.as_deref(), Some(pidcap_packet::to_hex(b"GET /edited HTTP/1.1\r\nHost: x\r\n\r\n").as_str()));
    // A packet picked after it puts the form back as it is for packets.
    update(&mut app, PacketsMsg::Select { id: 3, extend: false });
    assert_eq!((app.resend.form.mode, app.resend.form.tls), (Mode::Socket, false));
    update(&mut app, EditorMsg::Open);
    assert_eq!(app.editor.as_ref().unwrap().record, None);
}

#[test]
fn the_capture_view_names_each_targets_tls_library_or_says_it_has_none_and_counts_records() {
    use pidcap_api::protocol::{State, TargetInfo};
    use pidcap_engine::{CaptureStats, KernelCounters, TlsLibraryFile};
    let target = |pid: u32, comm: &str, alive: bool, tls: Option<Vec<TlsLibraryFile>>| TargetInfo {
        pid,
        comm: Some(comm.into()),
        alive,
        requested: true,
        tls,
    };
    let libssl = TlsLibraryFile { library: TlsLibrary::Openssl, path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into() };
    let st = State {
        running: true,
        session: 1,
        settings: None,
        targets: vec![
            target(10, "curl", true, Some(vec![libssl])),
            target(11, "static-go", true, Some(vec![])),
            target(12, "unknown", true, None),
            target(13, "gone", false, Some(vec![])),
        ],
        names: vec![],
        stats: CaptureStats {
            kernel: KernelCounters { tls_records: 5, tls_dropped: 1, ..KernelCounters::default() },
            ..CaptureStats::default()
        },
        oldest_id: None,
        newest_id: None,
        filters: vec![],
        subscribers: 1,
        daemon_pid: 1,
        protocol: 2,
    };
    let mut app = App::new();
    assert!(app.capture.tls_notices().is_empty());
    update(&mut app, AppMsg::DaemonState(Box::new(st)));
    let notices = app.capture.tls_notices();
    assert_eq!(notices.iter().map(|n| (n.pid, n.covered)).collect::<Vec<_>>(), [(10, true), (11, false)]);
    assert_eq!(
        notices[0].text,
        "pid 10 (curl): TLS plaintext taken from openssl (/usr/lib/x86_64-linux-gnu/libssl.so.3)"
    );
    assert!(
        notices[1].text.starts_with(
            "pid 11 (static-go) maps no supported TLS library: its TLS traffic is encrypted only (looked for "
        ),
        "{}",
        notices[1].text
    );
    assert!(notices[1].text.contains("GnuTLS"), "{}", notices[1].text);
    assert_eq!((app.capture.stats.kernel.tls_records, app.capture.stats.kernel.tls_dropped), (5, 1));
}
