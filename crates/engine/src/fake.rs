//! A scripted kernel layer (feature `fake`): the whole core, the daemon and
//! its protocol run on it without root, eBPF or a network. Tests keep a
//! [`FakeHandle`] to push packets in and to look at what the engine asked
//! the kernel for (targets, configuration, rules).

use crate::backend::{KernelBackend, KernelConfig, KernelCounters, RawPacket};
use crate::error::{EngineError, Result};
use crate::rules::{self, Rule};
use pidcap_packet::{Direction, Verdict};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One packet the fake kernel will hand up.
#[derive(Debug, Clone)]
pub struct FakePacket {
    pub pid: u32,
    pub comm: Vec<u8>,
    pub socket_cookie: u64,
    pub direction: Direction,
    pub verdict: Verdict,
    pub rule: Option<u16>,
    pub ts_mono_ns: u64,
    /// The IP packet (cut to the configured snap length when handed up).
    pub data: Vec<u8>,
}

impl FakePacket {
    /// An outbound, passed packet of `pid` named "fake".
    pub fn new(pid: u32, data: Vec<u8>) -> FakePacket {
        FakePacket {
            pid,
            comm: b"fake".to_vec(),
            socket_cookie: 5,
            direction: Direction::Outbound,
            verdict: Verdict::Pass,
            rule: None,
            ts_mono_ns: 1_000,
            data,
        }
    }
}

/// What the fake kernel holds; shared between the backend and its handles.
#[derive(Debug, Default)]
pub struct FakeState {
    pub pending: VecDeque<FakePacket>,
    /// pid -> follow children.
    pub targets: BTreeMap<u32, bool>,
    pub names: Vec<String>,
    pub counters: KernelCounters,
    pub config: Option<KernelConfig>,
    pub rules: Vec<Rule>,
    pub hits: Vec<u64>,
}

/// The scripted [`KernelBackend`].
#[derive(Debug, Default)]
pub struct FakeKernel {
    state: Arc<Mutex<FakeState>>,
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

    /// Make `pid` a target as if the kernel had added it (a followed child).
    pub fn insert_target(&self, pid: u32) {
        lock(&self.state).targets.insert(pid, false);
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

    fn add_target(&mut self, pid: u32, follow: bool) -> Result<()> {
        lock(&self.state).targets.insert(pid, follow);
        Ok(())
    }

    fn remove_target(&mut self, pid: u32) -> Result<()> {
        lock(&self.state).targets.remove(&pid);
        Ok(())
    }

    fn add_target_name(&mut self, comm: &str, _follow: bool) -> Result<()> {
        if comm.is_empty() {
            return Err(EngineError::Invalid(crate::error::InvalidInput::EmptyProcessName));
        }
        lock(&self.state).names.push(comm.to_string());
        Ok(())
    }

    fn targets(&self) -> Result<Vec<u32>> {
        Ok(lock(&self.state).targets.keys().copied().collect())
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
                direction: p.direction,
                verdict: p.verdict,
                rule: p.rule,
                orig_len: p.data.len() as u32,
                data: &p.data[..kept],
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
}
