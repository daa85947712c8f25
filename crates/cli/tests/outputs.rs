//! Capture outputs of `pidcap run` and `pidcap capture` through the real
//! binary, as root: an output that cannot be created stops `run` before its
//! command exists; capture files are private (0600, `--file-mode`) and never
//! written through a link planted in /tmp, nor into another user's file
//! there; a full disk (a 256 KiB tmpfs each test mounts and unmounts) stops
//! the capture cleanly: the summary, the error naming the file and "no
//! space", a file tshark reads without a warning, and `run`'s command stopped.
//! tcpdump's letters: `-A` prints the payload under the packet's line, `-U`
//! makes each packet readable by tshark while the capture runs.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// A file a command run by pidcap creates when (and only when) it runs.
fn marker(scratch: &Scratch) -> PathBuf {
    scratch.path("the-command-ran")
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

/// `pidcap ARGS` under umask 022 (the usual one), through sh.
fn pidcap_umask_022(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_pidcap"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_does_not_start_the_command_when_its_output_cannot_be_created() {
    require!(Root);
    let scratch = Scratch::new("out-nodir");
    let ran = marker(&scratch);
    let out = pidcap().args(["run", "-w", "/no/such/dir/f.pcapng", "--", "touch"]).arg(&ran).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot create /no/such/dir/f.pcapng: No such file or directory"), "{err}");
    assert_eq!(err.matches("(os error 2)").count(), 1, "the cause is said once: {err}");
    assert!(!ran.exists(), "the command ran although its output could not be written");

    // A command that cannot run leaves no capture file behind.
    let file = scratch.path("never.pcapng");
    let out = pidcap().args(["run", "-w"]).arg(&file).args(["--", "/no/such/command"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!file.exists(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_link_or_a_file_planted_in_tmp_makes_run_refuse() {
    require!(Root);
    let scratch = Scratch::new("out-planted");
    let ran = marker(&scratch);
    let victim = scratch.path("root-only");
    std::fs::write(&victim, b"root's secret").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();

    // /tmp itself: world-writable and sticky, where anyone can plant a name.
    let planted = PathBuf::from(format!("/tmp/pidcap-test-planted-{}.pcapng", std::process::id()));
    let _ = std::fs::remove_file(&planted);
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    let out = pidcap().args(["run", "-w"]).arg(&planted).args(["--", "touch"]).arg(&ran).output().unwrap();
    let _ = std::fs::remove_file(&planted);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"root's secret", "the link's target was overwritten");
    assert!(!ran.exists());

    // Another user's file there: not ours to fill (they could read it).
    std::fs::write(&planted, b"nobody's").unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let out = pidcap().args(["run", "-w"]).arg(&planted).args(["--", "touch"]).arg(&ran).output().unwrap();
    let content = std::fs::read(&planted).unwrap();
    let _ = std::fs::remove_file(&planted);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");
    assert_eq!(content, b"nobody's");
    assert!(!ran.exists());
}

#[test]
fn capture_files_are_private_unless_the_user_asks() {
    require!(Root);
    let scratch = Scratch::new("out-mode");
    let file = scratch.path("private.pcapng");
    let run = |extra: &[&str], file: &Path| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["run".as_ref()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        args.extend(["-w".as_ref(), file.as_os_str(), "--".as_ref(), "true".as_ref()]);
        let out = pidcap_umask_022(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[], &file);
    assert_eq!(mode(&file), 0o600, "a new capture file under umask 022");
    // An existing world-readable file is truncated and made private too.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    run(&[], &file);
    assert_eq!(mode(&file), 0o600);
    let shared = scratch.path("shared.pcap");
    run(&["--file-mode", "0640"], &shared);
    assert_eq!(mode(&shared), 0o640);
    let bad = pidcap().args(["run", "--file-mode", "4755", "-w"]).arg(&shared).args(["--", "true"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("at most 0777"), "{bad:?}");
}

/// Prints its pid, then sends 1,000-byte UDP datagrams to itself forever.
const FLOOD: &str = "import os,socket
r=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); r.bind(('127.0.0.1',0))
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
print(os.getpid(),flush=True)
while True:
    s.sendto(b'x'*1000, r.getsockname()); r.recv(2000)";

fn alive(pid: u32) -> bool {
    // SAFETY: kill with signal 0 only checks whether the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// What every full-disk stop must show: exit 2, the summary, the error
/// naming the file and "no space", and a file tshark reads cleanly holding
/// the packets the summary says were written.
fn check_clean_stop(out: &std::process::Output, file: &Path) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let summary = err.lines().find(|l| l.contains("packets captured (")).unwrap_or_else(|| panic!("no summary: {err}"));
    let written: usize = summary.split("captured (").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let error = err
        .lines()
        .find(|l| l.contains(&format!("cannot write the capture file {}", file.display())))
        .unwrap_or_else(|| panic!("no error naming the file: {err}"));
    assert!(error.to_lowercase().contains("no space"), "{error}");
    assert_eq!(error.matches("(os error 28)").count(), 1, "{error}");
    assert!(written > 50, "{summary}");
    assert_eq!(tshark_frames(file), written, "tshark reads every packet the summary counts, without a warning");
    assert_eq!(read_capture(file).len(), written);
    err
}

#[test]
fn a_full_disk_stops_run_and_its_command_cleanly() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"), Tool("mount"), Tool("umount"));
    let ns = NetNs::new("full-run");
    let disk = pidcap_testkit::tmpfs::Tmpfs::mount("out-full-run", "256k");
    let file = disk.join("f.pcapng");
    let out = pidcap()
        .args(["run", "-w"])
        .arg(&file)
        .args(["--", "ip", "netns", "exec", &ns.name, "python3", "-c", FLOOD])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = check_clean_stop(&out, &file);
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or_else(|_| panic!("{out:?}"));
    assert!(err.contains(&format!("stopping the command (pid {pid})")), "{err}");
    assert!(!alive(pid), "the command keeps running uncaptured");
}

#[test]
fn a_full_disk_stops_capture_and_says_its_targets_keep_running() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"), Tool("mount"), Tool("umount"));
    let ns = NetNs::new("full-cap");
    let disk = pidcap_testkit::tmpfs::Tmpfs::mount("out-full-cap", "256k");
    let file = disk.join("f.pcap");
    let mut flood = ns.command("python3").args(["-c", FLOOD]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(flood.stdout.take().unwrap()), &mut line).unwrap();
    let pid: u32 = line.trim().parse().unwrap();
    let (pidcap_run, mut lines) = start_pidcap(pidcap().args(["capture", "--pid", &pid.to_string(), "-w"]).arg(&file));
    // The last line pidcap prints when its file failed.
    lines.wait_for("cut back to its last complete block", Duration::from_secs(60));
    let status = pidcap_run.wait();
    let out = std::process::Output { status, stdout: Vec::new(), stderr: lines.seen.join("\n").into_bytes() };
    let err = check_clean_stop(&out, &file);
    assert!(err.contains("the capture stops; its targets keep running, no longer captured"), "{err}");
    assert!(alive(pid), "capture leaves its targets running");
    let _ = flood.kill();
    let _ = flood.wait();
}

/// Sends `b'pidcap -A payload\\r\\nline two'` to itself over UDP, then exits.
const SEND_ONE: &str = "import socket
r=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); r.bind(('127.0.0.1',0))
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.sendto(b'pidcap -A payload\\r\\nline two\\x00', r.getsockname()); r.recv(100)";

#[test]
fn a_prints_each_payload_under_its_line_through_run() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("out-ascii");
    let out = pidcap()
        .args(["run", "-A", "-n", "-tt", "--", "ip", "netns", "exec", &ns.name, "python3", "-c", SEND_ONE])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    // The datagram goes out and comes in: both lines are followed by its payload.
    let mut seen = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.contains(" UDP 127.0.0.1:") && line.ends_with(" len 28") {
            assert_eq!(lines.get(i + 1..i + 3), Some(&["pidcap -A payload", "line two."][..]), "{stdout}");
            // -tt: seconds.microseconds since the epoch start the line.
            let stamp = line.split(' ').next().unwrap();
            let (secs, micros) = stamp.split_once('.').unwrap_or_else(|| panic!("{line}"));
            assert!(secs.parse::<u64>().unwrap() > 1_600_000_000 && micros.len() == 6, "{line}");
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "{stdout}");
}

/// Sends `pidcap -U` over UDP to itself, then waits until the file named by
/// its argument exists: the capture runs on until the test has seen the packet.
const SEND_THEN_WAIT: &str = "import os,socket,sys,time
r=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); r.bind(('127.0.0.1',0))
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
s.sendto(b'pidcap -U', r.getsockname()); r.recv(100)
while not os.path.exists(sys.argv[1]): time.sleep(0.01)";

#[test]
fn u_makes_each_packet_readable_by_tshark_while_the_capture_runs() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("out-unbuf");
    let scratch = Scratch::new("out-unbuf");
    let file = scratch.path("growing.pcapng");
    let go = scratch.path("go");
    let (mut run, _lines) = start_pidcap(
        pidcap()
            .args(["run", "-U", "-w"])
            .arg(&file)
            .args(["--", "ip", "netns", "exec", &ns.name, "python3", "-c", SEND_THEN_WAIT])
            .arg(&go)
            .stdin(Stdio::null()),
    );
    // tshark reads the growing file from its stdin, as `tshark -r - < FILE` would.
    let payload = "706964636170202d55"; // "pidcap -U"
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let frames = loop {
        let out = Command::new("tshark")
            .args(["-r", "-", "-T", "fields", "-e", "data"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let frames = stdout.lines().filter(|l| l.contains(payload)).count();
        if frames == 2 {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{err}");
            assert!(err.lines().all(|l| l.starts_with("Running as user \"root\"")), "tshark warned: {err}");
            break frames;
        }
        assert!(std::time::Instant::now() < deadline, "tshark never read the datagram from the file: {stdout}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(frames, 2, "out and in");
    assert!(run.try_wait().is_none(), "the capture was still running when tshark read the packets");
    std::fs::write(&go, b"").unwrap();
    let status = run.wait();
    assert!(status.success(), "{status:?}");
    assert_eq!(tshark_frames(&file), read_capture(&file).len());
}
