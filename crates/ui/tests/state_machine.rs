//! The UI's state machine, without a browser: messages in, state and effects out.

use pidcap_api::protocol::{ApiError, ErrorCode, FilterInfo, SendStatus, Started, Summary};
use pidcap_api::ClientError;
use pidcap_engine::rules::{Action as RuleAction, Rule};
use pidcap_packet::build::{build, flags, TcpFields, Transport};
use pidcap_packet::{CapturedPacket, Direction, TlsInfo, TlsLibrary, TlsRecord, Verdict};
use pidcap_resend::{EndReason, Mode, TlsOptions};
use pidcap_ui::error::{Problem, Task};
use pidcap_ui::procs::{Listen, ProcInfo};
use pidcap_ui::state::{
    update, App, AppMsg, CaptureMsg, EditorMsg, Effect, LibraryMsg, PacketsMsg, ProcessesMsg, ResendMsg, RulesMsg, Tab,
    VISIBLE_ROWS,
};
// -- workflow (issue 14) --
use pidcap_library::{LibraryError, SavedPacket};
use pidcap_ui::state::library::typed_so_far;
use pidcap_ui::state::{Level, SortKey, INFO_TICKS, REFRESH_TICKS};
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

/// A user process with one socket, started at tick `pid * 10`.
fn proc_info(pid: u32, ppid: u32, name: &str) -> ProcInfo {
    ProcInfo {
        pid,
        ppid,
        start: u64::from(pid) * 10,
        name: name.into(),
        user: "root".into(),
        sockets: Some(1),
        listening: vec![],
        cmdline: format!("/usr/bin/{name}"),
        kernel: false,
    }
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
    update(&mut app, ProcessesMsg::Loaded(vec![proc_info(10, 1, "a"), proc_info(20, 1, "b")]));
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
        // `tls` is Wireshark's: TLS on the wire too; `pidcap.tls` the records alone.
        ("tls", vec![1, 2, 3]),
        ("pidcap.tls", vec![2]),
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

// -- workflow (issue 14): process picker, rules, notices, stale state, library --

fn kthread(pid: u32, name: &str) -> ProcInfo {
    ProcInfo { kernel: true, sockets: Some(0), cmdline: String::new(), ..proc_info(pid, 2, name) }
}

fn shown_pids(app: &App) -> Vec<u32> {
    app.processes.visible().iter().map(|p| p.pid).collect()
}

#[test]
fn the_picker_hides_kernel_threads_until_asked_and_filters_by_sockets_and_ports() {
    let mut app = App::new();
    let mut web = proc_info(30, 1, "web");
    web.listening = vec![Listen { tcp: true, port: 8080 }];
    let mut idle = proc_info(40, 1, "idle");
    idle.sockets = Some(0);
    update(
        &mut app,
        ProcessesMsg::Loaded(vec![
            proc_info(1, 0, "init"),
            kthread(2, "kthreadd"),
            kthread(3, "kworker/0:1"),
            web,
            idle,
        ]),
    );
    assert_eq!(shown_pids(&app), [1, 30, 40], "kernel threads are hidden by default");
    update(&mut app, ProcessesMsg::SetShowKernel(true));
    assert_eq!(shown_pids(&app), [1, 2, 3, 30, 40]);
    update(&mut app, ProcessesMsg::SetShowKernel(false));
    update(&mut app, ProcessesMsg::SetWithSockets(true));
    assert_eq!(shown_pids(&app), [1, 30], "with sockets only");
    update(&mut app, ProcessesMsg::SetWithSockets(false));
    update(&mut app, ProcessesMsg::SetQuery("8080".into()));
    assert_eq!(shown_pids(&app), [30], "a listening port is searchable");
    update(&mut app, ProcessesMsg::SetQuery("tcp/8080".into()));
    assert_eq!(shown_pids(&app), [30]);
}

#[test]
fn the_picker_sorts_by_any_column_and_shows_a_tree_by_parent() {
    let mut app = App::new();
    let mut procs =
        vec![proc_info(1, 0, "init"), proc_info(5, 1, "sshd"), proc_info(9, 5, "bash"), proc_info(7, 1, "cron")];
    procs[3].sockets = Some(4);
    update(&mut app, ProcessesMsg::Loaded(procs));
    assert_eq!(shown_pids(&app), [1, 5, 7, 9], "by pid at first");
    update(&mut app, ProcessesMsg::SortBy(SortKey::Name));
    assert_eq!(shown_pids(&app), [9, 7, 1, 5], "bash cron init sshd");
    update(&mut app, ProcessesMsg::SortBy(SortKey::Name));
    assert_eq!(shown_pids(&app), [5, 1, 7, 9], "again: the other way");
    update(&mut app, ProcessesMsg::SortBy(SortKey::Sockets));
    assert_eq!(shown_pids(&app)[3], 7, "most sockets last");
    update(&mut app, ProcessesMsg::SortBy(SortKey::Pid));
    update(&mut app, ProcessesMsg::SetTree(true));
    let rows: Vec<(u32, usize)> = app.processes.rows().iter().map(|r| (r.proc.pid, r.depth)).collect();
    assert_eq!(rows, [(1, 0), (5, 1), (9, 2), (7, 1)], "children under their parent, siblings sorted");
    // A shown process whose parent is hidden is a root.
    update(&mut app, ProcessesMsg::SetQuery("bash".into()));
    let rows: Vec<(u32, usize)> = app.processes.rows().iter().map(|r| (r.proc.pid, r.depth)).collect();
    assert_eq!(rows, [(9, 0)]);
}

#[test]
fn a_tick_stays_on_its_process_across_refreshes_and_goes_with_it() {
    let mut app = App::new();
    update(&mut app, ProcessesMsg::Loaded(vec![proc_info(10, 1, "a"), proc_info(20, 1, "b")]));
    update(&mut app, ProcessesMsg::Toggle(10));
    update(&mut app, ProcessesMsg::Toggle(20));
    // A refresh: 10 is the same process, 20's pid now names another one (another start time).
    let mut reused = proc_info(20, 1, "other");
    reused.start = 999;
    update(&mut app, ProcessesMsg::Loaded(vec![proc_info(30, 1, "c"), proc_info(10, 1, "a"), reused]));
    assert_eq!(app.processes.to_capture(), [10], "the reused pid is not ticked");
    assert_eq!(app.processes.selected.len(), 1);
}

#[test]
fn a_search_that_hides_a_ticked_row_keeps_it_out_of_the_capture() {
    let mut app = App::new();
    update(&mut app, ProcessesMsg::Loaded(vec![proc_info(10, 1, "alpha"), proc_info(20, 1, "beta")]));
    update(&mut app, ProcessesMsg::Toggle(10));
    update(&mut app, ProcessesMsg::Toggle(20));
    update(&mut app, ProcessesMsg::SetQuery("beta".into()));
    assert_eq!(app.processes.to_capture(), [20]);
    assert_eq!(app.processes.hidden_selected(), 1);
    assert_eq!(
        update(&mut app, CaptureMsg::Start),
        vec![Effect::StartCapture { pids: vec![20], follow_children: false }]
    );
    // Hidden by a toggle is hidden too.
    update(&mut app, ProcessesMsg::SetQuery(String::new()));
    update(&mut app, ProcessesMsg::SetWithSockets(true));
    assert_eq!(app.processes.to_capture(), [10, 20]);
    update(&mut app, ProcessesMsg::ClearSelection);
    assert!(app.processes.selected.is_empty());
    assert!(update(&mut app, CaptureMsg::Start).is_empty());
}

#[test]
fn the_process_list_refreshes_on_the_tick_while_its_tab_is_shown() {
    let mut app = App::new();
    let tick = |app: &mut App| update(app, AppMsg::Tick { now_ns: 1 }).contains(&Effect::ListProcesses);
    let refreshes = |app: &mut App| (0..REFRESH_TICKS * 3).filter(|_| tick(app)).count();
    assert_eq!(refreshes(&mut app), 3);
    update(&mut app, ProcessesMsg::SetAutoRefresh(false));
    assert_eq!(refreshes(&mut app), 0);
    update(&mut app, ProcessesMsg::SetAutoRefresh(true));
    update(&mut app, AppMsg::SetTab(Tab::Capture));
    assert_eq!(refreshes(&mut app), 0, "not while another tab is shown");
}

fn rule(id: u64, index: usize, spec: &str, enabled: bool) -> FilterInfo {
    let mut rule = Rule::parse_spec(spec, RuleAction::Block).unwrap();
    rule.enabled = enabled;
    FilterInfo { id, index, spec: rule.spec(), rule, hits: 0 }
}

#[test]
fn rules_move_up_and_down_by_a_copy_at_the_new_place() {
    let mut app = App::new();
    let list = vec![rule(1, 0, "tcp:1", true), rule(2, 1, "tcp:2", false), rule(3, 2, "tcp:3", true)];
    update(&mut app, RulesMsg::Changed(list.clone()));
    assert!(update(&mut app, RulesMsg::Move { id: 1, up: true }).is_empty(), "the first cannot go up");
    assert!(update(&mut app, RulesMsg::Move { id: 3, up: false }).is_empty(), "the last cannot go down");
    let moved = |spec: &str, enabled, insert_at| Effect::MoveFilter {
        id: 2,
        spec: spec.into(),
        action: RuleAction::Block,
        enabled,
        insert_at,
    };
    let spec2 = app.rules.filters[1].spec.clone();
    // Up: the copy goes before rule 1 (index 0); down: after rule 3 (index 3, the rule still in the list).
    assert_eq!(update(&mut app, RulesMsg::Move { id: 2, up: true }), vec![moved(&spec2, false, 0)]);
    assert!(app.rules.moving);
    assert!(update(&mut app, RulesMsg::Move { id: 2, up: false }).is_empty(), "one move at a time");
    // The daemon's answer (or a failure) ends the move.
    update(&mut app, RulesMsg::Changed(list.clone()));
    assert!(!app.rules.moving);
    assert_eq!(update(&mut app, RulesMsg::Move { id: 2, up: false }), vec![moved(&spec2, false, 3)]);
    update(&mut app, AppMsg::Failed { task: Task::ChangeRule, error: process_gone() });
    assert!(!app.rules.moving);
    assert!(update(&mut app, RulesMsg::Move { id: 99, up: true }).is_empty());
    assert!(!app.rules.moving);
}

#[test]
fn when_a_capture_ends_the_rules_still_in_force_are_offered_for_clearing() {
    let mut app = App::new();
    update(&mut app, started(vec![42]));
    let stats = app.capture.stats;
    // No rules: nothing to offer.
    update(&mut app, CaptureMsg::Counters { stats, running: false });
    assert!(!app.rules.offer_clear);
    update(&mut app, started(vec![42]));
    update(&mut app, RulesMsg::Changed(vec![rule(1, 0, "tcp:7001", true)]));
    update(&mut app, CaptureMsg::Counters { stats, running: false });
    assert!(app.rules.offer_clear);
    assert_eq!(update(&mut app, RulesMsg::ClearAfterCapture), vec![Effect::ClearFilters]);
    assert!(!app.rules.offer_clear);
    // Kept: the offer goes, the rules stay.
    update(&mut app, started(vec![42]));
    update(&mut app, CaptureMsg::Counters { stats, running: false });
    assert!(app.rules.offer_clear);
    assert!(update(&mut app, RulesMsg::KeepAfterCapture).is_empty());
    assert!(!app.rules.offer_clear);
    assert_eq!(app.rules.filters.len(), 1);
    // Cleared elsewhere (the daemon's list is empty): the offer goes by itself; a new capture ends it too.
    update(&mut app, started(vec![42]));
    update(&mut app, CaptureMsg::Counters { stats, running: false });
    update(&mut app, RulesMsg::Changed(vec![]));
    assert!(!app.rules.offer_clear);
    update(&mut app, RulesMsg::Changed(vec![rule(1, 0, "tcp:7001", true)]));
    update(&mut app, CaptureMsg::Counters { stats, running: false });
    assert!(!app.rules.offer_clear, "not running: nothing ended");
}

#[test]
fn information_fades_errors_stay_and_a_notice_goes_when_it_stops_being_true() {
    let mut app = App::new();
    update(&mut app, AppMsg::Failed { task: Task::StartCapture, error: process_gone() });
    update(&mut app, LibraryMsg::Saved(1));
    assert_eq!(app.notices.len(), 2);
    for _ in 0..INFO_TICKS {
        update(&mut app, AppMsg::Tick { now_ns: 1 });
    }
    assert_eq!(app.notices.len(), 1, "the information is gone");
    assert_eq!(app.notices[0].level, Level::Error, "the error stays until dismissed");
    let id = app.notices[0].id;
    update(&mut app, AppMsg::DismissNotice(id));
    // "Capturing process N." lasts as long as the capture, whatever the ticks.
    update(&mut app, started(vec![42]));
    for _ in 0..INFO_TICKS * 2 {
        update(&mut app, AppMsg::Tick { now_ns: 1 });
    }
    assert_eq!(app.notices.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(), ["Capturing process 42."]);
    let stats = app.capture.stats;
    update(&mut app, CaptureMsg::Counters { stats, running: false });
    assert!(app.notices.is_empty(), "{:?}", app.notices);
    // "Pick a process" goes once one is ticked.
    update(&mut app, ProcessesMsg::Loaded(vec![proc_info(10, 1, "a")]));
    update(&mut app, CaptureMsg::Start);
    assert_eq!(app.notices.len(), 1);
    update(&mut app, ProcessesMsg::Toggle(10));
    assert!(app.notices.is_empty());
    // "Type a command" goes once one is typed.
    update(&mut app, CaptureMsg::Run);
    assert_eq!(app.notices.len(), 1);
    update(&mut app, ProcessesMsg::SetRunCommand("curl".into()));
    assert!(app.notices.is_empty());
}

#[test]
fn a_new_capture_clears_the_old_display_filter_and_closes_the_old_packets_editor() {
    let mut app = App::new();
    update(&mut app, started(vec![42]));
    update(&mut app, arrived(vec![udp(1, 53, Direction::Outbound, b"old")]));
    update(&mut app, PacketsMsg::SetFilter("tcp".into()));
    update(&mut app, PacketsMsg::Select { id: 1, extend: false });
    update(&mut app, EditorMsg::Open);
    assert!(app.editor.is_some());
    update(&mut app, started(vec![43]));
    assert_eq!(app.packets.filter_text, "");
    update(&mut app, arrived(vec![udp(2, 53, Direction::Outbound, b"new")]));
    assert_eq!(app.packets.shown.len(), 1, "the new packet is shown");
    assert!(app.editor.is_none());
    let said: Vec<&str> = app.notices.iter().map(|n| n.text.as_str()).collect();
    assert!(
        said.contains(&"New capture: the display filter \"tcp\" was cleared, the editor of packet #1 was closed."),
        "{said:?}"
    );
    // Nothing to reset: nothing said.
    let before = app.notices.len();
    update(&mut app, started(vec![44]));
    assert!(!app.notices.iter().skip(before).any(|n| n.text.starts_with("New capture")));
}

fn saved(id: i64) -> SavedPacket {
    SavedPacket {
        id,
        name: format!("p{id}"),
        description: String::new(),
        tags: vec![],
        saved_at_ns: 0,
        source: "ui".into(),
        synthesized: false,
        packet: udp(id as u64, 53, Direction::Outbound, b"x"),
    }
}

#[test]
fn library_search_waits_for_a_complete_term_and_shows_errors_on_enter() {
    assert_eq!(typed_so_far("tag:"), "");
    assert_eq!(typed_so_far("GET tag:"), "GET");
    assert_eq!(typed_so_far("GET tag:web"), "GET tag:web");
    assert_eq!(typed_so_far(" hex: "), "");
    let mut app = App::new();
    let q = |query: &str| vec![Effect::LibraryQuery { query: query.into(), tag: None }];
    assert_eq!(update(&mut app, LibraryMsg::SetQuery("tag:".into())), q(""));
    assert_eq!(update(&mut app, LibraryMsg::SetQuery("tag:w".into())), q("tag:w"));
    // The library refuses a query: no notice, no error shown while typing.
    let refused = || Problem::from(LibraryError::Invalid("nothing to search for in \"tag:\"".into()));
    update(&mut app, LibraryMsg::SetQuery("tag:".into()));
    update(&mut app, AppMsg::Failed { task: Task::ReadLibrary, error: refused() });
    assert!(app.notices.is_empty());
    assert_eq!(app.library.shown_error(), None);
    // Enter: the text as typed is searched for, and its error shown.
    assert_eq!(update(&mut app, LibraryMsg::Submit), q("tag:"));
    update(&mut app, AppMsg::Failed { task: Task::ReadLibrary, error: refused() });
    assert!(app.library.shown_error().unwrap().contains("nothing to search for"));
    // Typing again hides it; an answer clears it.
    update(&mut app, LibraryMsg::SetQuery("tag:x".into()));
    assert_eq!(app.library.shown_error(), None);
    update(&mut app, LibraryMsg::Loaded { query: "tag:x".into(), items: vec![], tags: vec![], total: 3 });
    assert_eq!(app.library.search_error, None);
    // Another library failure is still a notice.
    update(&mut app, AppMsg::Failed { task: Task::SaveLibrary, error: refused() });
    assert_eq!(app.notices.len(), 1);
}

#[test]
fn export_all_exports_the_library_and_export_shown_the_search() {
    let mut app = App::new();
    update(
        &mut app,
        LibraryMsg::Loaded { query: "GET".into(), items: vec![saved(4), saved(7)], tags: vec![], total: 13 },
    );
    assert_eq!(update(&mut app, LibraryMsg::ExportDpp), vec![Effect::LibraryExportAll], "all 13, not the 2 shown");
    assert_eq!(update(&mut app, LibraryMsg::ExportShown), vec![Effect::LibraryExportDpp(vec![4, 7])]);
    update(&mut app, LibraryMsg::ToggleChecked(7));
    assert_eq!(update(&mut app, LibraryMsg::ExportDpp), vec![Effect::LibraryExportDpp(vec![7])]);
    update(&mut app, LibraryMsg::Loaded { query: "none".into(), items: vec![], tags: vec![], total: 13 });
    assert!(update(&mut app, LibraryMsg::ExportShown).is_empty(), "the search shows nothing");
    assert_eq!(update(&mut app, LibraryMsg::ExportDpp), vec![Effect::LibraryExportAll]);
}

fn daemon_state(session: u64, running: bool, filters: Vec<FilterInfo>) -> AppMsg {
    AppMsg::DaemonState(Box::new(pidcap_api::protocol::State {
        running,
        session,
        settings: None,
        targets: vec![],
        names: vec![],
        stats: Default::default(),
        oldest_id: None,
        newest_id: None,
        filters,
        subscribers: 1,
        daemon_pid: 1,
        protocol: 2,
    }))
}

#[test]
fn a_state_from_before_the_start_does_not_end_the_capture() {
    let mut app = App::new();
    let rules = vec![rule(1, 0, "tcp:7001", true)];
    update(&mut app, daemon_state(0, false, rules.clone()));
    update(&mut app, started(vec![42])); // session 1
                                         // An answer to a get_state sent before the start, arriving after it.
    update(&mut app, daemon_state(0, false, rules.clone()));
    assert!(app.capture.running);
    assert!(!app.rules.offer_clear);
    assert_eq!(app.notices.iter().filter(|n| n.text.starts_with("Capturing")).count(), 1);
    // The stop: the capture's own state.
    update(&mut app, daemon_state(1, false, rules));
    assert!(!app.capture.running);
    assert!(app.rules.offer_clear, "the rules still in force are offered for clearing");
    assert!(app.notices.iter().all(|n| !n.text.starts_with("Capturing")));
}
