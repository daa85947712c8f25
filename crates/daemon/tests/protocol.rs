//! The daemon over its socket on the scripted kernel (no root, no eBPF):
//! capture, paging, state, filter bookkeeping, clear and stop, several
//! subscribers and a slow one, the backlog of `subscribe`, bad input, the
//! socket's permissions, one daemon per socket, TLS plaintext records and
//! the TLS coverage (protocol version 2) and version 1 clients. Packets are pushed in
//! through the fake's handle; what truly needs the kernel (rules on real
//! sockets, SIGKILL, other users) is in tests/daemon.rs.

mod common;

use common::{config, socket_path, udp_packet, wait_for, InProcess};
use pidcap_api::protocol::{ErrorCode, Event, InjectArgs, MAX_PAGE};
use pidcap_api::{Client, ClientError, ConnectionOp, EngineOp};
use pidcap_daemon::{Daemon, DaemonError};
use pidcap_engine::fake::{FakeHandle, FakeKernel};
use pidcap_engine::rules::{Action, MAX_RULES};
use pidcap_engine::KernelBackend;
use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn api_code(e: ClientError) -> ErrorCode {
    match e {
        ClientError::Api(e) => e.code,
        e => panic!("expected an API error, got {e}"),
    }
}

/// A live process the fake may capture: this one.
fn me() -> u32 {
    std::process::id()
}

/// Push `n` packets of `me()` (payload sizes 1..=300, so some are cut by a 200-byte snap length).
fn push(h: &FakeHandle, n: usize) {
    for i in 0..n {
        h.push(me(), udp_packet(1000 + i as u16, &vec![b'x'; 1 + (i * 37) % 300]));
    }
}

/// Wait until the daemon has received `n` packets in this capture.
fn received(c: &mut Client, n: u64) {
    assert!(
        wait_for(Duration::from_secs(5), || c.get_state().unwrap().stats.received >= n),
        "the daemon did not receive {n} packets: {:?}",
        c.get_state().unwrap().stats
    );
}

#[test]
fn capture_paging_state_filters_clear_and_stop_through_the_socket() {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    let mut sub1 = d.client();
    let mut sub2 = d.client();
    let s1 = sub1.subscribe(None).unwrap();
    assert!(s1.subscribed && s1.backlog == 0 && s1.protocol == pidcap_api::VERSION, "{s1:?}");
    sub2.subscribe(None).unwrap();

    let started = c.start_capture(vec![me()], vec![], Some(200), Some(10_000), false).unwrap();
    assert_eq!(started.targets, [me()]);
    assert_eq!(fake.state().config.map(|k| (k.snaplen, k.capture)), Some((200, true)));
    assert!(fake.state().targets.contains_key(&me()));
    assert_eq!(
        api_code(c.start_capture(vec![me()], vec![], None, None, false).unwrap_err()),
        ErrorCode::AlreadyRunning
    );
    push(&fake, 40);
    received(&mut c, 40);

    // Page through everything, 7 at a time: no gap, no duplicate.
    let mut ids = vec![];
    let mut since = 0;
    loop {
        let page = c.get_packets(since, Some(7)).unwrap();
        assert_eq!(page.missed, 0);
        assert!(page.packets.len() <= 7);
        ids.extend(page.packets.iter().map(|p| p.id));
        assert!(page.packets.iter().all(|p| p.pid == me() && p.data.len() <= 200));
        since = page.next_since;
        if !page.more {
            break;
        }
    }
    let n = ids.len() as u64;
    assert_eq!(n, 40);
    assert_eq!(ids, (started.first_id..started.first_id + n).collect::<Vec<_>>());
    assert!(c.get_packets(0, None).unwrap().packets.iter().any(|p| p.orig_len > 200 && p.data.len() == 200));
    let s = c.get_state().unwrap();
    assert!(s.running);
    assert_eq!((s.stats.received, s.stats.ring_len as u64, s.stats.kernel.captured), (n, n, n));
    assert_eq!((s.oldest_id, s.newest_id), (Some(started.first_id), Some(started.first_id + n - 1)));
    assert_eq!(s.targets.len(), 1);
    assert!(s.targets[0].alive && s.targets[0].requested);
    assert_eq!(s.subscribers, 2);
    assert_eq!(s.daemon_pid, me());
    // One packet by id; ids not held are None.
    let third = c.get_packet(started.first_id + 2).unwrap().expect("held");
    assert_eq!(third.id, started.first_id + 2);
    assert_eq!(c.get_packet(started.first_id + n).unwrap(), None);
    assert_eq!(c.get_packet(0).unwrap(), None);

    // Both subscribers saw the same packets, and a subscribed connection still answers requests.
    let collect = |cl: &mut Client| {
        let mut got = BTreeSet::new();
        while got.len() < n as usize {
            if let Event::Packet { packet } = cl.next_event().unwrap() {
                got.insert(packet.id);
            }
        }
        got
    };
    assert!(sub1.get_state().unwrap().running);
    let (a, b) = (collect(&mut sub1), collect(&mut sub2));
    assert_eq!(a, b);
    assert_eq!(a, ids.iter().copied().collect());

    // Filters: ids, order, the kernel's list, hits carried across changes.
    let f = c.add_filter("tcp:8080", Action::Block, None).unwrap();
    assert_eq!((f.index, f.spec.as_str(), f.hits), (0, "block:tcp:8080", 0));
    assert_eq!(fake.state().rules, [f.rule]);
    fake.state().hits[0] = 1; // the kernel counted one
    let s = c.get_state().unwrap();
    assert_eq!(s.filters[0].hits, 1);
    assert_eq!(s.filters[0].spec, "block:tcp:8080");
    let off = c.set_filter_enabled(f.id, false).unwrap();
    assert!(!off.filter.unwrap().rule.enabled);
    assert!(!fake.state().rules[0].enabled);
    c.set_filter_enabled(f.id, true).unwrap();
    let allow = c.add_filter("[::1]", Action::Allow, Some(0)).unwrap();
    assert_eq!(allow.index, 0);
    assert_eq!(fake.state().rules.len(), 2);
    fake.state().hits[1] += 1; // a second hit for the block, now at index 1
    let s = c.get_state().unwrap();
    // [allow [::1], block tcp:8080]: the block's hits survived the list changes.
    assert_eq!(s.filters[1].hits, 2, "{:?}", s.filters);
    assert_eq!((s.filters[0].id, s.filters[1].id), (allow.id, f.id));
    let left = c.remove_filter(f.id).unwrap();
    assert_eq!(left.filters.iter().map(|f| f.id).collect::<Vec<_>>(), [allow.id]);
    assert_eq!(api_code(c.remove_filter(f.id).unwrap_err()), ErrorCode::NoSuchFilter);
    assert_eq!(api_code(c.set_filter_enabled(f.id, true).unwrap_err()), ErrorCode::NoSuchFilter);
    assert_eq!(api_code(c.add_filter("tcp:http", Action::Block, None).unwrap_err()), ErrorCode::InvalidRule);
    assert_eq!(api_code(c.add_filter("udp:1", Action::Block, Some(5)).unwrap_err()), ErrorCode::InvalidArgument);
    c.clear_filters().unwrap();
    assert!(c.get_state().unwrap().filters.is_empty());
    assert!(fake.state().rules.is_empty());
    for _ in 0..MAX_RULES {
        c.add_filter("udp:1", Action::Block, None).unwrap();
    }
    assert_eq!(api_code(c.add_filter("udp:2", Action::Block, None).unwrap_err()), ErrorCode::InvalidArgument);
    assert_eq!(c.clear_filters().unwrap().filters.len(), 0);

    // clear_buffer empties the ring; ids go on.
    let before = c.get_state().unwrap().newest_id.unwrap();
    let v = c.clear_buffer().unwrap();
    assert!(v.cleared > 0);
    assert_eq!((v.cleared, v.next_id), (n as usize, before + 1));
    let page = c.get_packets(before, None).unwrap();
    assert!(page.packets.is_empty());
    push(&fake, 1);
    assert!(wait_for(Duration::from_secs(2), || !c.get_packets(before, None).unwrap().packets.is_empty()));
    let page = c.get_packets(0, None).unwrap();
    assert_eq!(page.packets[0].id, before + 1, "ids continue after a clear");
    assert_eq!(page.missed, before, "a client that asks from 0 is told what it missed");

    // inject of a packet no longer held: a clear error (jobs are tested in tests/jobs.rs);
    // of a held one with a bad payload: refused before anything is sent.
    let args = InjectArgs { packet: Some(1), ..Default::default() };
    assert_eq!(api_code(c.call(ConnectionOp::Inject(Box::new(args))).unwrap_err()), ErrorCode::InvalidArgument);
    let args = InjectArgs { packet: Some(before + 1), data: Some("4z".into()), ..Default::default() };
    assert_eq!(api_code(c.inject(args).unwrap_err()), ErrorCode::InvalidPayload);
    assert!(c.list_jobs().unwrap().is_empty());

    let s = c.stop_capture().unwrap();
    assert!(!s.running);
    assert!(s.targets.is_empty() && fake.state().targets.is_empty());
    assert_eq!(fake.state().config.map(|k| k.capture), Some(false));
    assert_eq!(api_code(c.stop_capture().unwrap_err()), ErrorCode::NotRunning);
    // Packets stay readable after stop.
    assert!(!c.get_packets(0, None).unwrap().packets.is_empty());

    // The next capture: a fresh ring and counters, ids going on.
    let again = c.start_capture(vec![me()], vec!["fake".into()], None, Some(5), true).unwrap();
    assert_eq!((again.session, again.first_id), (started.session + 1, before + 2));
    assert_eq!(fake.state().names, ["fake"]);
    push(&fake, 8);
    received(&mut c, 8);
    let s = c.get_state().unwrap();
    assert_eq!((s.stats.ring_len, s.stats.ring_capacity, s.stats.evicted), (5, 5, 3));
    assert_eq!(s.settings.map(|o| (o.snaplen, o.ring_size, o.follow_children)), Some((1500, 5, true)));
    assert_eq!(s.names, ["fake"]);
    let page = c.get_packets(again.first_id - 1, None).unwrap();
    assert_eq!((page.missed, page.packets.len()), (3, 5), "evicted packets count as missed");
}

#[test]
fn bad_input_gets_a_clear_error_and_the_daemon_keeps_going() {
    let (d, _fake) = InProcess::fake(None);
    let mut c = d.client();
    c.add_filter("udp:53", Action::Block, None).unwrap();
    let mut expect = |line: &[u8], code: ErrorCode| {
        c.send_line(line).unwrap();
        let r = c.read_reply().unwrap();
        assert_eq!(r.ok, Some(false));
        assert_eq!(
            r.error.as_ref().map(|e| e.code),
            Some(code),
            "{}: {r:?}",
            String::from_utf8_lossy(&line[..line.len().min(80)])
        );
        r
    };
    assert_eq!(expect(b"{not json", ErrorCode::BadRequest).id, None);
    assert_eq!(expect(b"[1,2]", ErrorCode::BadRequest).id, None);
    assert_eq!(expect(br#"{"v":1,"op":"get_state"}"#, ErrorCode::BadRequest).id, None);
    let r = expect(br#"{"v":1,"id":1,"op":"reboot"}"#, ErrorCode::UnknownOp);
    assert_eq!(r.id, Some(1));
    assert!(r.error.unwrap().message.contains("get_packets"), "the known operations are listed");
    expect(br#"{"v":9,"id":1,"op":"get_state"}"#, ErrorCode::UnsupportedVersion);
    expect(br#"{"id":1,"op":"get_state"}"#, ErrorCode::BadRequest);
    expect(br#"{"v":1,"id":1,"op":7}"#, ErrorCode::BadRequest);
    expect(br#"{"v":1,"id":2,"op":"get_state","extra":1}"#, ErrorCode::InvalidArgument);
    expect(br#"{"v":1,"id":2,"op":"watch_job"}"#, ErrorCode::BadRequest);
    expect(br#"{"v":1,"id":1,"op":"add_filter","rule":"tcp:99999"}"#, ErrorCode::InvalidRule);
    expect(br#"{"v":1,"id":1,"op":"start_capture","pids":[4294967290]}"#, ErrorCode::NoSuchProcess);
    expect(br#"{"v":1,"id":1,"op":"start_capture","snaplen":0,"pids":[1]}"#, ErrorCode::InvalidArgument);
    expect(br#"{"v":1,"id":1,"op":"start_capture","ring_size":0,"pids":[1]}"#, ErrorCode::InvalidArgument);
    expect(br#"{"v":1,"id":1,"op":"start_capture"}"#, ErrorCode::InvalidArgument);
    expect(br#"{"v":1,"id":1,"op":"stop_capture"}"#, ErrorCode::NotRunning);
    expect(br#"{"v":1,"id":3,"op":"stop_job","job":7}"#, ErrorCode::NoSuchJob);
    expect(br#"{"v":1,"id":3,"op":"watch_job","job":7}"#, ErrorCode::NoSuchJob);
    let mut big = br#"{"v":1,"id":1,"op":"get_state","pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend_from_slice(b"\"}");
    assert_eq!(expect(&big, ErrorCode::TooLarge).id, None);
    // Blank lines are ignored; the next request is answered in order.
    c.send_line(b"   ").unwrap();
    // Still the same daemon, still holding its rule.
    let s = c.get_state().unwrap();
    assert_eq!(s.filters.len(), 1);
    assert_eq!(s.filters[0].spec, "block:udp:53");
    assert_eq!(c.call(EngineOp::GetState).unwrap()["filters"][0]["spec"], "block:udp:53");

    // A second daemon on the same socket is refused, before it loads anything; the first keeps serving.
    let loaded = Arc::new(AtomicBool::new(false));
    let load = {
        let loaded = Arc::clone(&loaded);
        move || -> Result<Box<dyn KernelBackend>, pidcap_engine::EngineError> {
            loaded.store(true, Ordering::SeqCst);
            Ok(Box::new(FakeKernel::default()))
        }
    };
    match Daemon::bind(config(&d.socket, None), load) {
        Err(DaemonError::AlreadyRunning(_)) => {}
        Err(e) => panic!("expected AlreadyRunning, got {e}"),
        Ok(_) => panic!("a second daemon started on a live socket"),
    }
    assert!(!loaded.load(Ordering::SeqCst), "the kernel layer is not loaded for a refused daemon");
    assert!(matches!(
        Daemon::bind_with_backend(config(&d.socket, None), Box::new(FakeKernel::default())),
        Err(DaemonError::AlreadyRunning(_))
    ));
    assert_eq!(c.get_state().unwrap().filters.len(), 1);

    // A stale socket file (nobody listening) is replaced; a file that is not a socket is kept.
    let stale = socket_path();
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let d2 = Daemon::bind_with_backend(config(&stale, None), Box::new(FakeKernel::default()))
        .expect("a stale socket is removed");
    drop(d2);
    let plain = socket_path();
    std::fs::create_dir_all(plain.parent().unwrap()).unwrap();
    std::fs::write(&plain, b"not a socket").unwrap();
    assert!(matches!(
        Daemon::bind_with_backend(config(&plain, None), Box::new(FakeKernel::default())),
        Err(DaemonError::NotASocket(_))
    ));
    assert_eq!(std::fs::read(&plain).unwrap(), b"not a socket");
}

/// One request line of `op` with `fields` (a JSON object's inside, may be empty).
fn line(id: u64, op: &str, fields: &str) -> Vec<u8> {
    let sep = if fields.is_empty() { "" } else { "," };
    format!(r#"{{"v":1,"id":{id},"op":"{op}"{sep}{fields}}}"#).into_bytes()
}

/// Send `line`, read its reply, which must be an error: its code and message.
fn refused(c: &mut Client, line: &[u8]) -> (ErrorCode, String) {
    c.send_line(line).unwrap();
    let r = c.read_reply().unwrap();
    let e = r.error.unwrap_or_else(|| panic!("{} was accepted: {:?}", String::from_utf8_lossy(line), r.result));
    (e.code, e.message)
}

#[test]
fn every_op_refuses_an_argument_it_does_not_take_naming_it_and_does_nothing() {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    c.add_filter("udp:53", Action::Block, None).unwrap();
    let started = c.start_capture(vec![me()], vec![], None, None, false).unwrap();
    push(&fake, 3);
    received(&mut c, 3);
    // Each op with the arguments it takes, plus one it does not.
    let me = me();
    let ops: [(&str, String); 14] = [
        ("start_capture", format!(r#""pids":[{me}]"#)),
        ("stop_capture", String::new()),
        ("get_packets", r#""since":0"#.into()),
        ("subscribe", r#""since":0"#.into()),
        ("inject", r#""data":"41","to":"127.0.0.1:9","proto":"udp","mode":"connect""#.into()),
        ("add_filter", r#""rule":"tcp:1""#.into()),
        ("remove_filter", r#""filter":1"#.into()),
        ("set_filter_enabled", r#""filter":1,"enabled":false"#.into()),
        ("clear_filters", String::new()),
        ("clear_buffer", String::new()),
        ("get_state", String::new()),
        ("list_jobs", String::new()),
        ("watch_job", r#""job":1"#.into()),
        ("stop_job", r#""job":1"#.into()),
    ];
    for (i, (op, fields)) in ops.iter().enumerate() {
        let extra = if op.contains("filter") || op == &"start_capture" { "bogus" } else { "filter" };
        let with = if fields.is_empty() { format!(r#""{extra}":3"#) } else { format!(r#"{fields},"{extra}":3"#) };
        let (code, msg) = refused(&mut c, &line(100 + i as u64, op, &with));
        assert_eq!(code, ErrorCode::InvalidArgument, "{op}: {msg}");
        assert!(msg.contains(&format!("`{extra}`")) && msg.contains(op), "{op}: {msg}");
    }
    // Nothing was done: the rule, the capture, the packets and no job.
    let s = c.get_state().unwrap();
    assert_eq!(s.filters.iter().map(|f| f.spec.as_str()).collect::<Vec<_>>(), ["block:udp:53"]);
    assert!(s.running && s.session == started.session && s.stats.ring_len == 3, "{s:?}");
    assert!(s.subscribers == 0 && c.list_jobs().unwrap().is_empty());
    assert_eq!(fake.state().rules.len(), 1);
}

#[test]
fn bad_input_is_quoted_once_and_short_in_the_apis_words() {
    let (d, _fake) = InProcess::fake(None);
    let mut c = d.client();
    // A 10 KB SPEC of one bad address part, and a near-1 MB one.
    for n in [10_000usize, 1_000_000] {
        let spec = format!("tcp:{}", "1.".repeat(n / 2));
        let (code, msg) = refused(&mut c, &line(1, "add_filter", &format!(r#""rule":"{spec}""#)));
        assert_eq!(code, ErrorCode::InvalidRule);
        let head = msg.lines().next().unwrap();
        assert!(head.len() < 400, "{} bytes: {}", head.len(), &head[..300]);
        assert!(msg.len() < 2_000, "{} bytes", msg.len());
        assert_eq!(head.matches("tcp:1.1.").count(), 1, "the SPEC is quoted once: {head}");
        assert!(head.contains(&format!("({} bytes)", spec.len())), "{head}");
        assert!(msg.contains("SPEC"), "the grammar follows: {msg}");
    }
    // A short bad SPEC: the SPEC and its bad part, each once.
    let (_, msg) = refused(&mut c, &line(1, "add_filter", r#""rule":"tcp:300.1.1.1""#));
    assert_eq!(msg.matches("300.1.1.1").count(), 2, "in the SPEC and as the part: {msg}");

    let (code, msg) = refused(&mut c, br#"{"v":"1","id":1,"op":"get_state"}"#);
    assert_eq!(code, ErrorCode::UnsupportedVersion);
    assert!(msg.contains(r#""1""#) && msg.contains("string") && msg.contains("version 1"), "{msg}");
    assert!(!msg.contains('?'), "{msg}");

    for rate in ["0", "-5"] {
        let args = format!(r#""data":"41","to":"127.0.0.1:9","mode":"connect","proto":"udp","max_rate":{rate}"#);
        let (code, msg) = refused(&mut c, &line(2, "inject", &args));
        assert_eq!(code, ErrorCode::InvalidArgument, "{msg}");
        assert!(msg.contains("`max_rate`") && !msg.contains("--"), "{msg}");
    }
    let args = r#""data":"41","to":"127.0.0.1:9","mode":"connect","proto":"udp","count":0"#;
    let (code, msg) = refused(&mut c, &line(3, "inject", args));
    assert_eq!(code, ErrorCode::InvalidArgument, "{msg}");
    assert!(msg.contains("`count`") && !msg.contains("--"), "{msg}");
    // A long bad payload: its message stays short.
    let hex = format!("4{}", "z".repeat(100_000));
    let (code, msg) = refused(&mut c, &line(4, "inject", &format!(r#""data":"{hex}","to":"127.0.0.1:9""#)));
    assert_eq!(code, ErrorCode::InvalidPayload);
    assert!(msg.len() < 1_000, "{} bytes", msg.len());
    assert!(c.list_jobs().unwrap().is_empty());
}

/// The name of this process's effective group, from /etc/group.
fn my_group() -> (String, u32) {
    // SAFETY: getegid has no preconditions.
    let gid = unsafe { libc::getegid() };
    let groups = std::fs::read_to_string("/etc/group").unwrap();
    let name = groups
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[2].parse() == Ok(gid)).then(|| f[0].to_string())
        })
        .unwrap_or_else(|| panic!("gid {gid} is not in /etc/group"));
    (name, gid)
}

#[test]
fn the_socket_is_0660_in_a_0750_directory_of_the_daemons_group_and_removed_at_the_end() {
    let (group, gid) = my_group();
    let (d, _fake) = InProcess::fake(Some(&group));
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert!(std::fs::symlink_metadata(&d.socket).unwrap().file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let dir = std::fs::metadata(d.socket.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o750);
    assert_eq!((meta.gid(), dir.gid()), (gid, gid));
    // The daemon's own user gets in.
    assert!(!d.client().get_state().unwrap().running);
    let socket = d.socket.clone();
    drop(d);
    assert!(!socket.exists(), "a stopped daemon removes its socket");
    assert!(matches!(Client::connect(&socket), Err(ClientError::NotRunning(_))));

    // A group that does not exist: root's group, still 0660.
    let (d, _fake) = InProcess::fake(Some("pidcap-no-such-group"));
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert_eq!(pidcap_daemon::server::group_gid("pidcap-no-such-group"), None);
    assert_eq!(pidcap_daemon::server::group_gid(&group), Some(gid));
}

#[test]
fn a_subscriber_that_does_not_read_never_blocks_capture_and_is_told_what_it_missed() {
    const SENT: u64 = 30_000;
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    let mut slow = d.client();
    slow.subscribe(None).unwrap(); // ... and then does not read for a while
    c.start_capture(vec![me()], vec![], Some(64), Some(100_000), false).unwrap();
    for i in 0..SENT {
        fake.push(me(), udp_packet(i as u16, &[b'x'; 32]));
    }
    // The capture kept up: every packet reached the daemon's ring.
    received(&mut c, SENT);
    let s = c.get_state().unwrap();
    assert_eq!((s.stats.kernel.ring_full, s.stats.evicted), (0, 0));
    let last = s.newest_id.unwrap();

    // The slow subscriber is told how much it missed, then gets the newest packets.
    let (mut packets, mut missed) = (0u64, 0u64);
    loop {
        match slow.next_event().unwrap() {
            Event::Packet { packet } => {
                packets += 1;
                if packet.id == last {
                    break;
                }
            }
            Event::Missed { count } => missed += count,
            _ => {}
        }
    }
    assert!(missed > 0, "a subscriber {SENT} packets behind must be told it missed some");
    assert!(packets < SENT && packets + missed >= SENT, "seen {packets} + missed {missed} accounts for {SENT}");
}

#[test]
fn subscribe_since_sends_the_held_packets_first_then_the_new_ones_once() {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    let started = c.start_capture(vec![me()], vec![], None, None, false).unwrap();
    push(&fake, 30);
    received(&mut c, 30);
    let mut sub = d.client();
    let since = started.first_id + 9; // the 11th packet onwards
    let s = sub.subscribe(Some(since)).unwrap();
    assert_eq!(s.backlog, 20);
    push(&fake, 5);
    let mut ids = Vec::new();
    while ids.len() < 25 {
        match sub.next_event().unwrap() {
            Event::Packet { packet } => {
                // The same packet as get_packets returns.
                assert_eq!(Some(&*packet), c.get_packet(packet.id).unwrap().as_ref());
                ids.push(packet.id);
            }
            Event::Missed { count } => panic!("missed {count}"),
            _ => {}
        }
    }
    assert_eq!(ids, (since + 1..since + 26).collect::<Vec<_>>(), "in order, none twice");
    // Nothing else is pending: the next event is a counters one.
    sub.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    assert!(matches!(sub.next_event().unwrap(), Event::Counters { running: true, .. }));
    // A backlog larger than a page still arrives whole.
    push(&fake, MAX_PAGE + 500);
    received(&mut c, 35 + MAX_PAGE as u64 + 500);
    let mut late = d.client();
    let held = 35 + MAX_PAGE + 500;
    assert_eq!(late.subscribe(Some(0)).unwrap().backlog, held);
    let mut next = started.first_id;
    while next < started.first_id + held as u64 {
        if let Event::Packet { packet } = late.next_event().unwrap() {
            assert_eq!(packet.id, next);
            next += 1;
        }
    }
}

#[test]
fn a_send_job_runs_without_the_kernel_and_is_watched_to_its_end() {
    let (d, _fake) = InProcess::fake(None);
    let mut c = d.client();
    let srv = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    srv.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let args = InjectArgs {
        data: Some("70 69 6e 67".into()),
        mode: Some(pidcap_resend::Mode::Connect),
        proto: Some("udp".parse().unwrap()),
        to: Some(srv.local_addr().unwrap().to_string()),
        count: Some(2),
        interval_ms: Some(10),
        timeout_ms: Some(10),
        ..Default::default()
    };
    let job = c.inject(args).unwrap();
    assert_eq!(job.count, 2);
    let watched = c.watch_job(job.id).unwrap();
    assert_eq!(watched.id, job.id);
    let mut sends = 0;
    let summary = loop {
        match c.next_event().unwrap() {
            Event::SendStatus { job: j, status } => {
                assert_eq!((j, status.ok), (job.id, true));
                sends += 1;
            }
            Event::JobDone { job: j, summary } => {
                assert_eq!(j, job.id);
                break summary;
            }
            _ => {}
        }
    };
    assert_eq!((sends, summary.sent, summary.failed), (2, 2, 0));
    let mut buf = [0u8; 16];
    let got = srv.recv(&mut buf).unwrap();
    assert_eq!(&buf[..got], b"ping");
    let listed = c.list_jobs().unwrap();
    assert_eq!(listed.iter().map(|j| (j.id, j.sent)).collect::<Vec<_>>(), [(job.id, 2)]);
    // Stopping an ended job answers with it as it ended.
    assert_eq!(c.stop_job(job.id).unwrap().sent, 2);
}

/// The nice values of this process's engine threads.
fn engine_nices() -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != "pidcap-engine" {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the ")" closing comm: state is field 3, nice field 19.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        nices.push(rest.split_whitespace().nth(16).and_then(|n| n.parse().ok()).unwrap());
    }
    nices
}

#[test]
fn the_engine_thread_drains_at_a_raised_priority_when_allowed() {
    let (d, _fake) = InProcess::fake(None);
    assert!(!d.client().get_state().unwrap().running);
    let nices = engine_nices();
    assert!(!nices.is_empty(), "no pidcap-engine thread in this process");
    // Root may raise it; anyone else keeps the default (and the daemon still works).
    let want = if pidcap_testkit::is_root() { i64::from(pidcap_daemon::engine::ENGINE_NICE) } else { 0 };
    assert!(nices.contains(&want), "engine threads run at nice {nices:?}, expected {want}");
}

/// One raw request line of protocol version `v`; its reply (events before it are skipped).
fn raw_call(c: &mut Client, v: u32, id: u64, op: &str, fields: &str) -> pidcap_api::Reply {
    let sep = if fields.is_empty() { "" } else { "," };
    c.send_line(format!(r#"{{"v":{v},"id":{id},"op":"{op}"{sep}{fields}}}"#).as_bytes()).unwrap();
    loop {
        let r = c.read_reply().unwrap();
        if r.event.is_none() {
            assert_eq!(r.id, Some(id), "{r:?}");
            return r;
        }
    }
}

/// The packets of a subscription up to (and with) the one whose id is `last`, with the `v` of each event.
fn events_until(c: &mut Client, last: u64) -> Vec<(u32, Arc<pidcap_packet::CapturedPacket>)> {
    let mut got = Vec::new();
    loop {
        let r = c.read_reply().unwrap();
        match r.event {
            Some(Event::Packet { packet }) => {
                let id = packet.id;
                got.push((r.v, packet));
                if id >= last {
                    return got;
                }
            }
            Some(Event::Missed { count }) => panic!("missed {count}"),
            _ => {}
        }
    }
}

#[test]
fn tls_records_come_back_with_their_tls_object_and_version_1_clients_are_served_as_before() {
    use pidcap_engine::fake::FakePacket;
    use pidcap_packet::{Direction, TlsInfo, TlsLibrary};
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    let mut sub = d.client();
    assert_eq!(sub.subscribe(None).unwrap().protocol, 2);
    // A version 1 client, subscribed with a version 1 request (no new field).
    let mut old_sub = d.client();
    let r = raw_call(&mut old_sub, 1, 5, "subscribe", "");
    assert_eq!((r.v, r.ok, r.result.as_ref().map(|x| x["protocol"].clone())), (1, Some(true), Some(1.into())));
    // An old start_capture still works, as it did.
    let mut old = d.client();
    let r = raw_call(&mut old, 1, 1, "start_capture", &format!(r#""pids":[{}]"#, me()));
    assert_eq!((r.v, r.ok), (1, Some(true)), "{r:?}");
    assert_eq!(fake.state().config.map(|k| k.tls), Some(true), "the daemon asks for TLS plaintext");

    let (local, remote) = ("127.0.0.1:40000".parse().unwrap(), "127.0.0.1:8443".parse().unwrap());
    let plaintext = b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n";
    fake.push(me(), udp_packet(1000, b"before"));
    fake.push_packet(FakePacket::tls(me(), Direction::Outbound, local, remote, plaintext));
    fake.push(me(), udp_packet(1001, b"after"));
    received(&mut c, 3);
    let first = c.get_state().unwrap().oldest_id.unwrap();
    let (rec_id, last) = (first + 1, first + 2);

    // get_packets (version 2): the record between the packets, with its tls object.
    let page = c.get_packets(first - 1, None).unwrap();
    let ids: Vec<u64> = page.packets.iter().map(|p| p.id).collect();
    assert_eq!(ids, [first, rec_id, last]);
    let rec = &page.packets[1];
    assert_eq!(rec.tls, Some(TlsInfo { tid: me(), library: TlsLibrary::Openssl }));
    assert_eq!(rec.payload(), plaintext);
    assert_eq!((rec.decoded.local_port, rec.decoded.remote_port), (40000, 8443));
    assert_eq!(rec.orig_len as usize, 20 + 20 + plaintext.len(), "IPv4 + TCP headers + the true plaintext length");
    assert!(page.packets[0].tls.is_none() && page.packets[2].tls.is_none());
    // ... and in the raw JSON, as docs/API.md says.
    let r = raw_call(&mut old, 2, 2, "get_packets", &format!(r#""since":{}"#, first - 1));
    assert_eq!(r.v, 2);
    let packets = &r.result.as_ref().unwrap()["packets"];
    assert_eq!(packets[1]["tls"], serde_json::json!({"tid": me(), "library": "openssl"}));
    assert!(packets[0].get("tls").is_none(), "a packet has no tls field: {}", packets[0]);

    // subscribe (version 2): the record as an event, the same as get_packets returns.
    let events = events_until(&mut sub, last);
    assert_eq!(events.iter().map(|(_, p)| p.id).collect::<Vec<_>>(), [first, rec_id, last]);
    assert!(events.iter().all(|(v, _)| *v == 2));
    assert_eq!(*events[1].1, *rec);

    // Version 1: the same pages and events without the record, and in version 1's words.
    let r = raw_call(&mut old, 1, 3, "get_packets", &format!(r#""since":{}"#, first - 1));
    assert_eq!(r.v, 1);
    let page: pidcap_api::protocol::PacketPage = serde_json::from_value(r.result.unwrap()).unwrap();
    assert_eq!(page.packets.iter().map(|p| p.id).collect::<Vec<_>>(), [first, last]);
    assert_eq!((page.next_since, page.more, page.missed), (last, false, 0));
    let r = raw_call(&mut old, 1, 4, "get_packets", &format!(r#""since":{first},"limit":1"#));
    let page: pidcap_api::protocol::PacketPage = serde_json::from_value(r.result.unwrap()).unwrap();
    assert!(page.packets.is_empty() && page.next_since == rec_id && page.more, "paging goes on past a record");
    let events = events_until(&mut old_sub, last);
    assert_eq!(events.iter().map(|(_, p)| p.id).collect::<Vec<_>>(), [first, last]);
    assert!(events.iter().all(|(v, p)| *v == 1 && p.tls.is_none()));
    let mut late_old = d.client();
    let r = raw_call(&mut late_old, 1, 6, "subscribe", &format!(r#""since":{}"#, first - 1));
    assert_eq!(r.result.unwrap()["backlog"], 2, "a version 1 backlog leaves the record out");

    // The TLS counters are in the state's kernel stats.
    {
        let mut s = fake.state();
        s.counters.tls_records += 7;
        s.counters.tls_dropped += 2;
    }
    let st = c.get_state().unwrap();
    assert_eq!((st.stats.kernel.tls_records, st.stats.kernel.tls_dropped), (7, 2));
    assert_eq!(st.protocol, 2);
    let r = raw_call(&mut old, 2, 7, "get_state", "");
    assert_eq!(r.result.unwrap()["stats"]["kernel"]["tls_records"], 7);

    // Unknown fields are refused in either version, the new words included.
    for v in [1, 2] {
        for (op, fields) in
            [("get_packets", r#""tls":true"#), ("subscribe", r#""records":false"#), ("get_state", r#""tls":1"#)]
        {
            let r = raw_call(&mut old, v, 8, op, fields);
            assert_eq!(r.error.map(|e| e.code), Some(ErrorCode::InvalidArgument), "v{v} {op} {fields}");
        }
    }
    let r = raw_call(&mut old, 3, 9, "get_state", "");
    assert_eq!(r.error.map(|e| e.code), Some(ErrorCode::UnsupportedVersion));
}

#[test]
fn get_state_says_which_tls_library_each_target_is_covered_by_or_none() {
    use pidcap_engine::{TlsCoverage, TlsLibraryFile};
    use pidcap_packet::TlsLibrary;
    let (d, handle) = InProcess::fake(None);
    let mut c = d.client();
    // A second live process of ours: a child that waits.
    let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let other = child.id();
    c.start_capture(vec![me(), other], vec![], None, None, false).unwrap();
    // The kernel layer reports nothing yet: not known.
    let st = c.get_state().unwrap();
    assert!(st.targets.iter().all(|t| t.tls.is_none()), "{:?}", st.targets);
    let libssl = TlsLibraryFile { library: TlsLibrary::Openssl, path: "/usr/lib/x86_64-linux-gnu/libssl.so.3".into() };
    handle.set_tls_coverage(vec![
        TlsCoverage { pid: me(), comm: "protocol".into(), libraries: vec![libssl.clone()] },
        TlsCoverage { pid: other, comm: "sleep".into(), libraries: vec![] },
    ]);
    let st = c.get_state().unwrap();
    let tls = |pid: u32| st.targets.iter().find(|t| t.pid == pid).and_then(|t| t.tls.clone());
    assert_eq!(tls(me()), Some(vec![libssl]));
    assert_eq!(tls(other), Some(vec![]), "maps no supported TLS library");
    // A target that is gone is not covered any more: not known, whatever the layer still says.
    child.kill().unwrap();
    child.wait().unwrap();
    handle.exit(other);
    assert!(
        wait_for(Duration::from_secs(5), || {
            let st = c.get_state().unwrap();
            st.targets.iter().find(|t| t.pid == other).is_none_or(|t| !t.alive && t.tls.is_none())
        }),
        "{:?}",
        c.get_state().unwrap().targets
    );
}
