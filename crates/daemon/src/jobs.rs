//! The daemon's send jobs (`inject`, `list_jobs`, `watch_job`, `stop_job`):
//! one thread per job running [`pidcap_resend::run_job`], its statuses kept
//! (the last [`HISTORY`]) and broadcast to watchers, and each job's
//! [`JobInfo`] kept up to date (counts, last status, state). Every job stops
//! when the daemon stops.

use pidcap_resend::{JobInfo, JobState, Prepared, SendStatus, Summary};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::broadcast;

/// Statuses kept per job for watchers that come late.
pub const HISTORY: usize = 1000;
/// Finished jobs remembered for `list_jobs`.
pub const FINISHED_KEPT: usize = 64;
// -- resend: whole replies (issue 14) --
/// Statuses of a job whose replies the history keeps whole (the newest).
pub const WHOLE_REPLIES: usize = 16;
/// Bytes kept of the replies of older statuses in the history.
pub const REPLY_KEPT: usize = 4096;

/// What a watcher receives.
#[derive(Debug, Clone)]
pub enum JobEvent {
    Status(SendStatus),
    Done(Summary),
}

struct Entry {
    info: JobInfo,
    history: VecDeque<SendStatus>,
    stop: Arc<AtomicBool>,
    tx: broadcast::Sender<JobEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Inner {
    next: u64,
    jobs: BTreeMap<u64, Entry>,
}

/// All jobs of a daemon.
#[derive(Default, Clone)]
pub struct Jobs {
    inner: Arc<Mutex<Inner>>,
}

/// A watch: the job now, its statuses so far, then live events (None: it had ended).
pub struct Watch {
    pub info: JobInfo,
    pub history: Vec<SendStatus>,
    pub rx: Option<broadcast::Receiver<JobEvent>>,
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a job; returns it as it stands (running).
    pub fn start(&self, p: Prepared) -> std::io::Result<JobInfo> {
        let mut g = self.lock();
        g.next += 1;
        let id = g.next;
        let info = started(id, &p);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, _) = broadcast::channel(HISTORY);
        let jobs = self.clone();
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new().name(format!("pidcap-job-{id}")).spawn(move || {
            let summary = pidcap_resend::run_job(&p, &stop2, &mut |s| jobs.record(id, s));
            jobs.finish(id, summary);
        })?;
        g.jobs.insert(id, Entry { info: info.clone(), history: VecDeque::new(), stop, tx, thread: Some(thread) });
        prune(&mut g);
        Ok(info)
    }

    fn record(&self, id: u64, s: &SendStatus) {
        let mut g = self.lock();
        if let Some(e) = g.jobs.get_mut(&id) {
            record(&mut e.info, s);
            if e.history.len() == HISTORY {
                e.history.pop_front();
            }
            e.history.push_back(s.clone());
            // -- resend: whole replies (issue 14) --
            // Replies are whole (up to 1 MiB each): the history keeps them so
            // for its newest WHOLE_REPLIES statuses only, older ones' to REPLY_KEPT bytes;
            // a JobInfo's `last` (list_jobs lists up to 64 finished jobs) keeps REPLY_KEPT.
            if let Some(last) = e.info.last.as_mut() {
                last.reply = last.reply.as_ref().map(|r| r.cut(REPLY_KEPT));
            }
            let n = e.history.len();
            if n > WHOLE_REPLIES {
                if let Some(old) = e.history.get_mut(n - WHOLE_REPLIES - 1) {
                    old.reply = old.reply.as_ref().map(|r| r.cut(REPLY_KEPT));
                }
            }
            let _ = e.tx.send(JobEvent::Status(s.clone()));
        }
    }

    fn finish(&self, id: u64, summary: Summary) {
        let mut g = self.lock();
        if let Some(e) = g.jobs.get_mut(&id) {
            finish(&mut e.info, summary.clone());
            let _ = e.tx.send(JobEvent::Done(summary));
        }
    }

    pub fn list(&self) -> Vec<JobInfo> {
        self.lock().jobs.values().map(|e| e.info.clone()).collect()
    }

    pub fn get(&self, id: u64) -> Option<JobInfo> {
        self.lock().jobs.get(&id).map(|e| e.info.clone())
    }

    /// Snapshot and subscription under one lock: no status is missed or repeated.
    pub fn watch(&self, id: u64) -> Option<Watch> {
        let g = self.lock();
        let e = g.jobs.get(&id)?;
        let running = e.info.summary.is_none();
        Some(Watch {
            info: e.info.clone(),
            history: e.history.iter().cloned().collect(),
            rx: running.then(|| e.tx.subscribe()),
        })
    }

    /// Ask a job to stop; false when there is no such job.
    pub fn request_stop(&self, id: u64) -> bool {
        match self.lock().jobs.get(&id) {
            Some(e) => {
                e.stop.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// Stop every job and wait for their threads (the daemon is stopping).
    pub fn stop_all(&self) {
        let threads: Vec<_> = {
            let mut g = self.lock();
            g.jobs
                .values_mut()
                .filter_map(|e| {
                    e.stop.store(true, Ordering::Relaxed);
                    e.thread.take()
                })
                .collect()
        };
        for t in threads {
            let _ = t.join();
        }
    }
}

/// The info of a job that has just started.
fn started(id: u64, p: &Prepared) -> JobInfo {
    JobInfo {
        id,
        state: JobState::Running,
        mode: p.mode,
        proto: p.target.proto,
        local: p.target.local,
        remote: p.target.remote,
        pid: p.target.pid,
        payload_len: p.payload.len(),
        count: p.count,
        forever: p.forever,
        interval_ms: p.interval.as_millis() as u64,
        sent: 0,
        failed: 0,
        bytes: 0,
        started_ns: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64),
        last: None,
        summary: None,
    }
}

/// Count one status.
fn record(info: &mut JobInfo, s: &SendStatus) {
    if s.ok {
        info.sent += 1;
        info.bytes += s.bytes as u64;
    } else {
        info.failed += 1;
    }
    info.last = Some(s.clone());
}

/// The job ended.
fn finish(info: &mut JobInfo, s: Summary) {
    info.state = s.reason.into();
    info.summary = Some(s);
}

/// Forget the oldest finished jobs beyond [`FINISHED_KEPT`].
fn prune(g: &mut Inner) {
    let finished: Vec<u64> = g.jobs.iter().filter(|(_, e)| e.info.summary.is_some()).map(|(&id, _)| id).collect();
    for id in finished.iter().take(finished.len().saturating_sub(FINISHED_KEPT)) {
        if let Some(mut e) = g.jobs.remove(id) {
            if let Some(t) = e.thread.take() {
                let _ = t.join(); // already finished: returns at once
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_resend::{prepare, EndReason, InjectArgs};

    fn status(seq: u64, ok: bool, bytes: usize) -> SendStatus {
        SendStatus { seq, ok, bytes, time_ns: 0, elapsed_us: 0, error: None, error_kind: None, reply: None }
    }

    #[test]
    fn info_counts_statuses_and_takes_the_end_state() {
        let args = InjectArgs {
            data: Some("414243".into()),
            to: Some("127.0.0.1:9".into()),
            count: Some(3),
            interval_ms: Some(5),
            ..Default::default()
        };
        let p = prepare(&args).unwrap();
        let mut info = started(7, &p);
        assert_eq!(
            (info.id, info.state, info.count, info.payload_len, info.interval_ms),
            (7, JobState::Running, 3, 3, 5)
        );
        assert!(info.started_ns > 0);
        record(&mut info, &status(1, true, 3));
        record(&mut info, &status(2, false, 0));
        record(&mut info, &status(3, true, 3));
        assert_eq!((info.sent, info.failed, info.bytes), (2, 1, 6));
        assert_eq!(info.last.as_ref().map(|s| s.seq), Some(3));
        for (reason, state) in [
            (EndReason::Done, JobState::Done),
            (EndReason::Stopped, JobState::Stopped),
            (EndReason::Error, JobState::Stopped),
            (EndReason::Failed, JobState::Failed),
        ] {
            let mut i = info.clone();
            finish(&mut i, Summary { sent: 2, failed: 1, bytes: 6, duration_ms: 1, reason });
            assert_eq!(i.state, state);
            assert_eq!(i.summary.map(|s| s.reason), Some(reason));
        }
    }
}
