//! The per-packet process comment (pcapng `opt_comment`) and its parser.
//!
//! # Grammar
//!
//! ```text
//! comment = "pid=" u32 " comm=" text
//!           [" tid=" u32] [" thread=" text]                      ; the thread (per packet)
//!           [" exe=" text] [" cmdline=" text *(" " text)]        ; the process (when pidcap read it)
//!           [" ppid=" u32] [" pcomm=" text] [" uid=" u32] [" user=" text]
//!           [" cgroup=" text] [" container=" text ":" text]
//!           " cookie=" u64 " verdict=" ("pass" | "blocked") [" rule=" u16]
//!           [" tls=" library " offset=" u32]                     ; TLS plaintext records only
//! text    = *( safe-byte | "\x" hex hex )
//! safe-byte = A-Z / a-z / 0-9 / "." / "_" / ":" / "/" / "+" / "-"
//! ```
//!
//! Example: `pid=4242 comm=curl tid=4243 thread=curl exe=/usr/bin/curl cmdline=curl -s http://x/a\x20b
//! ppid=4200 pcomm=sh uid=1000 user=alice cgroup=/user.slice/user-1000.slice container=docker:0123...
//! cookie=8812 verdict=blocked rule=3` (one line).
//!
//! Every byte of a text value outside the safe set, including the space,
//! `=`, `\` and any non-printable byte, is written as `\x` followed by two
//! lower-case hex digits, so a value never contains a space or `=`.
//! `cmdline` is the arguments, each escaped, joined by single spaces: the
//! tokens after `cmdline=` that have no `=` are its next arguments (a space
//! inside an argument stays `\x20`). `pid=N comm=NAME` are always the first
//! two tokens, so `frame.comment contains "pid=1234"` works in tshark on
//! the whole form, and `frame.interface_description contains "pid=1234"` on
//! a process interface (below) (`pidcap.pid == 1234` with the Lua plugin in
//! `wireshark/` is exact on both).
//! `comm` is the thread-group leader's name, `thread` the name of the thread
//! that sent (or last sent on) the socket; `tid`/`thread` are left out when
//! unknown, the process fields (`exe` to `container`) when pidcap could not
//! read the process; `container` only when the cgroup path names one.
//!
//! The parser is lenient where it costs nothing: after `pid` and `comm`
//! (mandatory, in that order) the other tokens may come in any order or be
//! missing (defaults: cookie 0, verdict pass, no rule, no thread, no
//! process), unknown `key=value` tokens are ignored, and unescaped non-space
//! bytes in a value are taken literally. A malformed number, verdict or
//! escape means "not ours". Files written before these fields read as they did.
//!
//! # Process interfaces (files since issue 13)
//!
//! pidcap's pcapng describes each process once, in an Interface
//! Description Block of its own (same link type and snap length as the
//! first), and its packets name that interface: `if_name` is
//! [`process_if_name`] (`curl[1234]`), `if_description` is
//! [`format_process`], the grammar above from `pid=` to `container=`
//! without the per-packet tokens (`pid=1234 comm=curl exe=/usr/bin/curl
//! cmdline=curl -s http://x/ ppid=1200 ... `). A packet's comment on such an
//! interface holds only what is not the interface's
//! ([`format_packet_comment`]): ` `-separated `tid=` (when not the pid),
//! `thread=` (when not comm), `cookie=` (when not 0), `verdict=blocked`,
//! `rule=`, in that order; a packet with nothing of these has no comment.
//! Read back ([`parse_process`], [`parse_packet_comment`]): no `tid` means
//! tid = pid, no `thread` means thread = comm, no `cookie` 0, no `verdict`
//! pass. Packets with no process (pid 0) stay on interface 0 with the whole
//! comment, and so do TLS records on their interface; a comment with `pid=`
//! first is the whole form wherever it is (older files).
//!
//! A TLS plaintext record's comment adds ` tls=LIBRARY offset=N`
//! ([`TlsComment`], [`format_tls`], [`parse_tls`]); its thread is the
//! `tid` above (files of older pidcaps wrote `tls=LIBRARY tid=N offset=N`:
//! the same token, read the same way). The process parser ignores those tokens.

use pidcap_packet::{CapturedPacket, ContainerRef, ProcessMeta, TlsInfo, Verdict};
use std::sync::Arc;

/// The process fields carried by a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub comm: String,
    pub socket_cookie: u64,
    pub verdict: Verdict,
    pub rule: Option<u16>,
    /// The thread (0 / empty: unknown).
    pub tid: u32,
    pub thread: String,
    /// The process's metadata, when the comment has it.
    pub process: Option<Arc<ProcessMeta>>,
}

impl ProcessInfo {
    /// A process known only by its pid and name: no thread, no metadata,
    /// cookie 0, verdict pass (what a comment without those tokens means).
    pub fn unknown(pid: u32, comm: String) -> ProcessInfo {
        ProcessInfo {
            pid,
            comm,
            socket_cookie: 0,
            verdict: Verdict::Pass,
            rule: None,
            tid: 0,
            thread: String::new(),
            process: None,
        }
    }

    /// The process fields of a packet (a TLS record's thread is its call's).
    pub fn of(p: &CapturedPacket) -> ProcessInfo {
        ProcessInfo {
            pid: p.pid,
            comm: p.comm.clone(),
            socket_cookie: p.socket_cookie,
            verdict: p.verdict,
            rule: p.rule,
            tid: if p.tid != 0 { p.tid } else { p.tls.map_or(0, |t| t.tid) },
            thread: p.thread.clone(),
            process: p.process.clone(),
        }
    }
}

fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'+' | b'-')
}

/// Escape a process name for the comment (see the module doc).
pub fn escape_comm(comm: &str) -> String {
    let mut out = String::with_capacity(comm.len());
    push_escaped(&mut out, comm);
    out
}

/// [`escape_comm`] onto the end of `out`.
fn push_escaped(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in value.as_bytes() {
        if is_safe(b) {
            out.push(char::from(b));
        } else {
            out.extend(['\\', 'x', char::from(HEX[usize::from(b >> 4)]), char::from(HEX[usize::from(b & 15)])]);
        }
    }
}

/// Undo [`escape_comm`]; `None` on a bad escape or a name that is not UTF-8.
pub fn unescape_comm(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            let hex = bytes.get(i + 2..i + 4)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The comment written on a packet (the grammar in the module doc), e.g.
/// `pid=1234 comm=curl cookie=8812 verdict=pass`: the whole form, on
/// interface 0 (packets with no process) and on TLS records.
pub fn format_comment(info: &ProcessInfo) -> String {
    use std::fmt::Write;
    let mut s = format!("pid={} comm={}", info.pid, escape_comm(&info.comm));
    if info.tid != 0 {
        let _ = write!(s, " tid={}", info.tid);
    }
    if !info.thread.is_empty() {
        let _ = write!(s, " thread={}", escape_comm(&info.thread));
    }
    if let Some(m) = &info.process {
        push_process(&mut s, m);
    }
    let _ = write!(s, " cookie={} verdict={}", info.socket_cookie, info.verdict);
    if let Some(rule) = info.rule {
        let _ = write!(s, " rule={rule}");
    }
    s
}

/// The process fields (`exe` to `container`) onto the end of `s`, each with its leading space.
fn push_process(s: &mut String, m: &ProcessMeta) {
    use std::fmt::Write;
    if !m.exe.is_empty() {
        let _ = write!(s, " exe={}", escape_comm(&m.exe));
    }
    if !m.cmdline.is_empty() {
        s.push_str(" cmdline=");
        for (i, a) in m.cmdline.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            push_escaped(s, a);
        }
    }
    let _ = write!(s, " ppid={}", m.ppid);
    if !m.parent_comm.is_empty() {
        let _ = write!(s, " pcomm={}", escape_comm(&m.parent_comm));
    }
    let _ = write!(s, " uid={}", m.uid);
    if !m.user.is_empty() {
        let _ = write!(s, " user={}", escape_comm(&m.user));
    }
    if !m.cgroup.is_empty() {
        let _ = write!(s, " cgroup={}", escape_comm(&m.cgroup));
    }
    if let Some(c) = &m.container {
        let _ = write!(s, " container={}:{}", escape_comm(&c.runtime), escape_comm(&c.id));
    }
}

/// A process interface's `if_description`: `pid=N comm=NAME` and the
/// process fields (`exe` to `container`) of the whole comment, in its order
/// and escaping (see the module doc, "Process interfaces").
pub fn format_process(pid: u32, comm: &str, process: Option<&ProcessMeta>) -> String {
    let mut s = format!("pid={pid} comm={}", escape_comm(comm));
    if let Some(m) = process {
        push_process(&mut s, m);
    }
    s
}

/// A process interface's `if_name`: `comm[pid]`, e.g. `curl[1234]`.
pub fn process_if_name(pid: u32, comm: &str) -> String {
    format!("{comm}[{pid}]")
}

/// The process an `if_description` written by [`format_process`]
/// describes, as the [`ProcessInfo`] of a packet on that interface with no
/// comment: thread = the process (`tid` = pid, `thread` = comm), cookie 0,
/// verdict pass, no rule. `None` if it is not ours.
pub fn parse_process(desc: &str) -> Option<ProcessInfo> {
    let mut info = parse_comment(desc)?;
    if info.tid == 0 {
        info.tid = info.pid;
    }
    if info.thread.is_empty() {
        info.thread = info.comm.clone();
    }
    Some(info)
}

/// The comment of a packet on a process interface: only what differs from
/// [`parse_process`]'s defaults, e.g. `cookie=8812` (see the module doc,
/// "Process interfaces"); empty when nothing does (no comment is written).
pub fn format_packet_comment(info: &ProcessInfo) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let sep = |s: &mut String| {
        if !s.is_empty() {
            s.push(' ');
        }
    };
    if info.tid != info.pid {
        sep(&mut s);
        let _ = write!(s, "tid={}", info.tid);
    }
    if info.thread != info.comm {
        sep(&mut s);
        s.push_str("thread=");
        push_escaped(&mut s, &info.thread);
    }
    if info.socket_cookie != 0 {
        sep(&mut s);
        let _ = write!(s, "cookie={}", info.socket_cookie);
    }
    if info.verdict != Verdict::Pass {
        sep(&mut s);
        let _ = write!(s, "verdict={}", info.verdict);
    }
    if let Some(rule) = info.rule {
        sep(&mut s);
        let _ = write!(s, "rule={rule}");
    }
    s
}

/// A packet on the process interface described by `base`
/// ([`parse_process`]) with comment `comment` ([`format_packet_comment`]):
/// the base with the comment's per-packet tokens over it. A comment of the
/// whole form (`pid=` first) stands alone, as in older files. `None` when
/// the comment has a malformed value of ours (the caller keeps the base).
pub fn parse_packet_comment(base: &ProcessInfo, comment: &str) -> Option<ProcessInfo> {
    if comment.starts_with("pid=") {
        return parse_comment(comment);
    }
    let mut info = base.clone();
    for tok in comment.split(' ') {
        let Some((key, value)) = tok.split_once('=') else { continue };
        packet_field(&mut info, key, value)?;
    }
    Some(info)
}

/// Set `info`'s per-packet field `key` (`cookie`, `verdict`, `rule`, `tid`,
/// `thread`) from `value`: Some(true) when it is one, Some(false) when `key`
/// is another, None when the value is malformed.
fn packet_field(info: &mut ProcessInfo, key: &str, value: &str) -> Option<bool> {
    match key {
        "cookie" => info.socket_cookie = value.parse().ok()?,
        "verdict" => info.verdict = value.parse().ok()?,
        "rule" => info.rule = Some(value.parse().ok()?),
        "tid" => info.tid = value.parse().ok()?,
        "thread" => info.thread = unescape_comm(value)?,
        _ => return Some(false),
    }
    Some(true)
}

/// Parse a comment written by [`format_comment`]; `None` if it is not ours.
pub fn parse_comment(s: &str) -> Option<ProcessInfo> {
    let mut tokens = s.split(' ');
    let pid = tokens.next()?.strip_prefix("pid=")?.parse().ok()?;
    let comm = unescape_comm(tokens.next()?.strip_prefix("comm=")?)?;
    let mut info = ProcessInfo::unknown(pid, comm.clone());
    let mut meta = ProcessMeta { pid, comm, ..ProcessMeta::default() };
    let mut has_meta = false;
    let mut in_cmdline = false;
    for tok in tokens {
        let Some((key, value)) = tok.split_once('=') else {
            if in_cmdline {
                meta.cmdline.push(unescape_comm(tok)?);
            }
            continue;
        };
        in_cmdline = false;
        if packet_field(&mut info, key, value)? {
            continue;
        }
        match key {
            "exe" => meta.exe = unescape_comm(value)?,
            "cmdline" => {
                meta.cmdline = vec![unescape_comm(value)?];
                in_cmdline = true;
            }
            "ppid" => meta.ppid = value.parse().ok()?,
            "pcomm" => meta.parent_comm = unescape_comm(value)?,
            "uid" => meta.uid = value.parse().ok()?,
            "user" => meta.user = unescape_comm(value)?,
            "cgroup" => meta.cgroup = unescape_comm(value)?,
            "container" => {
                let (runtime, id) = value.split_once(':')?;
                meta.container = Some(ContainerRef { runtime: unescape_comm(runtime)?, id: unescape_comm(id)? });
            }
            _ => continue,
        }
        has_meta |= matches!(key, "exe" | "cmdline" | "ppid" | "pcomm" | "uid" | "user" | "cgroup" | "container");
    }
    if has_meta {
        info.process = Some(Arc::new(meta));
    }
    Some(info)
}

/// What the comment of a TLS plaintext record says beyond the process:
/// ` tls=LIBRARY offset=N` after the process fields, the calling thread in
/// the process part's `tid`, e.g.
/// `pid=4242 comm=curl tid=4243 cookie=8812 verdict=pass tls=openssl offset=0`
/// (`offset`: the plaintext's place in its direction of the connection).
/// `frame.comment contains "tls="` selects the records in tshark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsComment {
    pub info: TlsInfo,
    pub offset: u32,
}

/// The suffix [`TlsComment`] describes, with its leading space (its
/// `info.tid` goes in the process part: [`ProcessInfo::tid`]).
pub fn format_tls(t: &TlsComment) -> String {
    format!(" tls={} offset={}", t.info.library, t.offset)
}

/// The TLS fields of a comment, if it has a valid `tls=` token (`tid`
/// wherever it is: the process part, or after `tls=` in older files).
pub fn parse_tls(s: &str) -> Option<TlsComment> {
    let (mut library, mut tid, mut offset) = (None, 0, 0);
    for tok in s.split(' ').skip(2) {
        // Tokens without `=` are command-line arguments.
        let Some((key, value)) = tok.split_once('=') else { continue };
        match key {
            "tls" => library = Some(value.parse().ok()?),
            "tid" => tid = value.parse().ok()?,
            "offset" => offset = value.parse().ok()?,
            _ => {}
        }
    }
    Some(TlsComment { info: TlsInfo { tid, library: library? }, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(comm: &str, verdict: Verdict, rule: Option<u16>) -> ProcessInfo {
        ProcessInfo {
            pid: 1234,
            comm: comm.into(),
            socket_cookie: 8812,
            verdict,
            rule,
            tid: 0,
            thread: String::new(),
            process: None,
        }
    }

    fn meta() -> ProcessMeta {
        ProcessMeta {
            pid: 1234,
            comm: "curl".into(),
            exe: "/usr/bin/curl".into(),
            cmdline: vec!["curl".into(), "-s".into(), "a b".into(), "".into(), "k=v".into(), "tls".into()],
            ppid: 1200,
            parent_comm: "sh".into(),
            uid: 1000,
            user: "alice".into(),
            cgroup: "/system.slice/docker-ab.scope".into(),
            container: Some(ContainerRef { runtime: "docker".into(), id: "ab".into() }),
        }
    }

    #[test]
    fn the_whole_process_round_trips_in_the_documented_order() {
        let i = ProcessInfo {
            tid: 1240,
            thread: "worker 1".into(),
            process: Some(Arc::new(meta())),
            ..info("curl", Verdict::Pass, Some(2))
        };
        let s = format_comment(&i);
        assert_eq!(
            s,
            "pid=1234 comm=curl tid=1240 thread=worker\\x201 exe=/usr/bin/curl cmdline=curl -s a\\x20b  k\\x3dv tls \
             ppid=1200 pcomm=sh uid=1000 user=alice cgroup=/system.slice/docker-ab.scope container=docker:ab \
             cookie=8812 verdict=pass rule=2"
        );
        assert_eq!(parse_comment(&s), Some(i.clone()));
        assert_eq!(parse_tls(&s), None, "an argument named tls is not a record");
        // Only what is known is written: a thread without a process, a process without a container.
        let j = ProcessInfo { tid: 9, ..info("x", Verdict::Pass, None) };
        assert_eq!(format_comment(&j), "pid=1234 comm=x tid=9 cookie=8812 verdict=pass");
        assert_eq!(parse_comment(&format_comment(&j)), Some(j));
        let bare = ProcessMeta { cmdline: vec![], container: None, user: String::new(), ..meta() };
        let k = ProcessInfo { process: Some(Arc::new(bare)), ..info("curl", Verdict::Pass, None) };
        assert_eq!(
            format_comment(&k),
            "pid=1234 comm=curl exe=/usr/bin/curl ppid=1200 pcomm=sh uid=1000 cgroup=/system.slice/docker-ab.scope cookie=8812 verdict=pass"
        );
        assert_eq!(parse_comment(&format_comment(&k)), Some(k));
        for bad in [
            "pid=1 comm=x uid=-1",
            "pid=1 comm=x container=docker",
            "pid=1 comm=x exe=\\q",
            "pid=1 comm=x cmdline=a \\z",
        ] {
            assert_eq!(parse_comment(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn format_is_exactly_the_documented_grammar() {
        assert_eq!(format_comment(&info("curl", Verdict::Pass, None)), "pid=1234 comm=curl cookie=8812 verdict=pass");
        assert_eq!(
            format_comment(&info("Web Content", Verdict::Blocked, Some(3))),
            "pid=1234 comm=Web\\x20Content cookie=8812 verdict=blocked rule=3"
        );
        assert_eq!(escape_comm("a=b\\c\td.e_f:g/h+i-j"), "a\\x3db\\x5cc\\x09d.e_f:g/h+i-j");
        assert_eq!(escape_comm("é"), "\\xc3\\xa9");
    }

    #[test]
    fn round_trips_odd_names() {
        for comm in [
            "",
            "curl",
            "Web Content",
            "a=b",
            "back\\slash",
            "x\\x20y",
            "tab\there",
            "\u{1}\u{7f}",
            "ünïcode",
            "kworker/0:1+ev",
        ] {
            for rule in [None, Some(0), Some(u16::MAX)] {
                let i = info(comm, Verdict::Blocked, rule);
                assert_eq!(parse_comment(&format_comment(&i)), Some(i.clone()), "{comm:?}");
            }
        }
    }

    #[test]
    fn tls_fields_round_trip_after_the_process() {
        use pidcap_packet::TlsLibrary;
        let t = TlsComment { info: TlsInfo { tid: 4243, library: TlsLibrary::Gnutls }, offset: 7 };
        let i = ProcessInfo { tid: 4243, ..info("curl", Verdict::Pass, None) };
        let s = format!("{}{}", format_comment(&i), format_tls(&t));
        assert_eq!(s, "pid=1234 comm=curl tid=4243 cookie=8812 verdict=pass tls=gnutls offset=7");
        assert_eq!(parse_tls(&s), Some(t));
        assert_eq!(parse_comment(&s), Some(i));
        // Files of older pidcaps: the tid after tls=, one token all the same.
        let old = "pid=1234 comm=curl cookie=8812 verdict=pass tls=gnutls tid=4243 offset=7";
        assert_eq!(parse_tls(old), Some(t));
        assert_eq!(parse_comment(old).unwrap().tid, 4243);
        assert_eq!(parse_tls("pid=1 comm=x verdict=pass"), None);
        assert_eq!(parse_tls("pid=1 comm=x tls=quic"), None);
        assert_eq!(parse_tls("pid=1 comm=x tls=nss tid=-1"), None);
        // A process named "tls=openssl" is not a record.
        assert_eq!(parse_tls(&format_comment(&info("tls=openssl", Verdict::Pass, None))), None);
    }

    #[test]
    fn a_process_interface_and_its_packets_comments_make_the_whole_comment() {
        let m = meta();
        let desc = format_process(1234, "curl", Some(&m));
        assert_eq!(
            desc,
            "pid=1234 comm=curl exe=/usr/bin/curl cmdline=curl -s a\\x20b  k\\x3dv tls \
             ppid=1200 pcomm=sh uid=1000 user=alice cgroup=/system.slice/docker-ab.scope container=docker:ab"
        );
        assert_eq!(process_if_name(1234, "Web Content"), "Web Content[1234]");
        let base = parse_process(&desc).unwrap();
        let whole = ProcessInfo { process: Some(Arc::new(m)), ..info("curl", Verdict::Pass, None) };
        // With no comment: the process's own thread, cookie 0, pass.
        assert_eq!(base, ProcessInfo { tid: 1234, thread: "curl".into(), socket_cookie: 0, ..whole.clone() });
        for (tid, thread, cookie, verdict, rule, comment) in [
            (1234, "curl", 8812, Verdict::Pass, None, "cookie=8812"),
            (1234, "curl", 0, Verdict::Pass, None, ""),
            (
                1240,
                "worker 1",
                8812,
                Verdict::Blocked,
                Some(3),
                "tid=1240 thread=worker\\x201 cookie=8812 verdict=blocked rule=3",
            ),
            (0, "", 1, Verdict::Pass, Some(0), "tid=0 thread= cookie=1 rule=0"),
        ] {
            let i = ProcessInfo { tid, thread: thread.into(), socket_cookie: cookie, verdict, rule, ..whole.clone() };
            assert_eq!(format_packet_comment(&i), comment);
            assert_eq!(parse_packet_comment(&base, comment), Some(i.clone()), "{comment:?}");
            // The same as the whole comment says.
            assert_eq!(parse_comment(&format_comment(&i)), Some(i));
        }
        // A whole comment stands alone wherever it is; a malformed value of ours is not ours.
        let old = format_comment(&info("wget", Verdict::Blocked, Some(1)));
        assert_eq!(parse_packet_comment(&base, &old), parse_comment(&old));
        assert_eq!(parse_packet_comment(&base, "cookie=x"), None);
        assert_eq!(parse_packet_comment(&base, "future=1 cookie=5").unwrap().socket_cookie, 5);
        assert_eq!(parse_process("tls plaintext"), None);
    }

    #[test]
    fn lenient_and_strict_parts() {
        let p = parse_comment("pid=7 comm=sh").unwrap();
        assert_eq!((p.pid, p.comm.as_str(), p.socket_cookie, p.verdict, p.rule), (7, "sh", 0, Verdict::Pass, None));
        let p = parse_comment("pid=7 comm=sh future=1 verdict=blocked odd").unwrap();
        assert_eq!(p.verdict, Verdict::Blocked);
        for bad in [
            "",
            "hello world",
            "comm=sh pid=7",
            "pid=x comm=sh",
            "pid=7",
            "pid=7 comm=a\\q",
            "pid=7 comm=a\\x2",
            "pid=7 comm=a\\x+f",
            "pid=7 comm=\\xff",
            "pid=7 comm=sh verdict=maybe",
            "pid=7 comm=sh rule=70000",
            "pid=7 comm=sh cookie=-1",
        ] {
            assert_eq!(parse_comment(bad), None, "{bad:?}");
        }
    }
}
