//! Issue 14, "resend that replays what you mean", end to end in headless
//! Chromium against a real daemon (root) and a real HTTP/1.0 server on
//! loopback (the daemon's network namespace: it dials the server itself, so
//! the server cannot be in one of the test's own): a request captured AT THE SERVER is
//! resent three times in connect mode; it reaches the server itself (not the
//! client's old ephemeral port) on three new connections, and each reply is
//! shown whole, with its size. Every step waits for a state, never for time.
//! Screenshots: target/ui-screenshots/resend-*.png.

mod common;
use common::*;
use serde_json::json;

/// An HTTP/1.0 server on 127.0.0.1, a port of the kernel's choosing (one
/// request per connection, then closed) that appends `conn PEERPORT` and `req
/// PATH` lines to argv[1]; its answer's body is 6000 bytes ending in
/// `END-OF-REPLY`. Prints `ready PORT`.
const SERVER: &str = r#"
import http.server, sys
log = open(sys.argv[1], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    def setup(self):
        super().setup()
        log.write("conn %d\n" % self.client_address[1])
    def do_GET(self):
        log.write("req %s\n" % self.path)
        body = (b"0123456789" * 600)[:-12] + b"END-OF-REPLY"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print("ready", s.server_address[1], flush=True)
s.serve_forever()
"#;

fn log_lines(path: &std::path::Path, kind: &str) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.strip_prefix(kind).map(|r| r.trim().to_string()))
        .collect()
}

#[test]
fn a_request_captured_at_the_server_is_resent_to_the_server_on_new_connections_with_each_reply_whole() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("python3"));
    let stack = Stack::start();
    let b = stack.browser();
    let log = stack.dir.path().join("server.log");
    let server = std::process::Command::new("python3")
        .args(["-c", SERVER, log.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = KillOnDrop(server);
    let ready = server.wait_line();
    let port = ready.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("the server said {ready:?}")).to_string();
    let server_end = format!("127.0.0.1:{port}");

    // Capture the server.
    b.tab("processes");
    b.fill("#proc-search", &server.pid().to_string());
    b.click("#refresh-procs");
    let row = format!("tr[data-pid='{}']", server.pid());
    b.click(&row);
    b.wait_find(&format!("{row}.sel"));
    b.click("#start-capture");
    wait_for("the capture to start", STEP, || b.text("#status").contains("capturing").then_some(()));

    // A client asks once (from an ephemeral port the resend must not dial).
    let client = std::process::Command::new("python3")
        .args(["-c", &format!("import urllib.request; urllib.request.urlopen('http://{server_end}/first').read()")])
        .status()
        .unwrap();
    assert!(client.success());
    let first_client_port = log_lines(&log, "conn ")[0].clone();

    // The request as the server received it: inbound, with the payload.
    b.tab("capture");
    let id = wait_for("the received request's row", STEP, || {
        let rows = b.js(
            "return [...document.querySelectorAll('#packet-list .pkt')].map(r => [r.dataset.id, r.innerText])",
            json!([]),
        );
        rows.as_array()?.iter().find_map(|r| {
            let text = r[1].as_str().unwrap_or("");
            let inbound = text.split_whitespace().any(|w| w == "in");
            // A length (of the packet or its payload) that only the request's packet has.
            let big = text.split_whitespace().filter_map(|w| w.parse::<u32>().ok()).any(|n| (100..1000).contains(&n));
            (inbound && big && text.contains(&server_end) && text.contains("TCP"))
                .then(|| r[0].as_str().unwrap_or("").to_string())
        })
    });
    b.click(&format!("#packet-list .pkt[data-id='{id}']"));
    wait_for("the packet's details", STEP, || b.text("#packet-detail h2").contains(&format!("#{id} ")).then_some(()));
    b.click("#edit-packet");
    wait_for("the editor", STEP, || {
        b.text("#editor h2").to_lowercase().contains(&format!("packet #{id} ")).then_some(())
    });
    assert!(
        b.value("#edit-ascii").unwrap_or_default().starts_with("GET /first HTTP/1.1"),
        "{:?}",
        b.value("#edit-ascii")
    );

    // Connect mode: the destination defaults to the server side (the target's own address and port).
    b.fill("#resend-mode", "connect");
    b.wait_find("#resend-to");
    let default = b.js("return document.querySelector('#resend-to').dataset.default", json!([]));
    assert_eq!(default.as_str(), Some(server_end.as_str()), "not the client's port {first_client_port}");
    assert_eq!(b.value("#resend-keep").as_deref(), Some("false"), "a new connection per send by default");
    b.fill("#resend-count", "3");
    b.fill("#resend-interval", "400");
    b.wait_value("#resend-count", "3");
    b.js("document.querySelector('#resend').scrollIntoView()", json!([]));
    b.screenshot("resend-1-form");
    b.click("#resend-start");
    let summary = wait_for("the resend to finish", STEP, || {
        let e = b.text("#resend .err");
        assert!(e.is_empty(), "the resend failed: {e}: {}", b.text("#resend-statuses"));
        let s = b.text("#resend-summary");
        (!s.is_empty()).then_some(s)
    });
    eprintln!("resend: {summary}");
    assert!(summary.contains("3 sent") || summary.contains("sent 3"), "{summary}: {}", b.text("#resend-statuses"));

    // The server: the client's connection, then three new ones, each with the request.
    let conns = wait_for("four connections at the server", STEP, || {
        let c = log_lines(&log, "conn ");
        (c.len() >= 4).then_some(c)
    });
    assert_eq!(conns.len(), 4, "{conns:?}");
    assert_eq!(conns.iter().collect::<std::collections::BTreeSet<_>>().len(), 4, "four ports: {conns:?}");
    assert_eq!(log_lines(&log, "req "), ["/first", "/first", "/first", "/first"]);

    // Each reply whole: its size, and all of it in the hex/ASCII view (scrollable).
    let size: usize = wait_for("the reply view", STEP, || {
        b.js("return document.querySelector('#resend-reply')?.dataset.bytes", json!([])).as_str()?.parse().ok()
    });
    assert!(size > 6000, "{size}");
    let heading = b.text("#resend-reply h2").to_lowercase(); // (h2 are shown in capitals)
    assert!(heading.contains(&format!("{size} bytes")), "{heading}");
    let ascii_of =
        |dump: &str| -> String { dump.lines().filter_map(|l| Some(&l[l.find('|')? + 1..l.rfind('|')?])).collect() };
    let dump = b.js("return document.querySelector('#resend-reply-dump').textContent", json!([]));
    let text = ascii_of(dump.as_str().unwrap_or(""));
    assert_eq!(text.len(), size, "every byte in the view");
    assert!(text.starts_with("HTTP/1.0 200 OK..") && text.ends_with("END-OF-REPLY"), "{text}");
    let scrolls = b.js(
        "const e = document.querySelector('#resend-reply-dump'); return e.scrollHeight > e.clientHeight && getComputedStyle(e).overflowY === 'auto'",
        json!([]),
    );
    assert_eq!(scrolls, json!(true), "the view scrolls");
    // Every send's reply: pick the first status.
    b.click("#resend-statuses div[data-seq='1']");
    wait_for("send 1's reply", STEP, || {
        let seq = b.js("return document.querySelector('#resend-reply').dataset.seq", json!([]));
        (seq.as_str() == Some("1")).then_some(())
    });
    let statuses = b.text("#resend-statuses");
    assert_eq!(statuses.matches(&format!("reply {size} bytes")).count(), 3, "{statuses}");
    b.js("document.querySelector('#resend-reply-dump').scrollTop = 1e9", json!([]));
    b.js("document.querySelector('#resend-reply').scrollIntoView()", json!([]));
    b.screenshot("resend-2-replies");
}
