//! Every seed and regression input of every target passes its checks, and a
//! short deterministic mutation run of each target finds nothing.

use pidcap_fuzz::driver::{self, Budget, Config};
use pidcap_fuzz::targets::{self, TARGETS};
use std::time::Duration;

fn config(crashes: &std::path::Path) -> Config {
    Config {
        seed: 0x7e57,
        budget: Budget::Runs(400),
        timeout: Duration::from_secs(20),
        corpus: pidcap_fuzz::corpus_dir(),
        crashes: crashes.to_path_buf(),
        max_pool: 256,
    }
}

#[test]
fn every_target_has_seeds_and_every_seed_passes() {
    let root = pidcap_fuzz::corpus_dir();
    for t in TARGETS {
        let corpus = driver::load_corpus(&root.join(t.name)).unwrap();
        assert!(corpus.len() >= 5, "target {} has {} seeds", t.name, corpus.len());
        for (path, bytes) in corpus {
            assert!(bytes.len() <= t.max_len, "{} is longer than the target's inputs", path.display());
            let r = std::panic::catch_unwind(|| (t.run)(&bytes));
            assert!(r.is_ok(), "{} fails target {}", path.display(), t.name);
        }
    }
}

#[test]
fn every_parser_of_the_issue_has_a_target() {
    let names: Vec<&str> = TARGETS.iter().map(|t| t.name).collect();
    for want in ["pcap", "pcapng", "dpp", "rule", "request", "edit", "decode", "dns", "dfilter", "dissect"] {
        assert!(names.contains(&want), "no target {want}: {names:?}");
        assert!(targets::find(want).is_some());
    }
    assert!(targets::find("selftest-panic").is_some() && !names.contains(&"selftest-panic"));
}

#[test]
fn a_short_run_of_each_target_finds_nothing_and_is_reproducible() {
    let dir = std::env::temp_dir().join(format!("pidcap-fuzz-test-{}", std::process::id()));
    let cfg = config(&dir);
    for t in TARGETS {
        let a = driver::run_target(t, &cfg).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!((a.runs, a.seed), (400, driver::target_seed(0x7e57, t.name)));
        let b = driver::run_target(t, &cfg).unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(a.kept, b.kept, "{}: the same seed kept other inputs", t.name);
    }
    let _ = std::fs::remove_dir_all(dir);
}
