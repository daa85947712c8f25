//! What the engine reads about processes from `/proc`: existence, name,
//! socket inodes of open file descriptors, processes by name.

use std::collections::HashSet;
use std::fs;
use std::path::PathBuf;

/// The `/proc` root (a parameter so tests can point it elsewhere).
#[derive(Debug, Clone)]
pub struct Procfs {
    root: PathBuf,
}

impl Default for Procfs {
    fn default() -> Self {
        Procfs { root: PathBuf::from("/proc") }
    }
}

impl Procfs {
    pub fn at(root: impl Into<PathBuf>) -> Procfs {
        Procfs { root: root.into() }
    }

    /// True while `pid` exists and is not a zombie.
    pub fn is_alive(&self, pid: u32) -> bool {
        match fs::read_to_string(self.root.join(pid.to_string()).join("stat")) {
            // The state is the first field after the ")" that closes comm.
            Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
            Err(_) => false,
        }
    }

    /// The process name (`comm`), without the trailing newline.
    pub fn comm(&self, pid: u32) -> Option<String> {
        fs::read_to_string(self.root.join(pid.to_string()).join("comm"))
            .ok()
            .map(|s| s.trim_end_matches('\n').to_string())
    }

    /// The thread group id of a task id (a thread's process), from `status`.
    pub fn tgid(&self, pid: u32) -> Option<u32> {
        let status = fs::read_to_string(self.root.join(pid.to_string()).join("status")).ok()?;
        status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
    }

    /// Inodes of the sockets among `pid`'s open file descriptors.
    pub fn socket_inodes(&self, pid: u32) -> std::io::Result<HashSet<u64>> {
        let mut out = HashSet::new();
        for entry in fs::read_dir(self.root.join(pid.to_string()).join("fd"))? {
            let Ok(entry) = entry else { continue };
            // Descriptors can close between read_dir and read_link: skip those.
            let Ok(target) = fs::read_link(entry.path()) else { continue };
            if let Some(inode) = parse_socket_link(&target.to_string_lossy()) {
                out.insert(inode);
            }
        }
        Ok(out)
    }

    /// Every live process whose `comm` is `name` (compared on its first 15 bytes, as the kernel keeps it).
    pub fn pids_named(&self, name: &str) -> Vec<u32> {
        let want = truncate_comm(name);
        let Ok(dir) = fs::read_dir(&self.root) else { return vec![] };
        let mut pids: Vec<u32> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&pid| self.comm(pid).as_deref() == Some(want))
            .collect();
        pids.sort_unstable();
        pids
    }
}

/// `socket:[12345]` -> 12345.
pub fn parse_socket_link(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The kernel keeps 15 bytes of a process name (plus NUL); cut at a char boundary.
pub fn truncate_comm(name: &str) -> &str {
    if name.len() <= 15 {
        return name;
    }
    let mut end = 15;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links() {
        assert_eq!(parse_socket_link("socket:[4242]"), Some(4242));
        assert_eq!(parse_socket_link("pipe:[4242]"), None);
        assert_eq!(parse_socket_link("socket:[x]"), None);
    }

    #[test]
    fn comm_is_cut_to_15_bytes() {
        assert_eq!(truncate_comm("short"), "short");
        assert_eq!(truncate_comm("a-very-long-process-name"), "a-very-long-pro");
        assert_eq!(truncate_comm("ééééééééé").len(), 14);
    }

    #[test]
    fn reads_this_process() {
        let p = Procfs::default();
        let me = std::process::id();
        assert!(p.is_alive(me));
        assert_eq!(p.tgid(me), Some(me));
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inodes = p.socket_inodes(me).unwrap();
        assert!(!inodes.is_empty(), "a bound UDP socket shows up in /proc/self/fd");
        drop(sock);
        assert!(!p.is_alive(u32::MAX - 1));
        assert!(p.pids_named(&p.comm(me).unwrap()).contains(&me));
    }
}
