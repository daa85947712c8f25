//! The packet list under a flood (issue 13, packet-to-row latency), end to
//! end in headless Chromium against a real daemon and a flooding process in
//! a network namespace of the test's own: each row is inserted once however
//! far the list slides (rows are keyed, never re-created), and each is one
//! line of text whose columns start under their headers, clipped without
//! being a scroll container (`overflow: clip`: a `hidden` box is one). Every step
//! waits for the state it needs, never for time. Screenshots:
//! target/ui-screenshots/latency-*.png.

mod common;
use common::*;
use pidcap_testkit::NetNs;
use pidcap_ui::state::packets::Column;
use pidcap_ui::view::rowline;
use serde_json::json;
use std::time::Duration;

#[test]
fn rows_are_inserted_once_as_the_list_slides_and_each_is_one_line_under_its_headers() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let ns = NetNs::new("ui-slide");
    let (_stack, b) = open_ui();
    let mut peer = python(&ns, &["listen", "7401", "7402", "/dev/null"]);
    assert_eq!(peer.wait_line().trim(), "ready");
    let mut flood = python(&ns, &["flood", "7402", "300", "3"]);
    capture_pid(&b, flood.pid());
    b.tab("capture");
    b.js(
        "window.__ins = {}; window.__removed = 0; const list = document.querySelector('#packet-list');
         new MutationObserver(ms => { for (const m of ms) {
             for (const n of m.addedNodes) if (n.dataset && n.dataset.id) window.__ins[n.dataset.id] = (window.__ins[n.dataset.id] || 0) + 1;
             for (const n of m.removedNodes) if (n.dataset && n.dataset.id) window.__removed++; } })
           .observe(list, {childList: true, subtree: true});
         return true;",
        json!([]),
    );
    assert!(flood.wait_exit(Duration::from_secs(30)).success(), "the flooder failed");
    // The list slid by far more than its 24 rows while it was watched.
    let (inserted, removed) = wait_for("the list to slide", STEP, || {
        let v = b.js("return [window.__ins, window.__removed]", json!([]));
        let ins: Vec<(String, u64)> = v[0]
            .as_object()
            .map(|o| o.iter().map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0))).collect())
            .unwrap_or_default();
        let removed = v[1].as_u64().unwrap_or(0);
        (removed >= 200).then_some((ins, removed))
    });
    let twice: Vec<&(String, u64)> = inserted.iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "rows re-created as the list slid (id, insertions): {twice:?}");
    assert!(inserted.len() as u64 >= removed, "{} rows inserted, {removed} removed", inserted.len());
    eprintln!("{} rows inserted once each, {removed} removed", inserted.len());

    // Each row is one text node (nothing else for the browser to lay out),
    // clipped without being a scroll container, and each of its columns
    // starts under its header: the header's cells are placed from the same
    // widths that pad the rows' text.
    let styles = b.js(
        "const rows = [...document.querySelectorAll('#packet-list .pkt')];
         return [rows.length, rows.filter(r => r.childNodes.length !== 1 || r.firstChild.nodeType !== 3).length,
                 rows.map(r => getComputedStyle(r).overflowX).filter(o => o !== 'clip')]",
        json!([]),
    );
    assert!(styles[0].as_u64().unwrap_or(0) > 0, "{styles}");
    assert_eq!(styles[1], json!(0), "rows that are more than one text node: {styles}");
    assert_eq!(styles[2], json!([]), "rows that are scroll containers: {styles}");
    let columns: Vec<(String, usize)> =
        Column::ALL.iter().map(|c| (format!("col-{}", c.key()), rowline::offset(*c))).collect();
    let misplaced = b.js(
        "const row = document.querySelector('#packet-list .pkt'), text = row.firstChild, out = [];
         for (const [id, at] of arguments[0]) {
           const h = document.getElementById(id), range = document.createRange();
           range.setStart(text, at); range.setEnd(text, at + 1);
           const x = range.getBoundingClientRect().left, hx = h.getBoundingClientRect().left;
           if (Math.abs(x - hx) > 0.5) out.push([id, x, hx]);
         }
         return out;",
        json!([columns]),
    );
    b.screenshot("latency-row-lines");
    assert_eq!(misplaced, json!([]), "columns that do not start under their header (id, x, header x): {misplaced}");
}
