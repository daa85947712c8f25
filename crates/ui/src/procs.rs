//! Running processes, from /proc: pid, parent, start time, name, user, open
//! sockets, the ports it listens on, and whether it is a kernel thread.
//!
//! Listening ports: the process's socket inodes (`pidcap_engine::procfs`)
//! looked up in `/proc/PID/net/{tcp,tcp6,udp,udp6}` of its own network
//! namespace (read once per namespace per listing): TCP sockets in state
//! LISTEN, UDP sockets bound and unconnected.

use pidcap_engine::procfs::{NetTable, Procfs, Stat};
use std::collections::{BTreeSet, HashMap};
use std::fmt;

/// `PF_KTHREAD` of `/proc/PID/stat`'s flags (include/linux/sched.h).
const PF_KTHREAD: u64 = 0x0020_0000;

/// A port a process listens on (TCP LISTEN, or a bound unconnected UDP socket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listen {
    pub tcp: bool,
    pub port: u16,
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", if self.tcp { "tcp" } else { "udp" }, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    /// The parent's pid (0 for the roots: init and kthreadd).
    pub ppid: u32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22): with
    /// the pid, names one process (a reused pid has another start time).
    pub start: u64,
    pub name: String,
    pub user: String,
    /// Open sockets (distinct `socket:[inode]`s among its descriptors); None when /proc/PID/fd is not readable.
    pub sockets: Option<u32>,
    /// The ports it listens on, sorted, without duplicates (IPv4 and IPv6 alike).
    pub listening: Vec<Listen>,
    pub cmdline: String,
    /// A kernel thread (the kernel's `PF_KTHREAD` flag: no executable, no command line, kthreadd's child).
    pub kernel: bool,
}

impl ProcInfo {
    /// Its ports as one text (`tcp/80 udp/53`).
    pub fn ports_text(&self) -> String {
        self.listening.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" ")
    }
}

fn users() -> HashMap<u32, String> {
    let text = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Inode -> port of the listening sockets of the network namespace `pid` lives in.
fn listening_sockets_seen_by(procfs: &Procfs, pid: u32) -> HashMap<u64, Listen> {
    let mut out = HashMap::new();
    for table in NetTable::IP {
        for s in procfs.net_sockets(pid, table).unwrap_or_default() {
            if s.is_listening(table) {
                out.insert(s.inode, Listen { tcp: table.is_tcp(), port: s.local_port });
            }
        }
    }
    out
}

/// Every process (threads excluded), kernel threads included (marked), sorted by pid.
pub fn list_processes() -> Vec<ProcInfo> {
    let users = users();
    let procfs = Procfs::default();
    // Listening sockets by network namespace (the namespace's inode).
    let mut by_netns: HashMap<std::path::PathBuf, HashMap<u64, Listen>> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<ProcInfo> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let base = format!("/proc/{pid}");
            let name = procfs.comm(pid)?;
            let Stat { ppid, flags, start } = procfs.stat(pid)?;
            let user = procfs
                .status(pid)
                .map(|s| users.get(&s.uid.real).cloned().unwrap_or_else(|| s.uid.real.to_string()))
                .unwrap_or_default();
            // Distinct sockets (a socket open on two descriptors counts once).
            let inodes = procfs.socket_inodes(pid).ok();
            let sockets = inodes.as_ref().map(|s| s.len() as u32);
            let mut listening = BTreeSet::new();
            if let Some(inodes) = inodes.filter(|i| !i.is_empty()) {
                if let Ok(ns) = std::fs::read_link(format!("{base}/ns/net")) {
                    let table = by_netns.entry(ns).or_insert_with(|| listening_sockets_seen_by(&procfs, pid));
                    listening.extend(inodes.iter().filter_map(|i| table.get(i)).copied());
                }
            }
            let cmdline = std::fs::read(format!("{base}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim_end().to_string())
                .unwrap_or_default();
            let kernel = flags & PF_KTHREAD != 0;
            Some(ProcInfo {
                pid,
                ppid,
                start,
                name,
                user,
                sockets,
                listening: listening.into_iter().collect(),
                cmdline,
                kernel,
            })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// Does `p` match the search box (pid, name, user, command line or a
/// listening port, case-insensitive)?
pub fn matches(p: &ProcInfo, query: &str) -> bool {
    let q = query.trim().to_lowercase();
    q.is_empty()
        || p.pid.to_string() == q
        || p.name.to_lowercase().contains(&q)
        || p.user.to_lowercase() == q
        || p.cmdline.to_lowercase().contains(&q)
        || p.listening.iter().any(|l| l.port.to_string() == q || l.to_string() == q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_this_process() {
        let me = std::process::id();
        let all = list_processes();
        let p = all.iter().find(|p| p.pid == me).expect("this process is listed");
        assert!(!p.name.is_empty());
        assert!(!p.kernel);
        assert!(p.start > 0);
        assert_eq!(p.ppid, std::os::unix::process::parent_id());
        assert!(matches(p, &me.to_string()));
        assert!(matches(p, &p.name.to_uppercase()));
        assert!(!matches(p, "no-such-process-name-xyz"));
    }

    #[test]
    fn kthreadd_is_a_kernel_thread_and_init_is_not() {
        let all = list_processes();
        // In a pid namespace without kthreadd (a container), there is nothing to check.
        if let Some(k) = all.iter().find(|p| p.pid == 2 && p.name == "kthreadd") {
            assert!(k.kernel, "{k:?}");
            assert!(all.iter().filter(|p| p.ppid == 2).all(|p| p.kernel));
        }
        if let Some(init) = all.iter().find(|p| p.pid == 1) {
            assert!(!init.kernel, "{init:?}");
        }
    }

    #[test]
    fn finds_the_port_this_process_listens_on() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let u = std::net::UdpSocket::bind("[::1]:0").unwrap();
        let uport = u.local_addr().unwrap().port();
        let me = std::process::id();
        let all = list_processes();
        let p = all.iter().find(|p| p.pid == me).unwrap();
        assert!(p.listening.contains(&Listen { tcp: true, port }), "{:?}", p.listening);
        assert!(p.listening.contains(&Listen { tcp: false, port: uport }), "{:?}", p.listening);
        assert!(matches(p, &port.to_string()));
        assert!(matches(p, &format!("tcp/{port}")));
    }
}
