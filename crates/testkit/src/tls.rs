//! TLS test fixtures: certificates made with `openssl` in a directory removed
//! on drop ([`Certs`]), one Python HTTPS peer script (`data/https.py`, its
//! modes listed at its top) and a guard for a peer process ([`Peer`]: its
//! stdout lines, waited for with a deadline; killed on drop) or a server
//! ([`HttpsServer`]: started once it printed its `port N` line).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a peer may take to print a line a test waits for.
pub const LINE_DEADLINE: Duration = Duration::from_secs(20);

/// The HTTPS peer script (`python3 https.py MODE ARGS...`).
pub fn https_py() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/https.py")
}

/// A directory of the test's own under the temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "pidcap-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Test-made certificates (EC P-256, 2 days): `ca` signed `cert` (CN
/// localhost; SANs IP 127.0.0.1 and DNS localhost; serverAuth) whose key is
/// `key`; `other_ca` signed nothing (a wrong CA). All in `dir`.
#[derive(Debug)]
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub other_ca: PathBuf,
    pub dir: TempDir,
}

impl Certs {
    /// Needs the tool `openssl`.
    pub fn new(tag: &str) -> Certs {
        let dir = TempDir::new(&format!("certs-{tag}"));
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap_or_else(|e| panic!("openssl: {e}"));
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        for (key, cert, cn) in
            [("ca.key", "ca.pem", "/CN=pidcap test CA"), ("other-ca.key", "other-ca.pem", "/CN=other CA")]
        {
            openssl(&[&["req", "-x509"], &ec[..], &["-keyout", key, "-out", cert, "-days", "2", "-subj", cn]].concat());
        }
        openssl(&[&["req"], &ec[..], &["-keyout", "srv.key", "-out", "srv.csr", "-subj", "/CN=localhost"]].concat());
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-out",
            "srv.pem",
            "-extfile",
            "ext.cnf",
        ]);
        Certs {
            ca: dir.join("ca.pem"),
            cert: dir.join("srv.pem"),
            key: dir.join("srv.key"),
            other_ca: dir.join("other-ca.pem"),
            dir,
        }
    }
}

/// A peer process: stdin piped, its stdout lines read as they come; killed
/// and reaped on drop.
#[derive(Debug)]
pub struct Peer {
    child: crate::KillOnDrop,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Peer {
    /// Spawns `cmd` with stdin and stdout piped.
    pub fn spawn(cmd: &mut Command) -> Peer {
        let mut child =
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Peer { child: crate::KillOnDrop(child), stdin, lines }
    }

    /// `python3 https.py MODE ARGS...`, `python3` being `Command::new("python3")`
    /// or a namespace's `ns.command("python3")`.
    pub fn https<S: AsRef<OsStr>>(mut python3: Command, mode: &str, args: &[S]) -> Peer {
        Peer::spawn(python3.arg(https_py()).arg(mode).args(args))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Its next stdout line; panics if none comes before [`LINE_DEADLINE`].
    pub fn line(&self) -> String {
        self.lines
            .recv_timeout(LINE_DEADLINE)
            .unwrap_or_else(|e| panic!("no line from the peer {}: {e}", self.child.id()))
    }

    /// Lines up to the first that starts with `prefix` (that one last);
    /// panics if none comes before [`LINE_DEADLINE`].
    pub fn wait_for(&self, prefix: &str) -> Vec<String> {
        let deadline = Instant::now() + LINE_DEADLINE;
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => {
                    let done = l.starts_with(prefix);
                    seen.push(l);
                    if done {
                        return seen;
                    }
                }
                Err(_) => panic!("no `{prefix}` line from the peer; saw {seen:?}"),
            }
        }
    }

    /// Lines already printed (none waited for).
    pub fn pending(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }

    /// Writes `line` and a newline to its stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        writeln!(stdin, "{line}").and_then(|()| stdin.flush()).unwrap();
    }

    /// Writes `line` and returns the next line it prints.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.line()
    }

    /// Closes its stdin (EOF) and waits for it to exit.
    pub fn finish(&mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        self.child.wait().unwrap()
    }
}

/// A server mode of `https.py`, listening once [`HttpsServer::start`] returns.
#[derive(Debug)]
pub struct HttpsServer {
    pub peer: Peer,
    pub port: u16,
}

impl HttpsServer {
    /// `python3 https.py MODE ARGS...` (see [`Peer::https`]); waits for its `port N` line.
    pub fn start<S: AsRef<OsStr>>(python3: Command, mode: &str, args: &[S]) -> HttpsServer {
        let peer = Peer::https(python3, mode, args);
        let first = peer.line();
        let port = first
            .strip_prefix("port ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("the server said {first:?}, not `port N`"));
        HttpsServer { peer, port }
    }

    /// The keep-alive `server` mode with `certs`' server certificate.
    pub fn http(python3: Command, certs: &Certs) -> HttpsServer {
        HttpsServer::start(python3, "server", &[&certs.cert, &certs.key])
    }

    pub fn pid(&self) -> u32 {
        self.peer.pid()
    }

    /// `https://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
}
