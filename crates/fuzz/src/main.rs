//! `pidcap-fuzz`: the stable fuzz driver's command line (see `help`).

use pidcap_fuzz::driver::{self, Budget, Config};
use pidcap_fuzz::targets::{self, Target};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[global_allocator]
static ALLOC: pidcap_fuzz::alloc::Counting = pidcap_fuzz::alloc::Counting;

/// The base seed unless `--seed` or `PIDCAP_FUZZ_SEED` says otherwise.
const DEFAULT_SEED: u64 = 0x0070_1dca_f022_2026;

const HELP: &str = "\
pidcap-fuzz: fuzz pidcap's parsers on stable Rust (coverage-free, mutational)

USAGE:
  pidcap-fuzz list                          the targets
  pidcap-fuzz run [OPTIONS]                 corpus, then mutations, per target
  pidcap-fuzz replay TARGET PATH...         run saved inputs (files or directories) once

RUN OPTIONS:
  --all                 every target (the default when no --target is given)
  --target NAME         this target (repeatable)
  --seconds S           time budget for all the targets together, split evenly (default 60)
  --runs N              instead: exactly N mutated inputs per target (reproducible)
  --seed S              base seed, decimal or 0x-hex (default PIDCAP_FUZZ_SEED or 0x00701dcaf0222026);
                        each target's seed is derived from it and its name, and printed
  --timeout-ms T        longest one input may run, else it is saved as a hang (default 5000)
  --memory-mb M         heap limit, else the input is saved as out of memory (default 2048, 0: none)
  --corpus DIR          seed corpora, DIR/<target>/ (default crates/fuzz/corpus)
  --crashes DIR         failing inputs go to DIR/<target>/ (default target/fuzz-crashes)
  --max-pool N          inputs kept for new outcomes, per target (default 4096)

Exit status: 0 nothing found, 1 a crash (a panic or a broken property), 2 bad usage,
70 a hang, 71 out of memory; the input is saved and its path printed in every case.";

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16).ok(),
        None => s.replace('_', "").parse().ok(),
    }
}

struct Args {
    targets: Vec<&'static Target>,
    cfg: Config,
    total: Option<Duration>,
    memory_mb: u64,
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("pidcap-fuzz: {msg}\n\n{HELP}");
    ExitCode::from(2)
}

fn parse_run_args(args: &[String]) -> Result<Args, String> {
    let seed = match std::env::var("PIDCAP_FUZZ_SEED") {
        Ok(s) => parse_u64(&s).ok_or_else(|| format!("PIDCAP_FUZZ_SEED={s:?} is not a number"))?,
        Err(_) => DEFAULT_SEED,
    };
    let mut a = Args {
        targets: Vec::new(),
        cfg: Config {
            seed,
            budget: Budget::Runs(0),
            timeout: Duration::from_millis(5000),
            corpus: pidcap_fuzz::corpus_dir(),
            crashes: pidcap_fuzz::default_crash_dir(),
            max_pool: 4096,
        },
        total: Some(Duration::from_secs(60)),
        memory_mb: 2048,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: &String| parse_u64(v).ok_or_else(|| format!("{flag} {v:?}: not a number"));
        match flag.as_str() {
            "--all" => {}
            "--target" => {
                let name = value()?;
                a.targets.push(targets::find(name).ok_or_else(|| format!("no target {name:?} (see `list`)"))?);
            }
            "--seconds" => a.total = Some(Duration::from_secs_f64(number(value()?)? as f64)),
            "--runs" => {
                a.cfg.budget = Budget::Runs(number(value()?)?);
                a.total = None;
            }
            "--seed" => a.cfg.seed = number(value()?)?,
            "--timeout-ms" => a.cfg.timeout = Duration::from_millis(number(value()?)?.max(1)),
            "--memory-mb" => a.memory_mb = number(value()?)?,
            "--corpus" => a.cfg.corpus = PathBuf::from(value()?),
            "--crashes" => a.cfg.crashes = PathBuf::from(value()?),
            "--max-pool" => a.cfg.max_pool = number(value()?)? as usize,
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if a.targets.is_empty() {
        a.targets = targets::TARGETS.iter().collect();
    }
    Ok(a)
}

fn run(args: &[String]) -> ExitCode {
    let mut a = match parse_run_args(args) {
        Ok(a) => a,
        Err(e) => return usage(&e),
    };
    pidcap_fuzz::alloc::set_limit((a.memory_mb as usize).saturating_mul(1 << 20));
    if let Some(total) = a.total {
        a.cfg.budget = Budget::Time(total / a.targets.len() as u32);
    }
    let budget = match a.cfg.budget {
        Budget::Runs(n) => format!("{n} mutated inputs per target"),
        Budget::Time(d) => format!("{:.1} s per target", d.as_secs_f64()),
    };
    println!(
        "pidcap-fuzz: {} targets, base seed {:#018x}, {budget}, {} ms per input at most, corpus {}, failures to {}",
        a.targets.len(),
        a.cfg.seed,
        a.cfg.timeout.as_millis(),
        a.cfg.corpus.display(),
        a.cfg.crashes.display()
    );
    let (mut passed, mut total_runs) = (0, 0);
    for t in &a.targets {
        match driver::run_target(t, &a.cfg) {
            Ok(r) => {
                println!("{r}");
                passed += 1;
                total_runs += r.runs + r.corpus as u64;
            }
            Err(f) => {
                eprintln!("{f}");
                println!("pidcap-fuzz: {passed} passed, 1 failed");
                return ExitCode::from(1);
            }
        }
    }
    println!("pidcap-fuzz: {total_runs} inputs, no crash, no hang, no runaway allocation");
    println!("pidcap-fuzz: {passed} passed, 0 failed");
    ExitCode::SUCCESS
}

fn replay(args: &[String]) -> ExitCode {
    let Some((name, paths)) = args.split_first() else { return usage("replay needs a target and inputs") };
    let Some(target) = targets::find(name) else { return usage(&format!("no target {name:?} (see `list`)")) };
    let mut inputs = Vec::new();
    for p in paths {
        let p = PathBuf::from(p);
        let files = if p.is_dir() {
            match driver::load_corpus(&p) {
                Ok(f) => f,
                Err(e) => return usage(&format!("{}: {e}", p.display())),
            }
        } else {
            match std::fs::read(&p) {
                Ok(b) => vec![(p, b)],
                Err(e) => return usage(&format!("{}: {e}", p.display())),
            }
        };
        inputs.extend(files.into_iter().map(|(_, b)| b));
    }
    let cfg = match parse_run_args(&[]) {
        Ok(a) => a.cfg,
        Err(e) => return usage(&e),
    };
    pidcap_fuzz::alloc::set_limit(2048 << 20);
    match driver::replay(target, &cfg, &inputs) {
        Ok(()) => {
            println!("pidcap-fuzz: {} inputs of {name}: no crash", inputs.len());
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("{f}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("replay") => replay(&args[1..]),
        Some("list") => {
            for t in targets::TARGETS {
                println!("{:<15} {}", t.name, t.about);
            }
            ExitCode::SUCCESS
        }
        Some("help" | "--help" | "-h") => {
            println!("{HELP}");
            ExitCode::SUCCESS
        }
        _ => usage("expected a command: run, replay, list or help"),
    }
}
