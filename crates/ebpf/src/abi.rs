//! Rust mirror of `bpf/pidcap_abi.h`, the one ABI between the eBPF programs and
//! userspace. Sizes and field offsets are asserted at compile time, and a unit
//! test reads the header itself to check the constants, so the two cannot
//! drift apart silently.

use pidcap_engine::rules;
use std::mem::{offset_of, size_of};
use std::net::IpAddr;

pub const COMM_LEN: usize = 16;
pub const MAX_SNAPLEN: u32 = 65535;
pub const MAX_RULES: u32 = 128;
/// Rules per bank of the double-buffered `rules` map: the longest list.
pub const RULES_PER_BANK: u32 = 64;
pub const RULESET_COUNT_MASK: u32 = 0xffff;
pub const RULESET_BASE_SHIFT: u32 = 16;
pub const DIR_IN: u8 = 0;
pub const DIR_OUT: u8 = 1;
pub const VERDICT_PASS: u8 = 0;
pub const VERDICT_BLOCKED: u8 = 1;
pub const NO_RULE: u16 = 0xffff;
pub const TARGET_FOLLOW_CHILDREN: u32 = 1;
/// The deepest level a target cgroup may have (levels are bits of [`Config::cgroup_levels`]).
pub const MAX_CGROUP_LEVEL: u32 = 31;
/// What a ring record is (its u32 at offset 36: [`PktHdr::kind`], [`TlsHdr::kind`]).
pub const REC_PACKET: u32 = 0;
pub const REC_TLS: u32 = 1;
pub const TLS_LIB_OPENSSL: u8 = 0;
pub const TLS_LIB_GNUTLS: u8 = 1;
pub const TLS_LIB_NSS: u8 = 2;
pub const MAX_TLS_BYTES: u32 = 65475;

pub const RULE_ENABLED: u32 = 1;
pub const RULE_BLOCK: u32 = 2;
pub const RULE_DIR_IN: u32 = 4;
pub const RULE_DIR_OUT: u32 = 8;
pub const RULE_PORT_LOCAL: u32 = 16;
pub const RULE_PORT_REMOTE: u32 = 32;
pub const RULE_HAS_ADDR: u32 = 64;

/// Indexes of the per-CPU `counters` array (`enum pidcap_counter`).
pub mod counter {
    pub const SEEN: u32 = 0;
    pub const UNATTRIBUTED: u32 = 1;
    pub const TARGET: u32 = 2;
    pub const CAPTURED: u32 = 3;
    pub const RING_FULL: u32 = 4;
    pub const LOAD_FAILED: u32 = 5;
    pub const BLOCKED: u32 = 6;
    pub const OWNER_FULL: u32 = 7;
    pub const FORKED: u32 = 8;
    pub const CONNECT_BLOCKED: u32 = 9;
    pub const TLS_RECORDS: u32 = 10;
    pub const TLS_DROPPED: u32 = 11;
    pub const MAX: u32 = 16;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Owner {
    pub tgid: u32,
    /// The thread that set the socket up or last sent on it (0: unknown).
    pub tid: u32,
    /// The process's key beside its tgid (see [`Target::key`]).
    pub key: u64,
    pub comm: [u8; COMM_LEN],
}

// -- socket-local ownership (issue 13) --
/// Index of the `gens` array written by userspace (a target, name or cgroup added or removed).
pub const GEN_USER: u32 = 0;
/// Index of the `gens` array the programs increment (a target added in the kernel).
pub const GEN_KERNEL: u32 = 1;

/// Value of the `sk_owners` socket storage (`struct pidcap_sk_owner`):
/// read and written by the programs only; mirrored for its layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkOwner {
    pub owner: Owner,
    /// The target set's generation (`gens`) shifted left by one, | 1 when the owner is a target.
    pub verdict: u64,
    pub valid: u32,
    pub bound: u32,
    pub port: PortKey,
    pub _pad: u32,
    /// While `valid` is 0: the generation (shifted as `verdict`) at which the
    /// socket was found to have no known owner; 0: not looked for yet.
    pub unowned: u64,
    /// The owner's start time (thread-group leader's `start_time`); 0: not known.
    pub start: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortKey {
    pub port: u16,
    pub proto: u8,
    pub _pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortOwner {
    pub owner: Owner,
    pub cookie: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    pub flags: u32,
    /// Set by the kernel when the process's last thread has exited.
    pub exited: u32,
    /// The pidfs inode number of the process's pid (0: none, before Linux 6.9).
    pub key: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub snaplen: u32,
    pub wakeup_bytes: u32,
    pub capture: u32,
    /// The active rule list: `base << RULESET_BASE_SHIFT | n`.
    pub ruleset: u32,
    /// 1: take the plaintext of the targets' TLS library calls.
    pub tls: u32,
    /// Bit L: some entry of `target_cgroups` is at level L (0: none).
    pub cgroup_levels: u32,
}

/// Value of the `target_cgroups` map (key: the cgroup id, the inode number
/// of its cgroup2 directory).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupTarget {
    /// `TARGET_*` flags given to the processes it adds.
    pub flags: u32,
    /// Depth below the cgroup2 root (the root is 0), at most [`MAX_CGROUP_LEVEL`].
    pub level: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub flags: u32,
    pub port: u16,
    pub proto: u8,
    pub prefix: u8,
    pub addr: [u8; 16],
    pub hits: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PktHdr {
    pub ts_ns: u64,
    pub cookie: u64,
    pub tgid: u32,
    pub orig_len: u32,
    pub cap_len: u32,
    pub ifindex: u32,
    pub direction: u8,
    pub verdict: u8,
    pub rule: u16,
    /// [`REC_PACKET`].
    pub kind: u32,
    /// The name of thread `tid`.
    pub comm: [u8; COMM_LEN],
    /// The sending thread, or the socket's last sender (0: unknown).
    pub tid: u32,
    pub _pad: u32,
}

/// Header of a TLS plaintext record (`struct pidcap_tls_hdr`); the plaintext follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsHdr {
    pub ts_ns: u64,
    /// Socket cookie (0: not known).
    pub cookie: u64,
    pub tgid: u32,
    pub tid: u32,
    pub cap_len: u32,
    /// `TLS_LIB_*`.
    pub library: u8,
    /// AF_INET, AF_INET6, or 0 when no socket is known.
    pub family: u8,
    pub _pad0: u16,
    pub direction: u8,
    pub _pad1: [u8; 3],
    /// [`REC_TLS`].
    pub kind: u32,
    pub comm: [u8; COMM_LEN],
    pub true_len: u64,
    /// IPv4 as ::ffff:a.b.c.d, network byte order.
    pub laddr: [u8; 16],
    pub raddr: [u8; 16],
    pub lport: u16,
    pub rport: u16,
    pub _pad2: u32,
}

const _: () = {
    // The engine's limits are the kernel's.
    assert!(RULES_PER_BANK as usize == rules::MAX_RULES);
    assert!(MAX_SNAPLEN == pidcap_engine::MAX_SNAPLEN);
    assert!(size_of::<Owner>() == 32);
    assert!(offset_of!(Owner, key) == 8);
    assert!(offset_of!(Owner, comm) == 16);
    assert!(size_of::<PortKey>() == 4);
    assert!(size_of::<SkOwner>() == 72);
    assert!(offset_of!(SkOwner, verdict) == 32);
    assert!(offset_of!(SkOwner, valid) == 40);
    assert!(offset_of!(SkOwner, bound) == 44);
    assert!(offset_of!(SkOwner, port) == 48);
    assert!(offset_of!(SkOwner, unowned) == 56);
    assert!(offset_of!(SkOwner, start) == 64);
    assert!(offset_of!(PortKey, proto) == 2);
    assert!(size_of::<PortOwner>() == 40);
    assert!(offset_of!(PortOwner, owner) == 0);
    assert!(offset_of!(PortOwner, cookie) == 32);
    assert!(size_of::<Target>() == 16);
    assert!(offset_of!(Target, exited) == 4);
    assert!(offset_of!(Target, key) == 8);
    assert!(size_of::<Config>() == 24);
    assert!(offset_of!(Config, ruleset) == 12);
    assert!(offset_of!(Config, tls) == 16);
    assert!(offset_of!(Config, cgroup_levels) == 20);
    assert!(size_of::<CgroupTarget>() == 8);
    assert!(offset_of!(CgroupTarget, level) == 4);
    assert!(MAX_CGROUP_LEVEL < u32::BITS);
    assert!(MAX_CGROUP_LEVEL == pidcap_engine::cgroup::MAX_LEVEL);
    assert!(size_of::<Rule>() == 32);
    assert!(offset_of!(Rule, port) == 4);
    assert!(offset_of!(Rule, proto) == 6);
    assert!(offset_of!(Rule, prefix) == 7);
    assert!(offset_of!(Rule, addr) == 8);
    assert!(offset_of!(Rule, hits) == 24);
    assert!(offset_of!(Owner, tid) == 4);
    assert!(size_of::<PktHdr>() == 64);
    assert!(offset_of!(PktHdr, tid) == 56);
    assert!(offset_of!(PktHdr, cookie) == 8);
    assert!(offset_of!(PktHdr, tgid) == 16);
    assert!(offset_of!(PktHdr, orig_len) == 20);
    assert!(offset_of!(PktHdr, cap_len) == 24);
    assert!(offset_of!(PktHdr, ifindex) == 28);
    assert!(offset_of!(PktHdr, direction) == 32);
    assert!(offset_of!(PktHdr, verdict) == 33);
    assert!(offset_of!(PktHdr, rule) == 34);
    assert!(offset_of!(PktHdr, kind) == 36);
    assert!(offset_of!(PktHdr, comm) == 40);
    assert!(size_of::<TlsHdr>() == 104);
    assert!(offset_of!(TlsHdr, cookie) == offset_of!(PktHdr, cookie));
    assert!(offset_of!(TlsHdr, tgid) == offset_of!(PktHdr, tgid));
    assert!(offset_of!(TlsHdr, tid) == 20);
    assert!(offset_of!(TlsHdr, cap_len) == offset_of!(PktHdr, cap_len));
    assert!(offset_of!(TlsHdr, library) == 28);
    assert!(offset_of!(TlsHdr, family) == 29);
    assert!(offset_of!(TlsHdr, direction) == offset_of!(PktHdr, direction));
    assert!(offset_of!(TlsHdr, kind) == offset_of!(PktHdr, kind));
    assert!(offset_of!(TlsHdr, comm) == offset_of!(PktHdr, comm));
    assert!(offset_of!(TlsHdr, true_len) == 56);
    assert!(offset_of!(TlsHdr, laddr) == 64);
    assert!(offset_of!(TlsHdr, raddr) == 80);
    assert!(offset_of!(TlsHdr, lport) == 96);
    assert!(offset_of!(TlsHdr, rport) == 98);
    assert!(MAX_TLS_BYTES as usize == pidcap_packet::tls::MAX_TLS_BYTES);
};

// SAFETY: every type above is `repr(C)`, `Copy`, made only of integers and
// integer arrays, with explicit padding fields, so any bit pattern is valid
// and there are no implicit padding bytes (the sizes asserted above equal the
// sums of the field sizes).
unsafe impl aya::Pod for Owner {}
// SAFETY: as above.
unsafe impl aya::Pod for PortKey {}
// SAFETY: as above.
unsafe impl aya::Pod for PortOwner {}
// SAFETY: as above.
unsafe impl aya::Pod for Target {}
// SAFETY: as above.
unsafe impl aya::Pod for Config {}
// SAFETY: as above.
unsafe impl aya::Pod for CgroupTarget {}
// SAFETY: as above.
unsafe impl aya::Pod for Rule {}

impl PktHdr {
    /// Read a record header from the start of a ring buffer record.
    pub fn read(record: &[u8]) -> Option<PktHdr> {
        if record.len() < size_of::<PktHdr>() {
            return None;
        }
        // SAFETY: the slice holds at least size_of::<PktHdr>() bytes,
        // read_unaligned has no alignment requirement, and PktHdr is plain
        // integers, valid for any bit pattern.
        Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<PktHdr>()) })
    }
}

/// The kind of a ring record ([`REC_PACKET`] or [`REC_TLS`]), None when too short.
pub fn record_kind(record: &[u8]) -> Option<u32> {
    let at = offset_of!(PktHdr, kind);
    Some(u32::from_ne_bytes(record.get(at..at + 4)?.try_into().ok()?))
}

impl TlsHdr {
    /// Read a TLS record header from the start of a ring buffer record.
    pub fn read(record: &[u8]) -> Option<TlsHdr> {
        if record.len() < size_of::<TlsHdr>() {
            return None;
        }
        // SAFETY: the slice holds at least size_of::<TlsHdr>() bytes,
        // read_unaligned has no alignment requirement, and TlsHdr is plain
        // integers, valid for any bit pattern.
        Some(unsafe { std::ptr::read_unaligned(record.as_ptr().cast::<TlsHdr>()) })
    }
}

/// The bytes of a NUL-padded `comm` up to the first NUL.
pub fn comm_str(comm: &[u8]) -> &[u8] {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    &comm[..end]
}

/// The kernel's representation of a rule (hits zero).
impl From<&rules::Rule> for Rule {
    fn from(r: &rules::Rule) -> Rule {
        let mut flags = 0;
        if r.enabled {
            flags |= RULE_ENABLED;
        }
        if r.action == rules::Action::Block {
            flags |= RULE_BLOCK;
        }
        flags |= match r.direction {
            rules::RuleDirection::In => RULE_DIR_IN,
            rules::RuleDirection::Out => RULE_DIR_OUT,
            rules::RuleDirection::Both => RULE_DIR_IN | RULE_DIR_OUT,
        };
        flags |= match r.port_side {
            rules::PortSide::Either => RULE_PORT_LOCAL | RULE_PORT_REMOTE,
            rules::PortSide::Local => RULE_PORT_LOCAL,
            rules::PortSide::Remote => RULE_PORT_REMOTE,
        };
        let proto = match r.protocol {
            rules::RuleProtocol::Any => 0,
            rules::RuleProtocol::Tcp => libc::IPPROTO_TCP as u8,
            rules::RuleProtocol::Udp => libc::IPPROTO_UDP as u8,
        };
        let (addr, prefix) = match r.net {
            None => ([0u8; 16], 0),
            Some(n) => {
                flags |= RULE_HAS_ADDR;
                match n.addr() {
                    // The kernel compares IPv4 as ::ffff:a.b.c.d, so the prefix covers the 96 bits before it.
                    IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), 96 + n.prefix()),
                    IpAddr::V6(a) => (a.octets(), n.prefix()),
                }
            }
        };
        Rule { flags, port: r.port, proto, prefix, addr, hits: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Every `#define NAME number` and enum `NAME = number` of the C header.
    fn header_constants() -> HashMap<String, u64> {
        let text = include_str!("../../../bpf/pidcap_abi.h");
        let mut m = HashMap::new();
        for line in text.lines() {
            let line = line.trim().trim_end_matches(',');
            let (name, value) = if let Some(rest) = line.strip_prefix("#define ") {
                let mut it = rest.split_whitespace();
                match (it.next(), it.next()) {
                    (Some(n), Some(v)) => (n, v),
                    _ => continue,
                }
            } else if let Some((n, v)) = line.split_once(" = ") {
                (n.trim(), v.split_whitespace().next().unwrap_or("").trim_end_matches(','))
            } else {
                continue;
            };
            let v = if let Some(h) = value.strip_prefix("0x") {
                u64::from_str_radix(h, 16).ok()
            } else {
                value.parse().ok()
            };
            if let Some(v) = v {
                m.insert(name.to_string(), v);
            }
        }
        m
    }

    #[test]
    fn constants_match_the_c_header() {
        let h = header_constants();
        let expect: &[(&str, u64)] = &[
            ("PIDCAP_COMM_LEN", COMM_LEN as u64),
            ("PIDCAP_MAX_RULES", MAX_RULES.into()),
            ("PIDCAP_RULES_PER_BANK", RULES_PER_BANK.into()),
            ("PIDCAP_RULESET_COUNT_MASK", RULESET_COUNT_MASK.into()),
            ("PIDCAP_RULESET_BASE_SHIFT", RULESET_BASE_SHIFT.into()),
            ("PIDCAP_MAX_SNAPLEN", MAX_SNAPLEN.into()),
            ("PIDCAP_DIR_IN", DIR_IN.into()),
            ("PIDCAP_DIR_OUT", DIR_OUT.into()),
            ("PIDCAP_VERDICT_PASS", VERDICT_PASS.into()),
            ("PIDCAP_VERDICT_BLOCKED", VERDICT_BLOCKED.into()),
            ("PIDCAP_NO_RULE", NO_RULE.into()),
            ("PIDCAP_TARGET_FOLLOW_CHILDREN", TARGET_FOLLOW_CHILDREN.into()),
            ("PIDCAP_MAX_CGROUP_LEVEL", MAX_CGROUP_LEVEL.into()),
            ("PIDCAP_RULE_ENABLED", RULE_ENABLED.into()),
            ("PIDCAP_RULE_BLOCK", RULE_BLOCK.into()),
            ("PIDCAP_RULE_DIR_IN", RULE_DIR_IN.into()),
            ("PIDCAP_RULE_DIR_OUT", RULE_DIR_OUT.into()),
            ("PIDCAP_RULE_PORT_LOCAL", RULE_PORT_LOCAL.into()),
            ("PIDCAP_RULE_PORT_REMOTE", RULE_PORT_REMOTE.into()),
            ("PIDCAP_RULE_HAS_ADDR", RULE_HAS_ADDR.into()),
            ("PIDCAP_CNT_SEEN", counter::SEEN.into()),
            ("PIDCAP_CNT_UNATTRIBUTED", counter::UNATTRIBUTED.into()),
            ("PIDCAP_CNT_TARGET", counter::TARGET.into()),
            ("PIDCAP_CNT_CAPTURED", counter::CAPTURED.into()),
            ("PIDCAP_CNT_RING_FULL", counter::RING_FULL.into()),
            ("PIDCAP_CNT_LOAD_FAILED", counter::LOAD_FAILED.into()),
            ("PIDCAP_CNT_BLOCKED", counter::BLOCKED.into()),
            ("PIDCAP_CNT_OWNER_FULL", counter::OWNER_FULL.into()),
            ("PIDCAP_CNT_FORKED", counter::FORKED.into()),
            ("PIDCAP_CNT_CONNECT_BLOCKED", counter::CONNECT_BLOCKED.into()),
            ("PIDCAP_CNT_TLS_RECORDS", counter::TLS_RECORDS.into()),
            ("PIDCAP_CNT_TLS_DROPPED", counter::TLS_DROPPED.into()),
            ("PIDCAP_CNT__MAX", counter::MAX.into()),
            ("PIDCAP_REC_PACKET", REC_PACKET.into()),
            ("PIDCAP_REC_TLS", REC_TLS.into()),
            ("PIDCAP_TLS_LIB_OPENSSL", TLS_LIB_OPENSSL.into()),
            ("PIDCAP_TLS_LIB_GNUTLS", TLS_LIB_GNUTLS.into()),
            ("PIDCAP_TLS_LIB_NSS", TLS_LIB_NSS.into()),
            ("PIDCAP_MAX_TLS_BYTES", MAX_TLS_BYTES.into()),
            ("PIDCAP_GEN_USER", GEN_USER.into()),
            ("PIDCAP_GEN_KERNEL", GEN_KERNEL.into()),
        ];
        for (name, value) in expect {
            assert_eq!(h.get(*name), Some(value), "{name} differs between pidcap_abi.h and abi.rs");
        }
    }

    #[test]
    fn header_reads_from_unaligned_bytes() {
        let mut rec = [0u8; 1 + 64 + 4];
        rec[1 + 16..1 + 20].copy_from_slice(&1234u32.to_ne_bytes());
        rec[1 + 56..1 + 60].copy_from_slice(&1235u32.to_ne_bytes());
        rec[1 + 32] = DIR_OUT;
        rec[1 + 40..1 + 44].copy_from_slice(b"curl");
        let h = PktHdr::read(&rec[1..]).unwrap();
        assert_eq!(h.tgid, 1234);
        assert_eq!(h.tid, 1235);
        assert_eq!(h.direction, DIR_OUT);
        assert_eq!(comm_str(&h.comm), b"curl");
        assert!(PktHdr::read(&rec[..10]).is_none());
        assert_eq!(record_kind(&rec[1..]), Some(REC_PACKET));
        rec[1 + 36] = REC_TLS as u8;
        assert_eq!(record_kind(&rec[1..]), Some(REC_TLS));
        assert!(TlsHdr::read(&rec[1..]).is_none(), "a TLS header is longer than this record");
        assert_eq!(record_kind(&rec[..20]), None);
    }

    #[test]
    fn to_abi_maps_ipv4_into_the_mapped_range() {
        let a = Rule::from(&r("out:tcp:10.0.0.0/8:remote:443"));
        assert_eq!(a.prefix, 104);
        assert_eq!(&a.addr[10..13], &[0xff, 0xff, 10]);
        assert_eq!(a.port, 443);
        assert_eq!(a.proto, 6);
        assert_eq!(a.flags, RULE_ENABLED | RULE_BLOCK | RULE_DIR_OUT | RULE_PORT_REMOTE | RULE_HAS_ADDR);
        let a = Rule::from(&rules::Rule::parse_spec("[::1]", rules::Action::Allow).unwrap());
        assert_eq!((a.prefix, a.addr[15], a.flags & RULE_BLOCK), (128, 1, 0));
        let a = Rule::from(&r("disabled:udp"));
        assert_eq!(a.flags & RULE_ENABLED, 0);
        assert_eq!(a.flags & (RULE_DIR_IN | RULE_DIR_OUT), RULE_DIR_IN | RULE_DIR_OUT);
    }

    fn r(spec: &str) -> rules::Rule {
        spec.parse().unwrap()
    }
}
