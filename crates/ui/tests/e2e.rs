//! End to end, in headless Chromium, against a real daemon (`pidcap daemon`,
//! root: the kernel layer is loaded) and real processes in a network
//! namespace of the test's own. Every step waits for the state it acts on
//! (the element there and enabled, the text typed held by the state machine,
//! the row selected, the tab shown), never for time. Without root or a tool
//! a test is skipped, and fails under CI=true. Screenshots go to
//! target/ui-screenshots/.

mod common;
use common::*;
use pidcap_testkit::tls::{Certs, HttpsServer, Peer};
use pidcap_testkit::NetNs;
use serde_json::json;
use std::process::Command;
use std::time::Duration;

fn setup(tag: &str) -> (NetNs, Stack, Browser) {
    let ns = NetNs::new(tag);
    let (stack, b) = open_ui();
    (ns, stack, b)
}

/// Wait until the library list answers the search `query` with `n` entries.
fn wait_library(b: &Browser, query: &str, n: u64) {
    wait_for(&format!("{n} library entries for {query:?}"), STEP, || {
        let listed = b.js("return document.querySelector('#lib-list').dataset.query", json!([]));
        (listed.as_str() == Some(query) && b.count("#lib-list .lib-item") == n).then_some(())
    });
}

/// The id of the newest row of the packet list once every row shown passes
/// `check` (the display filter typed has been applied).
fn newest_row(b: &Browser, what: &str, check: impl Fn(&str) -> bool) -> String {
    wait_for(what, STEP, || {
        let rows = b.js(
            "return [...document.querySelectorAll('#packet-list .pkt')].map(r => [r.dataset.id, r.innerText])",
            json!([]),
        );
        let rows = rows.as_array().cloned().unwrap_or_default();
        for r in &rows {
            let text = r[1].as_str().unwrap_or("");
            assert!(check(text), "a row the display filter should hide: {text}");
        }
        // The newest row: it stays in view longest while the list follows new packets.
        rows.last().and_then(|r| r[0].as_str().map(String::from))
    })
}

/// Show packet `id` and open the editor on its payload.
fn open_editor(b: &Browser, id: &str) {
    b.click(&format!("#packet-list .pkt[data-id='{id}']"));
    wait_for("the packet's details", STEP, || b.text("#packet-detail h2").contains(&format!("#{id} ")).then_some(()));
    // Its process, as pidcap read it (issue 12).
    let process = b.text("#packet-process").to_lowercase();
    assert!(process.contains("executable") && process.contains("command line"), "{process}");
    b.click("#edit-packet");
    // (h2 are shown in capitals: compare in lower case)
    wait_for("the editor", STEP, || {
        b.text("#editor h2").to_lowercase().contains(&format!("packet #{id} ")).then_some(())
    });
}

/// Start the resend and wait for its summary (Err: what the resend panel says went wrong).
fn resend(b: &Browser) -> Result<String, String> {
    b.click("#resend-start");
    wait_for("the resend to finish", STEP, || {
        let s = b.text("#resend-summary");
        let e = b.text("#resend .err");
        if !e.is_empty() {
            return Some(Err(e));
        }
        (!s.is_empty()).then_some(Ok(s))
    })
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn holds(path: &std::path::Path, bytes: &[u8]) -> bool {
    std::fs::read(path).unwrap_or_default().windows(bytes.len()).any(|w| w == bytes)
}

#[test]
fn capture_block_edit_resend_and_library() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let (ns, stack, b) = setup("ui-main");
    let dir = stack.dir.path().to_path_buf();
    let (recv_log, status) = (dir.join("received.log"), dir.join("status.log"));
    let mut peer = python(&ns, &["listen", "7001", "7002", recv_log.to_str().unwrap()]);
    assert_eq!(peer.wait_line().trim(), "ready");
    let target = python(&ns, &["talk", "7001", "7002", status.to_str().unwrap()]);
    wait_for("the target's first exchange", STEP, || read(&status).lines().next().map(|_| ()));
    b.screenshot("1-processes");

    // 1. Capture: the target's packets appear.
    capture_pid(&b, target.pid());
    wait_for("packets in the list", STEP, || (b.count("#packet-list .pkt") >= 10).then_some(()));
    let udp_rows = wait_for("a UDP row", STEP, || {
        let n = b.js("return [...document.querySelectorAll('#packet-list .pkt')].filter(r => r.innerText.includes('UDP') && r.innerText.includes(':7002')).length", json!([]));
        (n.as_u64().unwrap_or(0) > 0).then_some(n)
    });
    eprintln!("UDP rows visible: {udp_rows}");
    b.screenshot("2-capture");

    // 2. Block rule: the target's connections fail, the counters move.
    b.tab("filters");
    b.fill("#rule-protocol", "tcp");
    b.fill("#rule-port", "7001");
    b.click("#rule-add");
    wait_for("the rule tag", STEP, || (b.count("#rules .tag.block") == 1).then_some(()));
    let fails_before = read(&status).lines().filter(|l| l.starts_with("fail")).count();
    wait_for("a refused connect", STEP, || {
        (read(&status).lines().filter(|l| l.starts_with("fail")).count() >= fails_before + 2).then_some(())
    });
    assert!(read(&status).lines().last().unwrap_or("").starts_with("fail"), "the target's connect fails once blocked");
    wait_for("hits on the rule", STEP, || {
        let t = b.text("#rules .tag.block");
        let hits: u64 = t
            .split_whitespace()
            .zip(t.split_whitespace().skip(1))
            .find(|(_, w)| *w == "hits")
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or(0);
        (hits > 0).then_some(())
    });
    b.screenshot("3-filters");
    b.tab("capture");
    wait_for("the blocked counter to move", STEP, || {
        let t = b.text("#counter-blocked b");
        (t.trim().parse::<u64>().unwrap_or(0) > 0).then_some(())
    });
    b.tab("filters");
    b.click("#rule-clear");
    wait_for("the rules cleared", STEP, || (b.count("#rules .tag") == 0).then_some(()));

    // 3. Edit a UDP packet's payload and resend it three times: the listener gets it.
    b.tab("capture");
    b.fill("#display-filter", "udp out 7002");
    let id = newest_row(&b, "a filtered row", |row| row.contains("UDP") && row.contains(":7002"));
    open_editor(&b, &id);
    b.fill("#edit-ascii", "EDITED-BY-UI");
    b.wait_value("#edit-hex", "45 44 49 54 45 44 2d 42 59 2d 55 49");
    b.fill("#edit-hex", "45 44 zz");
    b.wait_find("#hex-error");
    b.fill("#edit-hex", "45 44 49 54 45 44 2d 42 59 2d 55 49");
    wait_for("the hex error to go", STEP, || b.find("#hex-error").is_none().then_some(()));
    b.fill("#resend-mode", "socket");
    b.fill("#resend-count", "3");
    b.fill("#resend-interval", "100");
    b.screenshot("4-editor");
    let resend = resend(&b);
    b.screenshot("5-resend");
    match resend {
        Ok(summary) => {
            eprintln!("resend: {summary}");
            wait_for("three edited datagrams at the listener", STEP, || {
                (read(&recv_log).lines().filter(|l| *l == "EDITED-BY-UI").count() == 3).then_some(())
            });
        }
        Err(e) => panic!("the daemon refused the resend: {e}"),
    }

    // 4. Library: save the packet, search for it, export .dpp, re-import it.
    b.fill("#save-name", "edited hello");
    b.fill("#save-tags", "ui-test, udp");
    b.fill("#save-description", "saved by the UI end-to-end test");
    b.click("#save-library");
    wait_for("the saved notice", STEP, || b.text(".notices").contains("Saved 1 packet").then_some(()));
    b.tab("library");
    wait_library(&b, "", 1);
    b.fill("#lib-search", "EDITED");
    wait_library(&b, "EDITED", 1);
    b.fill("#lib-search", "nothing-matches-this");
    wait_library(&b, "nothing-matches-this", 0);
    b.fill("#lib-search", "");
    wait_library(&b, "", 1);
    b.click("#lib-export");
    let href = wait_for("the download link", STEP, || {
        b.js("const a = document.querySelector('a.download'); return a ? a.getAttribute('href') : null", json!([]))
            .as_str()
            .map(String::from)
    });
    let (_, head, _) = http(stack.ui.addr, "GET", &format!("/?token={}", stack.ui.token), &[], b"");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let (st, _, dpp) = http(stack.ui.addr, "GET", &href, &[("Cookie", &cookie)], b"");
    assert_eq!(st, 200);
    assert!(!dpp.is_empty());
    let file = dir.join("export.dpp");
    std::fs::write(&file, &dpp).unwrap();
    b.send_keys("#lib-import", file.to_str().unwrap());
    wait_library(&b, "", 2);
    b.click("#lib-list .lib-item a");
    b.wait_find("#lib-edit");
    b.screenshot("6-library");
    drop(target);
}

/// Packet leaving the target → its row in the browser, at 1,000 packets/s.
#[test]
fn latency_packet_to_row() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let (ns, _stack, b) = setup("ui-lat");
    let mut peer = python(&ns, &["listen", "7101", "7102", "/dev/null"]);
    assert_eq!(peer.wait_line().trim(), "ready");
    // 8 s of datagrams: the capture starts while it sends, the rows are timed until it ends.
    let mut flood = python(&ns, &["flood", "7102", "1000", "8"]);
    capture_pid(&b, flood.pid());
    b.tab("capture");
    b.cdp("Performance.enable", json!({}));
    let before = b.metrics();
    b.js(
        // A row's first insertion is when its packet appears; the list re-creates
        // rows as its window slides, and those later insertions are not arrivals.
        "window.__lat = []; const seen = new Set(); const list = document.querySelector('#packet-list');
         new MutationObserver(ms => { const now = performance.timeOrigin + performance.now();
           for (const m of ms) for (const n of m.addedNodes) if (n.dataset && n.dataset.ts && !seen.has(n.dataset.id)) {
             seen.add(n.dataset.id); window.__lat.push(now - Number(n.dataset.ts) / 1e6); } })
           .observe(list, {childList: true, subtree: true});
         // Frame intervals and long tasks of Chromium's main thread meanwhile.
         window.__frames = []; let last = performance.now();
         const tick = t => { window.__frames.push(t - last); last = t; if (window.__frames.length < 100000) requestAnimationFrame(tick); };
         requestAnimationFrame(tick);
         // The liveview's edit messages: how many, their bytes, the time applying them.
         window.__ws = [0, 0, 0]; const run = window.interpreter.run_from_bytes.bind(window.interpreter);
         window.interpreter.run_from_bytes = b => { const t = performance.now(); run(b); window.__ws[0]++; window.__ws[1] += b.byteLength; window.__ws[2] += performance.now() - t; };
         window.__long = [];
         try { new PerformanceObserver(l => { for (const e of l.getEntries()) window.__long.push(e.duration); })
           .observe({type: 'longtask', buffered: false}); } catch (e) {}
         return true;",
        json!([]),
    );
    assert!(flood.wait_exit(Duration::from_secs(30)).success(), "the flooder failed");
    // Its last packets reach the page after it exits: wait for the rows, not for time.
    let lat = wait_for("rows of the flood to appear", STEP, || {
        let v = b.js("return window.__lat", json!([]));
        let lat: Vec<f64> = v.as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect();
        (lat.len() > 100).then_some(lat)
    });
    let mut lat = lat;
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let held = b.text("#list-info");
    let after = b.metrics();
    let d = |k: &str| (after.get(k).unwrap_or(&0.0) - before.get(k).unwrap_or(&0.0)) * 1e3;
    println!(
        "chromium main thread during the flood: tasks {:.0} ms, script {:.0} ms, style {:.0} ms ({} recalcs), layout {:.0} ms ({} layouts)",
        d("TaskDuration"), d("ScriptDuration"), d("RecalcStyleDuration"), d("RecalcStyleCount") / 1e3,
        d("LayoutDuration"), d("LayoutCount") / 1e3
    );
    let ws = b.js("return window.__ws", json!([]));
    println!(
        "liveview: {} edit messages, {:.1} MB, {:.0} ms applying them",
        ws[0],
        ws[1].as_f64().unwrap_or(0.0) / 1e6,
        ws[2].as_f64().unwrap_or(0.0)
    );
    let frames = b.js("return window.__frames", json!([]));
    let mut frames: Vec<f64> = frames.as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect();
    frames.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let long = b.js("return window.__long", json!([]));
    let long: Vec<f64> = long.as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect();
    println!(
        "frames: {} p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms; long tasks {} totalling {:.0} ms",
        frames.len(),
        percentile(&frames, 50.0),
        percentile(&frames, 90.0),
        percentile(&frames, 99.0),
        long.len(),
        long.iter().sum::<f64>()
    );
    b.screenshot("7-latency");
    println!(
        "UI latency at 1000 packets/s: {} packets seen, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({held}; load {})",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    assert!(lat.len() > 100, "rows appeared: {}", lat.len());
}

/// The editor's ASCII pane showed CR and LF as dots and sent dots back: an
/// HTTP request edited there lost its CRLFs. Shown as `\r\n`, edited and
/// resent, it reaches the server with them.
#[test]
fn an_http_request_edited_in_the_ascii_pane_is_resent_with_its_crlfs() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let (ns, stack, b) = setup("ui-http");
    let log = stack.dir.path().join("http.log");
    let mut server = python(&ns, &["http-server", "7201", log.to_str().unwrap()]);
    assert_eq!(server.wait_line().trim(), "ready");
    let client = python(&ns, &["http-client", "7201"]);
    let request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:7201\r\n\r\n";
    wait_for("the client's first request at the server", STEP, || holds(&log, request).then_some(()));

    capture_pid(&b, client.pid());
    b.tab("capture");
    b.fill("#display-filter", "tcp out 7201 get");
    let id = newest_row(&b, "a request row", |row| row.contains("TCP") && row.contains(":7201"));
    open_editor(&b, &id);
    let shown = b.value("#edit-ascii").unwrap_or_default();
    assert_eq!(shown, r"GET / HTTP/1.1\r\nHost: 127.0.0.1:7201\r\n\r\n", "CR and LF are shown as escapes");
    b.fill("#edit-ascii", &shown.replacen("GET / ", "GET /edited-by-ui ", 1));
    let edited = b"GET /edited-by-ui HTTP/1.1\r\nHost: 127.0.0.1:7201\r\n\r\n";
    b.wait_value("#edit-hex", &pidcap_ui::editor::format_hex(edited));
    b.fill("#resend-mode", "socket");
    b.fill("#resend-count", "1");
    b.screenshot("8-http-editor");
    let summary = resend(&b).unwrap_or_else(|e| panic!("the daemon refused the resend: {e}"));
    eprintln!("resend: {summary}");
    wait_for("the edited request, CRLFs and all, at the server", STEP, || holds(&log, edited).then_some(()));
    drop(client);
}

/// "Run and capture": the command is held until it is a target, so its very
/// first datagram is captured.
#[test]
fn run_a_command_and_capture_it_from_its_first_packet() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("python3"));
    let (_stack, b) = open_ui();
    // Three datagrams to the discard port, at once on start, then it exits.
    let command = "python3 -c \"import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
                   [s.sendto(b'from-the-start-%d' % i, ('127.0.0.1', 9)) for i in range(3)]\"";
    b.fill("#run-command", command);
    b.click("#run-capture");
    wait_for("the capture of the command", STEP, || b.text(".notices").contains("Capturing process").then_some(()));
    b.tab("capture");
    b.fill("#display-filter", "udp out from-the-start-0");
    // The filter matches the payload's text: that row is the first datagram.
    newest_row(&b, "the command's first datagram", |row| row.contains("UDP") && row.contains("127.0.0.1:9"));
}

/// A TLS client's request, decrypted by the kernel layer's uprobes on its
/// TLS library (python's ssl: OpenSSL), is listed marked as decrypted,
/// selected by the display filter, and opens in the hex/ASCII view with the
/// request line, labelled as taken from the library; the target's coverage
/// and the TLS counter are shown; edited, it is replayed over a fresh TLS
/// connection and the server's decrypted answer is shown.
#[test]
fn a_tls_clients_decrypted_request_is_listed_marked_and_opens_as_plaintext() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("openssl"), Tool("python3"));
    let (stack, b) = open_ui();
    let certs = Certs::new("ui-tls");
    let ca = &certs.ca;
    let log = stack.dir.path().join("https.log");
    // pidcap-testkit's https.py: `echo-server` appends the plaintext it reads to LOG and answers
    // "echo: <request line>"; `raw-client` GETs PATH every 200 ms on one kept-alive connection.
    let server = HttpsServer::start(Command::new("python3"), "echo-server", &[&certs.cert, &certs.key, &log]);
    let port = server.port.to_string();
    let path = "/tls-secret-path";
    let client = Peer::https(Command::new("python3"), "raw-client", &[ca.to_str().unwrap(), &port, path]);
    let request_line = format!("GET {path} HTTP/1.1");
    wait_for("the client's first request at the server", STEP, || holds(&log, request_line.as_bytes()).then_some(()));

    capture_pid(&b, client.pid());
    b.tab("capture");
    // Its library is named.
    let pid = client.pid();
    let coverage = wait_for("the client's TLS coverage", STEP, || {
        let t = b.text(&format!("#tls-coverage .covered[data-pid='{pid}']"));
        (!t.is_empty()).then_some(t)
    });
    assert!(coverage.contains("openssl") && coverage.contains("libssl"), "{coverage}");
    // Its requests, decrypted, are rows of their own, marked.
    b.fill("#display-filter", "tls out tls-secret-path");
    let id = newest_row(&b, "a decrypted request row", |row| row.contains("TLS openssl") && row.contains(&port));
    let row = format!("#packet-list .pkt[data-id='{id}']");
    let marked = b.js(
        "const r = document.querySelector(arguments[0]); return [r.className, r.dataset.tls, getComputedStyle(r).backgroundColor]",
        json!([row]),
    );
    assert!(marked[0].as_str().unwrap_or("").split(' ').any(|c| c == "tls"), "{marked}");
    assert_eq!(marked[1], "openssl");
    // The wire's packets of the same connection are there too, without the mark.
    b.fill("#display-filter", &format!("wire tcp {port}"));
    newest_row(&b, "the connection's encrypted packets", |row| row.contains("TCP") && !row.contains("TLS openssl"));
    b.fill("#display-filter", "tls out tls-secret-path");
    newest_row(&b, "the decrypted rows again", |row| row.contains("TLS openssl"));
    // Opened: the plaintext in the hex/ASCII view, labelled as the library's.
    b.click(&row);
    wait_for("the record's details", STEP, || {
        b.text("#packet-detail h2").to_lowercase().contains(&format!("tls plaintext record #{id} ")).then_some(())
    });
    let ascii = b.text("#hex-view .asciicol").replace('\n', "");
    assert!(ascii.contains(&request_line), "the request line in the ASCII column: {ascii}");
    let label = b.text("#hex-label");
    assert!(label.contains("taken from the TLS library (openssl), not from the wire"), "{label}");
    wait_for("the TLS records counter", STEP, || {
        (b.text("#counter-TLS-records b").trim().parse::<u64>().unwrap_or(0) > 0).then_some(())
    });
    b.screenshot("9-tls-record");
    // The editor opens on the plaintext, and the resend form on connect mode over TLS.
    b.click("#edit-packet");
    wait_for("the editor on the record", STEP, || {
        b.text("#editor h2").to_lowercase().contains(&format!("tls plaintext record #{id} ")).then_some(())
    });
    let shown = b.value("#edit-ascii").unwrap_or_default();
    assert!(shown.starts_with(&format!("{request_line}\\r\\n")), "{shown}");
    b.wait_value("#resend-mode", "connect");
    b.wait_value("#resend-tls", "true");
    // Edited and replayed over a fresh TLS connection (the daemon checks the
    // server's certificate against the test's CA): the server gets it and its
    // decrypted echo is shown.
    b.fill("#edit-ascii", &shown.replacen(path, "/tls-resent-by-ui", 1));
    let edited = format!("GET /tls-resent-by-ui HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    b.wait_value("#edit-hex", &pidcap_ui::editor::format_hex(edited.as_bytes()));
    b.fill("#resend-ca", ca.to_str().unwrap());
    b.fill("#resend-count", "1");
    b.screenshot("10-tls-editor");
    let summary = resend(&b);
    let summary = summary.unwrap_or_else(|e| panic!("the TLS resend failed: {e}: {}", b.text("#resend-statuses")));
    eprintln!("TLS resend: {summary}");
    wait_for("the edited request at the server, over TLS", STEP, || holds(&log, edited.as_bytes()).then_some(()));
    let status = wait_for("the decrypted reply in the status", STEP, || {
        let t = b.text("#resend-statuses");
        t.contains("echo: GET /tls-resent-by-ui HTTP/1.1").then_some(t)
    });
    assert!(!status.contains("NOT verified"), "the certificate was checked: {status}");
    b.screenshot("11-tls-resend");
    drop(client);
}
