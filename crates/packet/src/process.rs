//! The whole process behind a packet ([`ProcessMeta`]): what the engine reads
//! once per process from `/proc` (executable, command line, parent, user,
//! cgroup, container) and shares, behind an `Arc`, with every packet of that
//! process ([`crate::CapturedPacket::process`]). The thread that sent or
//! received a packet is per packet (`CapturedPacket::tid` / `thread`), not here.
//!
//! Every field is plain data so that this crate stays free of the OS: the
//! container is the runtime's name and the id as strings (the one parser of
//! container cgroup names is `pidcap_engine::container`, which fills them).

use serde::{Deserialize, Serialize};

/// A process, as it was when pidcap first read it (see the module doc).
/// Strings are empty and numbers 0 where a field could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessMeta {
    /// Process (thread group) id.
    pub pid: u32,
    /// The thread-group leader's name (`/proc/PID/comm`, at most 15 bytes),
    /// not that of the thread that sent a packet.
    pub comm: String,
    /// The executable's path (`/proc/PID/exe`, in the process's mount namespace).
    #[serde(default)]
    pub exe: String,
    /// The arguments (`/proc/PID/cmdline`), `argv[0]` first.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Parent process id and name (0 and empty: unknown).
    #[serde(default)]
    pub ppid: u32,
    #[serde(default)]
    pub parent_comm: String,
    /// Real user id, and its name from the password database (empty: none).
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub user: String,
    /// The cgroup2 path (`/proc/PID/cgroup`'s `0::` line), e.g. `/user.slice/...`.
    #[serde(default)]
    pub cgroup: String,
    /// The container the cgroup path names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

/// A container as its cgroup path names it: `docker` and 64 hex digits, or
/// `nspawn` and a machine name (see `pidcap_engine::container`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContainerRef {
    pub runtime: String,
    pub id: String,
}

impl std::fmt::Display for ContainerRef {
    /// `RUNTIME:ID`, as the pcapng comment writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.runtime, self.id)
    }
}

impl ContainerRef {
    /// Parse `RUNTIME:ID` (both non-empty).
    pub fn parse(s: &str) -> Option<ContainerRef> {
        let (runtime, id) = s.split_once(':')?;
        (!runtime.is_empty() && !id.is_empty()).then(|| ContainerRef { runtime: runtime.into(), id: id.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_old_json_reads() {
        let m = ProcessMeta {
            pid: 7,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
            cmdline: vec!["curl".into(), "-s".into(), "a b".into()],
            ppid: 1,
            parent_comm: "sh".into(),
            uid: 1000,
            user: "alice".into(),
            cgroup: "/user.slice".into(),
            container: ContainerRef::parse("docker:abc"),
        };
        let j = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<ProcessMeta>(&j).unwrap(), m);
        let old: ProcessMeta = serde_json::from_str(r#"{"pid":3,"comm":"x"}"#).unwrap();
        assert_eq!((old.pid, old.comm.as_str(), old.container), (3, "x", None));
        assert_eq!(m.container.unwrap().to_string(), "docker:abc");
        assert_eq!(ContainerRef::parse("docker:"), None);
        assert_eq!(ContainerRef::parse("nope"), None);
    }
}
