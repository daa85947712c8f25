//! The packet list under a flood (issue 13, packet-to-row latency), end to
//! end in headless Chromium against a real daemon and a flooding process in
//! a network namespace of the test's own: each row is inserted once however
//! far the list slides (rows are keyed, never re-created), and its cells clip
//! without being scroll containers (`overflow: clip`: a `hidden` box is a
//! scroll container, eleven per row a thousand times a second). Every step
//! waits for the state it needs, never for time. Screenshots:
//! target/ui-screenshots/latency-*.png.

mod common;
use common::*;
use pidcap_testkit::NetNs;
use serde_json::json;
use std::time::Duration;

#[test]
fn rows_are_inserted_once_as_the_list_slides_and_their_cells_clip_without_scrolling() {
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

    // No row nor cell is a scroll container, and a cell whose text is wider
    // than its column is cut at its column (the next cell starts after it).
    let styles = b.js(
        "const rows = [...document.querySelectorAll('#packet-list .pkt')];
         return [rows.length, rows.flatMap(r => [r, ...r.children]).map(e => getComputedStyle(e).overflowX)
           .filter(o => o !== 'clip')]",
        json!([]),
    );
    assert!(styles[0].as_u64().unwrap_or(0) > 0, "{styles}");
    assert_eq!(styles[1], json!([]), "rows or cells that are scroll containers: {styles}");
    let cut = b.js(
        "const r = document.querySelector('#packet-list .pkt'); const [src, dst] = [r.children[5], r.children[6]];
         src.textContent = '[2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff]:65535';
         const a = src.getBoundingClientRect(), d = dst.getBoundingClientRect();
         return [src.scrollWidth > src.clientWidth, a.right <= d.left + 0.5, src.innerText];",
        json!([]),
    );
    b.screenshot("latency-clipped-cell");
    assert_eq!(cut[0], true, "the long text overflows its cell: {cut}");
    assert_eq!(cut[1], true, "a cell spills into the next column: {cut}");
}
