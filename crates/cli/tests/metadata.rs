//! The whole process on every packet (issue 12, items 6 and 7), through the
//! real binary as root, each test in its own network namespace: a child's
//! executable, command line and parent, a process in a cgroup of its own
//! (a docker-named one shows its container), the thread id and kernel
//! thread name of a sending thread, the JSON fields, and the Wireshark Lua
//! plugin (`wireshark/pidcap.lua`) filtering `pidcap.pid ==` exactly.

mod common;

use common::*;
use pidcap_packet::{CapturedPacket, ContainerRef, Direction, ProcessMeta, Verdict};
use pidcap_pcapfile::{Format, PacketWriter};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

fn plugin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../wireshark/pidcap.lua")
}

/// Sends one UDP datagram to itself from a thread whose kernel name
/// (prctl PR_SET_NAME) is `sender-thr`; argv[1] names the file to write the
/// thread's id into.
const THREAD_SEND: &str = "import ctypes, socket, sys, threading
libc = ctypes.CDLL(None)
def send():
    libc.prctl(15, b'sender-thr', 0, 0, 0)
    open(sys.argv[1], 'w').write(str(threading.get_native_id()))
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b'from a thread', r.getsockname()); r.recv(100)
t = threading.Thread(target=send, name='python-name-only'); t.start(); t.join()
import time; time.sleep(0.3)";

/// One datagram to itself, from the main thread (one line: tshark prints it
/// in a field). Both scripts live on 0.3 s after their datagram: a process
/// whose exec chain (here a pyenv shim's) ends less than one metadata scan
/// (100 ms) before it exits may be drained gone, and then its executable
/// and arguments are unknown (see docs/ARCHITECTURE.md).
const SEND: &str = "import socket; r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(('127.0.0.1', 0)); \
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b'metadata', r.getsockname()); r.recv(100); \
    import time; time.sleep(0.3)";

fn of_pid(packets: &[CapturedPacket], pid: u32) -> Vec<&CapturedPacket> {
    packets.iter().filter(|p| p.pid == pid).collect()
}

#[test]
fn a_child_s_packets_carry_its_executable_command_line_and_parent() {
    require!(Root, Tool("ip"), Tool("python3"), Tool("tshark"));
    let ns = NetNs::new("meta-child");
    let scratch = Scratch::new("meta-child");
    let file = scratch.path("child.pcapng");
    let pids = scratch.path("pids");
    // The shell notes its pid and the child's; `; true` keeps it from exec'ing python.
    let script = format!("python3 -c \"$1\" one 'two words' & echo $$ $! > {}; wait; true", pids.display());
    let out = pidcap()
        .args(["run", "-f", "-q", "-w"])
        .arg(&file)
        .args(["--", "ip", "netns", "exec", &ns.name, "sh", "-c", &script, "sh", SEND])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out);
    let ids: Vec<u32> =
        std::fs::read_to_string(&pids).unwrap().split_whitespace().map(|s| s.parse().unwrap()).collect();
    let (shell, child) = (ids[0], ids[1]);
    let packets = read_capture(&file);
    let mine = of_pid(&packets, child);
    assert_eq!(mine.len(), 2, "the datagram out and in: {packets:#?}");
    let python = python_executable();
    for p in &mine {
        let m = p.process.as_ref().expect("the child's metadata");
        assert_eq!(m.exe, python.to_str().unwrap(), "{m:?}");
        assert_eq!(m.cmdline[1..], ["-c", SEND, "one", "two words"], "{m:?}");
        assert_eq!((m.ppid, m.parent_comm.as_str()), (shell, "sh"), "{m:?}");
        assert_eq!((m.uid, m.user.as_str(), m.pid), (0, "root", child), "{m:?}");
        assert_eq!(p.comm, m.comm, "the packet's comm is the leader's");
        assert!(Arc::ptr_eq(m, mine[0].process.as_ref().unwrap()) || **m == **mine[0].process.as_ref().unwrap());
    }

    // The Lua plugin: the same fields in tshark, exact on the pid.
    let fields = tshark_fields(
        &file,
        &format!("pidcap.pid == {child}"),
        &["pidcap.pid", "pidcap.ppid", "pidcap.exe", "pidcap.cmdline", "pidcap.user"],
    );
    let want = format!(
        "{child}\t{shell}\t{}\t{} -c {SEND} one two words\troot",
        python.display(),
        mine[0].process.as_ref().unwrap().cmdline[0]
    );
    assert_eq!(fields, [want.clone(), want].join("\n"), "tshark's fields");
}

/// Where the cgroup2 hierarchy's root is mounted (`/sys/fs/cgroup`, or
/// `/sys/fs/cgroup/unified` on a hybrid system).
fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for line in mountinfo.lines() {
        let (left, right) = line.split_once(" - ").unwrap();
        let f: Vec<&str> = left.split(' ').collect();
        if right.starts_with("cgroup2 ") && f[3] == "/" {
            return PathBuf::from(f[4]);
        }
    }
    panic!("no cgroup2 hierarchy is mounted");
}

#[test]
fn a_process_in_a_cgroup_of_its_own_shows_the_path_and_the_container() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("meta-cgroup");
    let scratch = Scratch::new("meta-cgroup");
    let id = format!("{:0>64}", format!("{:x}", 0xdecafbad_u64 + u64::from(std::process::id())));
    let file = scratch.path("cg.pcapng");
    let pid_file = scratch.path("pid");
    let own_file = scratch.path("own");
    // The cgroup is made below the command's own (run's cgroup, where the
    // programs are attached: a process that leaves it is not seen; run
    // removes what is below it at the end).
    let rel = format!("pidcap-meta-{}/docker-{id}.scope", std::process::id());
    // The shell moves itself into the cgroup, then starts python there (in
    // the namespace: `ip netns exec` mounts a /sys of its own, so the shell
    // stays outside).
    let script = format!(
        "own=$(sed -n 's/^0:://p' /proc/self/cgroup); echo \"$own\" > {own}; leaf={mount}$own/{rel}; \
         mkdir -p $leaf && echo $$ > $leaf/cgroup.procs; ip netns exec {} python3 -c \"$1\" & echo $! > {}; wait; true",
        ns.name,
        pid_file.display(),
        own = own_file.display(),
        mount = cgroup2_mount().display(),
    );
    let out = pidcap()
        .args(["run", "-f", "-q", "-w"])
        .arg(&file)
        .args(["--", "sh", "-c", &script, "sh", SEND])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out);
    let child: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let packets = read_capture(&file);
    let mine = of_pid(&packets, child);
    assert!(!mine.is_empty(), "the child's packets: {packets:#?}");
    let own = std::fs::read_to_string(&own_file).unwrap();
    let path = format!("{}/{rel}", own.trim().trim_end_matches('/'));
    for p in mine {
        let m = p.process.as_ref().expect("metadata");
        assert_eq!(m.cgroup, path);
        assert_eq!(m.container, Some(ContainerRef { runtime: "docker".into(), id: id.clone() }));
    }
    // In the file's comment too, as the grammar says.
    let out = pidcap().args(["read", "--json"]).arg(&file).output().unwrap();
    ok(&out);
    let line = text(&out.stdout).lines().find(|l| l.contains(&format!("\"pid\":{child},"))).unwrap().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["process"]["cgroup"], path.as_str());
    assert_eq!(v["process"]["container"]["id"], id.as_str());
}

#[test]
fn a_sending_thread_s_id_and_kernel_name_are_on_its_packets_and_in_json() {
    require!(Root, Tool("ip"), Tool("python3"));
    let ns = NetNs::new("meta-thread");
    let scratch = Scratch::new("meta-thread");
    let tid_file = scratch.path("tid");
    let out = pidcap()
        .args(["run", "--json", "--", "ip", "netns", "exec", &ns.name, "python3", "-c", THREAD_SEND])
        .arg(&tid_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out);
    let tid: u32 = std::fs::read_to_string(&tid_file).unwrap().trim().parse().unwrap();
    let packets: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}"))).collect();
    assert_eq!(packets.len(), 2, "{packets:#?}");
    for p in &packets {
        let pid = p["pid"].as_u64().unwrap();
        assert_ne!(u64::from(tid), pid, "a thread of its own");
        assert_eq!(p["thread"], "sender-thr", "the kernel's thread name, not Python's: {p}");
        assert_eq!(p["process"]["pid"], pid);
        assert_eq!(p["comm"], p["process"]["comm"], "the leader's name");
        assert_ne!(p["comm"], "sender-thr");
        assert!(p["process"]["exe"].as_str().unwrap().contains("python"), "{p}");
        assert_eq!(p["process"]["cmdline"][1], "-c");
    }
    // Out: sent by the thread in its own context. In: the socket's last sender.
    assert_eq!(packets[0]["direction"], "outbound");
    assert_eq!(packets[0]["tid"], tid);
    assert_eq!(packets[1]["tid"], tid, "{:#?}", packets[1]);

    // The line: pid/leader and the thread's name beside it.
    let out = pidcap()
        .args(["run", "--", "ip", "netns", "exec", &ns.name, "python3", "-c", THREAD_SEND])
        .arg(&tid_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    ok(&out);
    let stdout = text(&out.stdout);
    assert!(stdout.lines().all(|l| l.contains("[sender-thr] ")), "{stdout}");
}

/// A pcapng written by pidcap's writer with pids 3207 and 32078 (one's
/// digits a prefix of the other's) and their metadata.
fn prefix_file(path: &Path) {
    let mut w = PacketWriter::new(Format::Pcapng, Vec::new(), &Default::default()).unwrap();
    for (i, pid) in [3207u32, 32078, 3207].into_iter().enumerate() {
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).udp(1000, 53).write(&mut data, b"x").unwrap();
        let len = data.len() as u32;
        let mut p = CapturedPacket::new(
            i as u64 + 1,
            1_700_000_000_000_000_000,
            pid,
            format!("app{pid}"),
            7,
            Direction::Outbound,
            Verdict::Blocked,
            len,
            data,
        );
        p.rule = Some(2);
        (p.tid, p.thread) = (pid + 1, "worker one".into());
        p.process = Some(Arc::new(ProcessMeta {
            pid,
            comm: format!("app{pid}"),
            exe: format!("/opt/app {pid}/bin"),
            cmdline: vec![format!("app{pid}"), "--flag=x y".into()],
            ppid: 1,
            parent_comm: "systemd".into(),
            uid: 1000,
            user: "alice".into(),
            cgroup: "/system.slice/docker-ab.scope".into(),
            container: Some(ContainerRef { runtime: "docker".into(), id: "ab".into() }),
        }));
        w.write_packet(&p).unwrap();
    }
    std::fs::write(path, w.into_inner().unwrap()).unwrap();
}

/// tshark with the plugin: `-Y filter -T fields -e ...`, failing on a warning.
fn tshark_fields(file: &Path, filter: &str, fields: &[&str]) -> String {
    let mut cmd = Command::new("tshark");
    cmd.arg("-X")
        .arg(format!("lua_script:{}", plugin().display()))
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().unwrap();
    ok(&out);
    for line in text(&out.stderr).lines() {
        assert!(line.starts_with("Running as user \"root\""), "tshark warned: {line}");
    }
    text(&out.stdout).trim_end().to_string()
}

#[test]
fn the_lua_plugin_filters_pids_exactly_and_unescapes_strings() {
    require!(Tool("tshark"));
    let scratch = Scratch::new("meta-lua");
    let file = scratch.path("prefix.pcapng");
    prefix_file(&file);
    let all = [
        "pidcap.pid",
        "pidcap.tid",
        "pidcap.comm",
        "pidcap.thread",
        "pidcap.exe",
        "pidcap.cmdline",
        "pidcap.ppid",
        "pidcap.uid",
        "pidcap.user",
        "pidcap.cgroup",
        "pidcap.container",
        "pidcap.verdict",
        "pidcap.rule",
    ];
    let row = |pid: u32| {
        format!("{pid}\t{}\tapp{pid}\tworker one\t/opt/app {pid}/bin\tapp{pid} --flag=x y\t1\t1000\talice\t/system.slice/docker-ab.scope\tdocker:ab\tblocked\t2", pid + 1)
    };
    assert_eq!(tshark_fields(&file, "pidcap.pid == 3207", &all), [row(3207), row(3207)].join("\n"));
    assert_eq!(tshark_fields(&file, "pidcap.pid == 32078", &["pidcap.pid"]), "32078");
    // What the plugin fixes: the text of the process's interface description (issue 13) matches both.
    assert_eq!(
        tshark_fields(&file, "frame.interface_description contains \"pid=3207\"", &["pidcap.pid"]),
        "3207\n32078\n3207"
    );
    assert_eq!(tshark_fields(&file, "pidcap.user == \"alice\" && pidcap.tid == 32079", &["pidcap.pid"]), "32078");
}

#[test]
fn read_prints_the_metadata_and_w_keeps_it() {
    let scratch = Scratch::new("meta-read");
    let file = scratch.path("prefix.pcapng");
    let copy = scratch.path("copy.pcapng");
    prefix_file(&file);
    let out = pidcap().arg("read").arg(&file).args(["--pid", "32078", "-w"]).arg(&copy).output().unwrap();
    ok(&out);
    let (orig, kept) = (read_capture(&file), read_capture(&copy));
    assert_eq!(kept.len(), 1);
    let want = orig.iter().find(|p| p.pid == 32078).unwrap();
    assert_eq!((kept[0].tid, &kept[0].thread, &kept[0].process), (want.tid, &want.thread, &want.process));
    assert_eq!(kept[0].process.as_ref().unwrap().cmdline, ["app32078", "--flag=x y"]);
    // The line: the process and, as it is another name, the thread.
    let out = pidcap().arg("read").arg(&file).args(["--pid", "3207"]).output().unwrap();
    ok(&out);
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.lines().all(|l| l.contains(" 3207/app3207[worker one] out UDP ")), "{stdout}");
    let out = pidcap().arg("read").arg(&file).args(["--json", "--pid", "3207"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!((v["tid"].as_u64(), v["process"]["exe"].as_str()), (Some(3208), Some("/opt/app 3207/bin")));
}
