//! The HTTP side of `pidcap ui`: axum serves the page, the liveview
//! websocket (the app runs here, the browser only renders), downloads and
//! `.dpp` uploads — all behind one guard:
//! - the `Host` header must name this server (no DNS rebinding);
//! - a request must carry the access token: `?token=` once (answered with a
//!   redirect that sets an HttpOnly, SameSite=Strict cookie), then the cookie;
//! - a websocket upgrade or a POST must come from this server's own `Origin`.

use crate::runner::{Context, Downloads};
use crate::view::{Root, RootProps};
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, Request, State, WebSocketUpgrade};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// A random token of `bytes` random bytes, as hex (from /dev/urandom).
pub fn random_token(bytes: usize) -> String {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)).is_ok();
    if !ok {
        // getrandom(2) directly, should /dev be missing (containers).
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert_eq!(n as usize, buf.len(), "no source of randomness");
    }
    pidcap_packet::to_hex(&buf)
}

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Where to listen (loopback unless told otherwise).
    pub bind: SocketAddr,
    /// The daemon's socket.
    pub socket: PathBuf,
    /// The packet library's database.
    pub library: PathBuf,
    /// The access token (random when None).
    pub token: Option<String>,
}

/// A running UI server.
pub struct Running {
    pub addr: SocketAddr,
    pub token: String,
    /// The URL to open (token included).
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Block until the server stops (it does not, unless stopped from elsewhere).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Graceful shutdown waits for open websockets: signal it, do not wait.
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

struct Guard {
    token: String,
    cookie: String,
    hosts: Vec<String>,
}

impl Guard {
    fn new(token: String, addr: SocketAddr) -> Guard {
        let port = addr.port();
        let mut hosts = vec![format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")];
        if !addr.ip().is_unspecified() {
            hosts.push(addr.to_string());
        } else if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
            hosts.push(format!("{}:{port}", h.trim()));
        }
        Guard { token, cookie: format!("pidcap_ui_{port}"), hosts }
    }

    fn host_ok(&self, host: &str, addr_unspecified: bool) -> bool {
        self.hosts.iter().any(|h| h == host) || (addr_unspecified && host.parse::<SocketAddr>().is_ok())
    }

    fn origin_ok(&self, origin: &str) -> bool {
        origin.strip_prefix("http://").is_some_and(|h| self.hosts.iter().any(|x| x == h))
    }
}

/// Equal in constant time (for the token).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

fn deny(status: StatusCode, why: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("pidcap ui: {why}\n")).into_response()
}

async fn guard(State((g, unspecified)): State<(Arc<Guard>, bool)>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    if !g.host_ok(host, unspecified) {
        return deny(StatusCode::FORBIDDEN, "unknown Host");
    }
    let is_ws =
        headers.get(header::UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match origin {
        Some(o) if !g.origin_ok(o) => {
            return deny(StatusCode::FORBIDDEN, "requests from another site (Origin) are refused")
        }
        None if is_ws || req.method() != Method::GET => {
            return deny(StatusCode::FORBIDDEN, "an Origin header is required")
        }
        _ => {}
    }
    if cookie_value(headers, &g.cookie).is_some_and(|c| same(c, &g.token)) {
        return next.run(req).await;
    }
    let query_token = req.uri().query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    if !is_ws && req.method() == Method::GET && query_token.is_some_and(|t| same(t, &g.token)) {
        // Trade the token in the URL for a cookie, and drop it from the address bar.
        let rest: Vec<&str> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.starts_with("token=") && !kv.is_empty())
            .collect();
        let location = if rest.is_empty() {
            req.uri().path().to_string()
        } else {
            format!("{}?{}", req.uri().path(), rest.join("&"))
        };
        let cookie = format!("{}={}; HttpOnly; SameSite=Strict; Path=/", g.cookie, g.token);
        let mut r = StatusCode::SEE_OTHER.into_response();
        if let (Ok(l), Ok(c)) = (HeaderValue::from_str(&location), HeaderValue::from_str(&cookie)) {
            r.headers_mut().insert(header::LOCATION, l);
            r.headers_mut().insert(header::SET_COOKIE, c);
        }
        return r;
    }
    deny(StatusCode::UNAUTHORIZED, "missing or wrong access token: open the URL `pidcap ui` printed")
}

const STYLE: &str = include_str!("style.css");

fn index_page() -> String {
    let glue = dioxus_liveview::interpreter_glue("/ws");
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>pidcap</title><style>{STYLE}</style>
<script>
// Upload a .dpp file to the library (same origin; the cookie carries the token).
async function pidcapUpload(input) {{
  for (const f of input.files) {{
    const r = await fetch('/import?name=' + encodeURIComponent(f.name), {{method: 'POST', body: f}});
    const t = await r.text();
    if (!r.ok) alert(t);
  }}
  input.value = '';
}}
</script></head>
<body><div id="main"></div>{glue}</body></html>"#
    )
}

/// Bind and serve in a thread of its own; returns once listening.
pub fn start(cfg: ServeConfig) -> std::io::Result<Running> {
    let listener = std::net::TcpListener::bind(cfg.bind)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let token = cfg.token.clone().unwrap_or_else(|| random_token(16));
    let host = if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        format!("127.0.0.1:{}", addr.port())
    } else {
        addr.to_string()
    };
    let url = format!("http://{host}/?token={token}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let guard_state = (Arc::new(Guard::new(token.clone(), addr)), addr.ip().is_unspecified());
    let (imports, _) = tokio::sync::broadcast::channel(16);
    let ctx =
        Context { socket: cfg.socket.clone(), library: cfg.library.clone(), downloads: Downloads::default(), imports };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    let thread = std::thread::Builder::new().name("pidcap-ui-http".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => return drop(ready_tx.send(Err(e))),
        };
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => return drop(ready_tx.send(Err(e))),
            };
            let app = router(ctx).layer(axum::middleware::from_fn_with_state(guard_state, guard));
            let _ = ready_tx.send(Ok(()));
            // TCP_NODELAY: the liveview's edits are small websocket frames, one
            // per render; with Nagle's algorithm one waited for the browser's
            // delayed ACK of the previous one (40 ms and more: issue 13).
            let _ = axum::serve(listener, app)
                .tcp_nodelay(true)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
    })?;
    ready_rx.recv().map_err(|_| std::io::Error::other("the UI server thread died"))??;
    Ok(Running { addr, token, url, stop: Some(stop_tx), thread: Some(thread) })
}

fn router(ctx: Context) -> Router {
    let pool = Arc::new(dioxus_liveview::LiveViewPool::new());
    let page = index_page();
    let ws_ctx = ctx.clone();
    let dl = ctx.downloads.clone();
    let imp = ctx.clone();
    Router::new()
        .route("/", get(move || async move { Html(page) }))
        .route(
            "/ws",
            get(move |ws: WebSocketUpgrade| {
                let (pool, ctx) = (pool.clone(), ws_ctx.clone());
                async move {
                    ws.on_upgrade(move |socket| async move {
                        let _ =
                            pool.launch_with_props(dioxus_liveview::axum_socket(socket), Root, RootProps { ctx }).await;
                    })
                }
            }),
        )
        .route(
            "/download/:key",
            get(move |UrlPath(key): UrlPath<String>| {
                let dl = dl.clone();
                async move {
                    match dl.get(&key) {
                        Some((name, bytes)) => (
                            [
                                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
                            ],
                            bytes,
                        )
                            .into_response(),
                        None => deny(StatusCode::NOT_FOUND, "no such download (it may have expired)"),
                    }
                }
            }),
        )
        .route(
            "/import",
            post(move |Query(q): Query<HashMap<String, String>>, body: Bytes| {
                let ctx = imp.clone();
                async move {
                    let name = q.get("name").cloned().unwrap_or_else(|| "upload.dpp".into());
                    let r = tokio::task::spawn_blocking(move || import(&ctx, &name, &body)).await;
                    match r {
                        Ok(Ok(msg)) => (StatusCode::OK, msg).into_response(),
                        Ok(Err(e)) => deny(StatusCode::BAD_REQUEST, &e),
                        Err(e) => deny(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                    }
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(pidcap_library::MAX_FILE_BYTES as usize))
}

/// Import an uploaded `.dpp` into the library; tell every session.
fn import(ctx: &Context, name: &str, body: &[u8]) -> Result<String, String> {
    let safe: String = name.chars().filter(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c)).take(64).collect();
    let dir = std::env::temp_dir().join(format!("pidcap-ui-import-{}", random_token(8)));
    std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(if safe.ends_with(".dpp") { safe.clone() } else { format!("{safe}.dpp") });
    let r = std::fs::write(&path, body)
        .map_err(|e| e.to_string())
        .and_then(|_| pidcap_library::Library::open(&ctx.library).map_err(|e| e.to_string()))
        .and_then(|mut l| l.import_dpp(&path).map_err(|e| format!("{name} could not be imported: {e}")));
    let _ = std::fs::remove_dir_all(&dir);
    let report = r?;
    let msg = format!("Imported {} packet(s) from {name} (.dpp v{}).", report.packet_ids.len(), report.version);
    let _ = ctx.imports.send(msg.clone());
    Ok(msg)
}
