//! The bystander's fast path in the real kernel (root): while another process
//! is captured, every socket of a process that is not a target holds, after
//! its first packet or socket operation, the verdict "no target" stamped with
//! the target set's current generation in its own storage (`sk_owners`), which
//! is what every program looks at first and returns on; no owner-map entry is
//! made for it; a change of the target set makes it stale and the next packet
//! stamps it again. A socket older than the capture that has no known owner
//! caches that as well (`pidcap_sk_owner.unowned`, so its packets stop looking
//! in the cookie and port maps), and is still captured once its process becomes
//! a target. A bystander's socket taken over by a target is the target's at
//! its first send. The storage is read from userspace (a socket storage map's key is
//! a file descriptor of the socket: the agents' sockets are duplicated into
//! this process with pidfd_getfd).
//!
//! Each test drives python3 "agents" (one socket operation per line on their
//! stdin) and the backend directly.

mod common;
use aya::programs::loaded_programs;
use common::Agent;
use pidcap_ebpf::abi::{Owner, PortKey, PortOwner, SkOwner, GEN_KERNEL, GEN_USER};
use pidcap_ebpf::{EbpfBackend, LoadOptions};
use pidcap_engine::{KernelBackend, KernelConfig};
use pidcap_testkit::require;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

const AGENT: &str = r#"
import ctypes, os, socket, sys, threading
socks = {}
lst = None
conns = []
def out(*a):
    print(*a, flush=True)
for line in sys.stdin:
    w = line.split()
    if not w:
        continue
    c = w[0]
    if c == "udp":            # a connected UDP socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", int(w[1])))
        socks["c"] = s
        out(s.fileno())
    elif c == "send":
        socks["c"].send(w[1].encode())
        out("ok")
    elif c == "usock":        # an unconnected one (bound by its first sendto)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        socks["u"] = s
        out(s.fileno())
    elif c == "sendto":
        socks["u"].sendto(w[2].encode(), ("127.0.0.1", int(w[1])))
        out("ok")
    elif c == "threadsendto": # the same, from a new thread with a name of its own
        res = []
        def run():
            ctypes.CDLL(None).prctl(15, w[3].encode(), 0, 0, 0)
            socks["u"].sendto(w[2].encode(), ("127.0.0.1", int(w[1])))
            res.append(threading.get_native_id())
        t = threading.Thread(target=run)
        t.start()
        t.join()
        out(res[0])
    elif c == "recvsock":     # a bound UDP socket that reads with recvfrom
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(10)
        socks["r"] = s
        out(s.fileno(), s.getsockname()[1])
    elif c == "recvfrom":
        data, _ = socks["r"].recvfrom(100)
        out(data.decode())
    elif c == "listen":
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.bind(("127.0.0.1", 0))
        lst.listen(4)
        out(lst.fileno(), lst.getsockname()[1])
    elif c == "accept":
        conn, _ = lst.accept()
        conn.settimeout(10)
        conns.append(conn)
        out(conn.fileno())
    elif c == "tcprecv":
        out(conns[-1].recv(100).decode())
    elif c == "tcpopen":
        t = socket.create_connection(("127.0.0.1", int(w[1])))
        socks["t"] = t
        out(t.fileno())
    elif c == "tcpsend":
        socks["t"].sendall(w[1].encode())
        out("ok")
    elif c == "takeover":     # another process's socket (pidfd_getfd), then a sendto on it
        fd = ctypes.CDLL(None, use_errno=True).syscall(438, os.pidfd_open(int(w[1])), int(w[2]), 0)
        s = socket.socket(fileno=fd)
        socks["taken"] = s
        s.sendto(w[4].encode(), ("127.0.0.1", int(w[3])))
        out("ok")
    elif c == "exit":
        break
"#;

impl Agent {
    /// Run a command that answers with a descriptor, and take a duplicate of it.
    fn socket(&mut self, cmd: &str) -> (OwnedFd, Vec<String>) {
        let words: Vec<String> = self.ask(cmd).split_whitespace().map(String::from).collect();
        let fd: RawFd = words[0].parse().unwrap_or_else(|_| panic!("{cmd}: {words:?}"));
        (getfd(self.pid(), fd), words[1..].to_vec())
    }
}

/// A duplicate of descriptor `fd` of process `pid` (pidfd_getfd, as root).
fn getfd(pid: u32, fd: RawFd) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    assert!(pidfd >= 0, "pidfd_open {pid}: {}", std::io::Error::last_os_error());
    // SAFETY: pidfd is a descriptor this process just got and owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) };
    // SAFETY: pidfd_getfd takes a pidfd, a descriptor number in that process and flags.
    let dup = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    assert!(dup >= 0, "pidfd_getfd {pid} {fd}: {}", std::io::Error::last_os_error());
    // SAFETY: dup is a new descriptor of this process, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(dup as RawFd) }
}

/// The socket's cookie (SO_COOKIE).
fn cookie(sock: &OwnedFd) -> u64 {
    let mut c = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: c is writable for len bytes; the kernel writes at most len.
    let rc = unsafe {
        libc::getsockopt(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_COOKIE, (&mut c as *mut u64).cast(), &mut len)
    };
    assert_eq!(rc, 0, "SO_COOKIE: {}", std::io::Error::last_os_error());
    c
}

/// The socket's local port.
fn local_port(sock: &OwnedFd) -> u16 {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: sa is writable for len bytes; the kernel writes at most len.
    let rc = unsafe { libc::getsockname(sock.as_raw_fd(), (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
    u16::from_be(sa.sin_port)
}

/// `union bpf_attr` for BPF_MAP_LOOKUP_ELEM.
#[repr(C)]
struct LookupAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Look `key` up in map `map`; None when it has no such entry.
fn lookup<K, V: Copy>(map: &impl AsFd, key: &K) -> Option<V> {
    let mut value = std::mem::MaybeUninit::<V>::zeroed();
    let attr = LookupAttr {
        map_fd: map.as_fd().as_raw_fd() as u32,
        _pad: 0,
        key: key as *const K as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
    // SAFETY: attr points to a valid bpf_attr prefix for this command; key and value
    // are valid for the map's key and value sizes (the types mirror the map's).
    let rc = unsafe {
        libc::syscall(libc::SYS_bpf, BPF_MAP_LOOKUP_ELEM, &attr as *const LookupAttr, std::mem::size_of::<LookupAttr>())
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "map lookup: {e}");
        return None;
    }
    // SAFETY: the kernel wrote the whole value (its size is the map's value size, V's).
    Some(unsafe { value.assume_init() })
}

/// The backend's maps, found by name among those its egress program uses.
struct Maps {
    sk_owners: aya::maps::MapFd,
    gens: aya::maps::MapFd,
    owners: aya::maps::MapFd,
    port_owners: aya::maps::MapFd,
    bound_ports: aya::maps::MapFd,
}

impl Maps {
    fn of(b: &EbpfBackend) -> Maps {
        let id = b.program_id("pidcap_egress").expect("the egress program's id");
        let prog = loaded_programs().filter_map(Result::ok).find(|p| p.id() == id).expect("the egress program");
        let mut by_name: HashMap<String, aya::maps::MapFd> = HashMap::new();
        for map_id in prog.map_ids().unwrap().unwrap_or_default() {
            let info = aya::maps::MapInfo::from_id(map_id).unwrap();
            if let Some(name) = info.name_as_str() {
                by_name.insert(name.to_string(), info.fd().unwrap());
            }
        }
        let mut take = |n: &str| by_name.remove(n).unwrap_or_else(|| panic!("map {n} not used by pidcap_egress"));
        Maps {
            sk_owners: take("sk_owners"),
            gens: take("gens"),
            owners: take("owners"),
            port_owners: take("port_owners"),
            bound_ports: take("bound_ports"),
        }
    }

    /// The target set's generation, shifted as a verdict is (bit 0 clear).
    fn generation(&self) -> u64 {
        let user: u32 = lookup(&self.gens, &GEN_USER).unwrap();
        let kernel: u32 = lookup(&self.gens, &GEN_KERNEL).unwrap();
        (u64::from(user) << 32 | u64::from(kernel)) << 1
    }

    /// The socket's storage (None: the programs have not given it one).
    fn storage(&self, sock: &OwnedFd) -> Option<SkOwner> {
        lookup(&self.sk_owners, &(sock.as_raw_fd() as libc::c_int))
    }
}

fn load() -> EbpfBackend {
    let mut b = EbpfBackend::load(LoadOptions::with_ring(1 << 20)).expect("load the kernel layer");
    b.configure(&KernelConfig { snaplen: 1500, capture: true, tls: false }).unwrap();
    b
}

/// Wait (at most 10 s) until `done` holds for the socket's storage; returns it.
fn storage_until(maps: &Maps, sock: &OwnedFd, what: &str, done: impl Fn(&SkOwner) -> bool) -> SkOwner {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let st = maps.storage(sock);
        if let Some(st) = st.filter(&done) {
            return st;
        }
        assert!(Instant::now() < deadline, "{what}: the socket's storage is {st:?} (generation {})", maps.generation());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A process: its tgid and key.
#[derive(Debug, Clone, Copy)]
struct Who {
    pid: u32,
    key: u64,
}

impl Who {
    fn of(agent: &Agent) -> Who {
        Who { pid: agent.pid(), key: agent.process().key() }
    }
}

/// The storage says: owned by process `who`, no target, at generation `gen`.
fn is_bystanders(st: &SkOwner, who: Who, gen: u64) -> bool {
    st.valid == 1 && st.owner.tgid == who.pid && st.owner.key == who.key && st.verdict == gen
}

#[test]
fn every_bystander_socket_caches_no_target_at_the_current_generation() {
    require!(Root, Tool("python3"));
    let mut b = load();
    let maps = Maps::of(&b);
    // The capture of another process, an idle one.
    let mut target = Agent::start(AGENT);
    b.add_target(&target.process(), false).unwrap();
    let gen = maps.generation();

    // Two bystanders: UDP connected and unconnected to a socket that reads
    // with recvfrom, TCP connected to a listener (the accepted socket's owner
    // comes from sockops).
    let mut by = Agent::start(AGENT);
    let mut peer = Agent::start(AGENT);
    let (by_who, peer_who) = (Who::of(&by), Who::of(&peer));
    let (recv, words) = peer.socket("recvsock");
    let rport: u16 = words[0].parse().unwrap();
    let (conn, _) = by.socket(&format!("udp {rport}"));
    assert_eq!(by.ask("send c-1"), "ok");
    let uncon_no: RawFd = by.ask("usock").parse().unwrap();
    let uncon = getfd(by.pid(), uncon_no);
    assert_eq!(by.ask(&format!("sendto {rport} u-1")), "ok");
    let mut got = vec![peer.ask("recvfrom"), peer.ask("recvfrom")];
    got.sort();
    assert_eq!(got, ["c-1", "u-1"]);
    let (listener, words) = peer.socket("listen");
    let lport: u16 = words[0].parse().unwrap();
    peer.tell("accept");
    let (client, _) = by.socket(&format!("tcpopen {lport}"));
    let accepted = getfd(peer.pid(), peer.answer().parse().unwrap());
    assert_eq!(by.ask("tcpsend t-1"), "ok");
    assert_eq!(peer.ask("tcprecv"), "t-1");

    let socks: [(&str, &OwnedFd, Who); 6] = [
        ("connected UDP", &conn, by_who),
        ("unconnected UDP", &uncon, by_who),
        ("the UDP reader", &recv, peer_who),
        ("the TCP listener", &listener, peer_who),
        ("the TCP client", &client, by_who),
        ("the accepted TCP socket", &accepted, peer_who),
    ];
    for (what, sock, who) in socks {
        let st = maps.storage(sock).unwrap_or_else(|| panic!("{what} has no storage"));
        assert!(is_bystanders(&st, who, gen), "{what}: {st:?}, generation {gen}, owner {who:?}");
        // Nothing of it in the map of sockets older than the capture.
        assert!(lookup::<u64, Owner>(&maps.owners, &cookie(sock)).is_none(), "{what} is in owners");
    }
    // The ports the bystanders did not bind themselves have no owner entry;
    // the listener's (bound) has its owner's (so that its accepted connections
    // are its, also if it becomes a target in the kernel later).
    for (what, sock) in [("connected UDP", &conn), ("unconnected UDP", &uncon), ("the TCP client", &client)] {
        let tcp = std::ptr::eq(sock, &client);
        let key = PortKey { port: local_port(sock), proto: if tcp { 6 } else { 17 }, _pad: 0 };
        assert!(lookup::<PortKey, PortOwner>(&maps.port_owners, &key).is_none(), "{what}'s port {key:?} has an owner");
    }
    let key = PortKey { port: lport, proto: 6, _pad: 0 };
    let po: PortOwner = lookup(&maps.port_owners, &key).expect("the listener's port has its owner");
    assert_eq!(po.owner.tgid, peer.pid());

    // A thread of its own on the unconnected socket (the sendmsg hook's fast
    // path): the storage names that thread and its name, as the full path does.
    let tid: u32 = by.ask(&format!("threadsendto {rport} u-thr pidcap-fp-thr")).parse().unwrap();
    assert_eq!(peer.ask("recvfrom"), "u-thr");
    let st = maps.storage(&uncon).unwrap();
    assert!(is_bystanders(&st, by_who, gen), "{st:?}");
    assert_eq!((st.owner.tid, &st.owner.comm[..13]), (tid, &b"pidcap-fp-thr"[..]), "{st:?}");

    // The target set changes (another target): every verdict is stale, and
    // each socket's next packet decides again and stamps the new generation.
    let other = Agent::start(AGENT);
    b.add_target(&other.process(), false).unwrap();
    let gen2 = maps.generation();
    assert_ne!(gen2, gen);
    assert_eq!(by.ask("send c-2"), "ok");
    assert_eq!(by.ask(&format!("sendto {rport} u-2")), "ok");
    assert_eq!(by.ask("tcpsend t-2"), "ok");
    assert_eq!(peer.ask("tcprecv"), "t-2");
    for (what, sock, who) in [socks[0], socks[1], socks[2], socks[4], socks[5]] {
        storage_until(&maps, sock, what, |st| is_bystanders(st, who, gen2));
    }

    // The target takes the bystander's unconnected socket over (the fast
    // path's "is the caller the owner" fails): its first send on it is its
    // own, and captured; nothing of the bystanders' before it was.
    let cmd = format!("takeover {} {uncon_no} {rport} taken-1", by_who.pid);
    assert_eq!(target.ask(&cmd), "ok");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut captured: Vec<(u32, Vec<u8>)> = Vec::new();
    while !captured.iter().any(|(_, d)| d.windows(7).any(|w| w == b"taken-1")) {
        assert!(Instant::now() < deadline, "never captured taken-1: {captured:?}");
        b.poll(Duration::from_millis(10), &mut |raw| captured.push((raw.pid, raw.data.to_vec()))).unwrap();
    }
    assert!(captured.iter().all(|(pid, _)| *pid == target.pid()), "{captured:?}");
    let st = maps.storage(&uncon).unwrap();
    assert!(st.valid == 1 && st.owner.tgid == target.pid() && st.verdict == gen2 | 1, "{st:?}");
}

#[test]
fn a_socket_older_than_the_capture_caches_that_it_has_no_owner_and_is_captured_once_its_process_is_a_target() {
    require!(Root, Tool("python3"));
    let mut peer = Agent::start(AGENT);
    let (_recv, words) = peer.socket("recvsock");
    let rport: u16 = words[0].parse().unwrap();
    let mut early = Agent::start(AGENT);
    let (sock, _) = early.socket(&format!("udp {rport}"));
    assert_eq!(early.ask("send before-load"), "ok");
    assert_eq!(peer.ask("recvfrom"), "before-load");

    // Loaded now: this backend's programs have never seen the socket.
    let mut b = load();
    let maps = Maps::of(&b);
    let idle = Agent::start(AGENT);
    b.add_target(&idle.process(), false).unwrap();
    assert!(maps.storage(&sock).is_none(), "{:?}", maps.storage(&sock));

    // Its first packet finds no owner (no storage, no seeded cookie, no port
    // owner) and caches that, at the current generation.
    let gen = maps.generation();
    assert_eq!(early.ask("send e-1"), "ok");
    assert_eq!(peer.ask("recvfrom"), "e-1");
    let st = storage_until(&maps, &sock, "no owner, cached", |st| st.valid == 0 && st.unowned == gen);
    assert_eq!(st.verdict, 0, "{st:?}");

    // The target set changes: the next packet looks again, and caches again.
    let other = Agent::start(AGENT);
    b.add_target(&other.process(), false).unwrap();
    let gen2 = maps.generation();
    assert_eq!(early.ask("send e-2"), "ok");
    assert_eq!(peer.ask("recvfrom"), "e-2");
    storage_until(&maps, &sock, "no owner, cached again", |st| st.valid == 0 && st.unowned == gen2);

    // Its process becomes a target: seeded by cookie, the socket finds its
    // owner at its next packet, which is captured.
    b.add_target(&early.process(), false).unwrap();
    assert_eq!(early.ask("send e-target"), "ok");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut captured = Vec::new();
    while !captured.iter().any(|(_, d): &(u32, Vec<u8>)| d.windows(8).any(|w| w == b"e-target")) {
        assert!(Instant::now() < deadline, "never captured e-target: {captured:?}");
        b.poll(Duration::from_millis(10), &mut |raw| captured.push((raw.pid, raw.data.to_vec()))).unwrap();
    }
    assert!(captured.iter().all(|(pid, _)| *pid == early.pid()), "{captured:?}");
    let st = maps.storage(&sock).unwrap();
    assert!(st.valid == 1 && st.owner.tgid == early.pid() && st.verdict & 1 == 1, "{st:?}");
}

#[test]
fn a_seeded_socket_whose_first_operation_is_a_send_takes_its_seeded_entries_into_its_storage_and_leaves_none_behind() {
    require!(Root, Tool("python3"));
    let mut peer = Agent::start(AGENT);
    let (_recv, words) = peer.socket("recvsock");
    let rport: u16 = words[0].parse().unwrap();
    // An unconnected UDP socket, bound (by its first sendto) before the load.
    let mut early = Agent::start(AGENT);
    let (uncon, _) = early.socket("usock");
    assert_eq!(early.ask(&format!("sendto {rport} before-load")), "ok");
    assert_eq!(peer.ask("recvfrom"), "before-load");
    let (c, key) = (cookie(&uncon), PortKey { port: local_port(&uncon), proto: 17, _pad: 0 });

    let mut b = load();
    let maps = Maps::of(&b);
    b.add_target(&early.process(), false).unwrap();
    assert!(lookup::<u64, Owner>(&maps.owners, &c).is_some(), "the socket was not seeded");
    assert_eq!(lookup::<u64, PortKey>(&maps.bound_ports, &c), Some(key));
    assert_eq!(lookup::<PortKey, PortOwner>(&maps.port_owners, &key).map(|po| po.cookie), Some(c));

    // Its first operation since: a sendto, whose sendmsg4 hook (process
    // context) comes before the datagram's egress. The socket's storage has
    // its owner and its port; the maps of seeded sockets keep nothing of it.
    assert_eq!(early.ask(&format!("sendto {rport} e-1")), "ok");
    assert_eq!(peer.ask("recvfrom"), "e-1");
    let st = maps.storage(&uncon).expect("the socket's storage");
    assert!(st.valid == 1 && st.owner.tgid == early.pid() && st.verdict & 1 == 1, "{st:?}");
    assert_eq!((st.bound, st.port), (1, key), "{st:?}");
    assert!(lookup::<u64, Owner>(&maps.owners, &c).is_none(), "its seeded owner is left in owners");
    assert!(lookup::<u64, PortKey>(&maps.bound_ports, &c).is_none(), "its seeded port is left in bound_ports");

    // Closed (the agent's descriptor and this test's duplicate): its port
    // has no owner left.
    early.tell("exit");
    drop(uncon);
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(po) = lookup::<PortKey, PortOwner>(&maps.port_owners, &key) {
        assert!(Instant::now() < deadline, "the closed socket's port still has an owner: {po:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}
