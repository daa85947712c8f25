//! The packet list (issue 14) end to end, in headless Chromium, against a
//! real daemon and real processes in a network namespace of the test's own:
//! Wireshark's display filters and a bad one's error at its position, sorting
//! by a column, keyboard selection, the Info column, the detail tree with its
//! bytes highlighted, and the list's frame time with 10,000 packets held.
//! Every step waits for the state it acts on, never for time. Screenshots:
//! target/ui-screenshots/list-*.png.
//!
//! Two tests need helper P's packet code (issue 14): `wireshark_filters_*`
//! needs `pidcap_packet::dfilter` to read Wireshark's syntax, and
//! `the_detail_tree_*` checks the tree when `pidcap_packet::dissect` returns
//! one (the headers view, its fallback, otherwise). Which is the case is
//! asked of those APIs in this process, so each test knows what to expect.

mod common;
use common::*;
use pidcap_packet::build::{build, flags, TcpFields, Transport};
use pidcap_packet::dfilter::DisplayFilter;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_testkit::NetNs;
use serde_json::{json, Value};
use std::time::Duration;

// The cells of a row, in the list's column order.
const PROTOCOL: usize = 4;
const DESTINATION: usize = 6;
const LENGTH: usize = 7;
const INFO: usize = 10;

/// The daemon, the UI server, a browser on it, and an HTTP client polling
/// an HTTP server (port `port`) in the namespace; the client captured.
struct Http {
    b: Browser,
    _client: KillOnDrop,
    _server: KillOnDrop,
    _stack: Stack,
    _ns: NetNs,
}

fn http_capture(tag: &str, port: u16) -> Http {
    let ns = NetNs::new(tag);
    let stack = Stack::start();
    let b = stack.browser();
    let log = stack.dir.path().join("http.log");
    let mut server = python(&ns, &["http-server", &port.to_string(), log.to_str().unwrap()]);
    assert_eq!(server.wait_line().trim(), "ready");
    let client = python(&ns, &["http-client", &port.to_string()]);
    wait_for("the client's first request at the server", STEP, || {
        std::fs::read(&log).is_ok_and(|l| l.starts_with(b"GET / HTTP/1.1")).then_some(())
    });
    capture_pid(&b, client.pid());
    b.tab("capture");
    Http { b, _client: client, _server: server, _stack: stack, _ns: ns }
}

/// One row as the page shows it.
#[derive(Debug, Clone)]
struct Row {
    id: u64,
    class: String,
    cells: Vec<String>,
}

/// The rows drawn, in one look (the list re-renders as packets arrive).
fn rows(b: &Browser) -> Vec<Row> {
    let v = b.js(
        "return [...document.querySelectorAll('#packet-list .pkt')]
           .map(r => [r.dataset.id, r.className, r.textContent])",
        json!([]),
    );
    v.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| Row {
            id: r[0].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
            class: r[1].as_str().unwrap_or("").to_string(),
            // A row is one line of text, its cells at their columns.
            cells: pidcap_ui::view::rowline::cells(r[2].as_str().unwrap_or("")),
        })
        .collect()
}

/// Wait until at least `n` rows are drawn and `check` holds for the rows.
fn wait_rows(b: &Browser, what: &str, n: usize, check: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    wait_for(what, STEP, || {
        let r = rows(b);
        (r.len() >= n && check(&r)).then_some(r)
    })
}

/// Stop the capture and wait until the header says so: the list stays as it is.
fn stop_capture(b: &Browser) {
    b.click("#stop-capture");
    wait_for("the capture to stop", STEP, || b.text("#status").contains("idle").then_some(()));
}

/// True when `pidcap_packet::dfilter` reads Wireshark's syntax (helper P's
/// work); otherwise says so and the caller returns (under CI=true: fails).
fn dfilter_reads_wireshark(test: &str) -> bool {
    let t = Transport::Tcp(TcpFields { seq: 1, ack: 0, flags: flags::SYN, window: 100 });
    let data = build("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap(), 64, t, b"").unwrap();
    let len = data.len() as u32;
    let p = CapturedPacket::new(1, 0, 1, "x".into(), 1, Direction::Outbound, Verdict::Pass, len, data);
    let reads = DisplayFilter::parse("tcp.port == 80").is_ok_and(|f| f.matches(&p))
        && DisplayFilter::parse("tcp.port == 81").is_ok_and(|f| !f.matches(&p));
    if !reads {
        let why = "pidcap_packet::dfilter does not read Wireshark's `tcp.port == 80` yet (helper P's issue-14 work)";
        assert!(!pidcap_testkit::in_ci(), "{test} needs {why}");
        eprintln!("SKIPPED {test}: needs {why}");
    }
    reads
}

#[test]
fn wireshark_filters_select_rows_and_an_empty_result_says_so() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    if !dfilter_reads_wireshark("wireshark_filters_select_rows_and_an_empty_result_says_so") {
        return;
    }
    let h = http_capture("ui-list-filter", 7301);
    let b = &h.b;
    b.fill("#display-filter", "tcp.port == 7301");
    wait_rows(b, "rows of the connection to 7301", 4, |r| {
        r.iter().all(|r| r.cells[5].ends_with(":7301") || r.cells[DESTINATION].ends_with(":7301"))
    });
    assert_eq!(b.js("return document.querySelector('#display-filter').dataset.state", json!([])), "good");
    assert!(b.find("#filter-error").is_none());
    b.screenshot("list-1-wireshark-filter");
    // A filter nothing matches: the list says so, not "Waiting for packets".
    b.fill("#display-filter", "tcp.port == 7399 || udp");
    let empty = wait_for("the empty list's words", STEP, || {
        let t = b.text("#list-empty");
        (t.contains("captured, 0 match the filter `tcp.port == 7399 || udp`") && b.count("#packet-list .pkt") == 0)
            .then_some(t)
    });
    let held: u64 = empty.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(held > 0, "{empty}");
    b.screenshot("list-2-nothing-matches");
}

#[test]
fn a_bad_filter_shows_its_error_at_its_position_and_keeps_the_last_good_rows() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let h = http_capture("ui-list-badf", 7311);
    let b = &h.b;
    b.fill("#display-filter", "tcp");
    wait_rows(b, "TCP rows", 3, |_| true);
    assert_eq!(b.js("return document.querySelector('#display-filter').dataset.state", json!([])), "good");
    // Bad both in pidcap's words and in Wireshark's: where, and what, as the parser says.
    let text = "ip.addr == 10.0.0.0/99";
    let e = DisplayFilter::parse(text).expect_err("a prefix length of 99 is not one");
    b.fill("#display-filter", text);
    b.wait_find("#filter-error");
    let shown = b.js(
        "const e = document.querySelector('#filter-error');
         return [e.dataset.at, e.dataset.len, document.querySelector('#filter-bad').innerText,
                 document.querySelector('#filter-message').innerText, e.innerText,
                 document.querySelector('#display-filter').dataset.state]",
        json!([]),
    );
    assert_eq!(shown[0], Value::from(e.at.to_string()), "{shown}");
    assert_eq!(shown[1], Value::from(e.len.to_string()), "{shown}");
    let bad: String = text.chars().skip(e.at).take(e.len).collect();
    let marked = if bad.is_empty() { "\u{2038}".to_string() } else { bad };
    assert_eq!(shown[2], Value::from(marked), "the marked part is the one the parser names: {shown}");
    assert_eq!(shown[3], Value::from(e.message.clone()));
    assert!(shown[4].as_str().unwrap_or("").contains("last valid filter `tcp`"), "{shown}");
    assert_eq!(shown[5], "bad");
    // Never a silent empty list: the rows of `tcp` stay.
    let kept = wait_rows(b, "the last good filter's rows", 3, |_| true);
    assert!(kept.iter().all(|r| r.cells[PROTOCOL].contains("TCP")), "{kept:?}");
    b.screenshot("list-3-bad-filter");
    // Mended: the error goes.
    b.fill("#display-filter", "tcp 10.0.0.0/8");
    wait_for("the error to go", STEP, || b.find("#filter-error").is_none().then_some(()));
}

#[test]
fn sorting_by_a_column_and_again_the_other_way() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let h = http_capture("ui-list-sort", 7321);
    let b = &h.b;
    // Requests, replies and ACKs: several lengths.
    wait_rows(b, "rows of several lengths", 8, |r| {
        let mut l: Vec<&String> = r.iter().map(|r| &r.cells[LENGTH]).collect();
        l.sort();
        l.dedup();
        l.len() >= 2
    });
    stop_capture(b);
    let lengths = |r: &[Row]| r.iter().map(|r| r.cells[LENGTH].parse::<u64>().unwrap()).collect::<Vec<_>>();
    b.click("#col-length");
    wait_for("ascending by length", STEP, || {
        b.js("return document.querySelector('#col-length').dataset.order", json!([]))
            .as_str()
            .map(String::from)
            .filter(|o| o == "ascending")
    });
    let asc = wait_rows(b, "rows by length, ascending", 2, |r| lengths(r).windows(2).all(|w| w[0] <= w[1]));
    b.screenshot("list-4-sorted-by-length");
    b.click("#col-length");
    let desc = wait_rows(b, "rows by length, descending", 2, |r| {
        lengths(r).windows(2).all(|w| w[0] >= w[1]) && lengths(r).first() > lengths(r).last()
    });
    assert_eq!(b.js("return document.querySelector('#col-length').innerText", json!([])), "Length ▼");
    assert!(lengths(&desc).first() >= lengths(&asc).last());
    // No. puts capture order back.
    b.click("#col-no");
    wait_rows(b, "capture order", 2, |r| r.windows(2).all(|w| w[0].id < w[1].id));
}

#[test]
fn arrows_move_the_selection_enter_opens_it_esc_closes_it() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let h = http_capture("ui-list-keys", 7331);
    let b = &h.b;
    wait_rows(b, "a few rows", 6, |_| true);
    stop_capture(b);
    let drawn = rows(b);
    // From no selection, ↓ starts at the first row drawn: ↓ ↓ is the second.
    let want = drawn[1].id;
    b.send_keys("#packet-list", "\u{E015}\u{E015}");
    wait_for("the cursor on the second row", STEP, || {
        rows(b).iter().any(|r| r.id == want && r.class.split(' ').any(|c| c == "cursor")).then_some(())
    });
    assert!(b.find("#packet-detail").is_none(), "arrows do not open the detail");
    b.send_keys("#packet-list", "\u{E007}");
    wait_for("the detail of that packet", STEP, || {
        let shown = b.js("const d = document.querySelector('#packet-detail'); return d && d.dataset.id", json!([]));
        (shown.as_str() == Some(want.to_string().as_str())).then_some(())
    });
    assert!(b.text("#packet-detail h2").contains(&format!("#{want} ")));
    let sel = rows(b).into_iter().find(|r| r.id == want).unwrap();
    assert!(sel.class.split(' ').any(|c| c == "sel"), "the row is selected: {}", sel.class);
    b.screenshot("list-5-keyboard");
    // ↑ with the detail open: the detail follows; Esc closes it.
    b.send_keys("#packet-list", "\u{E013}");
    let up = drawn[0].id.to_string();
    wait_for("the detail of the row above", STEP, || {
        let shown = b.js("const d = document.querySelector('#packet-detail'); return d && d.dataset.id", json!([]));
        (shown.as_str() == Some(up.as_str())).then_some(())
    });
    b.send_keys("#packet-list", "\u{E00C}");
    wait_for("the detail closed", STEP, || b.find("#packet-detail").is_none().then_some(()));
    b.wait_find("#packet-detail-none");
}

#[test]
fn the_info_column_shows_the_http_request_line() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let h = http_capture("ui-list-info", 7341);
    let b = &h.b;
    let r = wait_rows(b, "a request row", 1, |r| r.iter().any(|r| r.cells[INFO] == "GET / HTTP/1.1"));
    let req = r.iter().find(|r| r.cells[INFO] == "GET / HTTP/1.1").unwrap();
    assert_eq!(req.cells[PROTOCOL], "HTTP TCP", "{req:?}");
    assert!(req.cells[DESTINATION].ends_with(":7341"), "{req:?}");
    assert!(req.class.split(' ').any(|c| c == "c-http"), "coloured as HTTP: {}", req.class);
    // The reply's status line, and the TCP lines of the rest.
    let r = wait_rows(b, "a reply row", 1, |r| r.iter().any(|r| r.cells[INFO] == "HTTP/1.1 200 OK"));
    let tcp = r.iter().find(|r| r.cells[PROTOCOL] == "TCP").expect("an ACK row");
    assert!(tcp.cells[INFO].contains(" [ACK] Seq=") && tcp.cells[INFO].contains("Len=0"), "{tcp:?}");
    b.screenshot("list-6-info");
}

#[test]
fn the_detail_tree_highlights_a_fields_bytes() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let h = http_capture("ui-list-tree", 7351);
    let b = &h.b;
    b.fill("#display-filter", "tcp out get");
    let r = wait_rows(b, "a request row", 1, |r| r.iter().any(|r| r.cells[INFO].starts_with("GET ")));
    let id = r.iter().find(|r| r.cells[INFO].starts_with("GET ")).unwrap().id;
    b.click(&format!("#packet-list .pkt[data-id='{id}']"));
    wait_for("its detail", STEP, || b.text("#packet-detail h2").contains(&format!("#{id} ")).then_some(()));
    // Does pidcap_packet::dissect give a tree (helper P's work)? The same packet, built here.
    let t = Transport::Tcp(TcpFields { seq: 1, ack: 1, flags: flags::PSH | flags::ACK, window: 100 });
    let data =
        build("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap(), 64, t, b"GET / HTTP/1.1\r\n\r\n")
            .unwrap();
    let len = data.len() as u32;
    let sample = CapturedPacket::new(1, 0, 1, "x".into(), 1, Direction::Outbound, Verdict::Pass, len, data);
    if pidcap_packet::dissect::dissect(&sample).is_empty() {
        // No tree yet: the headers, field by field.
        eprintln!(
            "NOTE the_detail_tree_highlights_a_fields_bytes: dissect() gives no tree yet; checked the headers view"
        );
        let text = b.text("#packet-detail");
        assert!(text.contains("IPv4") && text.contains("source port") && text.contains("TCP"), "{text}");
        assert!(b.find("#packet-tree").is_none());
        b.screenshot("list-7-detail-headers");
        return;
    }
    b.wait_find("#packet-tree .tl[data-name='ip']");
    b.wait_find("#packet-tree .tl[data-name='tcp']");
    // A field of the TCP layer with bytes: clicked, they are marked in both columns.
    let field = b.js(
        "const l = [...document.querySelectorAll('#packet-tree .tl')]
           .find(l => { const [a, b] = l.dataset.range.split('-').map(Number);
                       return l.dataset.name.startsWith('tcp.') && b > a; });
         return l ? [l.dataset.path, l.dataset.range] : null",
        json!([]),
    );
    let (path, range) = (field[0].as_str().expect("a tcp field").to_string(), field[1].as_str().unwrap().to_string());
    b.click(&format!("#packet-tree .tl[data-path='{path}'] .tlabel"));
    wait_for("its bytes marked", STEP, || {
        let mark = b.js("return document.querySelector('#hex-view').dataset.mark", json!([]));
        (mark.as_str() == Some(range.as_str())).then_some(())
    });
    let (start, end): (usize, usize) = {
        let (s, e) = range.split_once('-').unwrap();
        (s.parse().unwrap(), e.parse().unwrap())
    };
    let marked_ascii = b.js(
        "return [...document.querySelectorAll('#hex-view .asciicol mark')].map(m => m.innerText).join('')",
        json!([]),
    );
    assert_eq!(marked_ascii.as_str().unwrap_or("").chars().count(), end - start, "{marked_ascii}");
    assert!(b.count("#hex-view .hexcol mark") >= 1);
    assert!(b.find(&format!("#packet-tree .tl.lit[data-path='{path}']")).is_some());
    b.screenshot("list-7-tree");
    // The TCP layer closed: its fields go; opened again: back.
    b.click("#packet-tree .tl[data-name='tcp'] .twisty");
    wait_for("the TCP layer closed", STEP, || {
        b.find(&format!("#packet-tree .tl[data-path='{path}']")).is_none().then_some(())
    });
    b.click("#packet-tree .tl[data-name='tcp'] .twisty");
    b.wait_find(&format!("#packet-tree .tl[data-path='{path}']"));
}

/// With 10,000 packets held, a step of the list (a key, a wheel turn) is
/// shown within a frame or two: the time from the event to the next frame
/// painted after the rows changed, in Chromium.
#[test]
fn the_list_stays_smooth_with_ten_thousand_packets_held() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let ns = NetNs::new("ui-list-10k");
    let stack = Stack::start();
    let b = stack.browser();
    let mut peer = python(&ns, &["listen", "7361", "7362", "/dev/null"]);
    assert_eq!(peer.wait_line().trim(), "ready");
    // 15,000 datagrams in 5 s (more than the 10,000 the list holds).
    let mut flood = python(&ns, &["flood", "7362", "3000", "5"]);
    capture_pid(&b, flood.pid());
    b.tab("capture");
    assert!(flood.wait_exit(Duration::from_secs(60)).success(), "the flooder failed");
    let held = wait_for("10,000 packets held", Duration::from_secs(60), || {
        let t = b.text("#list-info");
        t.contains("(10000 held)").then_some(t)
    });
    stop_capture(&b);
    eprintln!("list: {held}");
    // Each step: dispatch the event, wait for the rows to change, then for the next frame.
    let script = "
        const list = document.querySelector('#packet-list');
        const kind = arguments[0], steps = arguments[1];
        const changed = () => new Promise(ok => {
            const o = new MutationObserver(() => { o.disconnect(); ok(); });
            o.observe(list, {subtree: true, childList: true, attributes: true, characterData: true});
        });
        const frame = () => new Promise(ok => requestAnimationFrame(() => setTimeout(ok, 0)));
        return (async () => {
            const times = [];
            for (let i = 0; i < steps; i++) {
                const done = changed();
                const t0 = performance.now();
                if (kind === 'key') {
                    list.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowUp', code: 'ArrowUp', bubbles: true}));
                } else {
                    list.dispatchEvent(new WheelEvent('wheel', {deltaY: -66, deltaMode: 0, bubbles: true}));
                }
                await Promise.race([done, new Promise(ok => setTimeout(ok, 5000))]);
                await frame();
                times.push(performance.now() - t0);
            }
            return times;
        })();";
    let mut report = Vec::new();
    for kind in ["key", "wheel"] {
        let v = b.js(script, json!([kind, 60]));
        let mut t: Vec<f64> = v.as_array().unwrap().iter().filter_map(Value::as_f64).collect();
        assert_eq!(t.len(), 60);
        t.sort_by(|a, b| a.partial_cmp(b).unwrap());
        report.push(format!(
            "{kind}: p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            percentile(&t, 50.0),
            percentile(&t, 90.0),
            t[t.len() - 1]
        ));
        // A step that took 5 s timed out: its rows never changed.
        assert!(t[t.len() - 1] < 5000.0, "a {kind} step did not change the list: {t:?}");
        assert!(percentile(&t, 50.0) < 250.0, "{kind} steps are slow with 10,000 packets held: {t:?}");
    }
    b.screenshot("list-8-10k");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("UI frame time with 10,000 packets held: {} (load {})", report.join("; "), load.trim());
}
