//! End to end, in headless Chromium against a real daemon: the UI's workflow
//! (issue 14). The process picker hides kernel threads until asked and
//! captures only the ticked rows it shows; rules reordered in the UI are
//! reordered in the daemon; when the capture ends the rules still in force
//! are offered for clearing; the "Capturing" notice goes with the capture;
//! the library's "Export all" exports the whole library while a search shows
//! part of it, and an incomplete query shows no error until Enter.
//! Every step waits for a state, never for time. Screenshots:
//! target/ui-screenshots/workflow-*.png.

mod common;
use common::*;
use pidcap_testkit::NetNs;
use serde_json::json;

/// The daemon's rules, in order (their SPECs).
fn daemon_rules(stack: &Stack) -> Vec<String> {
    stack.client().get_state().unwrap().filters.into_iter().map(|f| f.spec).collect()
}

/// Tick the row of `pid` (found by searching for `search`).
fn tick(b: &Browser, search: &str, pid: u32) {
    b.fill("#proc-search", search);
    let row = format!("tr[data-pid='{pid}']");
    b.click(&row);
    b.wait_find(&format!("{row}.sel"));
}

#[test]
fn picker_rules_and_notices() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"));
    let ns = NetNs::new("ui-flow");
    let (stack, b) = open_ui();
    let dir = stack.dir.path().to_path_buf();

    // 1. Kernel threads: hidden by default, shown with the toggle.
    let kernel_rows = || b.count(".procs tr[data-kernel='true']");
    wait_for("the process list", STEP, || (b.count(".procs tr[data-pid]") > 0).then_some(()));
    let has_kthreads = std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd");
    assert_eq!(kernel_rows(), 0, "no kernel thread is listed by default");
    b.click("#proc-kernel");
    b.wait_value("#proc-kernel", "true");
    if has_kthreads {
        wait_for("kernel threads listed", STEP, || (kernel_rows() > 0).then_some(()));
        b.wait_find(".procs tr[data-pid='2'][data-kernel='true']");
    }
    b.screenshot("workflow-1-kernel-threads");
    b.click("#proc-kernel");
    b.wait_value("#proc-kernel", "false");
    wait_for("kernel threads hidden again", STEP, || (kernel_rows() == 0).then_some(()));

    // 2. Two targets ticked; a search hides one: only the shown one is captured, and the button says so.
    let (status_a, status_b) = (dir.join("status-a.log"), dir.join("status-b.log"));
    let a = python(&ns, &["talk", "7301", "7302", status_a.to_str().unwrap()]);
    let t = python(&ns, &["talk", "7301", "7302", status_b.to_str().unwrap()]);
    b.click("#refresh-procs");
    tick(&b, "status-a.log", a.pid());
    tick(&b, "status-b.log", t.pid());
    assert_eq!(b.count(&format!("tr[data-pid='{}']", a.pid())), 0, "the search hides the first target");
    let label = b.text("#start-capture");
    assert_eq!(label, format!("Capture 1 selected (pid {})", t.pid()), "the button says what will be captured");
    assert!(b.text("#proc-hidden-ticked").starts_with("1 ticked process hidden"), "{}", b.text("#proc-hidden-ticked"));
    b.screenshot("workflow-2-hidden-tick");
    // Sorted by a column, both ways; as a tree, the target under its parent (this test).
    b.fill("#proc-search", "");
    let pids = || -> Vec<u64> {
        let v = b.js(
            "return [...document.querySelectorAll('.procs tr[data-pid]')].map(r => Number(r.dataset.pid))",
            json!([]),
        );
        v.as_array().map(|a| a.iter().filter_map(|p| p.as_u64()).collect()).unwrap_or_default()
    };
    let sorted = |desc: bool| {
        let p = pids();
        p.len() > 1 && p.windows(2).all(|w| if desc { w[0] > w[1] } else { w[0] < w[1] })
    };
    wait_for("the list by pid", STEP, || sorted(false).then_some(()));
    b.click("#proc-sort-pid");
    wait_for("the list by pid, highest first", STEP, || sorted(true).then_some(()));
    b.click("#proc-sort-pid");
    wait_for("the list by pid again", STEP, || sorted(false).then_some(()));
    b.click("#proc-tree");
    b.wait_value("#proc-tree", "true");
    let me = std::process::id();
    wait_for("the target under this test in the tree", STEP, || {
        let rows = b.js(
            "return [...document.querySelectorAll('.procs tr[data-pid]')].map(r => [Number(r.dataset.pid), Number(r.dataset.depth)])",
            json!([]),
        );
        let rows: Vec<(u64, u64)> =
            rows.as_array()?.iter().filter_map(|r| Some((r[0].as_u64()?, r[1].as_u64()?))).collect();
        let parent = rows.iter().position(|r| r.0 == u64::from(me))?;
        let child = rows.iter().position(|r| r.0 == u64::from(t.pid()))?;
        (child > parent && rows[child].1 == rows[parent].1 + 1).then_some(())
    });
    b.screenshot("workflow-2b-tree");
    b.click("#proc-tree");
    b.wait_value("#proc-tree", "false");
    b.fill("#proc-search", "status-b.log");
    b.click("#start-capture");
    wait_for("the capture", STEP, || b.text("#status").contains("capturing").then_some(()));
    let targets: Vec<u32> = stack.client().get_state().unwrap().targets.iter().map(|t| t.pid).collect();
    assert_eq!(targets, [t.pid()], "the hidden tick was not captured");
    let capturing = format!("Capturing process {}.", t.pid());
    wait_for("the capturing notice", STEP, || b.text("#notices").contains(&capturing).then_some(()));

    // 3. Rules: two added, the first moved down in the UI: the daemon's order changes.
    b.tab("filters");
    for (proto, port) in [("tcp", "7301"), ("udp", "7399")] {
        b.fill("#rule-protocol", proto);
        b.fill("#rule-port", port);
        b.click("#rule-add");
        wait_for("the rule", STEP, || daemon_rules(&stack).iter().any(|s| s.ends_with(port)).then_some(()));
    }
    let before = daemon_rules(&stack);
    assert_eq!(before.len(), 2, "{before:?}");
    wait_for("both rules listed", STEP, || (b.count("#rules .tag") == 2).then_some(()));
    b.click(&format!("#rules .tag[data-rule='{}'] .rule-down", before[0]));
    let reversed = vec![before[1].clone(), before[0].clone()];
    wait_for("the daemon's order reversed", STEP, || (daemon_rules(&stack) == reversed).then_some(()));
    wait_for("the UI's order reversed", STEP, || {
        let shown = b.js("return [...document.querySelectorAll('#rules .tag')].map(t => t.dataset.rule)", json!([]));
        (shown == json!(reversed)).then_some(())
    });
    b.click(&format!("#rules .tag[data-rule='{}'] .rule-up", before[0]));
    wait_for("the daemon's order back", STEP, || (daemon_rules(&stack) == before).then_some(()));
    b.screenshot("workflow-3-rules");

    // 4. The Capture tab shows the rules with their hits (the target's connects are blocked).
    b.tab("capture");
    wait_for("the rules on the Capture tab, with hits", STEP, || {
        let hits = b.js(
            "return [...document.querySelectorAll('#capture-rules .rule-chip')].map(c => Number(c.dataset.hits))",
            json!([]),
        );
        let hits: Vec<u64> = hits.as_array()?.iter().filter_map(|h| h.as_u64()).collect();
        (hits.len() == 2 && hits.iter().any(|h| *h > 0)).then_some(())
    });
    b.screenshot("workflow-4-capture-rules");

    // 5. Stop: the capturing notice goes; the rules still in force are said, and cleared with one button.
    b.click("#stop-capture");
    wait_for("the capture to stop", STEP, || b.text("#status").contains("idle").then_some(()));
    wait_for("the capturing notice to go", STEP, || (!b.text("#notices").contains("Capturing process")).then_some(()));
    b.wait_find("#rules-after-capture");
    let offer = b.text("#rules-after-capture");
    assert!(offer.contains("2 rules stay in the daemon"), "{offer}");
    for spec in &before {
        assert!(offer.contains(spec.as_str()), "{offer} names {spec}");
    }
    b.screenshot("workflow-5-rules-after-capture");
    b.click("#rules-clear-after");
    wait_for("the daemon's rules cleared", STEP, || daemon_rules(&stack).is_empty().then_some(()));
    wait_for("the offer to go", STEP, || b.find("#rules-after-capture").is_none().then_some(()));
    drop((a, t));
}

/// The bytes of a download link of the UI (with the session cookie the token gives).
fn download(stack: &Stack, href: &str) -> Vec<u8> {
    let (_, head, _) = http(stack.ui.addr, "GET", &format!("/?token={}", stack.ui.token), &[], b"");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().split(';').next().unwrap_or("").to_string())
        .expect("a session cookie");
    let (status, _, body) = http(stack.ui.addr, "GET", href, &[("Cookie", &cookie)], b"");
    assert_eq!(status, 200);
    body
}

/// The number of packets a `.dpp` file holds (imported into a library of its own).
fn dpp_packets(dir: &std::path::Path, name: &str, bytes: &[u8]) -> usize {
    let file = dir.join(format!("{name}.dpp"));
    std::fs::write(&file, bytes).unwrap();
    let mut lib = pidcap_library::Library::open(dir.join(format!("{name}.db"))).unwrap();
    lib.import_dpp(&file).unwrap().packet_ids.len()
}

/// The newest download link once there are `n`.
fn newest_download(b: &Browser, n: u64) -> String {
    wait_for(&format!("{n} download links"), STEP, || {
        (b.count("a.download") == n).then(|| {
            b.js("return document.querySelector('a.download').getAttribute('href')", json!([]))
                .as_str()
                .map(String::from)
        })?
    })
}

#[test]
fn library_export_all_exports_all_and_search_waits_for_a_complete_query() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"));
    use pidcap_packet::build::{build, Transport};
    use pidcap_packet::{CapturedPacket, Direction, Verdict};
    let (stack, b) = open_ui();
    let dir = stack.dir.path().to_path_buf();
    // Five entries, one named "alpha".
    {
        let mut lib = pidcap_library::Library::open(&stack.library).unwrap();
        let new: Vec<_> = (1..=5u64)
            .map(|i| {
                let payload = format!("payload {i}");
                let data = build(
                    "127.0.0.1:40000".parse().unwrap(),
                    "127.0.0.1:53".parse().unwrap(),
                    64,
                    Transport::Udp,
                    payload.as_bytes(),
                )
                .unwrap();
                let len = data.len() as u32;
                let p = CapturedPacket::new(
                    i,
                    1_700_000_000_000_000_000,
                    42,
                    "t".into(),
                    7,
                    Direction::Outbound,
                    Verdict::Pass,
                    len,
                    data,
                );
                let name = if i == 3 { "alpha".to_string() } else { format!("entry {i}") };
                pidcap_library::NewPacket::new(
                    p,
                    &pidcap_library::PacketMeta { name, description: String::new(), tags: vec!["w".into()] },
                    "test",
                )
            })
            .collect();
        lib.save_many(&new).unwrap();
    }
    b.tab("library");
    let listed = |query: &str, n: u64| {
        wait_for(&format!("{n} entries for {query:?}"), STEP, || {
            let q = b.js("return document.querySelector('#lib-list').dataset.query", json!([]));
            (q.as_str() == Some(query) && b.count("#lib-list .lib-item") == n).then_some(())
        })
    };
    listed("", 5);
    // Sizes are labelled.
    let heads = b.text("#lib-list thead");
    assert!(heads.contains("packet B") && heads.contains("payload B"), "{heads}");

    // An incomplete term is not searched for and shows no error; Enter shows it.
    b.fill("#lib-search", "tag:");
    listed("", 5);
    assert!(b.find("#lib-search-error").is_none());
    assert_eq!(b.count("#notices .notice.error"), 0, "{}", b.text("#notices"));
    b.send_keys("#lib-search", "\u{E007}");
    b.wait_find("#lib-search-error");
    assert!(b.text("#lib-search-error").contains("nothing to search for"), "{}", b.text("#lib-search-error"));
    b.screenshot("workflow-6-library-query-error");

    // A search shows one entry: "Export all" exports the five, "Export shown" the one.
    b.fill("#lib-search", "alpha");
    listed("alpha", 1);
    assert!(b.find("#lib-search-error").is_none(), "typing hides the error");
    assert_eq!(b.text("#lib-export"), "Export all (5) to .dpp");
    b.click("#lib-export");
    let all = download(&stack, &newest_download(&b, 1));
    assert_eq!(dpp_packets(&dir, "all", &all), 5, "Export all exports the whole library");
    b.click("#lib-export-shown");
    let shown = download(&stack, &newest_download(&b, 2));
    assert_eq!(dpp_packets(&dir, "shown", &shown), 1, "Export shown exports the search's result");
    b.screenshot("workflow-7-library-export");
}
