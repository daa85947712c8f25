/* SPDX-License-Identifier: GPL-2.0 */
/*
 * TLS plaintext (included by pidcap.bpf.c, which defines the maps, the
 * target check and the counters used here).
 *
 *  - pidcap_tls_ent (uprobe) on the TLS library's application-data calls:
 *    OpenSSL SSL_write/SSL_write_ex/SSL_read/SSL_read_ex, GnuTLS
 *    gnutls_record_send/gnutls_record_recv, NSPR PR_Write/PR_Read/PR_Send/
 *    PR_Recv. One program for all of them: the attach cookie says which
 *    library, which direction, and the calling convention. Attached to each
 *    library file system-wide: the first thing it does is the target check,
 *    so a process that is not a target pays one hash lookup. A target's call
 *    is remembered per thread in tls_calls (buffer, length pointer, the
 *    library's connection pointer).
 *  - pidcap_sys_enter (raw tracepoint on sys_enter, write/read families): a
 *    thread inside a remembered call that uses a socket fd records that
 *    socket (cookie, addresses) into the call. One compare for every other
 *    syscall, one lookup for every other thread's write or read.
 *  - pidcap_tls_ret (uretprobe): when the call returns data (> 0 bytes), the
 *    plaintext goes into the ring as a pidcap_tls_hdr record, with the socket
 *    the call used, or the one last seen for the same connection pointer
 *    (tls_socks: a read served from the library's buffer makes no syscall).
 */

/* Bits of the attach cookie of pidcap_tls_ent / pidcap_tls_ret. */
#define TLS_COOKIE_LIB_MASK 0x3 /* PIDCAP_TLS_LIB_* */
#define TLS_COOKIE_OUT 0x4      /* a write (else a read) */
#define TLS_COOKIE_EX 0x8       /* OpenSSL _ex form: returns 1, length in *arg4 */
#define TLS_COOKIE_RET32 0x10   /* returns int (else ssize_t) */

/* The socket of a TLS connection as the syscall hooks read it. */
struct tls_sock {
	__u64 cookie;
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u8 family; /* 0: not known */
	__u8 _pad[3];
};

/* A target thread's call in progress (key: pid_tgid). */
struct tls_call {
	__u64 buf;
	__u64 len_ptr; /* _ex forms: size_t * of the bytes done */
	__u64 conn;    /* SSL *, gnutls_session_t, PRFileDesc * */
	__u64 cookie;  /* the attach cookie */
	struct tls_sock sock;
};

struct tls_conn_key {
	__u32 tgid;
	__u32 _pad;
	__u64 conn;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096); /* calls in progress: one per target thread */
	__type(key, __u64);
	__type(value, struct tls_call);
} tls_calls SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384); /* (LRU, preallocated: each entry costs start-up) */
	__type(key, struct tls_conn_key);
	__type(value, struct tls_sock);
} tls_socks SEC(".maps");

/* ---- the kernel structures read to find a socket from its fd (CO-RE) ---- */

typedef struct {
	__s64 counter;
} atomic64_t;

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

struct inode {
	unsigned short i_mode;
} __attribute__((preserve_access_index));

struct file {
	struct inode *f_inode;
	void *private_data;
} __attribute__((preserve_access_index));

struct sock_common {
	__be32 skc_daddr;
	__be32 skc_rcv_saddr;
	__be16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	atomic64_t skc_cookie;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

#define PIDCAP_S_IFMT 0170000
#define PIDCAP_S_IFSOCK 0140000
#define PIDCAP_AF_INET 2
#define PIDCAP_AF_INET6 10

/* Fill *s from the current task's fd, if it is an inet socket. */
static __always_inline int sock_of_fd(__u64 fd, struct tls_sock *s)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	if (!fdt)
		return -1;
	unsigned int max = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max)
		return -1;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return -1;
	unsigned short mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & PIDCAP_S_IFMT) != PIDCAP_S_IFSOCK)
		return -1;
	struct socket *so = BPF_CORE_READ(f, private_data);
	if (!so)
		return -1;
	struct sock *sk = BPF_CORE_READ(so, sk);
	if (!sk)
		return -1;
	unsigned short family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family == PIDCAP_AF_INET) {
		map_v4(s->laddr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
		map_v4(s->raddr, BPF_CORE_READ(sk, __sk_common.skc_daddr));
	} else if (family == PIDCAP_AF_INET6) {
		BPF_CORE_READ_INTO(&s->laddr, sk, __sk_common.skc_v6_rcv_saddr);
		BPF_CORE_READ_INTO(&s->raddr, sk, __sk_common.skc_v6_daddr);
	} else {
		return -1;
	}
	s->family = (__u8)family;
	s->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	s->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	s->cookie = (__u64)BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
	return 0;
}

/* ---- entry ---- */

SEC("uprobe")
int pidcap_tls_ent(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	/* Every caller on the machine gets here: one lookup for non-targets. */
	struct pidcap_target *t = bpf_map_lookup_elem(&targets, &tgid);
	if (!t)
		return 0;
	struct pidcap_config *cfg = get_config();
	if (!cfg || !cfg->tls || !cfg->capture)
		return 0;
	if (!same_process(t, task_key((struct task_struct *)bpf_get_current_task())))
		return 0;
	struct tls_call c = {};
	c.cookie = bpf_get_attach_cookie(ctx);
	c.conn = PT_REGS_PARM1(ctx);
	c.buf = PT_REGS_PARM2(ctx);
	if (c.cookie & TLS_COOKIE_EX)
		c.len_ptr = PT_REGS_PARM4(ctx);
	bpf_map_update_elem(&tls_calls, &id, &c, BPF_ANY);
	return 0;
}

/* ---- the socket a call uses ---- */

/*
 * One raw tracepoint on sys_enter, not the eight syscall tracepoints
 * (sys_enter_write, ...) as perf events: both put every task of the machine
 * on the syscall tracing path (TIF_SYSCALL_TRACEPOINT), so a bystander's
 * syscall pays the tracepoint call either way; here a syscall outside the
 * eight returns after one compare, where a perf event's syscall built a
 * trace record before the program ran. And a perf-event tracepoint's release
 * waits for an RCU grace period under the kernel's global event_mutex (70-80
 * ms each, one after the other: 0.6 s at the end of every `run` with TLS),
 * where a raw tracepoint link's does not wait; it needs no tracefs either.
 * The numbers are the build architecture's (asm/unistd.h): a 32-bit
 * process's compat syscalls have other numbers, and its TLS calls are not
 * read right by the uprobes either (their arguments are on the stack), so
 * 32-bit targets are not supported.
 */
SEC("raw_tracepoint/sys_enter")
int pidcap_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	int out;
	switch (ctx->args[1]) {
	case __NR_write:
	case __NR_writev:
	case __NR_sendto:
	case __NR_sendmsg:
		out = 1;
		break;
	case __NR_read:
	case __NR_readv:
	case __NR_recvfrom:
	case __NR_recvmsg:
		out = 0;
		break;
	default:
		return 0;
	}
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *c = bpf_map_lookup_elem(&tls_calls, &id);
	if (!c)
		return 0;
	if (!(c->cookie & TLS_COOKIE_OUT) != !out)
		return 0; /* a read inside a write call (or the reverse): not the data's way */
	/* The first argument as the syscall got it: the user registers saved at
	 * entry (a kernel pointer, so read, not dereferenced; the uapi layout of
	 * the first argument's register is the kernel's). */
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	__u64 fd = 0;
	if (bpf_probe_read_kernel(&fd, sizeof(fd), &PT_REGS_PARM1(regs)))
		return 0;
	struct tls_sock s = {};
	if (sock_of_fd(fd, &s))
		return 0;
	c->sock = s;
	return 0;
}

/* ---- return: the record ---- */

static __always_inline int emit_tls_class(const struct tls_call *c, __u32 tgid, __u32 tid, __u64 true_len,
					  __u64 len, const __u32 cap, __u32 wakeup_bytes)
{
	struct pidcap_tls_hdr *h = bpf_ringbuf_reserve(&ring, sizeof(*h) + cap, 0);
	if (!h) {
		count(PIDCAP_CNT_TLS_DROPPED);
		return 0;
	}
	if (len > cap)
		len = cap;
	if (len == 0 || bpf_probe_read_user((void *)(h + 1), len, (const void *)c->buf)) {
		count(PIDCAP_CNT_TLS_DROPPED);
		bpf_ringbuf_discard(h, BPF_RB_NO_WAKEUP);
		return 0;
	}
	h->ts_ns = bpf_ktime_get_ns();
	h->cookie = c->sock.cookie;
	h->tgid = tgid;
	h->tid = tid;
	h->cap_len = (__u32)len;
	h->library = (__u8)(c->cookie & TLS_COOKIE_LIB_MASK);
	h->family = c->sock.family;
	h->_pad0 = 0;
	h->direction = (c->cookie & TLS_COOKIE_OUT) ? PIDCAP_DIR_OUT : PIDCAP_DIR_IN;
	h->_pad1[0] = 0;
	h->_pad1[1] = 0;
	h->_pad1[2] = 0;
	h->kind = PIDCAP_REC_TLS;
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	h->true_len = true_len;
	__builtin_memcpy(h->laddr, c->sock.laddr, 16);
	__builtin_memcpy(h->raddr, c->sock.raddr, 16);
	h->lport = c->sock.lport;
	h->rport = c->sock.rport;
	h->_pad2 = 0;
	__u64 pending = bpf_ringbuf_query(&ring, BPF_RB_AVAIL_DATA);
	__u64 rec = sizeof(*h) + cap + 8;
	int crossing = pending >= wakeup_bytes && pending < (__u64)wakeup_bytes + rec;
	bpf_ringbuf_submit(h, crossing ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	count(PIDCAP_CNT_TLS_RECORDS);
	return 1;
}

SEC("uretprobe")
int pidcap_tls_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *cp = bpf_map_lookup_elem(&tls_calls, &id);
	if (!cp)
		return 0;
	struct tls_call c = *cp;
	bpf_map_delete_elem(&tls_calls, &id);

	__s64 ret = (__s64)PT_REGS_RC(ctx);
	if (c.cookie & TLS_COOKIE_RET32)
		ret = (__s32)ret;
	__u64 n;
	if (c.cookie & TLS_COOKIE_EX) {
		if (ret != 1 || !c.len_ptr)
			return 0;
		if (bpf_probe_read_user(&n, sizeof(n), (const void *)c.len_ptr))
			return 0;
	} else {
		if (ret <= 0)
			return 0; /* end of stream, an error, or "would block": not a record */
		n = (__u64)ret;
	}
	if (n == 0)
		return 0;

	/* The connection: the socket this call used, or the one last used by
	 * the same library connection (data served from the library's buffer). */
	__u32 tgid = id >> 32;
	struct tls_conn_key ck = { .tgid = tgid, .conn = c.conn };
	if (c.sock.family) {
		bpf_map_update_elem(&tls_socks, &ck, &c.sock, BPF_ANY);
	} else {
		struct tls_sock *known = bpf_map_lookup_elem(&tls_socks, &ck);
		if (known)
			c.sock = *known;
		else if ((c.cookie & TLS_COOKIE_LIB_MASK) == PIDCAP_TLS_LIB_NSS)
			return 0; /* PR_Read/PR_Write of a file, not of a connection */
	}

	struct pidcap_config *cfg = get_config();
	if (!cfg)
		return 0;
	__u64 len = n;
	__u64 snap = cfg->snaplen;
	__u32 wb = cfg->wakeup_bytes;
	if (len > snap)
		len = snap;
	if (len > PIDCAP_MAX_TLS_BYTES)
		len = PIDCAP_MAX_TLS_BYTES;
	__u32 tid = (__u32)id;
	if (len <= 128)
		emit_tls_class(&c, tgid, tid, n, len, 128, wb);
	else if (len <= 512)
		emit_tls_class(&c, tgid, tid, n, len, 512, wb);
	else if (len <= 1536)
		emit_tls_class(&c, tgid, tid, n, len, 1536, wb);
	else if (len <= 4096)
		emit_tls_class(&c, tgid, tid, n, len, 4096, wb);
	else if (len <= 16384)
		emit_tls_class(&c, tgid, tid, n, len, 16384, wb);
	else if (len <= 32768)
		emit_tls_class(&c, tgid, tid, n, len, 32768, wb);
	else
		emit_tls_class(&c, tgid, tid, n, len, PIDCAP_MAX_TLS_BYTES, wb);
	return 0;
}
