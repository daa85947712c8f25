//! The one reader of `/proc` for every crate: existence, name, the fields of
//! `/proc/PID/status` ([`Status`]: ids, uids, groups, capabilities), socket
//! inodes of open file descriptors and the socket tables of a process's
//! network namespace ([`NetTable`]), processes by name, and what a packet's
//! process metadata needs (executable, command line, cgroup2 path: the one a
//! process `capture --isolate` moved came from, [`original_cgroup`]), and a
//! process's start time. The root is a parameter ([`Procfs::at`]) so tests
//! run on a fake tree.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::PathBuf;

/// The four ids of a `Uid:` or `Gid:` line of `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ids {
    pub real: u32,
    pub effective: u32,
    pub saved: u32,
    pub filesystem: u32,
}

/// What the engine and its clients read of `/proc/PID/status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// `Name:` (the kernel's `comm`, at most 15 bytes).
    pub name: String,
    /// `State:`'s letter (`R`, `S`, `Z`...).
    pub state: char,
    /// `Tgid:`: the process a task id belongs to.
    pub tgid: u32,
    pub pid: u32,
    pub ppid: u32,
    pub uid: Ids,
    pub gid: Ids,
    /// `Groups:`, the supplementary groups.
    pub groups: Vec<u32>,
    /// `CapEff:`, the effective capability set (bit N = capability N).
    pub cap_eff: u64,
}

impl Status {
    /// Parse the text of a status file. `Name`, `Tgid`, `Pid`, `PPid`, `Uid`
    /// and `Gid` are required; the other fields default when absent.
    pub fn parse(text: &str) -> io::Result<Status> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("/proc status: {what}"));
        let field = |name: &str| {
            text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(|v| v.trim_start_matches('\t'))
        };
        let need = |name: &str| field(name).ok_or_else(|| bad(&format!("no {name} line")));
        let num = |name: &str| -> io::Result<u32> {
            need(name)?.trim().parse().map_err(|_| bad(&format!("{name} is not a number")))
        };
        let ids = |name: &str| -> io::Result<Ids> {
            let v: Vec<u32> = need(name)?
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|_| bad(&format!("{name} is not a list of numbers")))?;
            match v[..] {
                [real, effective, saved, filesystem] => Ok(Ids { real, effective, saved, filesystem }),
                _ => Err(bad(&format!("{name} does not have four ids"))),
            }
        };
        Ok(Status {
            name: need("Name")?.trim_end_matches('\n').to_string(),
            state: field("State").and_then(|v| v.trim().chars().next()).unwrap_or('?'),
            tgid: num("Tgid")?,
            pid: num("Pid")?,
            ppid: num("PPid")?,
            uid: ids("Uid")?,
            gid: ids("Gid")?,
            groups: field("Groups")
                .map(|v| v.split_whitespace().filter_map(|g| g.parse().ok()).collect())
                .unwrap_or_default(),
            cap_eff: match field("CapEff") {
                Some(v) => u64::from_str_radix(v.trim(), 16).map_err(|_| bad("CapEff is not hexadecimal"))?,
                None => 0,
            },
        })
    }

    /// Is capability number `cap` (as in linux/capability.h) effective?
    pub fn has_capability(&self, cap: u32) -> bool {
        cap < 64 && self.cap_eff & (1u64 << cap) != 0
    }
}

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

    /// `/proc/PID/status`, parsed.
    pub fn status(&self, pid: u32) -> io::Result<Status> {
        Status::parse(&fs::read_to_string(self.root.join(pid.to_string()).join("status"))?)
    }

    /// `/proc/self/status`: this process's (e.g. its effective capabilities).
    pub fn self_status(&self) -> io::Result<Status> {
        Status::parse(&fs::read_to_string(self.root.join("self").join("status"))?)
    }

    /// The thread group id of a task id (a thread's process), from `status`.
    pub fn tgid(&self, pid: u32) -> Option<u32> {
        self.status(pid).ok().map(|s| s.tgid)
    }

    /// The executable's path (`/proc/PID/exe`; a deleted file keeps its ` (deleted)` suffix).
    pub fn exe(&self, pid: u32) -> io::Result<PathBuf> {
        fs::read_link(self.root.join(pid.to_string()).join("exe"))
    }

    /// The arguments (`/proc/PID/cmdline`: NUL-separated; not UTF-8 is replaced).
    /// Empty for a kernel thread or a zombie.
    pub fn cmdline(&self, pid: u32) -> io::Result<Vec<String>> {
        let raw = fs::read(self.root.join(pid.to_string()).join("cmdline"))?;
        let raw = raw.strip_suffix(b"\0").unwrap_or(&raw);
        if raw.is_empty() {
            return Ok(Vec::new());
        }
        Ok(raw.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect())
    }

    /// The cgroup2 path of `pid` as pidcap records it in a packet's process
    /// metadata (e.g. `/user.slice/...`): where it is now, except that a
    /// process this pidcap isolated (`capture --isolate`: moved into
    /// `<its cgroup>/pidcap-iso-<pidcap's pid>`, or forked there) is given
    /// the cgroup it came from ([`original_cgroup`]).
    pub fn cgroup(&self, pid: u32) -> io::Result<String> {
        self.cgroup_now(pid).map(|p| original_cgroup(&p, std::process::id()).to_string())
    }

    /// The cgroup2 path of `pid` now (the `0::` line of `/proc/PID/cgroup`):
    /// where its sockets are charged, what attach points are computed from.
    pub fn cgroup_now(&self, pid: u32) -> io::Result<String> {
        let text = fs::read_to_string(self.root.join(pid.to_string()).join("cgroup"))?;
        crate::container::cgroup2_path(&text)
            .map(str::to_string)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc cgroup: no cgroup2 (0::) line"))
    }

    /// `/proc/PID/stat`, the fields pidcap reads ([`Stat`]).
    pub fn stat(&self, pid: u32) -> Option<Stat> {
        Stat::parse(&fs::read_to_string(self.root.join(pid.to_string()).join("stat")).ok()?)
    }

    /// The start time of `pid` (`/proc/PID/stat` field 22, clock ticks
    /// since boot): with the pid, it names one process (a pid given to
    /// another process has another start time).
    pub fn start_time(&self, pid: u32) -> Option<u64> {
        self.stat(pid).map(|s| s.start)
    }

    /// Inodes of the sockets among `pid`'s open file descriptors.
    pub fn socket_inodes(&self, pid: u32) -> std::io::Result<HashSet<u64>> {
        self.socket_inodes_upto(pid, usize::MAX)
    }

    /// Inodes of the sockets among the first `max` file descriptors of
    /// `pid` (a hint that must stay cheap for a process with very many).
    pub fn socket_inodes_upto(&self, pid: u32, max: usize) -> std::io::Result<HashSet<u64>> {
        let mut out = HashSet::new();
        for entry in fs::read_dir(self.root.join(pid.to_string()).join("fd"))?.take(max) {
            let Ok(entry) = entry else { continue };
            // Descriptors can close between read_dir and read_link: skip those.
            let Ok(target) = fs::read_link(entry.path()) else { continue };
            if let Some(inode) = parse_socket_link(&target.to_string_lossy()) {
                out.insert(inode);
            }
        }
        Ok(out)
    }

    /// The sockets of one table of the network namespace `pid` lives in
    /// (`/proc/PID/net/TABLE`).
    pub fn net_sockets(&self, pid: u32, table: NetTable) -> io::Result<Vec<NetSocket>> {
        let text = fs::read_to_string(self.root.join(pid.to_string()).join("net").join(table.file()))?;
        Ok(parse_net_table(&text, table))
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

/// One of the socket tables of `/proc/PID/net`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetTable {
    Tcp,
    Tcp6,
    Udp,
    Udp6,
    Unix,
}

impl NetTable {
    /// The IP tables, TCP first.
    pub const IP: [NetTable; 4] = [NetTable::Tcp, NetTable::Tcp6, NetTable::Udp, NetTable::Udp6];

    pub fn file(self) -> &'static str {
        match self {
            NetTable::Tcp => "tcp",
            NetTable::Tcp6 => "tcp6",
            NetTable::Udp => "udp",
            NetTable::Udp6 => "udp6",
            NetTable::Unix => "unix",
        }
    }

    pub fn is_tcp(self) -> bool {
        matches!(self, NetTable::Tcp | NetTable::Tcp6)
    }
}

/// A row of a [`NetTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetSocket {
    pub inode: u64,
    /// The local port (0 for a Unix socket or an unbound one).
    pub local_port: u16,
    /// The kernel's state number: for TCP `TCP_LISTEN` is 0x0A; a bound,
    /// unconnected UDP socket is `TCP_CLOSE` (0x07); for Unix, the `St` column.
    pub state: u8,
}

impl NetSocket {
    /// Listening (TCP) or bound and waiting for datagrams (UDP), on a port.
    pub fn is_listening(&self, table: NetTable) -> bool {
        let state = if table.is_tcp() { 0x0A } else { 0x07 };
        table != NetTable::Unix && self.state == state && self.local_port != 0 && self.inode != 0
    }
}

/// The rows of the text of one `/proc/PID/net/TABLE` (its header skipped;
/// malformed rows left out).
pub fn parse_net_table(text: &str, table: NetTable) -> Vec<NetSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if table == NetTable::Unix {
                // Num RefCount Protocol Flags Type St Inode [Path]
                let state = u8::from_str_radix(f.get(5)?, 16).ok()?;
                return Some(NetSocket { inode: f.get(6)?.parse().ok()?, local_port: 0, state });
            }
            // sl local_address rem_address st ... uid timeout inode
            let local_port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            let state = u8::from_str_radix(f.get(3)?, 16).ok()?;
            Some(NetSocket { inode: f.get(9)?.parse().ok()?, local_port, state })
        })
        .collect()
}

/// The fields of `/proc/PID/stat` pidcap reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// The parent's pid (field 4).
    pub ppid: u32,
    /// The kernel's `PF_*` flags (field 9).
    pub flags: u64,
    /// Start time in clock ticks since boot (field 22).
    pub start: u64,
}

impl Stat {
    /// From the text of `/proc/PID/stat`; None when a field is missing.
    pub fn parse(text: &str) -> Option<Stat> {
        // comm may hold spaces and parentheses: the fields start after the last ')'.
        let f: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
        // f[0] = state (field 3), f[1] = ppid (4), f[6] = flags (9), f[19] = starttime (22).
        Some(Stat { ppid: f.get(1)?.parse().ok()?, flags: f.get(6)?.parse().ok()?, start: f.get(19)?.parse().ok()? })
    }
}

/// The name prefix of the cgroup `capture --isolate` moves a target into,
/// below the target's own; the rest is the isolating pidcap's pid.
pub const ISO_PREFIX: &str = "pidcap-iso-";

/// `path` without a last component `pidcap-iso-<pidcap>` (the cgroup a
/// pidcap with pid `pidcap` isolated the process in): the cgroup the
/// process came from. Any other path is returned as it is.
pub fn original_cgroup(path: &str, pidcap: u32) -> &str {
    let iso = format!("/{ISO_PREFIX}{pidcap}");
    match path.strip_suffix(&iso) {
        Some("") => "/",
        Some(parent) => parent,
        None => path,
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
    use std::path::Path;

    #[test]
    fn net_tables_give_inode_port_and_state() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1\n\
            1: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 222 1\n\
            garbage\n";
        let rows = parse_net_table(tcp, NetTable::Tcp);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0], NetSocket { inode: 111, local_port: 8080, state: 0x0A });
        assert!(rows[0].is_listening(NetTable::Tcp));
        assert!(!rows[1].is_listening(NetTable::Tcp), "an established connection is not listening");
        let udp = "header\n 5: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 333 2\n";
        let rows = parse_net_table(udp, NetTable::Udp);
        assert!(rows[0].is_listening(NetTable::Udp) && rows[0].local_port == 53);
        let unix = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 4444 /run/x.sock\n";
        assert_eq!(parse_net_table(unix, NetTable::Unix), [NetSocket { inode: 4444, local_port: 0, state: 1 }]);
    }

    #[test]
    fn this_process_finds_its_listening_socket_in_its_tables() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let procfs = Procfs::default();
        let me = std::process::id();
        let inodes = procfs.socket_inodes(me).unwrap();
        let rows = procfs.net_sockets(me, NetTable::Tcp).unwrap();
        let mine = rows.iter().find(|r| inodes.contains(&r.inode) && r.local_port == port).expect("listed");
        assert!(mine.is_listening(NetTable::Tcp));
        assert!(procfs.socket_inodes_upto(me, 0).unwrap().is_empty());
    }

    const STATUS: &str = "Name:\tmy proc\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nNgid:\t0\nPid:\t43\n\
        PPid:\t1\nTracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t100\t101\t102\t103\nFDSize:\t64\n\
        Groups:\t4 27 1000 \nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\n\
        CapEff:\t000001c000001000\nCapBnd:\t000001ffffffffff\n";

    /// A fake /proc under the temp dir, removed on drop.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new(tag: &str) -> FakeProc {
            let root = std::env::temp_dir().join(format!("pidcap-procfs-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            fs::create_dir_all(&root).unwrap();
            FakeProc(root)
        }

        /// A process `pid` with these files (`fd/N` entries are symlinks to their text).
        fn process(&self, pid: &str, files: &[(&str, &str)]) -> &FakeProc {
            let dir = self.0.join(pid);
            fs::create_dir_all(dir.join("fd")).unwrap();
            for (name, text) in files {
                match (name.strip_prefix("fd/"), text.strip_prefix('@')) {
                    (Some(_), _) => std::os::unix::fs::symlink(text, dir.join(name)).unwrap(),
                    // "@target": a symbolic link (exe).
                    (None, Some(target)) => std::os::unix::fs::symlink(target, dir.join(name)).unwrap(),
                    (None, None) => fs::write(dir.join(name), text).unwrap(),
                }
            }
            self
        }

        fn procfs(&self) -> Procfs {
            Procfs::at(&self.0)
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn status_fields_are_parsed() {
        let s = Status::parse(STATUS).unwrap();
        assert_eq!((s.name.as_str(), s.state, s.tgid, s.pid, s.ppid), ("my proc", 'S', 42, 43, 1));
        assert_eq!(s.uid, Ids { real: 1000, effective: 1001, saved: 1002, filesystem: 1003 });
        assert_eq!(s.gid, Ids { real: 100, effective: 101, saved: 102, filesystem: 103 });
        assert_eq!(s.groups, [4, 27, 1000]);
        // 0x1c000001000: bits 12 (CAP_NET_ADMIN), 38, 39 and 40.
        assert_eq!(s.cap_eff, 0x1c0_0000_1000);
        assert!(s.has_capability(12) && s.has_capability(38) && s.has_capability(39));
        assert!(!s.has_capability(21) && !s.has_capability(64));
    }

    #[test]
    fn a_status_without_required_fields_is_an_error_naming_the_field() {
        let e = Status::parse("Name:\tx\nPid:\t1\n").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("Tgid"), "{e}");
        let e = Status::parse(&STATUS.replace("Uid:\t1000\t1001\t1002\t1003", "Uid:\t1000")).unwrap_err();
        assert!(e.to_string().contains("Uid"), "{e}");
        let e = Status::parse(&STATUS.replace("000001c000001000", "zz")).unwrap_err();
        assert!(e.to_string().contains("CapEff"), "{e}");
        // Optional fields default.
        let s = Status::parse("Name:\tx\nTgid:\t1\nPid:\t1\nPPid:\t0\nUid:\t0 0 0 0\nGid:\t0 0 0 0\n").unwrap();
        assert_eq!((s.state, s.groups.len(), s.cap_eff), ('?', 0, 0));
    }

    #[test]
    fn every_reader_works_on_a_fake_tree() {
        let fake = FakeProc::new("tree");
        fake.process(
            "42",
            &[
                ("status", STATUS),
                ("stat", "42 (my proc) S 1 42 42 0 -1"),
                ("comm", "my proc\n"),
                ("fd/0", "/dev/null"),
                ("fd/3", "socket:[777]"),
                ("fd/4", "socket:[778]"),
                ("fd/5", "pipe:[779]"),
                ("exe", "@/usr/bin/my proc"),
                ("cmdline", "my proc\0-x\0a b\0\0"),
                ("cgroup", "0::/user.slice/docker-ab.scope\n"),
            ],
        )
        .process("7", &[("stat", "7 (a) b) Z 1"), ("comm", "zombie\n")])
        .process("8", &[("stat", "8 (my proc) R 1"), ("comm", "my proc\n")])
        .process("self", &[("status", &STATUS.replace("Tgid:\t42", "Tgid:\t9"))]);
        fs::create_dir_all(fake.0.join("sys")).unwrap();
        let p = fake.procfs();
        assert!(p.is_alive(42) && p.is_alive(8));
        assert!(!p.is_alive(7), "a zombie, even with a ) in its name");
        assert!(!p.is_alive(9), "no such directory");
        assert_eq!(p.comm(42).as_deref(), Some("my proc"));
        assert_eq!(p.tgid(42), Some(42));
        assert_eq!(p.tgid(8), None, "no status file");
        assert_eq!(p.status(42).unwrap().uid.real, 1000);
        assert_eq!(p.status(9).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(p.self_status().unwrap().tgid, 9);
        assert_eq!(p.socket_inodes(42).unwrap(), HashSet::from([777, 778]));
        assert!(p.socket_inodes(9).is_err());
        assert_eq!(p.pids_named("my proc"), [8, 42]);
        assert!(p.pids_named("nobody").is_empty());
        assert!(Procfs::at(Path::new("/nonexistent")).pids_named("x").is_empty());
        assert_eq!(p.exe(42).unwrap(), Path::new("/usr/bin/my proc"));
        assert_eq!(p.cmdline(42).unwrap(), ["my proc", "-x", "a b", ""]);
        assert_eq!(p.cgroup(42).unwrap(), "/user.slice/docker-ab.scope");
        assert_eq!(p.start_time(42), None, "a short stat line");
        assert!(p.start_time(9).is_none());
        assert!(p.exe(8).is_err() && p.cmdline(8).is_err() && p.cgroup(8).is_err());
    }

    #[test]
    fn an_isolated_process_is_given_the_cgroup_it_came_from() {
        let me = std::process::id();
        let iso = format!("/system.slice/x.service/pidcap-iso-{me}");
        assert_eq!(original_cgroup(&iso, me), "/system.slice/x.service");
        assert_eq!(original_cgroup(&format!("/pidcap-iso-{me}"), me), "/", "isolated from the root cgroup");
        assert_eq!(original_cgroup(&format!("/a/pidcap-iso-{}", me + 1), me), format!("/a/pidcap-iso-{}", me + 1));
        assert_eq!(original_cgroup(&format!("/a/pidcap-iso-{me}0"), me), format!("/a/pidcap-iso-{me}0"));
        assert_eq!(original_cgroup(&format!("/a/pidcap-iso-{me}/b"), me), format!("/a/pidcap-iso-{me}/b"));
        assert_eq!(original_cgroup("/a/b", me), "/a/b");
        // Through the reader: the metadata's path, and where the process is now.
        let fake = FakeProc::new("iso");
        let cgroup = format!("0::{iso}\n");
        let stat = "5 (a (b)) S 1 5 5 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 4242 0";
        fake.process("5", &[("cgroup", &cgroup), ("stat", stat)]);
        let p = fake.procfs();
        assert_eq!(p.cgroup(5).unwrap(), "/system.slice/x.service");
        assert_eq!(p.cgroup_now(5).unwrap(), iso);
        assert_eq!(p.start_time(5), Some(4242));
    }

    #[test]
    fn parses_stat() {
        let stat = "42 (a (b) c) S 7 42 42 0 -1 2097216 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        assert_eq!(Stat::parse(stat), Some(Stat { ppid: 7, flags: 2097216, start: 12345 }));
        assert_eq!(Stat::parse("garbage"), None);
    }

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
        let status = p.status(me).unwrap();
        assert_eq!((status.pid, status.ppid), (me, std::os::unix::process::parent_id()));
        assert_eq!(p.self_status().unwrap().tgid, me);
        // SAFETY: getuid has no preconditions.
        assert_eq!(status.uid.real, unsafe { libc::getuid() });
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let inodes = p.socket_inodes(me).unwrap();
        assert!(!inodes.is_empty(), "a bound UDP socket shows up in /proc/self/fd");
        drop(sock);
        assert!(!p.is_alive(u32::MAX - 1));
        assert!(p.pids_named(&p.comm(me).unwrap()).contains(&me));
    }
}
