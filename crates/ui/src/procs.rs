//! Running processes, from /proc: pid, name, user, open sockets.

use pidcap_engine::procfs::Procfs;
use std::collections::HashMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub name: String,
    pub user: String,
    /// Open sockets (distinct `socket:[inode]`s among its descriptors); None when /proc/PID/fd is not readable.
    pub sockets: Option<u32>,
    pub cmdline: String,
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

/// Every process (threads excluded), sorted by pid.
pub fn list_processes() -> Vec<ProcInfo> {
    let users = users();
    let procfs = Procfs::default();
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut out: Vec<ProcInfo> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let base = format!("/proc/{pid}");
            let name = procfs.comm(pid)?;
            let user = procfs
                .status(pid)
                .map(|s| users.get(&s.uid.real).cloned().unwrap_or_else(|| s.uid.real.to_string()))
                .unwrap_or_default();
            // Distinct sockets (a socket open on two descriptors counts once).
            let sockets = procfs.socket_inodes(pid).ok().map(|s| s.len() as u32);
            let cmdline = std::fs::read(format!("{base}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim_end().to_string())
                .unwrap_or_default();
            Some(ProcInfo { pid, name, user, sockets, cmdline })
        })
        .collect();
    out.sort_by_key(|p| p.pid);
    out
}

/// Does `p` match the search box (pid, name, user or command line, case-insensitive)?
pub fn matches(p: &ProcInfo, query: &str) -> bool {
    let q = query.trim().to_lowercase();
    q.is_empty()
        || p.pid.to_string() == q
        || p.name.to_lowercase().contains(&q)
        || p.user.to_lowercase() == q
        || p.cmdline.to_lowercase().contains(&q)
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
        assert!(matches(p, &me.to_string()));
        assert!(matches(p, &p.name.to_uppercase()));
        assert!(!matches(p, "no-such-process-name-xyz"));
    }
}
