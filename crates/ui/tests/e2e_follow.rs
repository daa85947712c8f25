//! End to end (issue 14, conversations and follow stream), in headless
//! Chromium against a real daemon (`pidcap daemon`, root) and a real HTTP
//! exchange in a network namespace of the test's own: Python's http.server
//! captured by pid, curl asking it twice. The conversation is listed with the
//! packet and byte counts of the daemon's own packets, sorts, choosing it
//! filters the packet list to it (and not the other), Follow stream shows the
//! request and the response text coloured by side, as ASCII and as hex, and
//! sends the request to the editor. Every step waits for the state it acts
//! on. Screenshots: target/ui-screenshots/conversations-*.png, follow-*.png.

mod common;
use common::*;
use pidcap_packet::{CapturedPacket, Direction, Protocol};
use pidcap_testkit::NetNs;
use serde_json::json;
use std::process::Stdio;

const PORT: u16 = 8089;
const BODY: &str = "hello from the follow-stream test\nsecond line of the file\n";

/// Every packet the daemon holds.
fn daemon_packets(stack: &Stack) -> Vec<CapturedPacket> {
    let mut c = stack.client();
    let (mut since, mut all) = (0, Vec::new());
    loop {
        let page = c.get_packets(since, None).expect("get_packets");
        all.extend(page.packets);
        if !page.more {
            return all;
        }
        since = page.next_since;
    }
}

/// The server's TCP packets with the client on `client_port`.
fn of_connection(packets: &[CapturedPacket], client_port: u16) -> Vec<&CapturedPacket> {
    packets
        .iter()
        .filter(|p| p.decoded.protocol == Protocol::Tcp && !p.is_tls())
        .filter(|p| p.decoded.local_port == PORT && p.decoded.remote_port == client_port)
        .collect()
}

/// (packets, bytes) the client sent and the server sent, as the conversation list should count them.
fn expected(packets: &[&CapturedPacket]) -> [u64; 4] {
    let count = |d| packets.iter().filter(|p| p.direction == d).count() as u64;
    let bytes = |d| packets.iter().filter(|p| p.direction == d).map(|p| u64::from(p.orig_len)).sum::<u64>();
    // The server is the target: what it received, the client sent.
    [count(Direction::Inbound), bytes(Direction::Inbound), count(Direction::Outbound), bytes(Direction::Outbound)]
}

/// A conversation row's counts, as the UI shows them.
fn row_counts(b: &Browser, row: &str) -> Option<[u64; 4]> {
    let v = b.js(
        "const r = document.querySelector(arguments[0]); if (!r) return null;
         const d = r.dataset; return [d.clientPackets, d.clientBytes, d.serverPackets, d.serverBytes].map(Number)",
        json!([row]),
    );
    let a = v.as_array()?;
    Some([0, 1, 2, 3].map(|i| a[i].as_u64().unwrap_or(u64::MAX)))
}

/// curl GETs the file from inside the namespace; its answer.
fn curl(ns: &NetNs) -> String {
    let out = ns
        .command("curl")
        .args(["-s", "--max-time", "20", &format!("http://127.0.0.1:{PORT}/hello.txt")])
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_http_exchange_is_listed_as_a_conversation_filtered_to_and_followed() {
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("ip"), Tool("python3"), Tool("curl"));
    let ns = NetNs::new("ui-follow");
    let stack = Stack::start();
    let www = stack.dir.path().join("www");
    std::fs::create_dir(&www).unwrap();
    std::fs::write(www.join("hello.txt"), BODY).unwrap();
    let child = ns
        .command("python3")
        .args(["-u", "-m", "http.server", &PORT.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(&www)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let mut server = KillOnDrop(child);
    // Printed once it listens.
    let line = server.wait_line();
    assert!(line.contains("Serving HTTP"), "{line}");
    let b = stack.browser();
    capture_pid(&b, server.pid());

    // Two exchanges: two connections.
    assert_eq!(curl(&ns), BODY);
    assert_eq!(curl(&ns), BODY);
    let ports = wait_for("both connections' SYNs at the daemon", STEP, || {
        let mut ports: Vec<u16> = daemon_packets(&stack)
            .iter()
            .filter(|p| p.direction == Direction::Inbound && p.decoded.local_port == PORT)
            .filter(|p| p.decoded.tcp_flags.is_some_and(|f| f & 0x12 == 0x02))
            .map(|p| p.decoded.remote_port)
            .collect();
        ports.dedup();
        (ports.len() == 2).then_some(ports)
    });
    let (first, second) = (ports[0], ports[1]);

    // 1. Listed, with the counts of the daemon's packets of that connection, closed.
    b.tab("conversations");
    let row = |port: u16| format!("#conv-list tr.conv[data-client='127.0.0.1:{port}'][data-server='127.0.0.1:{PORT}']");
    for port in [first, second] {
        let counts = wait_for(
            &format!("the conversation of port {port}, closed, counted as the daemon's packets"),
            STEP,
            || {
                let want = expected(&of_connection(&daemon_packets(&stack), port));
                let shown = row_counts(&b, &row(port))?;
                let closed = b.text(&format!("{} td.state", row(port))) == "closed";
                (closed && shown == want).then_some(shown)
            },
        );
        // A handshake, a request, a FIN at least; a response as long as the file at least.
        assert!(counts[0] >= 4 && counts[2] >= 3, "{counts:?}");
        assert!(counts[3] > BODY.len() as u64, "{counts:?}");
        eprintln!("conversation {port}: {counts:?}");
    }
    let listed = b.text(&row(first));
    assert!(listed.contains("TCP") && listed.contains(&format!("{}/python", server.pid())), "{listed}");
    b.screenshot("conversations-list");

    // 2. Sorted by a column, twice: the other way round.
    b.click("#conv-sort-client");
    wait_for("sorted by client, ascending", STEP, || {
        (b.js("return document.querySelector('#conv-sort-client').dataset.order", json!([])) == "asc").then_some(())
    });
    let order = || {
        b.js("return [...document.querySelectorAll('#conv-list tr.conv')].map(r => r.dataset.client)", json!([]))
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let mut asc = order();
    b.click("#conv-sort-client");
    wait_for("sorted by client, descending", STEP, || {
        (b.js("return document.querySelector('#conv-sort-client').dataset.order", json!([])) == "desc").then_some(())
    });
    let desc = order();
    asc.reverse();
    assert_eq!(desc, asc, "the same rows, the other way round");
    assert!(desc.len() >= 2);

    // 3. Choosing the first filters the packet list to it, and not the second.
    b.click(&format!("{} .conv-packets", row(first)));
    b.wait_find("#tab-capture.active");
    let held = daemon_packets(&stack);
    let n = of_connection(&held, first).len();
    let filter = wait_for("the conversation's filter", STEP, || b.value("#display-filter").filter(|f| !f.is_empty()));
    eprintln!("conversation filter: {filter}");
    wait_for(&format!("{n} packets shown"), STEP, || {
        b.text("#list-info").contains(&format!("of {n} shown")).then_some(())
    });
    let rows = b.js("return [...document.querySelectorAll('#packet-list .pkt')].map(r => r.innerText)", json!([]));
    let rows: Vec<String> = rows.as_array().unwrap().iter().map(|r| r.as_str().unwrap_or("").to_string()).collect();
    assert_eq!(rows.len(), n);
    for r in &rows {
        assert!(
            r.contains(&format!(":{first}")) && !r.contains(&format!(":{second}")),
            "a row of another conversation: {r}"
        );
    }
    assert!(b.find("#display-filter.bad").is_none(), "the filter parses");
    b.screenshot("conversations-filtered");

    // 4. Follow stream, from the packet shown: the request and the response, by side.
    let id =
        b.js("return document.querySelector('#packet-list .pkt').dataset.id", json!([])).as_str().unwrap().to_string();
    b.click(&format!("#packet-list .pkt[data-id='{id}']"));
    wait_for("the follow bar on the packet", STEP, || b.text("#follow-bar").contains(&format!("#{id} ")).then_some(()));
    b.click("#follow-focused");
    b.wait_find("#tab-conversations.active");
    let client_text = wait_for("the request in the stream", STEP, || {
        let t = b.text("#follow-stream .chunk.client pre");
        t.contains("GET /hello.txt HTTP/1.1").then_some(t)
    });
    assert!(client_text.contains(&format!("Host: 127.0.0.1:{PORT}")), "{client_text}");
    let server_text = b.text("#follow-stream .chunk.server pre");
    assert!(server_text.starts_with("HTTP/1.0 200 OK"), "{server_text}");
    assert!(server_text.contains(BODY.trim_end()), "{server_text}");
    let title = b.text("#follow h2");
    assert!(title.contains(&format!("127.0.0.1:{first}")) && title.contains(&format!("127.0.0.1:{PORT}")), "{title}");
    // The request comes first; the two sides have their own colours.
    let sides = b.js("return [...document.querySelectorAll('#follow-stream .chunk')].map(c => [c.dataset.side, getComputedStyle(c).backgroundColor])", json!([]));
    let sides = sides.as_array().unwrap().clone();
    assert_eq!(sides[0][0], "client", "{sides:?}");
    assert!(sides.iter().any(|s| s[0] == "server"), "{sides:?}");
    let colour = |side: &str| sides.iter().find(|s| s[0] == side).map(|s| s[1].clone()).unwrap();
    assert_ne!(colour("client"), colour("server"), "coloured by side");
    assert!(b.text("#follow-client").contains(&format!("client 127.0.0.1:{first}")));
    b.screenshot("follow-ascii");
    b.click("#follow-format-both");
    wait_for("the hex dump", STEP, || {
        let t = b.text("#follow-stream .chunk.client pre");
        // "GET " in hex, beside its ASCII column.
        (t.contains("47 45 54 20") && t.contains("GET /hello.txt")).then_some(())
    });
    b.screenshot("follow-hex");

    // 5. The request to the editor: its bytes, as a payload of its first packet.
    b.click("#follow-edit-0");
    b.wait_find("#tab-capture.active");
    let ascii = wait_for("the editor on the request", STEP, || {
        b.value("#edit-ascii").filter(|a| a.starts_with("GET /hello.txt"))
    });
    assert!(ascii.contains(r"\r\n\r\n"), "{ascii}");
    assert!(b.text("#editor h2").to_lowercase().contains("packet #"));
    b.js("document.querySelector('#editor').scrollIntoView()", json!([]));
    b.screenshot("follow-editor");
}

/// A TLS client's connection (opened before the capture, so no handshake in
/// it): listed once, with its TLS plaintext records counted apart; followed,
/// it shows the decrypted requests and answers by default, and the wire's
/// encrypted TLS records a toggle away.
#[test]
fn a_tls_connection_is_followed_as_its_plaintext_and_as_its_wire_bytes() {
    use pidcap_testkit::tls::{Certs, HttpsServer, Peer};
    use std::process::Command;
    pidcap_testkit::require!(Root, Tool("chromium"), Tool("chromedriver"), Tool("openssl"), Tool("python3"));
    let stack = Stack::start();
    let certs = Certs::new("ui-follow-tls");
    let server = HttpsServer::start(Command::new("python3"), "echo-server", &[&certs.cert, &certs.key]);
    let port = server.port;
    let mut client =
        Peer::https(Command::new("python3"), "raw-client", &[certs.ca.to_str().unwrap(), &port.to_string()]);
    assert_eq!(client.line(), "ready");
    let b = stack.browser();
    capture_pid(&b, client.pid());
    b.tab("capture");
    let pid = client.pid();
    wait_for("the client's TLS coverage", STEP, || b.find(&format!("#tls-coverage .covered[data-pid='{pid}']")));
    for path in ["/follow-tls-one", "/follow-tls-two"] {
        let got = client.ask(path);
        assert_eq!(got, format!("got echo: GET {path} HTTP/1.1"));
    }

    b.tab("conversations");
    let row = format!("#conv-list tr.conv[data-server='127.0.0.1:{port}']");
    wait_for("the connection, its records counted as the daemon's", STEP, || {
        let records = daemon_packets(&stack).iter().filter(|p| p.is_tls() && p.decoded.remote_port == port).count();
        let shown = b.js(
            "const r = document.querySelector(arguments[0]); return r ? Number(r.dataset.records) : -1",
            json!([row]),
        );
        (records >= 4 && shown.as_u64() == Some(records as u64)).then_some(())
    });
    assert_eq!(
        b.count(&format!("#conv-list tr.conv[data-server$=':{port}']")),
        1,
        "records are in their TCP connection"
    );
    assert!(b.text(&row).contains("TLS"), "{}", b.text(&row));
    b.screenshot("conversations-tls");

    b.click(&format!("{row} .conv-follow"));
    b.wait_find("#follow[data-stream='plaintext']");
    let client_text = wait_for("the decrypted requests", STEP, || {
        let t = b.text("#follow-stream .chunk.client pre");
        t.contains("GET /follow-tls-one HTTP/1.1").then_some(t)
    });
    assert!(client_text.contains(&format!("Host: 127.0.0.1:{port}")), "{client_text}");
    let all = b.text("#follow-stream");
    for want in
        ["GET /follow-tls-two HTTP/1.1", "echo: GET /follow-tls-one HTTP/1.1", "echo: GET /follow-tls-two HTTP/1.1"]
    {
        assert!(all.contains(want), "{want:?} in {all}");
    }
    let first = b.js("return document.querySelector('#follow-stream .chunk').dataset.side", json!([]));
    assert_eq!(first, "client");
    b.screenshot("follow-tls-plaintext");

    // The wire: TLS application data records (type 23, version 3.3), encrypted.
    b.click("#follow-wire");
    b.wait_find("#follow[data-stream='wire']");
    b.click("#follow-format-hex");
    wait_for("the encrypted records in hex", STEP, || {
        let t = b.text("#follow-stream .chunk.client pre");
        (t.starts_with("00000000  17 03 03") && !b.text("#follow-stream").contains("follow-tls-one")).then_some(())
    });
    b.screenshot("follow-tls-wire");
}
