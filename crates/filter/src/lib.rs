//! pcap-filter expressions (tcpdump's language, `man 7 pcap-filter`),
//! compiled by libpcap itself for pidcap's packets, which start at the IP
//! header (link type DLT_RAW: `ip`, `ip6`, `tcp port 80`, `host ::1`,
//! `udp and len > 100` work for IPv4 and IPv6 alike), and matched with
//! `pcap_offline_filter` against a packet's captured bytes and its
//! original length.
//!
//! Why a small FFI and not the `pcap` crate: its `BpfProgram::filter` passes
//! the captured length as the packet's length, so `len` would compare the
//! snap length's cut instead of the packet (pidcap's default snap length is
//! 1500); and the program's pointer inside is private, so it cannot be
//! called another way. The six functions used here are libpcap's stable API.
//!
//! [`Filter`] implements [`pidcap_engine::PacketFilter`], the engine's
//! interface for the filter that decides which packets a capture keeps.

use std::ffi::{c_char, c_int, c_uint, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// An expression libpcap would not compile, or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// libpcap's own message (`syntax error`, `unknown host 'x'`, ...).
    #[error("invalid filter expression {expression:?}: {message}")]
    Invalid { expression: String, message: String },
    #[error("invalid filter expression {expression:?}: it contains a NUL byte")]
    Nul {
        expression: String,
        #[source]
        source: std::ffi::NulError,
    },
    #[error("libpcap could not open a handle to compile filter expressions (out of memory)")]
    NoHandle,
    /// An expression from a filter file: named by the file, whose text is
    /// not repeated (pidcap may read files its user cannot; libpcap's
    /// message may still name the word it stopped at).
    #[error("invalid filter expression in {}: {message}", path.display())]
    InvalidInFile { path: PathBuf, message: String },
    #[error("cannot read the filter file {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The link type of pidcap's packets: raw IP, version from the first nibble
/// (`DLT_RAW` is 12 on Linux; its file link type, `LINKTYPE_RAW`, is 101).
const DLT_RAW: c_int = 12;
/// Snap length of the compiling handle: what a matching program returns; any non-zero value does.
const SNAPLEN: c_int = 65535;
/// No netmask known: `ip broadcast` is refused with libpcap's message.
const PCAP_NETMASK_UNKNOWN: u32 = 0xffff_ffff;

#[repr(C)]
struct PcapT {
    _opaque: [u8; 0],
}

/// `struct bpf_program`.
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut libc::c_void,
}

/// `struct pcap_pkthdr`.
#[repr(C)]
struct PcapPkthdr {
    ts: libc::timeval,
    caplen: u32,
    len: u32,
}

#[link(name = "pcap")]
extern "C" {
    fn pcap_open_dead(linktype: c_int, snaplen: c_int) -> *mut PcapT;
    fn pcap_compile(p: *mut PcapT, fp: *mut BpfProgram, s: *const c_char, optimize: c_int, netmask: u32) -> c_int;
    fn pcap_geterr(p: *mut PcapT) -> *mut c_char;
    fn pcap_close(p: *mut PcapT);
    fn pcap_freecode(fp: *mut BpfProgram);
    fn pcap_offline_filter(fp: *const BpfProgram, h: *const PcapPkthdr, pkt: *const u8) -> c_int;
}

/// libpcap before 1.8 compiled with global state (a yacc parser); later
/// versions do not, but one compile at a time costs nothing here.
static COMPILING: Mutex<()> = Mutex::new(());

/// A compiled pcap-filter expression. See the module documentation.
pub struct Filter {
    expression: String,
    program: BpfProgram,
}

// SAFETY: the program is owned by this value alone (libpcap allocated it for
// us and frees it in pcap_freecode, on drop); it is only read after
// compiling (pcap_offline_filter runs bpf_filter, which reads the
// instructions and the packet and writes only its own stack), so sending it
// to another thread or matching from several threads at once is sound.
unsafe impl Send for Filter {}
// SAFETY: as for Send: `&Filter` only reads the program.
unsafe impl Sync for Filter {}

impl Filter {
    /// Compile `expression` (optimized, as tcpdump does) for raw IP packets.
    /// The empty expression matches every packet.
    pub fn compile(expression: &str) -> Result<Filter, FilterError> {
        let text = CString::new(expression)
            .map_err(|source| FilterError::Nul { expression: expression.to_string(), source })?;
        let _one = COMPILING.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: pcap_open_dead has no preconditions; it returns NULL on failure.
        let handle = unsafe { pcap_open_dead(DLT_RAW, SNAPLEN) };
        if handle.is_null() {
            return Err(FilterError::NoHandle);
        }
        let mut program = BpfProgram { bf_len: 0, bf_insns: std::ptr::null_mut() };
        // SAFETY: `handle` is a live handle, `program` a writable bpf_program,
        // `text` a NUL-terminated string that outlives the call.
        let rc = unsafe { pcap_compile(handle, &mut program, text.as_ptr(), 1, PCAP_NETMASK_UNKNOWN) };
        let result = if rc == 0 {
            Ok(Filter { expression: expression.to_string(), program })
        } else {
            // SAFETY: pcap_geterr returns the handle's NUL-terminated error
            // buffer, valid until the handle is closed (below, after the copy).
            let message = unsafe { CStr::from_ptr(pcap_geterr(handle)) }.to_string_lossy().into_owned();
            Err(FilterError::Invalid { expression: expression.to_string(), message: tidy(&message) })
        };
        // SAFETY: `handle` came from pcap_open_dead and is not used after
        // this; the compiled program does not refer to it (libpcap allocated it apart).
        unsafe { pcap_close(handle) };
        result
    }

    /// The expression as given.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// Does the packet match? `ip_packet` is what was captured, from its IP
    /// header; `orig_len` the whole packet's length (pcap-filter's `len`;
    /// never taken as less than what was captured). A field beyond the
    /// captured bytes does not match, as in tcpdump.
    pub fn matches(&self, ip_packet: &[u8], orig_len: u32) -> bool {
        let caplen = u32::try_from(ip_packet.len()).unwrap_or(u32::MAX);
        let header = PcapPkthdr { ts: libc::timeval { tv_sec: 0, tv_usec: 0 }, caplen, len: orig_len.max(caplen) };
        // SAFETY: the program is a compiled one (see `compile`), the header
        // says how many bytes `ip_packet` holds, and bpf_filter reads no
        // more than `caplen` of them.
        unsafe { pcap_offline_filter(&self.program, &header, ip_packet.as_ptr()) != 0 }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: the program was filled by pcap_compile and is freed once, here.
        unsafe { pcap_freecode(&mut self.program) }
    }
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter")
            .field("expression", &self.expression)
            .field("instructions", &self.program.bf_len)
            .finish()
    }
}

impl pidcap_engine::PacketFilter for Filter {
    fn matches(&self, ip_packet: &[u8], orig_len: u32) -> bool {
        Filter::matches(self, ip_packet, orig_len)
    }

    fn expression(&self) -> &str {
        &self.expression
    }
}

/// libpcap's message without the prefix some versions add.
fn tidy(message: &str) -> String {
    let m = message.trim();
    m.strip_prefix("can't parse filter expression: ").unwrap_or(m).to_string()
}

/// tcpdump's way with expression words: joined by spaces (`tcp port 80` as
/// three words or one). None when there is nothing but blanks: no filter.
pub fn expression_from_words<S: AsRef<str>>(words: &[S]) -> Option<String> {
    let joined = words.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ");
    (!joined.trim().is_empty()).then_some(joined)
}

/// The filter in a filter file (tcpdump's `-F`; see
/// [`read_expression_file`]), compiled; None when the file holds no
/// expression. A bad one is [`FilterError::InvalidInFile`].
pub fn compile_file(path: &Path) -> Result<Option<Filter>, FilterError> {
    let Some(expression) = read_expression_file(path)? else { return Ok(None) };
    match Filter::compile(&expression) {
        Ok(f) => Ok(Some(f)),
        Err(FilterError::Invalid { message, .. }) => {
            Err(FilterError::InvalidInFile { path: path.to_path_buf(), message })
        }
        Err(FilterError::Nul { .. }) => {
            Err(FilterError::InvalidInFile { path: path.to_path_buf(), message: "it contains a NUL byte".into() })
        }
        Err(e) => Err(e),
    }
}

/// The expression in a filter file (tcpdump's `-F`): its text, with `#`
/// comments to the end of a line removed as tcpdump removes them, and lines
/// joined by spaces. None when nothing but blanks and comments is left.
pub fn read_expression_file(path: &Path) -> Result<Option<String>, FilterError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| FilterError::File { path: path.to_path_buf(), source })?;
    Ok(expression_from_file_text(&text))
}

fn expression_from_file_text(text: &str) -> Option<String> {
    let lines: Vec<&str> = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).collect();
    expression_from_words(&lines).map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The words a pcap-filter expression usually starts with.
const FIRST_WORDS: &[&str] = &[
    "tcp",
    "udp",
    "icmp",
    "icmp6",
    "ip",
    "ip6",
    "host",
    "net",
    "port",
    "portrange",
    "src",
    "dst",
    "not",
    "len",
    "less",
    "greater",
    "proto",
    "sctp",
    "igmp",
    "ether",
    "vlan",
    "arp",
    "(",
];

/// True when `word` reads like a pcap-filter expression and compiles as one:
/// it has more than one word (`tcp port 80`; a single `tcp` or `host` is too
/// often a command's own argument) and starts with a word expressions start
/// with (so that an argument that is no expression is not even compiled: a
/// name in it would be looked up). For a warning, never a refusal.
pub fn looks_like_expression(word: &str) -> bool {
    let mut words = word.split_whitespace();
    let first = words.next().unwrap_or("");
    let first = if first.starts_with('(') { "(" } else { first };
    words.next().is_some() && FIRST_WORDS.contains(&first) && Filter::compile(word).is_ok()
}

/// The command's trailing arguments (after its program, `args[0]`) that
/// read like a pcap-filter expression (see [`looks_like_expression`]): one
/// argument (`'tcp port 80'`) or several words typed unquoted (`tcp port
/// 80`), the longest such run of at most 8 words. For `pidcap run -- CMD
/// ARGS` to warn that the expression went to the command.
pub fn trailing_expression<S: AsRef<str>>(args: &[S]) -> Option<String> {
    let args: Vec<&str> = args.iter().skip(1).map(AsRef::as_ref).collect();
    (1..=args.len().min(8)).rev().find_map(|n| {
        let tail = &args[args.len() - n..];
        // Unquoted words are single words; an option is the command's.
        if n > 1 && tail.iter().any(|w| w.contains(char::is_whitespace) || w.starts_with('-')) {
            return None;
        }
        let joined = tail.join(" ");
        looks_like_expression(&joined).then_some(joined)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pidcap_packet::build::{build, TcpFields, Transport};
    use std::net::SocketAddr;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn udp(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        build(addr(src), addr(dst), 64, Transport::Udp, payload).unwrap()
    }

    fn tcp(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        build(addr(src), addr(dst), 64, Transport::Tcp(TcpFields::default()), payload).unwrap()
    }

    fn m(expr: &str, p: &[u8]) -> bool {
        Filter::compile(expr).unwrap().matches(p, p.len() as u32)
    }

    #[test]
    fn a_bad_expression_is_refused_with_libpcaps_message() {
        let e = Filter::compile("tcp prot 80").unwrap_err();
        assert_eq!(e.to_string(), "invalid filter expression \"tcp prot 80\": syntax error");
        let e = Filter::compile("port 99999").unwrap_err();
        assert!(e.to_string().starts_with("invalid filter expression \"port 99999\": "), "{e}");
        assert!(e.to_string().contains("99999"), "{e}");
        // Raw IP has no link-level header: libpcap says so.
        let e = Filter::compile("ether host 1:2:3:4:5:6").unwrap_err().to_string();
        assert!(e.contains("ethernet addresses supported only on"), "{e}");
        assert!(matches!(Filter::compile("tcp\0"), Err(FilterError::Nul { .. })));
        // No netmask: `ip broadcast` cannot be compiled, and says so.
        assert!(Filter::compile("ip broadcast").is_err());
    }

    #[test]
    fn ipv4_and_ipv6_packets_match_by_protocol_port_and_host() {
        let v4 = udp("127.0.0.1:40000", "127.0.0.1:9001", b"hello");
        let v6 = udp("[::1]:40000", "[::1]:9001", b"hello");
        let t4 = tcp("10.0.0.1:40000", "10.0.0.2:80", b"GET /");
        let t6 = tcp("[fd00::1]:40000", "[fd00::2]:443", b"x");
        for (expr, want) in [
            ("ip", [true, false, true, false]),
            ("ip6", [false, true, false, true]),
            ("udp", [true, true, false, false]),
            ("tcp", [false, false, true, true]),
            ("udp port 9001", [true, true, false, false]),
            ("udp port 9002", [false, false, false, false]),
            ("tcp port 80", [false, false, true, false]),
            ("tcp dst port 443", [false, false, false, true]),
            ("host ::1", [false, true, false, false]),
            ("host 127.0.0.1", [true, false, false, false]),
            ("net 10.0.0.0/8", [false, false, true, false]),
            ("ip6 and udp", [false, true, false, false]),
            ("not udp", [false, false, true, true]),
            ("", [true, true, true, true]),
        ] {
            let got = [&v4, &v6, &t4, &t6].map(|p| m(expr, p));
            assert_eq!(got, want, "{expr:?}");
        }
    }

    #[test]
    fn len_is_the_original_length_not_what_was_captured() {
        let p = udp("127.0.0.1:40000", "127.0.0.1:9001", &[0u8; 200]); // 228 bytes
        let f = Filter::compile("udp and len > 100").unwrap();
        assert!(f.matches(&p, p.len() as u32));
        let small = udp("127.0.0.1:40000", "127.0.0.1:9001", &[0u8; 10]);
        assert!(!f.matches(&small, small.len() as u32));
        // Cut at 64 bytes by the snap length: still 228 bytes long.
        assert!(f.matches(&p[..64], 228));
        assert!(!Filter::compile("len <= 64").unwrap().matches(&p[..64], 228));
        // Never shorter than what was captured.
        assert!(Filter::compile("len >= 228").unwrap().matches(&p, 0));
        // A field past the captured bytes does not match (the port is at bytes 20..24).
        assert!(!Filter::compile("udp port 9001").unwrap().matches(&p[..21], 228));
        assert!(Filter::compile("udp port 9001").unwrap().matches(&p[..24], 228));
    }

    #[test]
    fn a_filter_is_shared_between_threads_through_the_engines_trait() {
        let f: std::sync::Arc<dyn pidcap_engine::PacketFilter> =
            std::sync::Arc::new(Filter::compile("udp port 9001").unwrap());
        assert_eq!(f.expression(), "udp port 9001");
        let p = udp("127.0.0.1:40000", "127.0.0.1:9001", b"x");
        let q = udp("127.0.0.1:40000", "127.0.0.1:9002", b"x");
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (f, p, q) = (f.clone(), p.clone(), q.clone());
                std::thread::spawn(move || (0..1000).all(|_| f.matches(&p, 29) && !f.matches(&q, 29)))
            })
            .collect();
        assert!(handles.into_iter().all(|h| h.join().unwrap()));
    }

    #[test]
    fn words_and_files_become_one_expression() {
        assert_eq!(expression_from_words(&["tcp", "port", "80"]).as_deref(), Some("tcp port 80"));
        assert_eq!(expression_from_words(&["tcp port 80"]).as_deref(), Some("tcp port 80"));
        assert_eq!(expression_from_words::<&str>(&[]), None);
        assert_eq!(expression_from_words(&[" ", ""]), None);
        let text = "# HTTP and DNS\nudp port 53   # DNS\n  or tcp port 80\n\n";
        assert_eq!(expression_from_file_text(text).as_deref(), Some("udp port 53 or tcp port 80"));
        assert_eq!(expression_from_file_text("# nothing\n\n"), None);
        let e = read_expression_file(Path::new("/nonexistent/pidcap-filter")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read the filter file /nonexistent/pidcap-filter"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        let path = std::env::temp_dir().join(format!("pidcap-filter-unit-{}", std::process::id()));
        std::fs::write(&path, "# a secret line\nudp prot 53\n").unwrap();
        let e = compile_file(&path).unwrap_err().to_string();
        assert_eq!(e, format!("invalid filter expression in {}: syntax error", path.display()));
        std::fs::write(&path, "udp port 53 # dns\n").unwrap();
        assert_eq!(compile_file(&path).unwrap().unwrap().expression(), "udp port 53");
        std::fs::write(&path, "# nothing\n").unwrap();
        assert!(compile_file(&path).unwrap().is_none());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn expressions_after_the_command_are_told_from_arguments() {
        assert!(looks_like_expression("tcp port 80"));
        assert!(looks_like_expression("udp and port 53"));
        assert!(!looks_like_expression("tcp"), "one word: a command's argument as often");
        assert!(!looks_like_expression("http://127.0.0.1/"));
        assert!(!looks_like_expression("hello world"));
        assert!(!looks_like_expression("-o out"));
        assert!(!looks_like_expression("port of call"), "a keyword first, but no expression");
        assert!(looks_like_expression("(tcp or udp) and port 53"));
        assert!(looks_like_expression("not   udp"));
        let t = |args: &[&str]| trailing_expression(args);
        assert_eq!(t(&["curl", "http://x/", "tcp port 80"]).as_deref(), Some("tcp port 80"));
        assert_eq!(t(&["curl", "http://x/", "tcp", "port", "80"]).as_deref(), Some("tcp port 80"));
        assert_eq!(t(&["curl", "-s", "udp", "and", "port", "53"]).as_deref(), Some("udp and port 53"));
        assert_eq!(t(&["curl", "http://x/"]), None);
        assert_eq!(t(&["sh", "-c", "curl -s http://x/"]), None);
        assert_eq!(t(&["git", "log", "-n", "5", "src"]), None);
        assert_eq!(t(&["tcp port 80"]), None, "the program itself is no argument");
        assert_eq!(t(&[]), None);
    }
}
