//! Helpers of the daemon's tests: a daemon in this process on the fake
//! kernel ([`InProcess::fake`], no root) or on the real one
//! ([`InProcess::start`], as root); for the kernel tests, a TCP/UDP server in
//! a private network namespace ([`NetNs`] from pidcap-testkit) and "prober"
//! processes that connect or send on demand and report the outcome (so one
//! process can be tried again and again while rules change around it). No
//! traffic leaves the namespace.
#![allow(dead_code)]

use pidcap_api::Client;
use pidcap_daemon::{Daemon, DaemonConfig};
use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::fake::{FakeHandle, FakeKernel};
use pidcap_engine::{EngineError, KernelBackend};
pub use pidcap_testkit::NetNs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
def tcp(fam, addr):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((addr, port)); s.listen(64)
    def loop():
        while True:
            c, _ = s.accept()
            try: c.sendall(b"hi\n")
            except OSError: pass
            c.close()
    threading.Thread(target=loop, daemon=True).start()
tcp(socket.AF_INET, "127.0.0.1"); tcp(socket.AF_INET6, "::1")
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", port))
def uloop():
    while True:
        d, a = u.recvfrom(4096); u.sendto(d, a)
threading.Thread(target=uloop, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"#;

const PROBER: &str = r#"
import socket, sys, time
print("ready", flush=True)
for line in sys.stdin:
    kind, port = line.split(); port = int(port)
    t = time.monotonic()
    try:
        if kind == "tcp4":
            s = socket.socket(socket.AF_INET); s.settimeout(3); s.connect(("127.0.0.1", port)); s.recv(3); s.close()
        elif kind == "tcp6":
            s = socket.socket(socket.AF_INET6); s.settimeout(3); s.connect(("::1", port)); s.recv(3); s.close()
        elif kind == "udp4":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)
            s.sendto(b"ping", ("127.0.0.1", port)); s.recv(16); s.close()
        print("ok", flush=True)
    except OSError as e:
        print("err %d %d" % (e.errno or 0, int((time.monotonic() - t) * 1000)), flush=True)
"#;

/// A python process with a line protocol on stdin/stdout; killed on drop.
pub struct Py {
    child: pidcap_testkit::KillOnDrop,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Py {
    fn start(mut cmd: Command, script: &str, args: &[&str]) -> Py {
        let mut child =
            cmd.arg("-c").arg(script).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("python3");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "helper did not start");
        Py { child: pidcap_testkit::KillOnDrop(child), stdin, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// errno (0: timeout) and how long it took.
    Err(i32, Duration),
}

impl Outcome {
    /// Refused at once with EPERM.
    pub fn is_eperm_at_once(&self) -> bool {
        matches!(self, Outcome::Err(1, d) if *d < Duration::from_millis(500))
    }
}

pub struct Prober(Py);

impl Prober {
    pub fn start(ns: &NetNs) -> Prober {
        Prober(Py::start(ns.command("python3"), PROBER, &[]))
    }

    pub fn pid(&self) -> u32 {
        self.0.pid()
    }

    /// `kind`: tcp4, tcp6 or udp4.
    pub fn try_(&mut self, kind: &str, port: u16) -> Outcome {
        writeln!(self.0.stdin, "{kind} {port}").unwrap();
        self.0.stdin.flush().unwrap();
        let mut line = String::new();
        self.0.stdout.read_line(&mut line).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ok"] => Outcome::Ok,
            ["err", errno, ms] => Outcome::Err(errno.parse().unwrap(), Duration::from_millis(ms.parse().unwrap())),
            _ => panic!("prober said {line:?}"),
        }
    }
}

/// The server in the namespace, on `port` (TCP v4+v6, UDP v4 echo).
pub struct Server(Py);

impl Server {
    pub fn start(ns: &NetNs, port: u16) -> Server {
        Server(Py::start(ns.command("python3"), SERVER, &[&port.to_string()]))
    }
}

/// Wait until `f` is true or `timeout` passes (checking every 20 ms).
pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

static N: AtomicU32 = AtomicU32::new(0);

pub fn socket_path() -> PathBuf {
    let base =
        std::env::temp_dir().join(format!("pidcap-ctl-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    // Fresh: an earlier test binary that had this pid may have left its
    // socket, stale socket or plain file here (pids are reused across runs).
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A directory the daemon creates itself (so it sets its mode and group).
    base.join("run").join("pidcap.sock")
}

pub fn config(socket: &Path, group: Option<&str>) -> DaemonConfig {
    DaemonConfig { socket: socket.into(), group: group.map(Into::into), handle_signals: false, ..Default::default() }
}

/// The real kernel layer, with a small (1 MiB) ring.
pub fn ebpf() -> Result<Box<dyn KernelBackend>, EngineError> {
    Ok(Box::new(EbpfBackend::load(LoadOptions::with_ring(1 << 20))?))
}

/// A daemon in this process; stopped on drop.
pub struct InProcess {
    pub socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// On the real kernel layer ([`ebpf`]).
    pub fn start(group: Option<&str>) -> InProcess {
        let socket = socket_path();
        InProcess::serve(socket.clone(), Daemon::bind(config(&socket, group), ebpf).expect("daemon"))
    }

    /// On the scripted kernel: no root needed. The handle pushes packets in
    /// and shows what the daemon asked the kernel for.
    pub fn fake(group: Option<&str>) -> (InProcess, FakeHandle) {
        let socket = socket_path();
        let kernel = FakeKernel::default();
        let handle = kernel.handle();
        let daemon = Daemon::bind_with_backend(config(&socket, group), Box::new(kernel)).expect("daemon");
        (InProcess::serve(socket, daemon), handle)
    }

    fn serve(socket: PathBuf, daemon: Daemon) -> InProcess {
        let (stop, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || daemon.serve(rx).unwrap());
        InProcess { socket, stop: Some(stop), thread: Some(thread) }
    }

    pub fn client(&self) -> Client {
        let c = Client::connect(&self.socket).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An IPv4 UDP packet from 127.0.0.1:`sport` to 127.0.0.2:53 carrying `payload`
/// (checksums zero: nothing checks them).
pub fn udp_packet(sport: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 2];
    let udp_len = 8 + payload.len();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&53u16.to_be_bytes());
    p.extend_from_slice(&[(udp_len >> 8) as u8, udp_len as u8, 0, 0]);
    p.extend_from_slice(payload);
    p
}
