//! Tests of the `pidcap` binary's error paths that need no kernel layer:
//! each bad input gives a one-line error that says what to do, and a
//! non-zero exit code.

mod common;

use common::*;

fn stderr_of(args: &[&str]) -> (i32, String) {
    let out = pidcap().args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_pid_that_does_not_exist_is_a_clear_error() {
    let (code, err) = stderr_of(&["capture", "--pid", "4000000"]);
    assert_ne!(code, 0);
    assert!(err.contains("no process with pid 4000000"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_options_are_refused_before_anything_runs() {
    let (code, err) = stderr_of(&["run", "-s", "0", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("snaplen"), "{err}");
    let (code, err) = stderr_of(&["run", "-s", "70000", "--", "true"]);
    assert_ne!(code, 0, "{err}");
    let (code, err) = stderr_of(&["capture"]);
    assert_ne!(code, 0);
    assert!(err.contains("--pid") && err.contains("--name"), "{err}");
    let (code, err) = stderr_of(&["run", "-F", "pcapx", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("pcapx"), "{err}");
}

#[test]
fn without_privileges_the_error_names_the_missing_capabilities() {
    if !pidcap_testkit::is_root() {
        // Already unprivileged: run directly.
        let (code, err) = stderr_of(&["capture", "--pid", &std::process::id().to_string()]);
        assert_ne!(code, 0);
        assert!(err.contains("CAP_BPF") && err.contains("root"), "{err}");
        return;
    }
    // As root: drop to nobody with no capabilities.
    require!(Tool("setpriv"));
    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"])
        .arg(env!("CARGO_BIN_EXE_pidcap"))
        .args(["capture", "--pid", "1"])
        .output()
        .expect("setpriv (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("CAP_BPF") && err.contains("CAP_NET_ADMIN") && err.contains("root"), "{err}");
}

#[test]
fn a_command_that_does_not_exist_is_reported() {
    // `pidcap run` loads the kernel layer before starting the command.
    require!(Root);
    let (code, err) = stderr_of(&["run", "--", "pidcap-no-such-command"]);
    assert_ne!(code, 0);
    assert!(err.contains("command not found: pidcap-no-such-command"), "{err}");
}

#[test]
fn a_malformed_rule_names_the_bad_part_and_shows_the_grammar() {
    let (code, err) = stderr_of(&["capture", "--pid", "1", "--block", "tcp:70000"]);
    assert_ne!(code, 0);
    assert!(err.contains("70000"), "{err}");
    assert!(err.contains("SPEC"), "the grammar is shown: {err}");
    let (code, err) = stderr_of(&["run", "--allow", "10.0.0.0/33", "--", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("/33") || err.contains("33"), "{err}");
}
