//! End to end, in headless Chromium, against a real daemon (root: the kernel
//! layer is loaded) and real processes in a network namespace of the test's own.
//! Skips with a reason when not root or when Chromium is missing (fails on a
//! missing Chromium when CI is set). Screenshots go to target/ui-screenshots/.

mod common;
use common::*;
use serde_json::json;
use std::time::Duration;

fn setup(tag: &str) -> Option<(Netns, Stack, Browser)> {
    if !is_root() {
        eprintln!("skipped: not root (the daemon loads eBPF programs)");
        let _ = browser();
        return None;
    }
    let (chromium, driver) = browser()?;
    let ns = Netns::new(tag);
    let stack = Stack::start();
    let b = Browser::start(&chromium, &driver);
    b.goto(&stack.ui.url);
    b.wait_find("#tab-processes");
    Some((ns, stack, b))
}

fn capture_pid(b: &Browser, pid: u32) {
    b.click("#tab-processes");
    b.fill("#proc-search", &pid.to_string());
    b.click("#refresh-procs");
    wait_for("the process in the list", Duration::from_secs(10), || b.find(&format!("tr[data-pid='{pid}']")));
    b.click(&format!("tr[data-pid='{pid}']"));
    b.click("#start-capture");
    for _ in 0..100 {
        if b.text("#status").contains("capturing") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    b.screenshot("failed-capture-start");
    panic!("the capture did not start: {}", b.text(".notices"));
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn capture_block_edit_resend_and_library() {
    let Some((ns, stack, b)) = setup("main") else { return };
    let dir = stack.dir.path().to_path_buf();
    let (recv_log, status) = (dir.join("received.log"), dir.join("status.log"));
    let mut peer = ns.python(&["listen", "7001", "7002", recv_log.to_str().unwrap()]);
    assert_eq!(peer.wait_line().trim(), "ready");
    let target = ns.python(&["talk", "7001", "7002", status.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(300));
    b.screenshot("1-processes");

    // 1. Capture: the target's packets appear.
    capture_pid(&b, target.pid());
    wait_for("packets in the list", Duration::from_secs(15), || (b.count("#packet-list .pkt") >= 10).then_some(()));
    let udp_rows = wait_for("a UDP row", Duration::from_secs(10), || {
        let n = b.js("return [...document.querySelectorAll('#packet-list .pkt')].filter(r => r.innerText.includes('UDP') && r.innerText.includes(':7002')).length", json!([]));
        (n.as_u64().unwrap_or(0) > 0).then_some(n)
    });
    eprintln!("UDP rows visible: {udp_rows}");
    b.screenshot("2-capture");

    // 2. Block rule: the target's connections fail, the counters move.
    b.click("#tab-filters");
    b.fill("#rule-protocol", "tcp");
    b.fill("#rule-port", "7001");
    b.click("#rule-add");
    wait_for("the rule tag", Duration::from_secs(10), || (b.count("#rules .tag.block") == 1).then_some(()));
    let fails_before = read(&status).lines().filter(|l| l.starts_with("fail")).count();
    wait_for("a refused connect", Duration::from_secs(10), || {
        (read(&status).lines().filter(|l| l.starts_with("fail")).count() >= fails_before + 2).then_some(())
    });
    assert!(read(&status).lines().last().unwrap_or("").starts_with("fail"), "the target's connect fails once blocked");
    wait_for("hits on the rule", Duration::from_secs(10), || {
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
    b.click("#tab-capture");
    wait_for("the blocked counter to move", Duration::from_secs(10), || {
        let t = b.text("#counter-blocked b");
        (t.trim().parse::<u64>().unwrap_or(0) > 0).then_some(())
    });
    b.click("#tab-filters");
    b.click("#rule-clear");
    wait_for("the rules cleared", Duration::from_secs(10), || (b.count("#rules .tag") == 0).then_some(()));

    // 3. Edit a UDP packet's payload and resend it three times: the listener gets it.
    b.click("#tab-capture");
    b.fill("#display-filter", "udp out 7002");
    wait_for("filtered rows", Duration::from_secs(10), || (b.count("#packet-list .pkt") > 0).then_some(()));
    b.click("#packet-list .pkt");
    b.wait_find("#packet-detail");
    b.click("#edit-packet");
    b.fill("#edit-ascii", "EDITED-BY-UI");
    wait_for("the hex view to follow", Duration::from_secs(10), || {
        b.js("return document.querySelector('#edit-hex').value", json!([]))
            .as_str()
            .unwrap_or("")
            .starts_with("45 44 49 54")
            .then_some(())
    });
    b.fill("#edit-hex", "45 44 zz");
    b.wait_find("#hex-error");
    b.fill("#edit-hex", "45 44 49 54 45 44 2d 42 59 2d 55 49");
    wait_for("the hex error to go", Duration::from_secs(10), || b.find("#hex-error").is_none().then_some(()));
    b.fill("#resend-mode", "socket");
    b.fill("#resend-count", "3");
    b.fill("#resend-interval", "100");
    b.screenshot("4-editor");
    b.click("#resend-start");
    let resend = wait_for("the resend to finish", Duration::from_secs(20), || {
        let s = b.text("#resend-summary");
        let e = b.text("#resend .err");
        if !e.is_empty() {
            return Some(Err(e));
        }
        (!s.is_empty()).then_some(Ok(s))
    });
    b.screenshot("5-resend");
    match resend {
        Ok(summary) => {
            eprintln!("resend: {summary}");
            wait_for("three edited datagrams at the listener", Duration::from_secs(10), || {
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
    b.click("#tab-library");
    wait_for("the saved entry", Duration::from_secs(10), || (b.count("#lib-list .lib-item") == 1).then_some(()));
    b.fill("#lib-search", "EDITED");
    wait_for("the search hit", Duration::from_secs(10), || (b.count("#lib-list .lib-item") == 1).then_some(()));
    b.fill("#lib-search", "nothing-matches-this");
    wait_for("no hit", Duration::from_secs(10), || (b.count("#lib-list .lib-item") == 0).then_some(()));
    b.fill("#lib-search", "");
    wait_for("the entry again", Duration::from_secs(10), || (b.count("#lib-list .lib-item") == 1).then_some(()));
    b.click("#lib-export");
    let href = wait_for("the download link", Duration::from_secs(10), || {
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
    wait_for("the re-imported entry", Duration::from_secs(15), || (b.count("#lib-list .lib-item") == 2).then_some(()));
    b.click("#lib-list .lib-item a");
    b.wait_find("#lib-edit");
    b.screenshot("6-library");
    drop(target);
}

/// Packet leaving the target → its row in the browser, at 1,000 packets/s.
#[test]
fn latency_packet_to_row() {
    let Some((ns, _stack, b)) = setup("lat") else { return };
    let mut peer = ns.python(&["listen", "7101", "7102", "/dev/null"]);
    assert_eq!(peer.wait_line().trim(), "ready");
    // The flooder waits a little so the capture is on before it sends.
    let flood = ns.python(&["flood", "7102", "1000", "8"]);
    capture_pid(&b, flood.pid());
    b.click("#tab-capture");
    b.js(
        // A row's first insertion is when its packet appears; the list re-creates
        // rows as its window slides, and those later insertions are not arrivals.
        "window.__lat = []; const seen = new Set(); const list = document.querySelector('#packet-list');
         new MutationObserver(ms => { const now = performance.timeOrigin + performance.now();
           for (const m of ms) for (const n of m.addedNodes) if (n.dataset && n.dataset.ts && !seen.has(n.dataset.id)) {
             seen.add(n.dataset.id); window.__lat.push(now - Number(n.dataset.ts) / 1e6); } })
           .observe(list, {childList: true, subtree: true}); return true;",
        json!([]),
    );
    std::thread::sleep(Duration::from_secs(6));
    let v = b.js("return window.__lat", json!([]));
    let mut lat: Vec<f64> = v.as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let held = b.text("#list-info");
    b.screenshot("7-latency");
    println!(
        "UI latency at 1000 packets/s: {} packets seen, p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({held})",
        lat.len(),
        percentile(&lat, 50.0),
        percentile(&lat, 90.0),
        percentile(&lat, 99.0),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    assert!(lat.len() > 100, "rows appeared: {}", lat.len());
    drop(flood);
}
