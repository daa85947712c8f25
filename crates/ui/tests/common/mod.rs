//! Test helpers: a tiny blocking HTTP client, a minimal WebDriver client for
//! chromedriver (no extra dependencies) whose steps wait for the state they
//! act on, the test peer in a network namespace, and the real daemon (a
//! process) + the UI server (in this process).
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One HTTP/1.1 request; (status, headers, body).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        req.push_str("Connection: close\r\n");
    }
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = Vec::new();
    // Read until the response is complete (a websocket upgrade: its head); the
    // timeout only bounds a server that stops answering (a slow screenshot is not one).
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        if buf.starts_with(b"HTTP/1.1 101") && buf.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
        if response_complete(&buf) {
            break; // servers that keep the connection open (chromedriver) would cost a read timeout per call
        }
    }
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = buf[split + 4..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, head, body)
}

/// True once `buf` holds a whole response: its head and, by Content-Length or
/// the last chunk of a chunked body, all of its body.
fn response_complete(buf: &[u8]) -> bool {
    let Some(split) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..split]).to_ascii_lowercase();
    let body = &buf[split + 4..];
    if let Some(len) =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Poll `f` every 50 ms until it gives a value; panic naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How long one UI step may take to show its result.
pub const STEP: Duration = Duration::from_secs(20);

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver session with a headless Chromium. Its steps wait for the
/// state they act on (the liveview renders asynchronously): [`Browser::click`]
/// waits for the element to be there and enabled, [`Browser::fill`] for the
/// state machine to hold the text (the field's `data-value`), and callers
/// wait for each click's consequence before the next step.
pub struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Chromium and chromedriver from PATH (the test has `require!`d them).
    pub fn start() -> Browser {
        let chromium = pidcap_testkit::find_tool("chromium").expect("chromium on PATH");
        let driver = pidcap_testkit::find_tool("chromedriver").expect("chromedriver on PATH");
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for("chromedriver", Duration::from_secs(20), || TcpStream::connect(addr).ok());
        let profile = tempfile::tempdir().unwrap();
        let mut b = Browser { driver: child, addr, session: String::new(), _profile: profile };
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1600,1100",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", b._profile.path().display())])
        // Flags of one's own for a run (a trace: docs/PERFORMANCE.md, "UI latency").
        .chain(
            std::env::var("EXTRA_CHROME_ARGS")
                .ok()
                .into_iter()
                .flat_map(|a| a.split(' ').map(String::from).collect::<Vec<_>>()),
        )
        .collect::<Vec<_>>();
        let caps = json!({"capabilities":{"alwaysMatch":{"browserName":"chrome","goog:chromeOptions":{"binary":chromium,"args":args}}}});
        let v = b.call("POST", "/session", Some(caps));
        b.session = v["sessionId"].as_str().expect("a session").to_string();
        b
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
        let (status, _, resp) = http(self.addr, method, path, &[("Content-Type", "application/json")], &body);
        let v: Value = serde_json::from_slice(&resp).unwrap_or(Value::Null);
        assert!(status < 300, "webdriver {method} {path}: {status} {v}");
        v["value"].clone()
    }

    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", &self.s("/url"), Some(json!({ "url": url })));
    }

    pub fn find(&self, css: &str) -> Option<String> {
        let body = serde_json::to_vec(&json!({"using":"css selector","value":css})).unwrap();
        let (status, _, resp) =
            http(self.addr, "POST", &self.s("/element"), &[("Content-Type", "application/json")], &body);
        if status >= 300 {
            return None;
        }
        let v: Value = serde_json::from_slice(&resp).ok()?;
        v["value"][ELEMENT].as_str().map(String::from)
    }

    /// Wait for an element `css` matches.
    pub fn wait_find(&self, css: &str) -> String {
        wait_for(css, STEP, || self.find(css))
    }

    /// Click the first element `css` matches, once it is there and enabled (a
    /// click on a button the liveview has not enabled yet does nothing). The
    /// check and the click are one script: rows re-render under the driver's feet.
    pub fn click(&self, css: &str) {
        wait_for(&format!("{css} to be there and enabled"), STEP, || {
            self.js(
                "const e = document.querySelector(arguments[0]);
                 if (!e || e.disabled) return false; e.click(); return true;",
                json!([css]),
            )
            .as_bool()
            .filter(|clicked| *clicked)
        });
    }

    /// Go to a tab (`processes`, `capture`, `filters`, `library`) and wait until it is the one shown.
    pub fn tab(&self, name: &str) {
        self.click(&format!("#tab-{name}"));
        self.wait_find(&format!("#tab-{name}.active"));
    }

    /// Type a file path into a file input (or keys into anything).
    pub fn send_keys(&self, css: &str, text: &str) {
        let el = self.wait_find(css);
        self.call("POST", &self.s(&format!("/element/{el}/value")), Some(json!({ "text": text })));
    }

    /// Set a form field's value and fire `input` and `change`, as typing would
    /// (at once), then wait until the state machine holds it (`data-value`).
    pub fn fill(&self, css: &str, text: &str) {
        wait_for(&format!("{css} to be there and enabled"), STEP, || {
            self.js(
                "const e = document.querySelector(arguments[0]); if (!e || e.disabled) return false;
                 e.value = arguments[1];
                 e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true}));
                 return true;",
                json!([css, text]),
            )
            .as_bool()
            .filter(|typed| *typed)
        });
        self.wait_value(css, text);
    }

    /// What the state machine holds for a form field (its `data-value`).
    pub fn value(&self, css: &str) -> Option<String> {
        self.js("const e = document.querySelector(arguments[0]); return e ? e.dataset.value : null;", json!([css]))
            .as_str()
            .map(String::from)
    }

    /// Wait until the state machine holds `text` for the field `css`.
    pub fn wait_value(&self, css: &str, text: &str) {
        let start = Instant::now();
        loop {
            let held = self.value(css);
            if held.as_deref() == Some(text) {
                return;
            }
            assert!(start.elapsed() < STEP, "timed out waiting for {css} to hold {text:?}; it holds {held:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn js(&self, script: &str, args: Value) -> Value {
        self.call("POST", &self.s("/execute/sync"), Some(json!({"script": script, "args": args})))
    }

    pub fn text(&self, css: &str) -> String {
        self.js("const e = document.querySelector(arguments[0]); return e ? e.innerText : null;", json!([css]))
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn count(&self, css: &str) -> u64 {
        self.js("return document.querySelectorAll(arguments[0]).length;", json!([css])).as_u64().unwrap_or(0)
    }

    pub fn screenshot(&self, name: &str) -> PathBuf {
        let v = self.call("GET", &self.s("/screenshot"), None);
        let png = base64_decode(v.as_str().unwrap_or(""));
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(self.addr, "DELETE", &self.s(""), &[], b"");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// python3 tests/data/target.py ARGS in the namespace `ns`.
pub fn python(ns: &pidcap_testkit::NetNs, args: &[&str]) -> KillOnDrop {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/target.py");
    let child = ns
        .command("python3")
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    KillOnDrop(child)
}

pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    /// Wait for a line on its stdout ("ready").
    pub fn wait_line(&mut self) -> String {
        use std::io::BufRead;
        let out = self.0.stdout.as_mut().unwrap();
        let mut r = std::io::BufReader::new(out);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line
    }
}

impl KillOnDrop {
    /// Wait for it to exit on its own (at most `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for("the process to exit", timeout, || self.0.try_wait().expect("try_wait"))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `pidcap` binary of this build (the UI crate does not depend on the
/// daemon or the kernel layer, so its tests run the real one as a process).
/// `PIDCAP_BIN` overrides; `scripts/test.sh` builds the workspace first.
pub fn pidcap_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PIDCAP_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/e2e-HASH -> target/<profile>/pidcap
    let bin = exe.parent().and_then(Path::parent).expect("target dir").join("pidcap");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (cargo build --workspace), or set PIDCAP_BIN",
        bin.display()
    );
    bin
}

/// A real daemon (`pidcap daemon`, kernel layer loaded) in its own process, and the UI server.
/// A stack and a browser on its UI, on the Processes tab.
pub fn open_ui() -> (Stack, Browser) {
    let stack = Stack::start();
    let b = stack.browser();
    (stack, b)
}

/// Tick `pid` in the process picker and start capturing it (a screenshot
/// and the notices when the capture does not start).
pub fn capture_pid(b: &Browser, pid: u32) {
    b.tab("processes");
    b.fill("#proc-search", &pid.to_string());
    b.click("#refresh-procs");
    let row = format!("tr[data-pid='{pid}']");
    b.click(&row);
    b.wait_find(&format!("{row}.sel"));
    b.click("#start-capture");
    let started = Instant::now();
    while !b.text("#status").contains("capturing") {
        if started.elapsed() > STEP {
            b.screenshot("failed-capture-start");
            panic!("the capture did not start: {}", b.text(".notices"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub library: PathBuf,
    pub ui: pidcap_ui::Running,
    daemon: Option<Child>,
}

impl Stack {
    /// A browser on this stack's UI, on the Processes tab.
    pub fn browser(&self) -> Browser {
        let b = Browser::start();
        b.goto(&self.ui.url);
        b.wait_find("#tab-processes");
        b
    }

    /// A client of this stack's daemon.
    pub fn client(&self) -> pidcap_api::Client {
        pidcap_api::Client::connect(&self.socket).expect("the daemon answers")
    }

    pub fn start() -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("pidcap.sock");
        let library = dir.path().join("library.db");
        let mut daemon = Command::new(pidcap_bin())
            .args(["daemon", "--socket"])
            .arg(&socket)
            .args(["--group", "pidcap-ui-test-nogroup"])
            .stdin(Stdio::null())
            .spawn()
            .expect("pidcap daemon");
        // Ready when it answers: the socket is bound only after the kernel layer is loaded.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if pidcap_api::Client::connect(&socket).is_ok() {
                break;
            }
            if let Ok(Some(st)) = daemon.try_wait() {
                panic!("pidcap daemon exited before serving ({st}): root, BTF and cgroup2 are needed");
            }
            assert!(Instant::now() < deadline, "pidcap daemon did not start serving {} in 30 s", socket.display());
            std::thread::sleep(Duration::from_millis(20));
        }
        let ui = pidcap_ui::start(pidcap_ui::ServeConfig {
            bind: "127.0.0.1:0".parse().unwrap(),
            socket: socket.clone(),
            library: library.clone(),
            token: None,
        })
        .unwrap();
        Stack { dir, socket, library, ui, daemon: Some(daemon) }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            // SIGTERM: the daemon stops its capture and removes its socket.
            // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while d.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// Nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

// -- packet list (issue 14) --
impl Browser {
    /// A Chrome DevTools Protocol command through chromedriver (`Performance.getMetrics`...).
    pub fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.call("POST", &self.s("/goog/cdp/execute"), Some(json!({ "cmd": cmd, "params": params })))
    }

    /// Chromium's cumulative main-thread counters (seconds of script, style,
    /// layout and task time; `Performance.enable` first), by name.
    pub fn metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let v = self.cdp("Performance.getMetrics", json!({}));
        v["metrics"]
            .as_array()
            .map(|m| m.iter().filter_map(|e| Some((e["name"].as_str()?.to_string(), e["value"].as_f64()?))).collect())
            .unwrap_or_default()
    }
}
