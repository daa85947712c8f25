//! The UI server refuses requests without the token, from another Host, and
//! websockets / POSTs from another Origin (plain HTTP, no browser, no daemon).

mod common;
use common::http;

fn server() -> (tempfile::TempDir, pidcap_ui::Running) {
    let dir = tempfile::tempdir().unwrap();
    let ui = pidcap_ui::start(pidcap_ui::ServeConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        socket: dir.path().join("no-daemon.sock"),
        library: dir.path().join("library.db"),
        token: None,
    })
    .unwrap();
    (dir, ui)
}

const WS: [(&str, &str); 4] = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Version", "13"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
];

#[test]
fn token_cookie_host_and_origin_are_checked() {
    let (_dir, ui) = server();
    let addr = ui.addr;
    assert!(addr.ip().is_loopback(), "loopback by default");
    assert!(ui.url.contains(&ui.token) && ui.token.len() >= 32, "{}", ui.url);

    // No token, a wrong token, a wrong cookie: refused.
    assert_eq!(http(addr, "GET", "/", &[], b"").0, 401);
    assert_eq!(http(addr, "GET", "/?token=nope", &[], b"").0, 401);
    assert_eq!(http(addr, "GET", "/", &[("Cookie", &format!("pidcap_ui_{}=nope", addr.port()))], b"").0, 401);
    assert_eq!(http(addr, "GET", "/download/1-x", &[], b"").0, 401);

    // The token once: a redirect that sets an HttpOnly SameSite=Strict cookie and drops it from the URL.
    let (status, head, _) = http(addr, "GET", &format!("/?token={}", ui.token), &[], b"");
    assert_eq!(status, 303, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("location: /\r\n"), "{head}");
    let cookie_line =
        head.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect(&head).to_string();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"), "{cookie_line}");
    let cookie = cookie_line.split_once(':').unwrap().1.trim().split(';').next().unwrap().to_string();

    // With the cookie: the page.
    let (status, _, body) = http(addr, "GET", "/", &[("Cookie", &cookie)], b"");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("id=\"main\""));

    // Another Host (DNS rebinding) is refused, even with the cookie.
    assert_eq!(
        http(addr, "GET", "/", &[("Host", &format!("evil.example:{}", addr.port())), ("Cookie", &cookie)], b"").0,
        403
    );

    // Websocket: from another Origin, or with no Origin, refused; without the cookie refused; ours accepted.
    let mut h: Vec<(&str, &str)> = WS.to_vec();
    h.push(("Cookie", &cookie));
    let evil = [h.clone(), vec![("Origin", "http://evil.example")]].concat();
    assert_eq!(http(addr, "GET", "/ws", &evil, b"").0, 403);
    let other_port = format!("http://127.0.0.1:{}", addr.port() + 1);
    assert_eq!(http(addr, "GET", "/ws", &[h.clone(), vec![("Origin", other_port.as_str())]].concat(), b"").0, 403);
    assert_eq!(http(addr, "GET", "/ws", &h, b"").0, 403, "an Origin is required on a websocket");
    let ours = format!("http://127.0.0.1:{}", addr.port());
    let no_cookie = [WS.to_vec(), vec![("Origin", ours.as_str())]].concat();
    assert_eq!(http(addr, "GET", "/ws", &no_cookie, b"").0, 401);
    let token_in_query = format!("/ws?token={}", ui.token);
    assert_eq!(http(addr, "GET", &token_in_query, &no_cookie, b"").0, 401, "a websocket needs the cookie");
    let (status, head, _) = http(addr, "GET", "/ws", &[h.clone(), vec![("Origin", ours.as_str())]].concat(), b"");
    assert_eq!(status, 101, "{head}");

    // POST (import) from another origin is refused before anything is read.
    assert_eq!(
        http(addr, "POST", "/import?name=x.dpp", &[("Cookie", &cookie), ("Origin", "http://evil.example")], b"junk").0,
        403
    );
    let (status, _, body) =
        http(addr, "POST", "/import?name=x.dpp", &[("Cookie", &cookie), ("Origin", &ours)], b"junk");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
}
