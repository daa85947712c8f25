//! A scripted kernel layer (feature `fake`): the whole core, the daemon and
//! its protocol run on it without root, eBPF or a network. Tests keep a
//! [`FakeHandle`] to push packets in and to look at what the engine asked
//! the kernel for (targets, configuration, rules, where the programs are
//! attached: it starts attached at the root). Like the real kernel
//! layer, it keeps one entry per pid with its key, and a test plays the
//! kernel's own part (a followed child, an exit) through the handle.

use crate::backend::{KernelBackend, KernelConfig, KernelCounters, KernelTarget, RawPacket, RawTls, TlsCoverage};
use crate::cgroup::{AttachPoint, CgroupTarget};
use crate::error::{EngineError, Result};
use crate::process::{Process, TargetId};
use crate::rules::{self, Rule};
use pidcap_packet::{Direction, TlsLibrary, Verdict};
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One packet the fake kernel will hand up.
#[derive(Debug, Clone)]
pub struct FakePacket {
    pub pid: u32,
    pub comm: Vec<u8>,
    /// The sending thread (0: unknown); [`FakePacket::new`] makes it the pid.
    pub tid: u32,
    pub socket_cookie: u64,
    pub direction: Direction,
    pub verdict: Verdict,
    pub rule: Option<u16>,
    pub ts_mono_ns: u64,
    /// The IP packet (cut to the configured snap length when handed up);
    /// for a TLS plaintext record (`tls` set), the plaintext.
    pub data: Vec<u8>,
    pub tls: Option<RawTls>,
}

impl FakePacket {
    /// An outbound, passed packet of `pid` named "fake".
    pub fn new(pid: u32, data: Vec<u8>) -> FakePacket {
        FakePacket {
            pid,
            comm: b"fake".to_vec(),
            tid: pid,
            socket_cookie: 5,
            direction: Direction::Outbound,
            verdict: Verdict::Pass,
            rule: None,
            ts_mono_ns: 1_000,
            data,
            tls: None,
        }
    }

    /// A TLS plaintext record of `pid` from OpenSSL on the connection
    /// `local` -> `remote` (socket cookie 5), in `direction`.
    pub fn tls(pid: u32, direction: Direction, local: SocketAddr, remote: SocketAddr, plaintext: &[u8]) -> FakePacket {
        FakePacket {
            direction,
            tls: Some(RawTls {
                tid: pid,
                library: TlsLibrary::Openssl,
                local,
                remote,
                true_len: plaintext.len() as u64,
            }),
            ..FakePacket::new(pid, plaintext.to_vec())
        }
    }
}

/// A target entry of the fake kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeTarget {
    pub key: u64,
    pub follow_children: bool,
    /// Set by [`FakeHandle::exit`], as the kernel's exit hook does.
    pub exited: bool,
}

/// An IPv4 UDP datagram 127.0.0.1:1000 -> 127.0.0.2:53 carrying `payload`
/// (the packet the engine's own tests push through the fake).
pub fn udp_packet(payload: &[u8]) -> Vec<u8> {
    use pidcap_packet::build::{build, Transport};
    build(([127, 0, 0, 1], 1000).into(), ([127, 0, 0, 2], 53).into(), 64, Transport::Udp, payload)
        .expect("a small UDP datagram always builds")
}

/// What the fake kernel holds; shared between the backend and its handles.
#[derive(Debug, Default)]
pub struct FakeState {
    pub pending: VecDeque<FakePacket>,
    /// pid -> entry (one per pid, as in the kernel's map).
    pub targets: BTreeMap<u32, FakeTarget>,
    pub names: Vec<String>,
    /// The cgroups [`KernelBackend::add_target_cgroup`] was given, with follow_children.
    pub cgroups: Vec<(CgroupTarget, bool)>,
    pub counters: KernelCounters,
    pub config: Option<KernelConfig>,
    pub rules: Vec<Rule>,
    pub hits: Vec<u64>,
    /// What [`KernelBackend::tls_coverage`] answers (None: nothing, as a
    /// kernel layer without TLS support); see [`FakeHandle::set_tls_coverage`].
    pub tls_coverage: Option<Vec<TlsCoverage>>,
    // -- attach point (issue 13) --
    /// Where the programs are attached now ([`KernelBackend::set_attach`];
    /// None: nowhere). A fake starts attached at the root, as a kernel
    /// layer loaded with the default options.
    pub attached: Option<AttachPoint>,
    /// Every change of `attached`, in order (a call that sets the point in
    /// force again is no change).
    pub attach_changes: Vec<Option<AttachPoint>>,
    /// Points [`KernelBackend::set_attach`] refuses (as a cgroup removed
    /// meanwhile): it fails and keeps the point in force.
    pub refuse_attach: Vec<AttachPoint>,
}

/// The scripted [`KernelBackend`].
#[derive(Debug)]
pub struct FakeKernel {
    state: Arc<Mutex<FakeState>>,
}

impl Default for FakeKernel {
    fn default() -> Self {
        let state = FakeState { attached: Some(AttachPoint::Root), ..FakeState::default() };
        FakeKernel { state: Arc::new(Mutex::new(state)) }
    }
}

/// A test's view of a [`FakeKernel`] that has been handed to the engine.
#[derive(Debug, Clone)]
pub struct FakeHandle {
    state: Arc<Mutex<FakeState>>,
}

fn lock(state: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    // A test that panicked while holding the lock already failed; go on with its state.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeKernel {
    pub fn handle(&self) -> FakeHandle {
        FakeHandle { state: Arc::clone(&self.state) }
    }
}

impl FakeHandle {
    /// Queue an outbound packet of `pid` (see [`FakePacket::new`]).
    pub fn push(&self, pid: u32, data: Vec<u8>) {
        self.push_packet(FakePacket::new(pid, data));
    }

    pub fn push_packet(&self, p: FakePacket) {
        lock(&self.state).pending.push_back(p);
    }

    /// Make `pid` a target as if the kernel had added it (a followed child,
    /// a name match), with key 0.
    pub fn insert_target(&self, pid: u32) {
        self.insert_target_id(TargetId { pid, key: 0 });
    }

    /// Make `id` a target as if the kernel had added it.
    pub fn insert_target_id(&self, id: TargetId) {
        lock(&self.state).targets.insert(id.pid, FakeTarget { key: id.key, follow_children: false, exited: false });
    }

    /// Play the kernel's exit hook: the target with this pid has exited.
    pub fn exit(&self, pid: u32) {
        if let Some(t) = lock(&self.state).targets.get_mut(&pid) {
            t.exited = true;
        }
    }

    /// Script the answer of [`KernelBackend::tls_coverage`]: the real kernel
    /// layer lists each live target with the TLS library files it maps
    /// (an empty list: none supported).
    pub fn set_tls_coverage(&self, coverage: Vec<TlsCoverage>) {
        lock(&self.state).tls_coverage = Some(coverage);
    }

    /// Everything the fake holds, for assertions.
    pub fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.state)
    }
}

impl KernelBackend for FakeKernel {
    fn configure(&mut self, c: &KernelConfig) -> Result<()> {
        crate::capture::check_snaplen(c.snaplen)?;
        lock(&self.state).config = Some(*c);
        Ok(())
    }

    fn add_target(&mut self, process: &Process, follow: bool) -> Result<()> {
        let t = FakeTarget { key: process.key(), follow_children: follow, exited: false };
        lock(&self.state).targets.insert(process.pid(), t);
        Ok(())
    }

    fn remove_target(&mut self, id: TargetId) -> Result<()> {
        let mut s = lock(&self.state);
        if s.targets.get(&id.pid).is_some_and(|t| t.key == id.key) {
            s.targets.remove(&id.pid);
        }
        Ok(())
    }

    fn add_target_name(&mut self, comm: &str, _follow: bool) -> Result<()> {
        if comm.is_empty() {
            return Err(EngineError::Invalid(crate::error::InvalidInput::EmptyProcessName));
        }
        lock(&self.state).names.push(comm.to_string());
        Ok(())
    }

    fn add_target_cgroup(&mut self, cgroup: &CgroupTarget, follow: bool) -> Result<()> {
        lock(&self.state).cgroups.push((cgroup.clone(), follow));
        Ok(())
    }

    fn clear_target_names_and_cgroups(&mut self) -> Result<()> {
        let mut s = lock(&self.state);
        s.names.clear();
        s.cgroups.clear();
        Ok(())
    }

    fn targets(&self) -> Result<Vec<KernelTarget>> {
        Ok(lock(&self.state)
            .targets
            .iter()
            .map(|(&pid, t)| KernelTarget { id: TargetId { pid, key: t.key }, exited: t.exited })
            .collect())
    }

    fn poll(&mut self, timeout: Duration, sink: &mut dyn FnMut(RawPacket<'_>)) -> Result<usize> {
        let (batch, snaplen, capture) = {
            let mut s = lock(&self.state);
            let (snaplen, capture) = s.config.map_or((u32::MAX, true), |c| (c.snaplen, c.capture));
            (std::mem::take(&mut s.pending), snaplen, capture)
        };
        if batch.is_empty() || !capture {
            // Like the kernel's ring: nothing pending means waiting out the timeout.
            std::thread::sleep(timeout.min(Duration::from_millis(10)));
            return Ok(0);
        }
        let n = batch.len();
        for p in &batch {
            let kept = p.data.len().min(snaplen as usize);
            sink(RawPacket {
                ts_mono_ns: p.ts_mono_ns,
                socket_cookie: p.socket_cookie,
                pid: p.pid,
                comm: &p.comm,
                tid: p.tid,
                direction: p.direction,
                verdict: p.verdict,
                rule: p.rule,
                orig_len: p.data.len() as u32,
                data: &p.data[..kept],
                tls: p.tls,
            });
        }
        let mut s = lock(&self.state);
        s.counters.seen += n as u64;
        s.counters.target += n as u64;
        s.counters.captured += n as u64;
        Ok(n)
    }

    fn counters(&self) -> Result<KernelCounters> {
        Ok(lock(&self.state).counters)
    }

    fn set_rules(&mut self, list: &[Rule]) -> Result<()> {
        rules::check_list(list).map_err(EngineError::Invalid)?;
        let mut s = lock(&self.state);
        s.rules = list.to_vec();
        s.hits = vec![0; list.len()];
        Ok(())
    }

    fn rule_hits(&self) -> Result<Vec<u64>> {
        Ok(lock(&self.state).hits.clone())
    }

    fn tls_coverage(&mut self) -> Result<Vec<TlsCoverage>> {
        Ok(lock(&self.state).tls_coverage.clone().unwrap_or_default())
    }

    fn set_attach(&mut self, at: Option<&AttachPoint>) -> Result<()> {
        let mut s = lock(&self.state);
        if let Some(AttachPoint::Cgroup(dir)) = at.filter(|p| s.refuse_attach.contains(p)) {
            let source = std::io::Error::from(std::io::ErrorKind::NotFound);
            return Err(EngineError::Cgroup { what: "opening the cgroup to attach to", path: dir.clone(), source });
        }
        if s.attached.as_ref() != at {
            s.attached = at.cloned();
            s.attach_changes.push(at.cloned());
        }
        Ok(())
    }
}
