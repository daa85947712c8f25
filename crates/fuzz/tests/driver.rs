//! The driver binary catches each kind of failure (a panic, a hang, a
//! runaway allocation), saves the input, prints where, and exits non-zero;
//! `replay` runs a saved input again; seeds are printed and reproducible.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("pidcap-fuzz-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// A corpus for `target` holding one input.
    fn corpus(&self, target: &str, input: &[u8]) -> PathBuf {
        let dir = self.0.join("corpus");
        std::fs::create_dir_all(dir.join(target)).unwrap();
        std::fs::write(dir.join(target).join("seed"), input).unwrap();
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fuzz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pidcap-fuzz")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// The path printed after "the input is saved in ".
fn saved_path(out: &str) -> PathBuf {
    let line = out.lines().find_map(|l| l.split_once("the input is saved in ")).unwrap_or_else(|| panic!("{out}"));
    PathBuf::from(line.1.trim())
}

fn run_selftest(s: &Scratch, target: &str, input: &[u8], extra: &[&str]) -> (Output, String) {
    let corpus = s.corpus(target, input);
    let crashes = s.0.join("crashes");
    let mut args = vec!["run", "--target", target, "--runs", "10", "--corpus", corpus.to_str().unwrap()];
    args.extend(["--crashes", crashes.to_str().unwrap()]);
    args.extend(extra);
    let o = fuzz(&args);
    let t = text(&o);
    (o, t)
}

fn assert_saved(out: &str, crashes: &Path, kind: &str, word: &[u8]) -> PathBuf {
    let path = saved_path(out);
    assert!(path.starts_with(crashes), "{} is not under {}", path.display(), crashes.display());
    assert!(path.file_name().unwrap().to_str().unwrap().starts_with(kind), "{}", path.display());
    let saved = std::fs::read(&path).unwrap();
    assert!(saved.windows(word.len()).any(|w| w == word), "the saved input lacks the failing word: {saved:?}");
    assert!(out.contains("replay with: cargo run -p pidcap-fuzz -- replay"), "{out}");
    path
}

#[test]
fn a_panic_is_saved_and_replays_as_a_failure() {
    let s = Scratch::new("panic");
    let (o, out) = run_selftest(&s, "selftest-panic", b"big boom here", &[]);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("CRASH: target selftest-panic") && out.contains("0 passed, 1 failed"), "{out}");
    let path = assert_saved(&out, &s.0.join("crashes"), "crash-", b"boom");
    let again = fuzz(&["replay", "selftest-panic", path.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    let harmless = s.0.join("harmless");
    std::fs::write(&harmless, b"nothing").unwrap();
    let ok = fuzz(&["replay", "selftest-panic", harmless.to_str().unwrap()]);
    assert!(ok.status.success(), "{}", text(&ok));
}

#[test]
fn a_hang_is_cut_at_the_time_budget_and_saved() {
    let s = Scratch::new("hang");
    let start = Instant::now();
    let (o, out) = run_selftest(&s, "selftest-hang", b"hang", &["--timeout-ms", "300"]);
    assert_eq!(o.status.code(), Some(70), "{out}");
    assert!(start.elapsed() < Duration::from_secs(20), "the hang was not cut: {:?}", start.elapsed());
    assert!(out.contains("TIMEOUT: target selftest-hang"), "{out}");
    assert_saved(&out, &s.0.join("crashes"), "timeout-", b"hang");
}

#[test]
fn a_runaway_allocation_is_stopped_at_the_limit_and_saved() {
    let s = Scratch::new("oom");
    let (o, out) = run_selftest(&s, "selftest-oom", b"oom!", &["--memory-mb", "300"]);
    assert_eq!(o.status.code(), Some(71), "{out}");
    assert!(out.contains("OUT OF MEMORY"), "{out}");
    assert_saved(&out, &s.0.join("crashes"), "oom-input", b"oom");
}

#[test]
fn seeds_are_printed_and_the_same_seed_does_the_same_runs() {
    let s = Scratch::new("seed");
    let crashes = s.0.join("crashes");
    let run = |seed: &str| {
        let o = fuzz(
            &["run", "--target", "rule", "--target", "edit", "--runs", "300", "--seed", seed, "--crashes"]
                .iter()
                .copied()
                .chain([crashes.to_str().unwrap()])
                .collect::<Vec<_>>(),
        );
        assert!(o.status.success(), "{}", text(&o));
        // The report lines without their timings.
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.lines()
            .filter(|l| l.contains(" seed 0x") && !l.starts_with("pidcap-fuzz:"))
            .map(|l| {
                let (head, tail) = l.split_once(" in ").unwrap();
                format!("{head} {}", tail.split_once("),").unwrap().1)
            })
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (run("42"), run("42"), run("43"));
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a, b);
    assert_ne!(a, c, "another seed, other seeds per target");
    assert!(a[0].starts_with("rule") && a[0].contains("+ 300 mutated"), "{a:?}");
}

#[test]
fn bad_usage_is_refused() {
    assert_eq!(fuzz(&["run", "--target", "nope"]).status.code(), Some(2));
    assert_eq!(fuzz(&["frobnicate"]).status.code(), Some(2));
    let list = fuzz(&["list"]);
    assert!(text(&list).contains("pcapng") && text(&list).contains("dfilter"), "{}", text(&list));
}
