// SPDX-License-Identifier: GPL-2.0
/*
 * pidcap kernel layer: per-process packet capture and filtering with cgroup
 * eBPF programs attached to a cgroup: the cgroup2 root, or the cgroup the
 * targets live in (crates/ebpf/src/cgroup.rs); they see that subtree's sockets.
 *
 *  - Socket ownership (the part WFP's ALE layers play on Windows), recorded
 *    in process context where "current" is the socket's user, in the
 *    socket's own storage (sk_owners, BPF_MAP_TYPE_SK_STORAGE, freed with the
 *    socket, so a closed socket's FIN and ACKs still find it):
 *      cgroup/sock_create, cgroup/post_bind4/6, cgroup/connect4/6,
 *      cgroup/sendmsg4/6, cgroup/recvmsg4/6  -> sk_owners = {tgid, key, comm}
 *    Accepted TCP sockets are born in softirq, where "current" is whoever was
 *    interrupted; sockops PASSIVE_ESTABLISHED gives them the owner of their
 *    listening port instead (port_owners, filled at post_bind).
 *    cgroup/sock_release forgets a port's owner. Sockets that existed before
 *    the capture are seeded by userspace by cookie ("owners") and moved into
 *    their storage at their first packet.
 *  - Each socket's storage also caches whether its owner is a target, with
 *    the generation of the target set it was decided at ("gens": one word
 *    userspace bumps when it changes targets, names or cgroups, one the
 *    programs bump when they add a target). The fast path, the first thing
 *    every socket hook does: a socket whose verdict is current and negative
 *    (a bystander's) costs one storage lookup and a compare in the packet
 *    programs, and those plus "is its owner the caller" in the process-context
 *    ones (bystander_socket), before any counter, map or config read the
 *    bystander does not need. A socket older than the capture that has no
 *    known owner caches that too (pidcap_sk_owner.unowned).
 *  - Packets (the part of WFP's transport callouts): cgroup_skb/ingress and
 *    egress find the owner (storage, else the seeded cookie map, else the
 *    local port's owner), check it against "targets", evaluate the filter
 *    rules, push the packet into the "ring" ring buffer and return 0 (drop)
 *    for a blocked packet.
 *  - Target cgroups ("target_cgroups", by cgroup id): a process whose cgroup
 *    is one of them or below one becomes a target at its next socket
 *    operation in process context (match_cgroup), as a name match does.
 *  - raw_tracepoint/sched_process_fork makes the children of a target that
 *    asked for it targets too; raw_tracepoint/sched_process_exit marks a
 *    target whose last thread exited.
 *  - A process is named by its tgid AND a key that is never reused (the
 *    pidfs inode number of its pid, pidcap_target.key): owner records carry
 *    both, and a socket's packets belong to a target only when both match.
 *    A tgid is given to another process once the old one is gone; its
 *    stale entry in "targets" then matches nothing of the new process.
 *  - TLS plaintext (pidcap_tls.bpf.c): uprobes on the TLS libraries' read and
 *    write calls, syscall tracepoints that find the socket a call uses.
 *
 * Every outcome is counted in the per-CPU "counters" array (pidcap_abi.h).
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ptrace.h>
#include <asm/unistd.h> /* the syscall numbers of pidcap_sys_enter */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "pidcap_abi.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized by the loader */
} ring SEC(".maps");

/* Owners of sockets that existed before the capture (seeded by userspace
 * from sock_diag, by cookie): consulted only for a socket that has no
 * storage of its own yet, then moved into it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 14);
	__type(key, __u64);
	__type(value, struct pidcap_owner);
} owners SEC(".maps");

/* Every socket's owner, in the socket itself (freed with it). */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pidcap_sk_owner);
} sk_owners SEC(".maps");

/* The generations of the target set (PIDCAP_GEN_*). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} gens SEC(".maps");

/*
 * The plain hash maps are not preallocated (BPF_F_NO_PREALLOC: an element is
 * allocated from the kernel's per-CPU BPF allocator when it is added): a
 * preallocated map initializes every element when it is created, which was
 * a few milliseconds of every start-up for maps that hold a few entries, and
 * their memory. Lookups cost the same; additions happen on socket and target
 * changes, never per packet. (LRU maps are always preallocated.)
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct pidcap_port_key);
	__type(value, struct pidcap_port_owner);
} port_owners SEC(".maps");

/* The port a socket bound (cookie -> port key), so that sock_release, which
 * cannot read the port, can clear that socket's port_owners entry. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1 << 16);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct pidcap_port_key);
} bound_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u32);
	__type(value, struct pidcap_target);
} targets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, char[PIDCAP_COMM_LEN]);
	__type(value, struct pidcap_target);
} target_comms SEC(".maps");

/* Target cgroups: cgroup id -> level and flags (pidcap_abi.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, struct pidcap_cgroup_target);
} target_cgroups SEC(".maps");

/* Processes that use other processes' sockets on their behalf: pidcap itself,
 * resending through a target's duplicated socket (pidfd_getfd). Their use of a
 * socket does not make them its owner. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u32);
} injectors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct pidcap_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PIDCAP_MAX_RULES);
	__type(key, __u32);
	__type(value, struct pidcap_rule);
} rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PIDCAP_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		*v += 1; /* per-CPU: no atomics needed */
}

static __always_inline struct pidcap_config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config, &zero);
}

/* ---- who a process is: tgid and key ---- */

/* Only the fields read here; clang records CO-RE relocations for them and
 * the loader resolves their offsets against the running kernel's BTF. */
typedef struct {
	int counter;
} atomic_t;

struct pid {
	__u64 ino; /* pidfs inode number (6.9+) */
} __attribute__((preserve_access_index));

#define PIDTYPE_TGID 1
struct signal_struct {
	atomic_t live; /* threads that have not exited yet */
	struct pid *pids[4];
} __attribute__((preserve_access_index));

struct files_struct;
struct task_struct {
	int pid;
	int tgid;
	struct signal_struct *signal;
	struct files_struct *files;
	struct task_struct *group_leader;
	__u64 start_time;
} __attribute__((preserve_access_index));

/* The key of a task's process (pidcap_target.key): the pidfs inode number of
 * its thread group's pid, which is what fstat() of a pidfd of that process
 * gives userspace. For task pointers that are plain integers (raw
 * tracepoint arguments): read through bpf_probe_read_kernel. */
static __always_inline __u64 task_key(struct task_struct *task)
{
	if (!bpf_core_field_exists(struct pid, ino))
		return 0;
	return BPF_CORE_READ(task, signal, pids[PIDTYPE_TGID], ino);
}

/*
 * pidcap_current_key and pidcap_current_start load through the task's BTF pointer (no
 * probe_read helper call on the hooks' fast path). They are global
 * functions, not inlined: the verifier checks a global function once per
 * program, on its own, where an inlined copy was checked again on every path
 * through its caller, and each of these loads costs the verifier a search of
 * the kernel's whole BTF by name (btf_nested_type_is_trusted, linear in
 * 6.18): inlined, a quarter of pidcap's start-up CPU went there.
 */

/* The key of the current process (cgroup hooks run in the caller's context). */
__attribute__((noinline)) __u64 pidcap_current_key(void)
{
	if (!bpf_core_field_exists(struct pid, ino))
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	return task->signal->pids[PIDTYPE_TGID]->ino;
}

/* When the current process started (its thread-group leader's start_time,
 * CLOCK_MONOTONIC ns; exec keeps it, also when a thread other than the leader
 * execs). With the tgid it names the process as exactly as the key does: a
 * process given the tgid of an exited one started after it. Two loads from
 * the current task, where the key's chain reaches the pid's own struct. */
__attribute__((noinline)) __u64 pidcap_current_start(void)
{
	struct task_struct *task = bpf_get_current_task_btf();
	return task->group_leader->start_time;
}

/* Does target entry t stand for the process with this key? With a key, only
 * that process matches, alive or exited (its sockets' last packets are its
 * own). Without one (no pidfs), the entry matches its tgid until the
 * process exits. */
static __always_inline int same_process(const struct pidcap_target *t, __u64 key)
{
	if (t->key)
		return t->key == key;
	return !t->exited;
}

/* The generation of the target set, shifted as in pidcap_sk_owner.verdict
 * (bit 0 clear). Read BEFORE looking at the targets: a verdict stamped with
 * it was decided on a target set at least that new. Two array lookups, which
 * the verifier inlines. */
static __always_inline __u64 targets_gen(void)
{
	__u32 ku = PIDCAP_GEN_USER, kk = PIDCAP_GEN_KERNEL;
	__u32 *u = bpf_map_lookup_elem(&gens, &ku);
	__u32 *k = bpf_map_lookup_elem(&gens, &kk);
	if (!u || !k)
		return 0;
	__u64 g = (__u64)*(volatile __u32 *)u << 32 | *(volatile __u32 *)k;
	return g << 1;
}

/* The kernel changed the target set: every cached verdict is stale. */
static __always_inline void bump_gen(void)
{
	__u32 kk = PIDCAP_GEN_KERNEL;
	__u32 *k = bpf_map_lookup_elem(&gens, &kk);
	if (k)
		__sync_fetch_and_add(k, 1);
}

/* The target entry of process (tgid, key), if it is one. */
static __always_inline struct pidcap_target *target_of(__u32 tgid, __u64 key)
{
	struct pidcap_target *t = bpf_map_lookup_elem(&targets, &tgid);
	if (t && same_process(t, key))
		return t;
	return 0;
}

/* Make (tgid, key) a target with these flags unless it is one already. An
 * entry left by an exited process that had this tgid is replaced. Returns 1
 * when it added one. A global function, verified once per program (see
 * pidcap_current_key). */
__attribute__((noinline)) int add_target(__u32 tgid, __u64 key, __u32 flags)
{
	if (target_of(tgid, key))
		return 0;
	struct pidcap_target t = { .flags = flags, .exited = 0, .key = key };
	if (bpf_map_update_elem(&targets, &tgid, &t, BPF_ANY))
		return 0;
	bump_gen(); /* after the entry is there */
	return 1;
}

/* Decide again whether the socket's owner is a target, at generation gen
 * (read before this lookup). */
static __always_inline __u64 decide(struct pidcap_sk_owner *st, __u64 gen)
{
	__u64 v = gen | (target_of(st->owner.tgid, st->owner.key) != 0);
	st->verdict = v; /* one store: verdict and generation together */
	return v;
}

/* ---- target cgroups ---- */

/* Make the current process (tgid, key) a target if its cgroup is a target
 * cgroup or below one: for each level that holds a target cgroup
 * (config.cgroup_levels), the current task's ancestor at that level is
 * looked up by id (the ancestor at its own level is its cgroup; a level
 * deeper than its cgroup gives 0, which matches nothing). Only processes
 * in the cgroup's subtree can match: the ids are the kernel's, and the
 * cgroup is the task's own (bpf_get_current_ancestor_cgroup_id). Runs in
 * process context only (the sock and sock_addr hooks). Costs nothing while
 * there are no cgroup targets (one config load). Returns 1 when the process
 * is in a target cgroup. A global function (see pidcap_current_key): its
 * loop over the levels, inlined, multiplied the verifier's paths through
 * every hook that calls it (the process-context hooks: 76,000 instructions
 * processed in all -> 53,000 with this and add_target apart). */
__attribute__((noinline)) int match_cgroup(__u32 tgid, __u64 key)
{
	struct pidcap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u32 levels = *(volatile const __u32 *)&cfg->cgroup_levels;
	if (!levels)
		return 0;
	for (__u32 l = 0; l <= PIDCAP_MAX_CGROUP_LEVEL; l++) {
		if (!(levels & (1u << l)))
			continue;
		__u64 id = bpf_get_current_ancestor_cgroup_id(l);
		if (!id)
			return 0; /* the process's cgroup is above this level: nothing deeper either */
		struct pidcap_cgroup_target *t = bpf_map_lookup_elem(&target_cgroups, &id);
		if (!t)
			continue; /* (an id names one cgroup: no need to compare levels) */
		if (bpf_map_lookup_elem(&injectors, &tgid))
			return 0; /* pidcap itself, inside the cgroup it captures */
		add_target(tgid, key, t->flags); /* (nothing to do if it is one already) */
		return 1;
	}
	return 0;
}

/* ---- socket ownership, in process context ---- */

/* The port userspace seeded for a socket older than the capture (by cookie),
 * moved into the socket's storage: sock_release then clears its port_owners
 * entry from there, as for a socket of this capture. */
static __always_inline void take_seeded_port(struct pidcap_sk_owner *st, __u64 cookie)
{
	struct pidcap_port_key *bp = bpf_map_lookup_elem(&bound_ports, &cookie);
	if (bp) {
		st->port.port = bp->port;
		st->port.proto = bp->proto;
		st->bound = 1;
		bpf_map_delete_elem(&bound_ports, &cookie);
	}
}

/* Record the current process as the owner of socket sk (a pointer the
 * program may hand to bpf_sk_storage_get) in the socket's storage; returns
 * the storage (0: it could not be had), with a verdict of the current
 * generation when the owner is set. *keyp gets the current process's key.
 * ctx is the program's context, for the socket's cookie (a socket older than
 * the capture may have entries seeded by cookie); 0 for a socket being
 * created (nothing can be seeded for it). */
static __always_inline struct pidcap_sk_owner *remember_owner(struct bpf_sock *sk, void *ctx, __u64 *keyp)
{
	__u64 pt = bpf_get_current_pid_tgid();
	__u32 tgid = pt >> 32;
	__u32 tid = (__u32)pt;
	__u64 key = pidcap_current_key();
	*keyp = key;
	/* Before the hot path: a process that moved into a target cgroup is
	 * taken at its next socket operation, also on a socket it already owns. */
	match_cgroup(tgid, key);
	__u64 gen = targets_gen();
	struct pidcap_sk_owner *st = bpf_sk_storage_get(&sk_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(PIDCAP_CNT_OWNER_FULL);
		return 0;
	}
	if (st->valid && st->owner.tgid == tgid && st->owner.key == key) {
		/* hot path of sendmsg: nothing changed, or only the thread */
		st->start = pidcap_current_start(); /* (0 for an owner given by sockops or seeding) */
		if (st->owner.tid != tid) {
			st->owner.tid = tid;
			bpf_get_current_comm(st->owner.comm, sizeof(st->owner.comm));
		}
		if ((st->verdict & ~1ULL) != gen)
			decide(st, gen);
		return st;
	}
	if (bpf_map_lookup_elem(&injectors, &tgid))
		return st; /* pidcap resending on a target's socket: the owner stays */

	/* A new owner, or a process that was given the tgid of the old one (a
	 * socket inherited from it): either way the socket is this process's now. */
	char comm[PIDCAP_COMM_LEN];
	bpf_get_current_comm(comm, sizeof(comm));
	/* A process whose name is a target becomes a target itself. */
	struct pidcap_target *by_comm = bpf_map_lookup_elem(&target_comms, comm);
	if (by_comm && add_target(tgid, key, by_comm->flags))
		gen = targets_gen();
	if (ctx && !st->valid) {
		/* A socket older than the capture whose first operation in process
		 * context comes before its first packet: its seeded entries move
		 * into its storage, as handle_skb_slow moves them at a first
		 * packet. Left in the maps they outlived the socket, and its
		 * port_owners entry too (sock_release reads the port of a socket
		 * with an owner from its storage). */
		__u64 cookie = bpf_get_socket_cookie(ctx);
		bpf_map_delete_elem(&owners, &cookie);
		take_seeded_port(st, cookie);
	}
	st->owner.tgid = tgid;
	st->owner.tid = tid;
	st->owner.key = key;
	st->start = pidcap_current_start();
	__builtin_memcpy(st->owner.comm, comm, PIDCAP_COMM_LEN);
	st->valid = 1;
	decide(st, gen);
	return st;
}

/* Is the current process (tgid from pt, key) a target? From the socket's
 * verdict when the process is the socket's owner, else from the map. */
static __always_inline int current_is_target(struct pidcap_sk_owner *st, __u32 tgid, __u64 key)
{
	if (st && st->valid && st->owner.tgid == tgid && st->owner.key == key)
		return st->verdict & 1;
	return target_of(tgid, key) != 0;
}

/* The fast path of a socket operation in process context: the socket's
 * storage says, at the current generation, that its owner is no target, that
 * owner is the caller (tgid and start time, recorded with the owner by
 * remember_owner: a socket handed to another process, or kept by a process
 * given the old owner's tgid, takes the full path and changes hands there), and there are no target cgroups the caller could have
 * moved into since. Returns the storage then (its thread brought up to date,
 * as remember_owner does), else 0: the caller takes the full path. */
static __always_inline struct pidcap_sk_owner *bystander_socket(struct bpf_sock *sk)
{
	struct pidcap_sk_owner *st = bpf_sk_storage_get(&sk_owners, sk, 0, 0);
	if (!st || st->verdict != targets_gen() || !st->valid)
		return 0;
	__u64 pt = bpf_get_current_pid_tgid();
	if (st->owner.tgid != (__u32)(pt >> 32) || !st->start || st->start != pidcap_current_start())
		return 0;
	struct pidcap_config *cfg = get_config();
	if (!cfg || *(volatile const __u32 *)&cfg->cgroup_levels)
		return 0;
	if (st->owner.tid != (__u32)pt) {
		st->owner.tid = (__u32)pt;
		bpf_get_current_comm(st->owner.comm, sizeof(st->owner.comm));
	}
	return st;
}

/* (A new socket has no storage yet: no fast path to try.) */
SEC("cgroup/sock_create")
int pidcap_sock_create(struct bpf_sock *sk)
{
	__u64 key;
	remember_owner(sk, 0, &key);
	return 1;
}

/* Every bound port gets its owner's entry in port_owners, a bystander's too:
 * its accepted connections (sockops) and request sockets find their owner
 * there, also once that process becomes a target in the kernel (a name,
 * a cgroup). */
static __always_inline void remember_port(struct bpf_sock *sk)
{
	__u64 key;
	struct pidcap_sk_owner *st = bystander_socket(sk);
	if (!st)
		st = remember_owner(sk, sk, &key);
	if (!st || !st->valid)
		return;
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct pidcap_port_key k = { .port = (__u16)sk->src_port, .proto = (__u8)sk->protocol };
	struct pidcap_port_owner po = { .owner = st->owner, .cookie = cookie };
	bpf_map_update_elem(&port_owners, &k, &po, BPF_ANY);
	st->port.port = k.port;
	st->port.proto = k.proto;
	st->bound = 1;
}

SEC("cgroup/post_bind4")
int pidcap_post_bind4(struct bpf_sock *sk)
{
	remember_port(sk);
	return 1;
}

SEC("cgroup/post_bind6")
int pidcap_post_bind6(struct bpf_sock *sk)
{
	remember_port(sk);
	return 1;
}

SEC("cgroup/sock_release")
int pidcap_sock_release(struct bpf_sock *sk)
{
	struct pidcap_port_key key = {};
	__u64 cookie;
	struct pidcap_sk_owner *st = bpf_sk_storage_get(&sk_owners, sk, 0, 0);
	if (st && st->valid) {
		/* A socket with an owner: its storage says what it bound. */
		if (!st->bound)
			return 1;
		key.port = st->port.port;
		key.proto = st->port.proto;
		cookie = bpf_get_socket_cookie(sk);
	} else {
		/* One that existed before (seeded by userspace, by cookie), with no
		 * storage or with no owner in it yet (unowned). */
		cookie = bpf_get_socket_cookie(sk);
		struct pidcap_port_key *k = bpf_map_lookup_elem(&bound_ports, &cookie);
		if (!k)
			return 1;
		key = *k;
		bpf_map_delete_elem(&bound_ports, &cookie);
	}
	struct pidcap_port_owner *po = bpf_map_lookup_elem(&port_owners, &key);
	if (po && po->cookie == cookie)
		bpf_map_delete_elem(&port_owners, &key);
	return 1;
}

/* Accepted TCP connections: owned by whoever owns the listening port. */
SEC("sockops")
int pidcap_sockops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	struct pidcap_port_key k = { .port = (__u16)skops->local_port, .proto = IPPROTO_TCP };
	struct pidcap_port_owner *po = bpf_map_lookup_elem(&port_owners, &k);
	if (!po)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	__u64 gen = targets_gen();
	struct pidcap_sk_owner *st = bpf_sk_storage_get(&sk_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(PIDCAP_CNT_OWNER_FULL);
		return 1;
	}
	st->owner = po->owner;
	st->valid = 1;
	decide(st, gen);
	return 1;
}

/* ---- the flow of a packet and the filter rules ---- */

struct flow {
	__u8 laddr[16]; /* IPv4 as ::ffff:a.b.c.d */
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 proto;
	__u8 dir;
};

static __always_inline void map_v4(__u8 *dst, __u32 addr_be)
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, &addr_be, 4);
}

static __always_inline int prefix_match(const __u8 *a, const __u8 *b, __u32 prefix)
{
	if (prefix > 128)
		prefix = 128;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		__u32 bits = i * 8;
		if (bits >= prefix)
			return 1;
		__u8 mask = 0xff;
		if (prefix - bits < 8)
			mask = (__u8)(0xff << (8 - (prefix - bits)));
		if ((a[i] ^ b[i]) & mask)
			return 0;
	}
	return 1;
}

static __always_inline int rule_matches(const struct pidcap_rule *r, const struct flow *f)
{
	if (!(r->flags & PIDCAP_RULE_ENABLED))
		return 0;
	if (f->dir == PIDCAP_DIR_IN && !(r->flags & PIDCAP_RULE_DIR_IN))
		return 0;
	if (f->dir == PIDCAP_DIR_OUT && !(r->flags & PIDCAP_RULE_DIR_OUT))
		return 0;
	if (r->proto && r->proto != f->proto)
		return 0;
	if (r->port) {
		int local = (r->flags & PIDCAP_RULE_PORT_LOCAL) && r->port == f->lport;
		int remote = (r->flags & PIDCAP_RULE_PORT_REMOTE) && r->port == f->rport;
		if (!local && !remote)
			return 0;
	}
	if ((r->flags & PIDCAP_RULE_HAS_ADDR) && !prefix_match(r->addr, f->raddr, r->prefix))
		return 0;
	return 1;
}

struct rule_ctx {
	const struct flow *f;
	__u32 base;
	__u32 n;
	__u32 verdict;
	__u32 rule;
};

static long rule_step(__u32 i, void *data)
{
	struct rule_ctx *c = data;
	if (i >= c->n)
		return 1;
	__u32 slot = c->base + i;
	struct pidcap_rule *r = bpf_map_lookup_elem(&rules, &slot);
	if (!r)
		return 1;
	if (!rule_matches(r, c->f))
		return 0;
	__sync_fetch_and_add(&r->hits, 1);
	c->verdict = (r->flags & PIDCAP_RULE_BLOCK) ? PIDCAP_VERDICT_BLOCKED : PIDCAP_VERDICT_PASS;
	c->rule = i; /* the index in the list, not the slot */
	return 1; /* first match decides */
}

/* The active rule list, read once (one 32-bit load: see pidcap_config.ruleset). */
static __always_inline __u32 ruleset(const struct pidcap_config *cfg)
{
	return cfg ? *(volatile const __u32 *)&cfg->ruleset : 0;
}

/* Evaluate the rules in order; no match = pass. Sets *rule to the deciding rule. */
static __always_inline __u32 evaluate(const struct flow *f, __u16 *rule)
{
	__u32 rs = ruleset(get_config());
	struct rule_ctx c = {
		.f = f,
		.base = rs >> PIDCAP_RULESET_BASE_SHIFT,
		.n = rs & PIDCAP_RULESET_COUNT_MASK,
		.verdict = PIDCAP_VERDICT_PASS,
		.rule = PIDCAP_NO_RULE,
	};
	*rule = PIDCAP_NO_RULE;
	if (c.n == 0)
		return PIDCAP_VERDICT_PASS;
	bpf_loop(PIDCAP_RULES_PER_BANK, rule_step, &c, 0);
	*rule = (__u16)c.rule;
	return c.verdict;
}

/* Parse the IP and transport headers of a packet (skb data starts at IP).
 * A global function (see pidcap_current_key): the verifier walks it once per
 * program instead of at each of its two call sites in every path of the
 * packet hooks (cgroup_skb: 8,700 -> 7,900 instructions processed). Only the
 * slow path calls it (no owner known, or rules on). */
__attribute__((noinline)) int parse_flow(struct __sk_buff *skb, __u32 dir, struct flow *f)
{
	__u8 first;
	if (!f)
		return -1;
	__u32 l4off;
	__u16 ports[2] = {0, 0};
	__u8 src[16], dst[16];

	if (bpf_skb_load_bytes(skb, 0, &first, 1))
		return -1;
	if ((first >> 4) == 4) {
		__u8 h[20];
		if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
			return -1;
		__u32 s, d;
		__builtin_memcpy(&s, h + 12, 4);
		__builtin_memcpy(&d, h + 16, 4);
		map_v4(src, s);
		map_v4(dst, d);
		f->proto = h[9];
		l4off = (h[0] & 0xf) * 4;
		/* Non-first fragments carry no ports. */
		if ((((__u16)h[6] & 0x1f) << 8 | h[7]) != 0)
			f->proto = f->proto; /* keep the protocol, ports stay 0 */
		else if (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP)
			bpf_skb_load_bytes(skb, l4off, ports, 4);
	} else if ((first >> 4) == 6) {
		__u8 h[40];
		if (bpf_skb_load_bytes(skb, 0, h, sizeof(h)))
			return -1;
		__builtin_memcpy(src, h + 8, 16);
		__builtin_memcpy(dst, h + 24, 16);
		f->proto = h[6];
		if (f->proto == IPPROTO_TCP || f->proto == IPPROTO_UDP)
			bpf_skb_load_bytes(skb, 40, ports, 4);
	} else {
		return -1;
	}
	f->dir = (__u8)dir;
	if (dir == PIDCAP_DIR_OUT) {
		__builtin_memcpy(f->laddr, src, 16);
		__builtin_memcpy(f->raddr, dst, 16);
		f->lport = bpf_ntohs(ports[0]);
		f->rport = bpf_ntohs(ports[1]);
	} else {
		__builtin_memcpy(f->laddr, dst, 16);
		__builtin_memcpy(f->raddr, src, 16);
		f->lport = bpf_ntohs(ports[1]);
		f->rport = bpf_ntohs(ports[0]);
	}
	return 0;
}

/* ---- pushing a packet into the ring buffer ---- */

/*
 * bpf_ringbuf_reserve() needs a constant size, so records come in size
 * classes: the smallest class that holds the captured bytes is reserved and
 * the bytes are read straight into it (one copy, no per-CPU scratch buffer,
 * and snap lengths up to 64 KiB, the size of a loopback GSO packet).
 */
static __always_inline int emit_class(struct __sk_buff *skb, const struct pidcap_owner *o, __u64 cookie,
				      __u8 dir, __u32 verdict, __u16 rule, __u64 len, const __u32 cap,
				      __u32 wakeup_bytes)
{
	struct pidcap_pkt_hdr *h = bpf_ringbuf_reserve(&ring, sizeof(*h) + cap, 0);
	if (!h) {
		count(PIDCAP_CNT_RING_FULL);
		return 0;
	}
	h->ts_ns = bpf_ktime_get_ns();
	h->cookie = cookie;
	h->tgid = o->tgid;
	h->orig_len = skb->len;
	h->ifindex = skb->ifindex;
	h->direction = dir;
	h->verdict = (__u8)verdict;
	h->rule = rule;
	h->kind = PIDCAP_REC_PACKET;
	__builtin_memcpy(h->comm, o->comm, PIDCAP_COMM_LEN);
	h->tid = o->tid;
	h->_pad = 0;
	if (len > cap)
		len = cap;
	if (len == 0 || bpf_skb_load_bytes(skb, 0, (void *)(h + 1), len)) {
		count(PIDCAP_CNT_LOAD_FAILED);
		bpf_ringbuf_discard(h, BPF_RB_NO_WAKEUP);
		return 0;
	}
	h->cap_len = (__u32)len;
	/* Wake the consumer only when this record takes the pending data across
	 * the threshold: it also drains on a short timer. A wakeup per record
	 * costs more than the capture, and once the consumer lags, "pending >=
	 * threshold" would be true for every record (an IPI per packet). */
	__u64 pending = bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA);
	__u64 rec = sizeof(*h) + cap + 8; /* + the ring's own record header */
	int crossing = pending >= wakeup_bytes && pending < (__u64)wakeup_bytes + rec;
	bpf_ringbuf_submit(h, crossing ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	count(PIDCAP_CNT_CAPTURED);
	return 1;
}

static __always_inline void emit(struct __sk_buff *skb, const struct pidcap_owner *o, __u64 cookie, __u8 dir,
				 __u32 verdict, __u16 rule, const struct pidcap_config *cfg)
{
	__u64 len = skb->len;
	__u64 snap = cfg->snaplen;
	__u32 wb = cfg->wakeup_bytes;
	if (len > snap)
		len = snap;
	if (len <= 128)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 128, wb);
	else if (len <= 256)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 256, wb);
	else if (len <= 512)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 512, wb);
	else if (len <= 1024)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 1024, wb);
	else if (len <= 1536)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 1536, wb);
	else if (len <= 2048)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 2048, wb);
	else if (len <= 4096)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 4096, wb);
	else if (len <= 9216)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 9216, wb);
	else if (len <= 16384)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 16384, wb);
	else if (len <= 32768)
		emit_class(skb, o, cookie, dir, verdict, rule, len, 32768, wb);
	else
		emit_class(skb, o, cookie, dir, verdict, rule, len, PIDCAP_MAX_SNAPLEN + 1, wb);
}

/* A packet whose socket has no recorded owner (a SYN-ACK sent from a request
 * socket, the handshake's last ACK) belongs to whoever owns its local port. */
static __always_inline struct pidcap_owner *owner_by_port(const struct flow *f)
{
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP)
		return 0;
	struct pidcap_port_key k = { .port = f->lport, .proto = f->proto };
	struct pidcap_port_owner *po = bpf_map_lookup_elem(&port_owners, &k);
	if (!po)
		return 0;
	return &po->owner;
}

/*
 * The owner of a packet's socket, and whether it is a target's, when the fast
 * path (handle_skb) could not tell:
 *  1. its storage with an older verdict: decided again, and cached;
 *  2. a socket with no owner in its storage that existed before the capture:
 *     its seeded owner (by cookie), moved into its storage;
 *  3. no full socket (a request socket's SYN-ACK, a timewait socket's last
 *     ACK, a reset) or no known owner: the owner of the local port;
 *  4. none: a full socket caches that it has no known owner (unowned) at
 *     generation gen, read by handle_skb before the lookups (userspace bumps it after
 *     seeding a new target's sockets, so a seeded owner is found then).
 */
static __always_inline int handle_skb_slow(struct __sk_buff *skb, __u8 dir, struct bpf_sock *sk,
					   struct pidcap_sk_owner *st, __u64 gen)
{
	struct flow f = {};
	int parsed = -1;
	struct pidcap_owner *o = 0;
	if (st && st->valid) {
		__u64 v = st->verdict;
		if ((v & ~1ULL) != gen)
			v = decide(st, gen);
		if (!(v & 1))
			return 1; /* not a target's */
		o = &st->owner;
	}
	__u64 cookie = bpf_get_socket_cookie(skb);
	if (!o) {
		struct pidcap_owner *seeded = bpf_map_lookup_elem(&owners, &cookie);
		if (seeded && sk) {
			st = bpf_sk_storage_get(&sk_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
			if (st) {
				st->owner = *seeded;
				take_seeded_port(st, cookie);
				st->valid = 1;
				bpf_map_delete_elem(&owners, &cookie);
				if (!(decide(st, gen) & 1))
					return 1;
				o = &st->owner;
			} else {
				o = seeded;
			}
		} else if (seeded) {
			o = seeded;
		}
		if (!o) {
			parsed = parse_flow(skb, dir, &f);
			if (parsed == 0)
				o = owner_by_port(&f);
			if (!o) {
				count(PIDCAP_CNT_UNATTRIBUTED);
				/* (NULL for a socket that is not a full one) */
				if (!st && sk)
					st = bpf_sk_storage_get(&sk_owners, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
				if (st && !st->valid)
					st->unowned = gen;
				return 1;
			}
			st = 0; /* the port's owner, not the socket's */
		}
		if (!st && !target_of(o->tgid, o->key))
			return 1;
	}
	count(PIDCAP_CNT_TARGET);
	/* Egress in a thread of the owner (a send in process context, not
	 * softirq): that thread is the sender, and the socket's last sender
	 * for the packets that come in (the socket's own owner only: a port
	 * owner's entry is the listener's). */
	if (dir == PIDCAP_DIR_OUT && st) {
		__u64 pt = bpf_get_current_pid_tgid();
		if ((__u32)(pt >> 32) == o->tgid && (__u32)pt != o->tid) {
			o->tid = (__u32)pt;
			bpf_get_current_comm(o->comm, sizeof(o->comm));
		}
	}
	/* From here on one kind of pointer, whichever map the owner came from:
	 * the verifier then walks the rest (rules, the size classes) once
	 * instead of once per kind (4x the verification time otherwise). */
	struct pidcap_owner own = *o;

	struct pidcap_config *cfg = get_config();
	if (!cfg)
		return 1;
	__u16 rule = PIDCAP_NO_RULE;
	__u32 verdict = PIDCAP_VERDICT_PASS;
	if (ruleset(cfg) & PIDCAP_RULESET_COUNT_MASK) {
		if (parsed != 0)
			parsed = parse_flow(skb, dir, &f);
		if (parsed == 0)
			verdict = evaluate(&f, &rule);
	}
	if (cfg->capture)
		emit(skb, &own, cookie, dir, verdict, rule, cfg);
	if (verdict == PIDCAP_VERDICT_BLOCKED) {
		count(PIDCAP_CNT_BLOCKED);
		return 0;
	}
	return 1;
}

/*
 * Every packet of every process: first the fast path, a full socket whose
 * storage holds a verdict of the current generation that its owner is no
 * target, or that it has no known owner: one storage lookup, a compare and
 * the "seen" counter (the system-wide counts of `-v`). Everything else in
 * handle_skb_slow. bpf_sk_storage_get takes the socket as skb->sk gives it
 * and answers NULL for one that is not a full socket: no bpf_sk_fullsock.
 */
static __always_inline int handle_skb(struct __sk_buff *skb, __u8 dir)
{
	struct pidcap_sk_owner *st = 0;
	struct bpf_sock *sk = skb->sk;
	/* Read once, before any lookup (the slow path's too: see its step 4). */
	__u64 gen = targets_gen();
	if (sk) {
		st = bpf_sk_storage_get(&sk_owners, sk, 0, 0);
		if (st) {
			if (st->verdict == gen) { /* bit 0 clear: not a target's */
				count(PIDCAP_CNT_SEEN);
				return 1;
			}
			if (st->unowned == gen && !st->valid) {
				count(PIDCAP_CNT_SEEN);
				count(PIDCAP_CNT_UNATTRIBUTED);
				return 1;
			}
		}
	}
	count(PIDCAP_CNT_SEEN);
	return handle_skb_slow(skb, dir, sk, st, gen);
}

SEC("cgroup_skb/ingress")
int pidcap_ingress(struct __sk_buff *skb)
{
	return handle_skb(skb, PIDCAP_DIR_IN);
}

SEC("cgroup_skb/egress")
int pidcap_egress(struct __sk_buff *skb)
{
	return handle_skb(skb, PIDCAP_DIR_OUT);
}

/* ---- connect() and sendmsg(): ownership, and an immediate EPERM for blocked flows ---- */

static __always_inline int sock_addr_check(struct bpf_sock_addr *ctx, int v6)
{
	__u64 key = 0;
	struct pidcap_sk_owner *st = 0;
	struct bpf_sock *sk = ctx->sk;
	if (sk && bystander_socket(sk))
		return 1; /* the fast path: a bystander's socket */
	if (sk)
		st = remember_owner(sk, ctx, &key);
	else
		key = pidcap_current_key();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (!current_is_target(st, tgid, key))
		return 1;
	struct pidcap_config *cfg = get_config();
	if (!(ruleset(cfg) & PIDCAP_RULESET_COUNT_MASK))
		return 1;
	struct flow f = { .dir = PIDCAP_DIR_OUT, .proto = (__u8)ctx->protocol };
	if (v6) {
		__u32 a[4];
		a[0] = ctx->user_ip6[0];
		a[1] = ctx->user_ip6[1];
		a[2] = ctx->user_ip6[2];
		a[3] = ctx->user_ip6[3];
		__builtin_memcpy(f.raddr, a, 16);
	} else {
		map_v4(f.raddr, ctx->user_ip4);
	}
	f.rport = bpf_ntohs((__u16)ctx->user_port);
	__u16 rule;
	if (evaluate(&f, &rule) == PIDCAP_VERDICT_BLOCKED) {
		count(PIDCAP_CNT_CONNECT_BLOCKED);
		return 0; /* EPERM to the caller */
	}
	return 1;
}

SEC("cgroup/connect4")
int pidcap_connect4(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, 0); }

SEC("cgroup/connect6")
int pidcap_connect6(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, 1); }

SEC("cgroup/sendmsg4")
int pidcap_sendmsg4(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, 0); }

SEC("cgroup/sendmsg6")
int pidcap_sendmsg6(struct bpf_sock_addr *ctx) { return sock_addr_check(ctx, 1); }

static __always_inline void sock_addr_owner(struct bpf_sock_addr *ctx)
{
	__u64 key;
	struct bpf_sock *sk = ctx->sk;
	if (sk && !bystander_socket(sk))
		remember_owner(sk, ctx, &key);
}

SEC("cgroup/recvmsg4")
int pidcap_recvmsg4(struct bpf_sock_addr *ctx)
{
	sock_addr_owner(ctx);
	return 1;
}

SEC("cgroup/recvmsg6")
int pidcap_recvmsg6(struct bpf_sock_addr *ctx)
{
	sock_addr_owner(ctx);
	return 1;
}

/* ---- following children, and exits ---- */

/* Runs in the parent before the child first runs (so before it can exit). */
SEC("raw_tracepoint/sched_process_fork")
int pidcap_fork(struct bpf_raw_tracepoint_args *ctx)
{
	/* The parent is current (kernel_clone traces it before waking the
	 * child): its tgid without a read of the task. */
	__u32 ptgid = bpf_get_current_pid_tgid() >> 32;
	struct task_struct *parent = (struct task_struct *)ctx->args[0];
	struct task_struct *child = (struct task_struct *)ctx->args[1];
	__u32 ctgid = BPF_CORE_READ(child, tgid);
	if (ptgid == ctgid)
		return 0; /* a new thread, not a new process: no lookup */
	struct pidcap_target *t = bpf_map_lookup_elem(&targets, &ptgid);
	if (!t || !(t->flags & PIDCAP_TARGET_FOLLOW_CHILDREN))
		return 0;
	if (!same_process(t, task_key(parent)))
		return 0; /* the entry of an exited process that had this tgid */
	if (add_target(ctgid, task_key(child), t->flags))
		count(PIDCAP_CNT_FORKED);
	return 0;
}

/*
 * Every thread's exit, on the whole machine: the lookup is all most of them
 * cost. When the last thread of a target's process exits (signal->live has
 * dropped to 0: do_exit decrements it before this tracepoint), the entry is
 * marked exited, before the process can be reaped and its tgid given to
 * another one. Userspace removes marked entries; until then they only match
 * the exited process's own sockets (their FINs, sent as exit closes them).
 */
SEC("raw_tracepoint/sched_process_exit")
int pidcap_exit(struct bpf_raw_tracepoint_args *ctx)
{
	/* do_exit runs in the exiting task: it is current. */
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pidcap_target *t = bpf_map_lookup_elem(&targets, &tgid);
	if (!t)
		return 0;
	struct task_struct *task = (struct task_struct *)ctx->args[0];
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0; /* other threads of the process still run */
	if (t->key && t->key != task_key(task))
		return 0; /* not this process's entry (cannot happen while it holds the tgid) */
	t->exited = 1;
	if (!t->key)
		bump_gen(); /* without a key, an exited entry matches no socket any more */
	return 0;
}

#include "pidcap_tls.bpf.c"
