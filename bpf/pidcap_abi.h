/* SPDX-License-Identifier: (GPL-2.0 OR MIT) */
/*
 * pidcap ABI: the one header shared by the eBPF programs (pidcap.bpf.c) and
 * userspace. Its Rust mirror is crates/engine/src/abi.rs, which asserts the
 * size and the field offsets of every struct below at compile time: change
 * both together.
 *
 * All integers are in host byte order unless a field says otherwise.
 */
#ifndef PIDCAP_ABI_H
#define PIDCAP_ABI_H

#include <linux/types.h>

#define PIDCAP_COMM_LEN 16
#define PIDCAP_MAX_SNAPLEN 65535
#define PIDCAP_MAX_RULES 128
/* The rules map holds two banks of PIDCAP_RULES_PER_BANK: userspace writes a
 * new list into the bank not in use, then switches to it with one 32-bit
 * store (pidcap_config.ruleset), so a packet sees the old list or the new
 * one, never a half-written one. */
#define PIDCAP_RULES_PER_BANK 64

/* Direction of a packet relative to the target process. */
#define PIDCAP_DIR_IN 0
#define PIDCAP_DIR_OUT 1

/* Verdict of the filter rules. */
#define PIDCAP_VERDICT_PASS 0
#define PIDCAP_VERDICT_BLOCKED 1
/* pidcap_pkt_hdr.rule when no rule matched */
#define PIDCAP_NO_RULE 0xffff

/* Indexes of the per-CPU "counters" array. */
enum pidcap_counter {
	PIDCAP_CNT_SEEN = 0,         /* packets that reached the cgroup_skb programs */
	PIDCAP_CNT_UNATTRIBUTED = 1, /* ... whose socket had no known owner */
	PIDCAP_CNT_TARGET = 2,       /* ... owned by a target process */
	PIDCAP_CNT_CAPTURED = 3,     /* ... written to the ring buffer */
	PIDCAP_CNT_RING_FULL = 4,    /* ... lost because the ring buffer was full */
	PIDCAP_CNT_LOAD_FAILED = 5,  /* ... lost because the bytes could not be read */
	PIDCAP_CNT_BLOCKED = 6,      /* ... dropped by a block rule */
	PIDCAP_CNT_OWNER_FULL = 7,   /* sockets whose owner could not be recorded */
	PIDCAP_CNT_FORKED = 8,       /* child processes that became targets */
	PIDCAP_CNT_CONNECT_BLOCKED = 9, /* connect()/sendmsg() refused by a block rule */
	PIDCAP_CNT_TLS_RECORDS = 10, /* TLS plaintext records written to the ring buffer */
	PIDCAP_CNT_TLS_DROPPED = 11, /* ... lost: ring full, or the bytes could not be read */
	PIDCAP_CNT__MAX = 16,
};

/* Value of the "owners" map (key: socket cookie) and of "port_owners".
 * tgid and key together name the process: the tgid can be given to another
 * process once this one has exited, the key cannot. */
struct pidcap_owner {
	__u32 tgid;
	/* The thread that set the socket up or last sent on it in process
	 * context (0: unknown, e.g. a socket that existed before the capture);
	 * comm is that thread's name. */
	__u32 tid;
	__u64 key; /* see pidcap_target.key */
	char comm[PIDCAP_COMM_LEN];
};

/* -- socket-local ownership (issue 13) --
 * Value of the "sk_owners" socket storage (BPF_MAP_TYPE_SK_STORAGE): who owns
 * the socket, and whether that owner was a target at generation `verdict >> 1`
 * of the target set (bit 0: 1 = a target's). The generation is
 * pidcap_gens[PIDCAP_GEN_USER] << 32 | pidcap_gens[PIDCAP_GEN_KERNEL]
 * (the "gens" array), shifted left by one; a verdict of another generation
 * is decided again. One 64-bit word, so that a verdict and its generation
 * are always read and written together. */
#define PIDCAP_GEN_USER 0   /* written by userspace only (target/name/cgroup added or removed) */
#define PIDCAP_GEN_KERNEL 1 /* __sync_fetch_and_add by the programs (a target added in the kernel) */
struct pidcap_sk_owner {
	struct pidcap_owner owner;
	__u64 verdict;   /* generation << 1 | is-a-target (only when valid) */
	__u32 valid;     /* owner is set */
	__u32 bound;     /* port (below) is the socket's entry of port_owners */
	struct { __u16 port; __u8 proto; __u8 _pad; } port; /* as pidcap_port_key */
	__u32 _pad;
	/* While valid is 0: the generation (shifted as verdict) at which the
	 * socket's packets were found to have no known owner (a socket older
	 * than the capture, not seeded by userspace): until the target set
	 * changes they are not looked for again. 0: not looked for yet. */
	__u64 unowned;
	/* The owner's start time (its thread-group leader's start_time), set
	 * with the owner in process context: the fast path's cheap "is the
	 * caller the owner" beside the tgid. 0: not known (the owner came from
	 * sockops or seeding): the full path sets it. */
	__u64 start;
};

/* Key of the "port_owners" map: a bound local port. */
struct pidcap_port_key {
	__u16 port;
	__u8 proto; /* IPPROTO_TCP / IPPROTO_UDP */
	__u8 _pad;
};

struct pidcap_port_owner {
	struct pidcap_owner owner; /* first: the programs hand out &po->owner */
	__u64 cookie;
};

/* Value of the "targets" map (key: tgid) and "target_comms" (key: comm[16];
 * only flags is used there). */
#define PIDCAP_TARGET_FOLLOW_CHILDREN 1
struct pidcap_target {
	__u32 flags;  /* PIDCAP_TARGET_* */
	/* Set by the kernel (sched_process_exit) when the last thread of the
	 * process has exited. The entry still matches the process's own sockets
	 * (a FIN sent when exit closes them) until userspace removes it. */
	__u32 exited;
	/* The process's identity beside its tgid: the inode number of its pid in
	 * pidfs (what fstat() of a pidfd gives; never reused while the system
	 * runs). A packet or call matches the entry only if its owner has the
	 * same key, so the entry of an exited process never matches the next
	 * process given its pid. 0 on kernels without pidfs (before 6.9): the
	 * entry then matches by tgid, and only until the process exits. */
	__u64 key;
};

/* Value of the "target_cgroups" map (key: cgroup id, which on cgroup2 is
 * the inode number of the cgroup's directory). A process whose cgroup is
 * that one or below it becomes a target (with these flags) at its next
 * socket operation in process context, as a name match does. */
#define PIDCAP_MAX_CGROUP_LEVEL 31 /* levels are bits of pidcap_config.cgroup_levels */
struct pidcap_cgroup_target {
	__u32 flags; /* PIDCAP_TARGET_*, given to the processes it adds */
	__u32 level; /* depth below the cgroup2 mount's root (informational) */
};

/* The single entry of the "config" array map. */
struct pidcap_config {
	__u32 snaplen;      /* bytes kept per packet, 1..PIDCAP_MAX_SNAPLEN */
	__u32 wakeup_bytes; /* wake the consumer when this much data is pending */
	__u32 capture;      /* 0: attribute and enforce rules but push nothing */
	/* The active rule list, in one word so that it switches atomically:
	 * rules[base .. base + n) are evaluated in order, where
	 * n = ruleset & 0xffff (<= PIDCAP_RULES_PER_BANK), base = ruleset >> 16. */
	__u32 ruleset;
	__u32 tls;  /* 1: take the plaintext of the targets' TLS library calls */
	/* Bit L set: the programs look up the current task's ancestor cgroup at
	 * level L in "target_cgroups" (levels of the kernel's hierarchy, the
	 * root is 0); 0: no cgroup targets, nothing to check. */
	__u32 cgroup_levels;
};
#define PIDCAP_RULESET_COUNT_MASK 0xffff
#define PIDCAP_RULESET_BASE_SHIFT 16

/* A filter rule (entry of the "rules" array map). Addresses in network byte
 * order; IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d). */
#define PIDCAP_RULE_ENABLED 1
#define PIDCAP_RULE_BLOCK 2
#define PIDCAP_RULE_DIR_IN 4
#define PIDCAP_RULE_DIR_OUT 8
#define PIDCAP_RULE_PORT_LOCAL 16
#define PIDCAP_RULE_PORT_REMOTE 32
#define PIDCAP_RULE_HAS_ADDR 64
struct pidcap_rule {
	__u32 flags;
	__u16 port;  /* 0: any */
	__u8 proto;  /* 0: any, else IPPROTO_* */
	__u8 prefix; /* prefix length over the 128-bit mapped address */
	__u8 addr[16];
	__u64 hits;  /* updated by the kernel (not atomically exact under races) */
};

/* Header of every ring buffer record; the packet bytes (from the IP header,
 * cap_len of them) follow it. The record may be longer than
 * sizeof(hdr) + cap_len: sizes are rounded up to a small set of classes. */
struct pidcap_pkt_hdr {
	__u64 ts_ns;  /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie; /* socket cookie */
	__u32 tgid;
	__u32 orig_len; /* skb->len: the whole IP packet */
	__u32 cap_len;  /* bytes that follow */
	__u32 ifindex;
	__u8 direction; /* PIDCAP_DIR_* */
	__u8 verdict;   /* PIDCAP_VERDICT_* */
	__u16 rule;     /* index of the deciding rule or PIDCAP_NO_RULE */
	__u32 kind;     /* PIDCAP_REC_PACKET */
	char comm[PIDCAP_COMM_LEN]; /* the name of thread tid */
	/* The sending thread (egress in the owner's process context), else the
	 * one that last sent on or set up the socket (pidcap_owner.tid); 0: unknown. */
	__u32 tid;
	__u32 _pad;
};

/* What a ring buffer record is: its __u32 at offset 36 (pidcap_pkt_hdr.kind,
 * pidcap_tls_hdr.kind). ts_ns, cookie, tgid, cap_len and direction are at the
 * same offsets in both headers. */
#define PIDCAP_REC_PACKET 0
#define PIDCAP_REC_TLS 1

/* The library of a TLS record (pidcap_tls_hdr.library). */
#define PIDCAP_TLS_LIB_OPENSSL 0
#define PIDCAP_TLS_LIB_GNUTLS 1
#define PIDCAP_TLS_LIB_NSS 2

/* The most plaintext bytes one TLS record keeps (the engine's MAX_TLS_BYTES:
 * what fits in a synthesized IPv6 + TCP packet). */
#define PIDCAP_MAX_TLS_BYTES 65475

/* Header of a TLS plaintext record: the plaintext (cap_len bytes) follows.
 * Addresses are those of the socket the call used (IPv4 as ::ffff:a.b.c.d,
 * network byte order); family 0 when no socket is known. */
struct pidcap_tls_hdr {
	__u64 ts_ns;  /* bpf_ktime_get_ns(), as packets */
	__u64 cookie; /* socket cookie; 0: not known */
	__u32 tgid;
	__u32 tid;
	__u32 cap_len;
	__u8 library; /* PIDCAP_TLS_LIB_* */
	__u8 family;  /* AF_INET, AF_INET6, 0 */
	__u16 _pad0;
	__u8 direction; /* PIDCAP_DIR_* */
	__u8 _pad1[3];
	__u32 kind; /* PIDCAP_REC_TLS */
	char comm[PIDCAP_COMM_LEN];
	__u64 true_len; /* bytes the call carried */
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport; /* host byte order */
	__u16 rport;
	__u32 _pad2;
};

#endif /* PIDCAP_ABI_H */
