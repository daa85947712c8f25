//! The one place that knows how container runtimes name their cgroups: from a
//! cgroup2 path (as `/proc/PID/cgroup` shows it) to the container it belongs
//! to, if any ([`container_of`]), and whether a cgroup directory's name is a
//! given container's ([`Container::matches`], for `--container ID`).
//!
//! Recognised (the innermost component that matches wins):
//!
//! | runtime | cgroup path component |
//! |---|---|
//! | docker (systemd driver) | `docker-<64 hex>.scope` |
//! | docker (cgroupfs driver) | `docker/<64 hex>` |
//! | podman | `libpod-<64 hex>.scope` (not `libpod-conmon-...`), `libpod_parent/libpod-<id>` |
//! | containerd (CRI) | `cri-containerd-<64 hex>.scope` |
//! | CRI-O | `crio-<64 hex>.scope` (not `crio-conmon-...`) |
//! | kubernetes, cgroupfs driver | `kubepods/.../<64 hex>` |
//! | systemd-nspawn / machined | `machine-<name>.scope` (systemd's `\x2d` escapes undone) |
//! | LXC | `lxc.payload.<name>`, `lxc/<name>` |

use std::fmt;

/// Which runtime made a container's cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    Docker,
    Podman,
    Containerd,
    Crio,
    Kubernetes,
    Nspawn,
    Lxc,
}

impl Runtime {
    /// The runtime's name as pidcap prints it (`docker`, `podman`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Podman => "podman",
            Runtime::Containerd => "containerd",
            Runtime::Crio => "cri-o",
            Runtime::Kubernetes => "kubernetes",
            Runtime::Nspawn => "nspawn",
            Runtime::Lxc => "lxc",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container, as its cgroup path names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Container {
    pub runtime: Runtime,
    /// The full id (64 hex digits) or, for nspawn and LXC, the machine's name.
    pub id: String,
}

impl Container {
    /// The id as `docker ps` shows it: the first 12 hex digits (names are kept whole).
    pub fn short_id(&self) -> &str {
        if is_hex_id(&self.id) {
            &self.id[..12]
        } else {
            &self.id
        }
    }

    /// Does `query` (what a user typed for `--container`) name this
    /// container: the whole id, a prefix of at least 4 hex digits of it, or
    /// the machine name?
    pub fn matches(&self, query: &str) -> bool {
        if is_hex_id(&self.id) {
            query.len() >= 4 && self.id.starts_with(&query.to_ascii_lowercase())
        } else {
            self.id == query
        }
    }
}

impl fmt::Display for Container {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.runtime, self.short_id())
    }
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Undo systemd's unit-name escaping (`\x2d` is `-`).
fn unescape_systemd(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') {
            if let Some(v) = b
                .get(i + 2..i + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The container of one path component, given the component before it.
fn component(parent: Option<&str>, c: &str) -> Option<Container> {
    let scoped =
        |prefix: &str| c.strip_prefix(prefix).and_then(|r| r.strip_suffix(".scope")).filter(|id| is_hex_id(id));
    let found = |runtime, id: &str| Some(Container { runtime, id: id.to_string() });
    if let Some(id) = scoped("docker-") {
        return found(Runtime::Docker, id);
    }
    if let Some(id) = scoped("libpod-") {
        return found(Runtime::Podman, id);
    }
    if let Some(id) = scoped("cri-containerd-") {
        return found(Runtime::Containerd, id);
    }
    if let Some(id) = scoped("crio-") {
        return found(Runtime::Crio, id);
    }
    if is_hex_id(c) {
        return match parent {
            Some("docker") => found(Runtime::Docker, c),
            Some(p) if p.starts_with("kubepods") || p.starts_with("pod") => found(Runtime::Kubernetes, c),
            _ => None,
        };
    }
    if let Some(id) = c.strip_prefix("libpod-").filter(|id| is_hex_id(id)) {
        return found(Runtime::Podman, id);
    }
    if let Some(name) = c.strip_prefix("machine-").and_then(|r| r.strip_suffix(".scope")) {
        return Some(Container { runtime: Runtime::Nspawn, id: unescape_systemd(name) });
    }
    if let Some(name) = c.strip_prefix("lxc.payload.") {
        return found(Runtime::Lxc, name);
    }
    if parent == Some("lxc") && !c.is_empty() {
        return found(Runtime::Lxc, c);
    }
    None
}

/// The container a cgroup2 path (`/system.slice/docker-<id>.scope`,
/// `/proc/PID/cgroup`'s `0::PATH` or a directory under /sys/fs/cgroup)
/// belongs to: the innermost component that names one; `None` for a path of
/// no container.
pub fn container_of(cgroup_path: &str) -> Option<Container> {
    let parts: Vec<&str> = cgroup_path.split('/').filter(|c| !c.is_empty()).collect();
    (0..parts.len()).rev().find_map(|i| component(i.checked_sub(1).map(|p| parts[p]), parts[i]))
}

/// The cgroup2 path of a `/proc/PID/cgroup` text: its `0::PATH` line.
pub fn cgroup2_path(proc_cgroup: &str) -> Option<&str> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f4e2b1c0d9a8f7e6d5c4b3a29181716f5e4d3c2b1a0998877665544332211ff";

    #[test]
    fn every_runtime_naming() {
        let cases = [
            (format!("/system.slice/docker-{ID}.scope"), Runtime::Docker, ID.to_string()),
            (format!("/docker/{ID}"), Runtime::Docker, ID.to_string()),
            (format!("/machine.slice/libpod-{ID}.scope/container"), Runtime::Podman, ID.to_string()),
            (
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
                Runtime::Podman,
                ID.to_string(),
            ),
            (format!("/libpod_parent/libpod-{ID}"), Runtime::Podman, ID.to_string()),
            (
                format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-{ID}.scope"),
                Runtime::Containerd,
                ID.to_string(),
            ),
            (format!("/kubepods.slice/kubepods-pod1.slice/crio-{ID}.scope"), Runtime::Crio, ID.to_string()),
            (format!("/kubepods/besteffort/pod1234/{ID}"), Runtime::Kubernetes, ID.to_string()),
            ("/machine.slice/machine-web\\x2d1.scope/payload".to_string(), Runtime::Nspawn, "web-1".to_string()),
            ("/lxc.payload.box1/init.scope".to_string(), Runtime::Lxc, "box1".to_string()),
            ("/lxc/box2".to_string(), Runtime::Lxc, "box2".to_string()),
        ];
        for (path, runtime, id) in cases {
            assert_eq!(container_of(&path), Some(Container { runtime, id }), "{path}");
        }
    }

    #[test]
    fn no_container() {
        for path in [
            "/",
            "",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/sshd.service",
            &format!("/machine.slice/libpod-conmon-{ID}.scope"),
            &format!("/system.slice/crio-conmon-{ID}.scope"),
            "/system.slice/docker-abc.scope",
            &format!("/other/{ID}"),
        ] {
            assert_eq!(container_of(path), None, "{path}");
        }
    }

    #[test]
    fn short_id_and_matches() {
        let c = container_of(&format!("/docker/{ID}")).unwrap();
        assert_eq!(c.short_id(), &ID[..12]);
        assert_eq!(c.to_string(), format!("docker:{}", &ID[..12]));
        assert!(c.matches(&ID[..12]));
        assert!(c.matches(&ID.to_ascii_uppercase()[..8]));
        assert!(c.matches(ID));
        assert!(!c.matches("3f4"), "too short a prefix");
        assert!(!c.matches("ffff"));
        let m = container_of("/machine.slice/machine-web.scope").unwrap();
        assert!(m.matches("web"));
        assert!(!m.matches("we"));
    }

    #[test]
    fn cgroup2_line() {
        assert_eq!(cgroup2_path("0::/system.slice/x.service\n"), Some("/system.slice/x.service"));
        assert_eq!(cgroup2_path("12:cpu:/a\n0::/b\n"), Some("/b"));
        assert_eq!(cgroup2_path("1:name=systemd:/a\n"), None);
    }
}
