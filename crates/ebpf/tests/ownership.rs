//! Socket ownership in the real kernel (root): the verdict each socket caches
//! in its storage ("is my owner a target?", stamped with the target set's
//! generation) follows every change of the target set, from userspace
//! (add/remove a target) and from the kernel (a name match); bystanders'
//! packets never reach the ring; a socket opened before the capture is
//! captured once its process is a target; an accepted connection and its
//! handshake belong to the listener's process; a socket's FIN, sent by close(),
//! is still its owner's. (Pid reuse: crates/cli/tests/pidreuse.rs drives this backend.)
//!
//! Each test drives python3 "agents" (one socket operation per line on their
//! stdin) and the backend directly. "Not captured" is checked against a later
//! packet that is captured: the ring is read until that one arrives.

mod common;
use common::Agent;
use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::{KernelBackend, KernelConfig};
use pidcap_packet::Direction;
use pidcap_testkit::require;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

const AGENT: &str = r#"
import ctypes, socket, sys
s = None
lst = None
extra = []
for line in sys.stdin:
    w = line.split()
    if not w:
        continue
    c = w[0]
    if c == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", int(w[1])))
        print("ok", flush=True)
    elif c == "send":
        s.send(w[1].encode())
        print("ok", flush=True)
    elif c == "name":
        ctypes.CDLL(None).prctl(15, w[1].encode(), 0, 0, 0)
        print("ok", flush=True)
    elif c == "newsock":
        extra.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        print("ok", flush=True)
    elif c == "listen":
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("127.0.0.1", 0))
        lst.listen(4)
        print(lst.getsockname()[1], flush=True)
    elif c == "serve":
        conn, _ = lst.accept()
        data = conn.recv(100)
        conn.sendall(b"reply-" + data)
        conn.close()
        print("ok", flush=True)
    elif c == "request":
        t = socket.create_connection(("127.0.0.1", int(w[1])))
        t.sendall(w[2].encode())
        got = t.recv(100)
        t.close()
        print(got.decode(), flush=True)
    elif c == "exit":
        break
"#;

impl Agent {
    fn send(&mut self, text: &str) {
        assert_eq!(self.ask(&format!("send {text}")), "ok");
    }
}

#[derive(Debug, Clone)]
struct Got {
    pid: u32,
    dir: Direction,
    data: Vec<u8>,
}

impl Got {
    fn carries(&self, text: &str) -> bool {
        self.data.windows(text.len()).any(|w| w == text.as_bytes())
    }

    /// TCP flags of an IPv4 TCP packet.
    fn tcp_flags(&self) -> Option<u8> {
        let ihl = usize::from(self.data.first()? & 0xf) * 4;
        (self.data.get(9) == Some(&6)).then(|| self.data.get(ihl + 13).copied()).flatten()
    }

    fn tcp_payload_len(&self) -> usize {
        let ihl = usize::from(self.data[0] & 0xf) * 4;
        let total = usize::from(u16::from_be_bytes([self.data[2], self.data[3]]));
        total.saturating_sub(ihl + usize::from(self.data[ihl + 12] >> 4) * 4)
    }
}

fn load() -> EbpfBackend {
    let mut b = EbpfBackend::load(LoadOptions::with_ring(1 << 20)).expect("load the kernel layer");
    b.configure(&KernelConfig { snaplen: 1500, capture: true, tls: false }).unwrap();
    b
}

/// Read the ring until a packet satisfies `done`, at most 10 s; returns all read.
fn drain_until(b: &mut EbpfBackend, what: &str, done: impl Fn(&Got) -> bool) -> Vec<Got> {
    let mut got: Vec<Got> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        b.poll(Duration::from_millis(10), &mut |raw| {
            got.push(Got { pid: raw.pid, dir: raw.direction, data: raw.data.to_vec() })
        })
        .unwrap();
        if got.iter().any(&done) {
            return got;
        }
        assert!(Instant::now() < deadline, "never captured {what}: {} packets {got:?}", got.len());
    }
}

/// A UDP port nobody answers from, which reads nothing (its datagrams just queue).
fn sink() -> (UdpSocket, u16) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = s.local_addr().unwrap().port();
    (s, port)
}

#[test]
fn a_sockets_cached_verdict_follows_every_change_of_the_target_set() {
    require!(Root, Tool("python3"));
    let (_sink, port) = sink();
    let mut b = load();
    // The marker: a target from the start, whose packets show how far the ring was read.
    let mut marker = Agent::start(AGENT);
    b.add_target(&marker.process(), false).unwrap();
    assert_eq!(marker.ask(&format!("udp {port}")), "ok");

    // The socket is made while its process is no target: its storage caches "not a target's".
    let mut a = Agent::start(AGENT);
    assert_eq!(a.ask(&format!("udp {port}")), "ok");
    a.send("a-before-1");
    a.send("a-before-2");
    marker.send("mark-1");
    let got = drain_until(&mut b, "mark-1", |p| p.carries("mark-1"));
    assert!(got.iter().all(|p| p.pid == marker.pid()), "{got:?}");

    // Made a target: the same socket's next packet is captured.
    b.add_target(&a.process(), false).unwrap();
    a.send("a-target");
    let got = drain_until(&mut b, "a-target", |p| p.carries("a-target"));
    let mine: Vec<&Got> = got.iter().filter(|p| p.pid == a.pid()).collect();
    assert_eq!(mine.len(), 1, "{got:?}");
    assert!(mine[0].carries("a-target") && mine[0].dir == Direction::Outbound);

    // Removed: not captured any more.
    let target = b.targets().unwrap().into_iter().find(|t| t.id.pid == a.pid()).unwrap();
    b.remove_target(target.id).unwrap();
    a.send("a-removed");
    marker.send("mark-2");
    let got = drain_until(&mut b, "mark-2", |p| p.carries("mark-2"));
    assert!(!got.iter().any(|p| p.carries("a-removed")), "{got:?}");

    // A target again, this time by the kernel: its name matches, and it makes
    // another socket (a socket operation in process context). The first
    // socket's verdict, cached since the removal, is decided again.
    let name = "pidcap-gen-nm";
    b.add_target_name(name, false).unwrap();
    a.send("a-named-before");
    assert_eq!(a.ask(&format!("name {name}")), "ok");
    assert_eq!(a.ask("newsock"), "ok");
    assert!(b.targets().unwrap().iter().any(|t| t.id.pid == a.pid()), "the name match made it a target");
    a.send("a-named");
    let got = drain_until(&mut b, "a-named", |p| p.carries("a-named") && !p.carries("a-named-before"));
    assert!(!got.iter().any(|p| p.carries("a-named-before")), "{got:?}");
    assert!(got.iter().filter(|p| p.carries("a-named")).all(|p| p.pid == a.pid()));
}

#[test]
fn a_bystanders_packets_never_reach_the_ring_nor_the_target_counter() {
    require!(Root, Tool("python3"));
    let (_sink, port) = sink();
    let mut b = load();
    let mut target = Agent::start(AGENT);
    b.add_target(&target.process(), false).unwrap();
    assert_eq!(target.ask(&format!("udp {port}")), "ok");
    let mut bystander = Agent::start(AGENT);
    assert_eq!(bystander.ask(&format!("udp {port}")), "ok");
    let before = b.counters().unwrap();
    for i in 0..50 {
        bystander.send(&format!("by-{i}"));
    }
    target.send("the-target");
    let got = drain_until(&mut b, "the target's datagram", |p| p.carries("the-target"));
    assert_eq!(got.len(), 1, "only the target's one datagram: {got:?}");
    assert_eq!(got[0].pid, target.pid());
    let after = b.counters().unwrap();
    assert_eq!(after.target - before.target, 1, "{before:?} {after:?}");
    assert!(after.seen - before.seen >= 51 * 2, "every packet is seen (both ends): {before:?} {after:?}");
}

#[test]
fn a_socket_opened_before_the_capture_is_captured_and_released_with_its_process() {
    require!(Root, Tool("python3"));
    let (_sink, port) = sink();
    let mut early = Agent::start(AGENT);
    assert_eq!(early.ask(&format!("udp {port}")), "ok");
    early.send("early-before-load");
    // Loaded now: this backend's programs have never seen the socket.
    let mut b = load();
    let mut marker = Agent::start(AGENT);
    b.add_target(&marker.process(), false).unwrap();
    assert_eq!(marker.ask(&format!("udp {port}")), "ok");
    early.send("early-untargeted");
    marker.send("mark-1");
    let got = drain_until(&mut b, "mark-1", |p| p.carries("mark-1"));
    assert!(!got.iter().any(|p| p.pid == early.pid()), "{got:?}");

    b.add_target(&early.process(), false).unwrap();
    early.send("early-target");
    let got = drain_until(&mut b, "early-target", |p| p.carries("early-target"));
    assert_eq!(got.iter().filter(|p| p.pid == early.pid()).count(), 1, "{got:?}");

    let t = b.targets().unwrap().into_iter().find(|t| t.id.pid == early.pid()).unwrap();
    b.remove_target(t.id).unwrap();
    early.send("early-removed");
    marker.send("mark-2");
    let got = drain_until(&mut b, "mark-2", |p| p.carries("mark-2"));
    assert!(!got.iter().any(|p| p.carries("early-removed")), "{got:?}");
}

#[test]
fn an_accepted_connection_and_its_handshake_belong_to_the_listeners_process() {
    require!(Root, Tool("python3"));
    let mut b = load();
    let mut server = Agent::start(AGENT);
    b.add_target(&server.process(), false).unwrap();
    let port = server.ask("listen");
    let mut client = Agent::start(AGENT); // a bystander
    server.tell("serve");
    assert_eq!(client.ask(&format!("request {port} hello-server")), "reply-hello-server");
    assert_eq!(server.answer(), "ok");
    let got = drain_until(&mut b, "the reply", |p| p.carries("reply-hello-server"));
    assert!(got.iter().all(|p| p.pid == server.pid()), "only the server's: {got:?}");
    let has = |dir: Direction, flags: u8, payload: bool| {
        got.iter().any(|p| {
            p.dir == dir && p.tcp_flags().is_some_and(|f| f & 0x17 == flags) && (p.tcp_payload_len() > 0) == payload
        })
    };
    const SYN: u8 = 0x02;
    const ACK: u8 = 0x10;
    assert!(has(Direction::Inbound, SYN, false), "the SYN: {got:?}");
    assert!(has(Direction::Outbound, SYN | ACK, false), "the SYN-ACK (sent by a request socket): {got:?}");
    assert!(has(Direction::Inbound, ACK, false), "the handshake's last ACK: {got:?}");
    assert!(got.iter().any(|p| p.dir == Direction::Inbound && p.carries("hello-server")), "{got:?}");
    assert!(got.iter().any(|p| p.dir == Direction::Outbound && p.carries("reply-hello-server")), "{got:?}");
}

#[test]
fn a_closed_sockets_last_packets_are_still_its_owners() {
    require!(Root, Tool("python3"));
    let mut b = load();
    let mut server = Agent::start(AGENT); // a bystander
    let port = server.ask("listen");
    let mut client = Agent::start(AGENT);
    b.add_target(&client.process(), false).unwrap();
    server.tell("serve");
    // The client connects, sends, reads the reply and closes: its FIN is sent
    // by close(), after the process let go of the socket.
    assert_eq!(client.ask(&format!("request {port} bye-server")), "reply-bye-server");
    assert_eq!(server.answer(), "ok");
    const FIN: u8 = 0x01;
    let got = drain_until(&mut b, "the client's FIN", |p| {
        p.dir == Direction::Outbound && p.tcp_flags().is_some_and(|f| f & FIN != 0)
    });
    assert!(got.iter().all(|p| p.pid == client.pid()), "only the client's: {got:?}");
    assert!(got.iter().any(|p| p.dir == Direction::Outbound && p.carries("bye-server")), "{got:?}");
}
