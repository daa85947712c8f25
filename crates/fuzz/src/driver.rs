//! The stable driver: replays a target's seed corpus, then mutates it
//! ([`crate::mutate`]) for a number of runs or a time budget, from a seed
//! printed up front, keeping inputs that give a new outcome signature as
//! extra seeds (in memory only).
//!
//! Failures, each with the input saved under the crash directory and its
//! path printed with the command that replays it:
//! * a panic (a crash, or a property that does not hold): `crash-<hash>`,
//!   [`run_target`] returns [`Failure`];
//! * an input running longer than the time budget (a hang): the watchdog
//!   thread saves `timeout-<hash>` and exits the process with [`EXIT_TIMEOUT`];
//! * an input taking the heap past the memory limit: `oom-input`, exit
//!   [`crate::alloc::EXIT_OOM`] (when the binary uses [`crate::alloc::Counting`]).

use crate::alloc::{CURRENT, OOM_NOTE, OOM_PATH};
use crate::mutate::{fnv1a, Mutator, Rng};
use crate::targets::Target;
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

/// The exit status after an input ran past the time budget.
pub const EXIT_TIMEOUT: i32 = 70;

/// How long a target is fuzzed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// This many mutated inputs (after the corpus): reproducible exactly.
    Runs(u64),
    /// Until this much time has passed (the run count is printed, for a replay with `Runs`).
    Time(Duration),
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The base seed; each target's is derived from it and its name.
    pub seed: u64,
    pub budget: Budget,
    /// Longest one input may run.
    pub timeout: Duration,
    /// `<corpus>/<target>/` holds the seeds.
    pub corpus: PathBuf,
    /// `<crashes>/<target>/` gets failing inputs.
    pub crashes: PathBuf,
    /// Most inputs kept for new signatures.
    pub max_pool: usize,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub target: &'static str,
    pub seed: u64,
    /// Seed inputs replayed.
    pub corpus: usize,
    /// Mutated inputs run.
    pub runs: u64,
    /// Inputs kept for a new signature.
    pub kept: usize,
    pub elapsed: Duration,
}

/// A target that panicked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: &'static str,
    pub message: String,
    /// Where the input was saved.
    pub saved: PathBuf,
}

/// The seed of `target` for base seed `base`.
pub fn target_seed(base: u64, target: &str) -> u64 {
    base ^ fnv1a(target.as_bytes())
}

/// The seed inputs of a target: every file of its corpus directory, by name.
pub fn load_corpus(dir: &Path) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for e in entries {
                let path = e?.path();
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    files.sort();
    files.into_iter().map(|p| std::fs::read(&p).map(|b| (p, b))).collect()
}

/// Milliseconds since the driver started (0: no input running) when the current input started.
static STARTED_AT: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// What the watchdog says on a timeout: target name, crash directory, limit.
static RUNNING: Mutex<Option<(&'static str, PathBuf, Duration)>> = Mutex::new(None);
static WATCHDOG: Once = Once::new();

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

fn start_watchdog() {
    WATCHDOG.call_once(|| {
        std::thread::Builder::new()
            .name("pidcap-fuzz-watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(Duration::from_millis(25));
                let started = STARTED_AT.load(Ordering::SeqCst);
                let Some((target, dir, limit)) = RUNNING.lock().ok().and_then(|g| g.clone()) else { continue };
                if started == 0 || now_ms().saturating_sub(started) <= limit.as_millis() as u64 {
                    continue;
                }
                let input = CURRENT.lock().map(|g| g.clone()).unwrap_or_default();
                eprintln!(
                    "\npidcap-fuzz: TIMEOUT: target {target}: an input of {} bytes ran longer than {} ms",
                    input.len(),
                    limit.as_millis()
                );
                match save(&dir, "timeout", &input) {
                    Ok(p) => {
                        eprintln!("pidcap-fuzz: the input is saved in {}\n{}", p.display(), replay_hint(target, &p))
                    }
                    Err(e) => eprintln!("pidcap-fuzz: cannot save the input under {}: {e}", dir.display()),
                }
                std::process::exit(EXIT_TIMEOUT);
            })
            .expect("the watchdog thread starts");
    });
}

/// The command that runs a saved input again.
pub fn replay_hint(target: &str, path: &Path) -> String {
    format!("pidcap-fuzz: replay with: cargo run -p pidcap-fuzz -- replay {target} {}", path.display())
}

/// Save `input` as `<dir>/<kind>-<hash>`.
fn save(dir: &Path, kind: &str, input: &[u8]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{kind}-{:016x}", fnv1a(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// Runs one target on inputs, under the watchdog and the memory limit.
struct Runner {
    target: &'static Target,
    crashes: PathBuf,
}

impl Runner {
    fn new(target: &'static Target, cfg: &Config) -> std::io::Result<Runner> {
        let crashes = cfg.crashes.join(target.name);
        std::fs::create_dir_all(&crashes)?;
        let oom_path = crashes.join("oom-input");
        let note = format!(
            "pidcap-fuzz: the input is saved in {}\n{}\n",
            oom_path.display(),
            replay_hint(target.name, &oom_path)
        );
        *OOM_NOTE.lock().unwrap_or_else(|e| e.into_inner()) = note.into_bytes();
        let mut oom = oom_path.into_os_string().into_encoded_bytes();
        oom.push(0);
        *OOM_PATH.lock().unwrap_or_else(|e| e.into_inner()) = oom;
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = Some((target.name, crashes.clone(), cfg.timeout));
        start_watchdog();
        Ok(Runner { target, crashes })
    }

    fn run(&self, input: &[u8]) -> Result<u64, Failure> {
        {
            let mut cur = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
            cur.clear();
            cur.extend_from_slice(input);
        }
        STARTED_AT.store(now_ms(), Ordering::SeqCst);
        let result = catch_unwind(AssertUnwindSafe(|| (self.target.run)(input)));
        STARTED_AT.store(0, Ordering::SeqCst);
        result.map_err(|payload| {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(a panic without a message)".into());
            let saved = save(&self.crashes, "crash", input).unwrap_or_else(|e| {
                eprintln!("pidcap-fuzz: cannot save the input under {}: {e}", self.crashes.display());
                PathBuf::new()
            });
            Failure { target: self.target.name, message, saved }
        })
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        *RUNNING.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Run every input of `inputs` through `target` once.
pub fn replay(target: &'static Target, cfg: &Config, inputs: &[Vec<u8>]) -> Result<(), Failure> {
    let runner = Runner::new(target, cfg).map_err(|e| io_failure(target, &cfg.crashes, e))?;
    for input in inputs {
        runner.run(input)?;
    }
    Ok(())
}

fn io_failure(target: &'static Target, dir: &Path, e: std::io::Error) -> Failure {
    Failure { target: target.name, message: format!("cannot use {}: {e}", dir.display()), saved: PathBuf::new() }
}

/// Fuzz one target: its corpus first, then mutations until the budget is spent.
pub fn run_target(target: &'static Target, cfg: &Config) -> Result<Report, Failure> {
    let start = Instant::now();
    let seed = target_seed(cfg.seed, target.name);
    let corpus = load_corpus(&cfg.corpus.join(target.name)).map_err(|e| io_failure(target, &cfg.corpus, e))?;
    let runner = Runner::new(target, cfg).map_err(|e| io_failure(target, &cfg.crashes, e))?;
    let mut pool: Vec<Vec<u8>> = corpus.into_iter().map(|(_, b)| b).collect();
    let corpus_len = pool.len();
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut seen = HashSet::new();
    for input in &pool {
        seen.insert(runner.run(input)?);
    }
    let mut mutator = Mutator::new(seed, target.max_len, target.dictionary);
    let mut pick = Rng::new(seed.rotate_left(32) ^ 0x5151);
    let mut runs = 0u64;
    loop {
        let done = match cfg.budget {
            Budget::Runs(n) => runs >= n,
            // Checking the clock every 16 runs costs nothing next to the targets.
            Budget::Time(d) => runs.is_multiple_of(16) && start.elapsed() >= d,
        };
        if done {
            break;
        }
        let base = pick.below(pool.len());
        let other = pick.below(pool.len());
        let input = mutator.mutate(&pool[base], &pool[other]);
        runs += 1;
        let sig = runner.run(&input)?;
        if seen.insert(sig) && pool.len() < cfg.max_pool {
            pool.push(input);
        }
    }
    Ok(Report {
        target: target.name,
        seed,
        corpus: corpus_len,
        runs,
        kept: pool.len() - corpus_len.max(1),
        elapsed: start.elapsed(),
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        write!(
            f,
            "{:<15} seed {:#018x}: {} corpus inputs + {} mutated in {:.1} s ({:.0}/s), {} kept for new outcomes",
            self.target,
            self.seed,
            self.corpus,
            self.runs,
            secs,
            self.runs as f64 / secs.max(1e-9),
            self.kept
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "pidcap-fuzz: CRASH: target {}: {}", self.target, self.message)?;
        write!(
            f,
            "pidcap-fuzz: the input is saved in {}\n{}",
            self.saved.display(),
            replay_hint(self.target, &self.saved)
        )
    }
}
