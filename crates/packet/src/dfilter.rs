//! The display filter: what the user types in the packet list's filter box.
//! Two languages in one box: a subset of Wireshark's display filters and
//! pidcap's short words, mixed freely.
//!
//! **Wireshark's**: field comparisons `tcp.port == 80`, `frame.len > 100`,
//! `ip.addr == 10.0.0.0/8`, `tcp.flags.syn == 1`, `http.host contains "example"`,
//! `tcp.port in {80 443 8000..8080}` with `== != < > <= >=` (or `eq ne lt gt
//! le ge`), `contains` (case-sensitive, as Wireshark's; a string or bytes
//! `47:45:54`), `in {...}`; a field alone tests that it is present
//! (`tcp.flags.syn` is in every TCP packet, as in Wireshark); protocol names
//! (`ip ipv6 tcp udp icmp icmpv6 dns http tls quic frame`); `&& || !` or
//! `and or not`, parentheses, strings in double quotes (`\"`, `\\`, `\xHH`).
//! On a field with several values (`ip.addr`, `tcp.port`, `dns.qry.name`)
//! `==` and the orderings hold when one value does, `!=` when the field is
//! present and none is equal (as tshark 4.0 does). The fields are [`FIELDS`] (those of
//! `wireshark/pidcap.lua` among them: `pidcap.pid`, `pidcap.comm`...);
//! `matches` (regular expressions) is refused, pointing to `contains`.
//!
//! **pidcap's short words** (as before):
//! - `tcp`, `udp`, `icmp`, `icmpv6`, `ip/N`: the protocol;
//! - `in`, `out`: the direction; `blocked`, `pass`: the verdict (their `FromStr`);
//! - `port:N` or a bare number `N`: the local or remote port; `pid:N`: the process;
//! - `tls`: TLS, as a plaintext record taken from the target's TLS library
//!   or as TLS records on the wire; `tls:openssl`, `tls:gnutls`, `tls:nss`:
//!   the records of one library; `wire`: packets seen on the wire (no records);
//! - an IPv4/IPv6 address or CIDR (`10.0.0.0/8`, `::1`, an [`IpNet`]): the local or remote address;
//! - tcpdump's `port N`, `host ADDR`, `net CIDR`: the same as `N`, `ADDR`, `CIDR`;
//! - anything else (or `"quoted text"`): text in the payload (ASCII,
//!   case-insensitive) or in the process name.
//!
//! **How they mix**: terms side by side must all match (`out 443` = `out &&
//! 443`), and bind like `&&`; `!` binds tightest, then `&&`, then `||`. A
//! word followed by a comparison is a field and must be one (`len > 100`:
//! "not a field, did you mean frame.len?"); a dotted word under a known
//! protocol (`tcp.prt`) must be a field too; any other word is a short word.
//! `and or not` are operators: quote them to search for the words.
//!
//! Errors ([`FilterError`]) say where, in characters. Matching evaluates the
//! parsed expression on the packet's decoded fields; the headers are
//! decoded again, and the application protocol read (`info::app`), only
//! when a term needs them, once per packet.

use crate::decode::{headers, Headers, IpHeader, TransportHeader};
use crate::info::{self, App};
use crate::net::IpNet;
use crate::{CapturedPacket, Direction, Protocol, TlsLibrary, Verdict};
use std::cell::OnceCell;
use std::fmt;
use std::net::IpAddr;

/// A pidcap short word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    Protocol(Protocol),
    Direction(Direction),
    Verdict(Verdict),
    Port(u16),
    Pid(u32),
    Net(IpNet),
    /// TLS: a plaintext record (of that library, if given; without one, TLS on the wire too).
    Tls(Option<TlsLibrary>),
    /// A packet seen on the wire (not a TLS plaintext record).
    Wire,
    /// Lower-cased text.
    Text(String),
}

/// Why a filter text does not parse, and where: `at` and `len` count
/// characters (not bytes) of the text given to [`DisplayFilter::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub at: usize,
    pub len: usize,
    pub message: String,
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at {})", self.message, self.at + 1)
    }
}

impl std::error::Error for FilterError {}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl Op {
    fn holds(self, o: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Op::Eq => o == Equal,
            Op::Ne => o != Equal,
            Op::Lt => o == Less,
            Op::Gt => o == Greater,
            Op::Le => o != Greater,
            Op::Ge => o != Less,
        }
    }
}

/// A value in a comparison, of its field's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Int(u64),
    Net(IpNet),
    Str(String),
    Bytes(Vec<u8>),
}

/// A test on one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Test {
    Short(Term),
    /// A protocol is present.
    Proto(Proto),
    /// The field has a value.
    Exists(Field),
    Cmp(Field, Op, Value),
    Contains(Field, Vec<u8>),
    /// One of the values (or ranges, inclusive) holds.
    In(Field, Vec<(Value, Option<Value>)>),
}

/// The parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Test(Test),
}

/// A protocol name as an existence test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Frame,
    Ip,
    Ipv6,
    Icmp,
    Icmpv6,
    Dns,
    Http,
    Tls,
    Quic,
}

/// What kind of values a field has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An unsigned number at most `max` (1 for a flag).
    Uint(u64),
    Ipv4,
    Ipv6,
    Str,
    Bytes,
}

/// The fields: Wireshark's name, its kind, and what it is.
pub const FIELDS: &[(&str, Kind, &str)] = &[
    ("frame", Kind::Bytes, "the captured bytes, from the IP header"),
    ("frame.len", Kind::Uint(U32), "length on the wire"),
    ("frame.cap_len", Kind::Uint(U32), "bytes captured"),
    ("frame.number", Kind::Uint(u64::MAX), "the packet's id"),
    ("ip.src", Kind::Ipv4, "IPv4 source"),
    ("ip.dst", Kind::Ipv4, "IPv4 destination"),
    ("ip.addr", Kind::Ipv4, "IPv4 source or destination"),
    ("ip.ttl", Kind::Uint(U8), "time to live"),
    ("ip.proto", Kind::Uint(U8), "protocol number"),
    ("ip.len", Kind::Uint(U16), "total length"),
    ("ip.id", Kind::Uint(U16), "identification"),
    ("ip.flags.df", Kind::Uint(1), "don't fragment"),
    ("ip.flags.mf", Kind::Uint(1), "more fragments"),
    ("ipv6.src", Kind::Ipv6, "IPv6 source"),
    ("ipv6.dst", Kind::Ipv6, "IPv6 destination"),
    ("ipv6.addr", Kind::Ipv6, "IPv6 source or destination"),
    ("ipv6.hlim", Kind::Uint(U8), "hop limit"),
    ("ipv6.nxt", Kind::Uint(U8), "next header"),
    ("ipv6.plen", Kind::Uint(U16), "payload length"),
    ("ipv6.flow", Kind::Uint(0xf_ffff), "flow label"),
    ("tcp.srcport", Kind::Uint(U16), "TCP source port"),
    ("tcp.dstport", Kind::Uint(U16), "TCP destination port"),
    ("tcp.port", Kind::Uint(U16), "TCP source or destination port"),
    ("tcp.seq", Kind::Uint(U32), "sequence number (absolute: pidcap does not make them relative)"),
    ("tcp.ack", Kind::Uint(U32), "acknowledgment number (absolute)"),
    ("tcp.len", Kind::Uint(U32), "TCP payload length"),
    ("tcp.hdr_len", Kind::Uint(U8), "TCP header length"),
    ("tcp.flags", Kind::Uint(U8), "the flags byte"),
    ("tcp.flags.fin", Kind::Uint(1), "FIN"),
    ("tcp.flags.syn", Kind::Uint(1), "SYN"),
    ("tcp.flags.reset", Kind::Uint(1), "RST (also tcp.flags.rst)"),
    ("tcp.flags.push", Kind::Uint(1), "PSH"),
    ("tcp.flags.ack", Kind::Uint(1), "ACK"),
    ("tcp.flags.urg", Kind::Uint(1), "URG"),
    ("tcp.flags.ece", Kind::Uint(1), "ECE"),
    ("tcp.flags.cwr", Kind::Uint(1), "CWR"),
    ("tcp.window_size_value", Kind::Uint(U16), "window (unscaled)"),
    ("tcp.payload", Kind::Bytes, "TCP payload"),
    ("udp.srcport", Kind::Uint(U16), "UDP source port"),
    ("udp.dstport", Kind::Uint(U16), "UDP destination port"),
    ("udp.port", Kind::Uint(U16), "UDP source or destination port"),
    ("udp.length", Kind::Uint(U16), "UDP length (header and payload)"),
    ("udp.payload", Kind::Bytes, "UDP payload"),
    ("icmp.type", Kind::Uint(U8), "ICMP type"),
    ("icmp.code", Kind::Uint(U8), "ICMP code"),
    ("icmpv6.type", Kind::Uint(U8), "ICMPv6 type"),
    ("icmpv6.code", Kind::Uint(U8), "ICMPv6 code"),
    ("dns.id", Kind::Uint(U16), "DNS transaction id"),
    ("dns.flags.response", Kind::Uint(1), "a DNS response"),
    ("dns.flags.rcode", Kind::Uint(15), "DNS response code"),
    ("dns.qry.name", Kind::Str, "a question's name"),
    ("dns.qry.type", Kind::Uint(U16), "a question's type"),
    ("dns.resp.name", Kind::Str, "an answer's name"),
    ("dns.a", Kind::Ipv4, "an A answer"),
    ("dns.aaaa", Kind::Ipv6, "an AAAA answer"),
    ("dns.count.answers", Kind::Uint(U16), "answer count"),
    ("http.request", Kind::Uint(1), "an HTTP request (present only on one)"),
    ("http.response", Kind::Uint(1), "an HTTP response (present only on one)"),
    ("http.request.method", Kind::Str, "GET, POST..."),
    ("http.request.uri", Kind::Str, "the request's target"),
    ("http.request.version", Kind::Str, "HTTP/1.1..."),
    ("http.response.code", Kind::Uint(999), "status code"),
    ("http.response.phrase", Kind::Str, "reason phrase"),
    ("http.host", Kind::Str, "Host header"),
    ("http.user_agent", Kind::Str, "User-Agent header"),
    ("tls.record.content_type", Kind::Uint(U8), "a record's content type"),
    ("tls.record.version", Kind::Uint(U16), "a record's version"),
    ("tls.handshake.type", Kind::Uint(U8), "a handshake message's type"),
    ("tls.handshake.extensions_server_name", Kind::Str, "the ClientHello's SNI (TLS or QUIC Initial)"),
    ("tls.handshake.extensions_alpn_str", Kind::Str, "an ALPN protocol"),
    ("quic.header_form", Kind::Uint(1), "1 long header, 0 short"),
    ("quic.version", Kind::Uint(U32), "long header version"),
    ("quic.long.packet_type", Kind::Uint(3), "0 Initial, 1 0-RTT, 2 Handshake, 3 Retry"),
    ("quic.dcid", Kind::Bytes, "destination connection id (long header)"),
    ("quic.scid", Kind::Bytes, "source connection id"),
    ("pidcap.pid", Kind::Uint(U32), "process id"),
    ("pidcap.comm", Kind::Str, "process name"),
    ("pidcap.tid", Kind::Uint(U32), "thread id"),
    ("pidcap.thread", Kind::Str, "thread name"),
    ("pidcap.exe", Kind::Str, "executable"),
    ("pidcap.cmdline", Kind::Str, "command line, arguments joined by spaces"),
    ("pidcap.arg", Kind::Str, "an argument"),
    ("pidcap.ppid", Kind::Uint(U32), "parent process id"),
    ("pidcap.pcomm", Kind::Str, "parent name"),
    ("pidcap.uid", Kind::Uint(U32), "user id"),
    ("pidcap.user", Kind::Str, "user name"),
    ("pidcap.cgroup", Kind::Str, "cgroup2 path"),
    ("pidcap.container", Kind::Str, "container, RUNTIME:ID"),
    ("pidcap.cookie", Kind::Uint(u64::MAX), "socket cookie"),
    ("pidcap.direction", Kind::Str, "in or out"),
    ("pidcap.verdict", Kind::Str, "pass or blocked"),
    ("pidcap.rule", Kind::Uint(U16), "the rule that decided the verdict"),
    ("pidcap.tls", Kind::Str, "TLS library of a plaintext record (openssl, gnutls, nss)"),
];

const U8: u64 = 0xff;
const U16: u64 = 0xffff;
const U32: u64 = 0xffff_ffff;

/// A field: an index into [`FIELDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field(u16);

impl Field {
    /// The field called `name` (Wireshark's; `tcp.flags.rst` is `tcp.flags.reset`).
    pub fn named(name: &str) -> Option<Field> {
        let name = match name {
            "tcp.flags.rst" => "tcp.flags.reset",
            "tcp.flags.psh" => "tcp.flags.push",
            n => n,
        };
        FIELDS.iter().position(|(n, ..)| *n == name).map(|i| Field(i as u16))
    }

    pub fn name(self) -> &'static str {
        FIELDS[usize::from(self.0)].0
    }

    pub fn kind(self) -> Kind {
        FIELDS[usize::from(self.0)].1
    }
}

/// The parsed display filter (empty: everything matches).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisplayFilter {
    pub expr: Option<Expr>,
}

impl DisplayFilter {
    /// Parse the filter box; an error says where (see the module doc).
    pub fn parse(s: &str) -> Result<DisplayFilter, FilterError> {
        let toks = lex(s)?;
        let mut p = Parser { toks: &toks, i: 0, end: s.chars().count() };
        if toks.is_empty() {
            return Ok(DisplayFilter::default());
        }
        let e = p.or()?;
        if let Some(t) = p.peek() {
            return Err(match t.tok {
                Tok::RParen => err(t, "this `)` has no `(` before it"),
                _ => err(t, format!("unexpected `{}`", t.text)),
            });
        }
        Ok(DisplayFilter { expr: Some(e) })
    }

    pub fn is_empty(&self) -> bool {
        self.expr.is_none()
    }

    pub fn matches(&self, p: &CapturedPacket) -> bool {
        match &self.expr {
            None => true,
            Some(e) => eval(e, &Ctx::new(p)),
        }
    }
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LParen,
    RParen,
    LBrace,
    RBrace,
    Comma,
    Op(Op),
    And,
    Or,
    Not,
    Word(String),
    Str(String),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    at: usize,
    len: usize,
    /// The characters as typed.
    text: String,
}

fn err(t: &Token, message: impl Into<String>) -> FilterError {
    FilterError { at: t.at, len: t.len.max(1), message: message.into() }
}

fn is_word_char(c: char) -> bool {
    !(c.is_whitespace() || "()\"!=<>&|{},".contains(c))
}

fn lex(s: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let next = chars.get(i + 1).copied();
        let two = |t: Tok| (t, 2);
        let (tok, n) = match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '{' => (Tok::LBrace, 1),
            '}' => (Tok::RBrace, 1),
            ',' => (Tok::Comma, 1),
            '=' if next == Some('=') => two(Tok::Op(Op::Eq)),
            '!' if next == Some('=') => two(Tok::Op(Op::Ne)),
            '<' if next == Some('=') => two(Tok::Op(Op::Le)),
            '>' if next == Some('=') => two(Tok::Op(Op::Ge)),
            '<' => (Tok::Op(Op::Lt), 1),
            '>' => (Tok::Op(Op::Gt), 1),
            '!' => (Tok::Not, 1),
            '&' if next == Some('&') => two(Tok::And),
            '|' if next == Some('|') => two(Tok::Or),
            '=' | '&' | '|' => {
                let want = match c {
                    '=' => "==",
                    '&' => "&& or and",
                    _ => "|| or or",
                };
                return Err(FilterError { at: i, len: 1, message: format!("`{c}` is not an operator: write {want}") });
            }
            '"' => {
                let (text, n) = string(&chars[i..]).map_err(|(off, message)| FilterError {
                    at: i + off,
                    len: if off == 0 { 1 } else { 2 },
                    message,
                })?;
                (Tok::Str(text), n)
            }
            _ => {
                let mut j = i;
                while j < chars.len() && is_word_char(chars[j]) {
                    j += 1;
                }
                let w: String = chars[i..j].iter().collect();
                let tok = match w.to_ascii_lowercase().as_str() {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    _ => Tok::Word(w),
                };
                (tok, j - i)
            }
        };
        i += n;
        out.push(Token { tok, at: start, len: n, text: chars[start..i].iter().collect() });
    }
    Ok(out)
}

/// A quoted string at the start of `c`: its text and the characters it
/// took; an error's offset from the quote.
fn string(c: &[char]) -> Result<(String, usize), (usize, String)> {
    let mut out = String::new();
    let mut i = 1;
    while i < c.len() {
        match c[i] {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                match c.get(i + 1) {
                    Some('"') => out.push('"'),
                    Some('\\') => out.push('\\'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some('0') => out.push('\0'),
                    Some('x') => {
                        let h: String = c.get(i + 2..i + 4).map(|h| h.iter().collect()).unwrap_or_default();
                        let b = u8::from_str_radix(&h, 16)
                            .ok()
                            .filter(|_| h.len() == 2)
                            .ok_or((i, "`\\x` needs two hex digits".to_string()))?;
                        out.push(char::from(b));
                        i += 2;
                    }
                    _ => return Err((i, "unknown escape: use \\\" \\\\ \\n \\r \\t \\0 or \\xHH".into())),
                }
                i += 2;
            }
            ch => {
                out.push(ch);
                i += 1;
            }
        }
    }
    Err((0, "this quote is not closed".into()))
}

// ---- parsing ----

struct Parser<'a> {
    toks: &'a [Token],
    i: usize,
    /// Characters in the text (for errors at its end).
    end: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.toks.get(self.i)
    }

    fn peek_at(&self, n: usize) -> Option<&'a Token> {
        self.toks.get(self.i + n)
    }

    fn bump(&mut self) -> Option<&'a Token> {
        let t = self.toks.get(self.i);
        self.i += 1;
        t
    }

    fn starts_operand(&self) -> bool {
        matches!(self.peek().map(|t| &t.tok), Some(Tok::Word(_) | Tok::Str(_) | Tok::LParen | Tok::Not))
    }

    /// After an operator `op`, an operand must follow.
    fn operand_after(&self, op: &Token) -> Result<(), FilterError> {
        if self.starts_operand() {
            Ok(())
        } else {
            Err(err(op, format!("`{}` needs an expression after it", op.text)))
        }
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut v = vec![self.and()?];
        while let Some(t) = self.peek().filter(|t| t.tok == Tok::Or) {
            self.bump();
            self.operand_after(t)?;
            v.push(self.and()?);
        }
        Ok(if v.len() == 1 { v.pop().unwrap_or(Expr::And(vec![])) } else { Expr::Or(v) })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut v = vec![self.unary()?];
        loop {
            if let Some(t) = self.peek().filter(|t| t.tok == Tok::And) {
                self.bump();
                self.operand_after(t)?;
            } else if !self.starts_operand() {
                break;
            }
            v.push(self.unary()?);
        }
        Ok(if v.len() == 1 { v.pop().unwrap_or(Expr::And(vec![])) } else { Expr::And(v) })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        if let Some(t) = self.peek().filter(|t| t.tok == Tok::Not) {
            self.bump();
            self.operand_after(t)?;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, FilterError> {
        let Some(t) = self.bump() else {
            return Err(FilterError { at: self.end, len: 1, message: "an expression is missing here".into() });
        };
        match &t.tok {
            Tok::LParen => {
                if self.peek().is_some_and(|n| n.tok == Tok::RParen) {
                    return Err(err(t, "empty parentheses"));
                }
                let e = self.or()?;
                match self.bump() {
                    Some(c) if c.tok == Tok::RParen => Ok(e),
                    Some(other) => Err(err(other, format!("unexpected `{}`: `)` expected", other.text))),
                    None => Err(err(t, "this `(` is not closed")),
                }
            }
            Tok::Str(s) => Ok(Expr::Test(Test::Short(Term::Text(s.to_lowercase())))),
            Tok::Word(w) => self.word(t, w),
            Tok::Op(_) => Err(err(t, format!("`{}` needs a field before it (`tcp.port {} 80`)", t.text, t.text))),
            Tok::RParen => Err(err(t, "this `)` has no `(` before it")),
            Tok::And | Tok::Or => Err(err(t, format!("`{}` needs an expression before it", t.text))),
            Tok::Not => Err(err(t, "`!` needs an expression after it")),
            Tok::LBrace | Tok::RBrace | Tok::Comma => {
                Err(err(t, format!("`{}` belongs in a set after `in` (`tcp.port in {{80 443}}`)", t.text)))
            }
        }
    }

    /// The comparison operator at the cursor, if any (symbols or words).
    fn op_here(&self) -> Option<OpWord> {
        let t = self.peek()?;
        match &t.tok {
            Tok::Op(op) => Some(OpWord::Cmp(*op)),
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "eq" => Some(OpWord::Cmp(Op::Eq)),
                "ne" => Some(OpWord::Cmp(Op::Ne)),
                "lt" => Some(OpWord::Cmp(Op::Lt)),
                "gt" => Some(OpWord::Cmp(Op::Gt)),
                "le" => Some(OpWord::Cmp(Op::Le)),
                "ge" => Some(OpWord::Cmp(Op::Ge)),
                "contains" => Some(OpWord::Contains),
                "matches" | "~" => Some(OpWord::Matches),
                "in" if self.peek_at(1).is_some_and(|n| n.tok == Tok::LBrace) => Some(OpWord::In),
                _ => None,
            },
            _ => None,
        }
    }

    fn word(&mut self, t: &'a Token, w: &str) -> Result<Expr, FilterError> {
        let lower = w.to_ascii_lowercase();
        if let Some(op) = self.op_here() {
            let field = Field::named(&lower).ok_or_else(|| unknown_field(t, &lower))?;
            let op_tok = self.bump().unwrap_or(t);
            return self.comparison(field, op, op_tok).map(Expr::Test);
        }
        if let Some(p) = proto_named(&lower) {
            return Ok(Expr::Test(p));
        }
        if let Some(f) = Field::named(&lower) {
            return Ok(Expr::Test(Test::Exists(f)));
        }
        if looks_like_field(&lower) {
            return Err(unknown_field(t, &lower));
        }
        // tcpdump's `port N`, `host A`, `net C`.
        if matches!(lower.as_str(), "port" | "host" | "net") {
            if let Some(v) = self.peek().filter(|v| matches!(v.tok, Tok::Word(_))) {
                self.bump();
                let term = parse_term(&v.text).map_err(|m| err(v, m))?;
                let ok = matches!((lower.as_str(), &term), ("port", Term::Port(_)) | ("host" | "net", Term::Net(_)));
                if !ok {
                    let want = if lower == "port" { "a port number (0..65535)" } else { "an address or network" };
                    return Err(err(v, format!("`{lower}` needs {want}, not `{}`", v.text)));
                }
                return Ok(Expr::Test(Test::Short(term)));
            }
        }
        parse_term(w).map(|t| Expr::Test(Test::Short(t))).map_err(|m| err(t, m))
    }

    fn comparison(&mut self, f: Field, op: OpWord, op_tok: &'a Token) -> Result<Test, FilterError> {
        match op {
            OpWord::Matches => Err(err(op_tok, "`matches` (regular expressions) is not supported: use `contains`")),
            OpWord::In => {
                let brace = self.bump().unwrap_or(op_tok);
                let mut items = Vec::new();
                loop {
                    let Some(v) = self.bump() else { return Err(err(brace, "this `{` is not closed")) };
                    match &v.tok {
                        Tok::RBrace if items.is_empty() => return Err(err(v, "an empty set")),
                        Tok::RBrace => break,
                        Tok::Comma => continue,
                        Tok::Word(w) if w.contains("..") && matches!(f.kind(), Kind::Uint(_)) => {
                            let (a, b) = w.split_once("..").unwrap_or((w, w));
                            let lo = value_of(f, v, a, false)?;
                            let hi = value_of(f, v, b, false)?;
                            items.push((lo, Some(hi)));
                        }
                        Tok::Word(w) => items.push((value_of(f, v, w, false)?, None)),
                        Tok::Str(s) => items.push((value_of(f, v, s, true)?, None)),
                        _ => return Err(err(v, format!("unexpected `{}` in a set", v.text))),
                    }
                }
                Ok(Test::In(f, items))
            }
            OpWord::Contains | OpWord::Cmp(_) => {
                let Some(v) = self.peek().filter(|v| matches!(v.tok, Tok::Word(_) | Tok::Str(_))) else {
                    return Err(err(op_tok, format!("`{}` needs a value after it", op_tok.text)));
                };
                self.bump();
                let (text, quoted) = match &v.tok {
                    Tok::Str(s) => (s.as_str(), true),
                    _ => (v.text.as_str(), false),
                };
                if op == OpWord::Contains {
                    return match f.kind() {
                        Kind::Str | Kind::Bytes => Ok(Test::Contains(f, bytes_value(text, quoted))),
                        _ => Err(err(
                            op_tok,
                            format!("{} is a number or an address: `contains` needs a text field", f.name()),
                        )),
                    };
                }
                let OpWord::Cmp(op) = op else { unreachable!("handled above") };
                let value = value_of(f, v, text, quoted)?;
                if matches!(value, Value::Net(_)) && !matches!(op, Op::Eq | Op::Ne) {
                    return Err(err(
                        op_tok,
                        format!("an address compares with == or != (a CIDR for a range), not `{}`", op_tok.text),
                    ));
                }
                Ok(Test::Cmp(f, op, value))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpWord {
    Cmp(Op),
    Contains,
    Matches,
    In,
}

/// `text` as a value of field `f` (`v` is its token, for errors).
fn value_of(f: Field, v: &Token, text: &str, quoted: bool) -> Result<Value, FilterError> {
    match f.kind() {
        Kind::Uint(max) => {
            let n = parse_uint(text).ok_or_else(|| {
                let what = if max == 1 { "0 or 1" } else { "a number" };
                err(v, format!("`{text}` is not {what} ({} is a number)", f.name()))
            })?;
            if n > max {
                return Err(err(v, format!("{n} is too big for {} (at most {max})", f.name())));
            }
            Ok(Value::Int(n))
        }
        Kind::Ipv4 | Kind::Ipv6 => {
            let net: IpNet = text.parse().map_err(|e: crate::net::NetError| {
                err(v, format!("`{text}` {} ({} is an address or a CIDR)", e.after(text), f.name()))
            })?;
            let want_v4 = f.kind() == Kind::Ipv4;
            if net.addr().is_ipv4() != want_v4 {
                let other =
                    if want_v4 { f.name().replacen("ip.", "ipv6.", 1) } else { f.name().replacen("ipv6.", "ip.", 1) };
                let (this, that) = if want_v4 { ("IPv4", "IPv6") } else { ("IPv6", "IPv4") };
                return Err(err(v, format!("{} is an {this} field: for the {that} `{text}` use {other}", f.name())));
            }
            Ok(Value::Net(net))
        }
        Kind::Bytes => Ok(Value::Bytes(bytes_value(text, quoted))),
        Kind::Str => {
            let canonical = match f.name() {
                "pidcap.direction" => {
                    Some(text.parse::<Direction>().map(|d| d.as_str().to_string()).map_err(|e| e.to_string()))
                }
                "pidcap.verdict" => {
                    Some(text.parse::<Verdict>().map(|d| d.as_str().to_string()).map_err(|e| e.to_string()))
                }
                "pidcap.tls" => {
                    Some(text.parse::<TlsLibrary>().map(|d| d.as_str().to_string()).map_err(|e| e.to_string()))
                }
                _ => None,
            };
            match canonical {
                Some(Ok(s)) => Ok(Value::Str(s)),
                Some(Err(m)) => Err(err(v, m)),
                None => Ok(Value::Str(text.to_string())),
            }
        }
    }
}

fn parse_uint(s: &str) -> Option<u64> {
    match s.to_ascii_lowercase().as_str() {
        "true" => return Some(1),
        "false" => return Some(0),
        _ => {}
    }
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None if s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        None => None,
    }
}

/// A byte value: `47:45:54` (or `47-45-54`, `47.45.54`) unquoted is bytes, anything else its text.
fn bytes_value(text: &str, quoted: bool) -> Vec<u8> {
    if !quoted {
        let parts: Vec<&str> = text.split([':', '-', '.']).collect();
        if parts.len() > 1 && parts.iter().all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())) {
            return parts.iter().filter_map(|p| u8::from_str_radix(p, 16).ok()).collect();
        }
    }
    text.as_bytes().to_vec()
}

fn proto_named(w: &str) -> Option<Test> {
    Some(match w {
        "frame" => Test::Proto(Proto::Frame),
        "ip" => Test::Proto(Proto::Ip),
        "ipv6" => Test::Proto(Proto::Ipv6),
        "icmp" => Test::Proto(Proto::Icmp),
        "icmpv6" => Test::Proto(Proto::Icmpv6),
        "dns" => Test::Proto(Proto::Dns),
        "http" => Test::Proto(Proto::Http),
        "tls" => Test::Proto(Proto::Tls),
        "quic" => Test::Proto(Proto::Quic),
        _ => return None,
    })
}

const PREFIXES: &[&str] = &[
    "frame.", "ip.", "ipv6.", "tcp.", "udp.", "icmp.", "icmpv6.", "dns.", "http.", "tls.", "quic.", "pidcap.", "eth.",
    "sll.",
];

/// A dotted word under a protocol pidcap knows: meant as a field.
fn looks_like_field(w: &str) -> bool {
    PREFIXES.iter().any(|p| w.starts_with(p) && w.len() > p.len())
        && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
}

/// Common words for fields, and what they are called.
const ALIASES: &[(&str, &str)] = &[
    ("len", "frame.len"),
    ("length", "frame.len"),
    ("size", "frame.len"),
    ("port", "tcp.port or udp.port"),
    ("srcport", "tcp.srcport"),
    ("dstport", "tcp.dstport"),
    ("sport", "tcp.srcport"),
    ("dport", "tcp.dstport"),
    ("src", "ip.src"),
    ("dst", "ip.dst"),
    ("host", "ip.addr"),
    ("addr", "ip.addr"),
    ("ip.port", "tcp.port or udp.port"),
    ("ttl", "ip.ttl"),
    ("seq", "tcp.seq"),
    ("ack", "tcp.ack"),
    ("flags", "tcp.flags"),
    ("win", "tcp.window_size_value"),
    ("pid", "pidcap.pid"),
    ("tid", "pidcap.tid"),
    ("comm", "pidcap.comm"),
    ("process", "pidcap.comm"),
    ("exe", "pidcap.exe"),
    ("user", "pidcap.user"),
    ("uid", "pidcap.uid"),
    ("cmdline", "pidcap.cmdline"),
    ("container", "pidcap.container"),
    ("direction", "pidcap.direction"),
    ("dir", "pidcap.direction"),
    ("verdict", "pidcap.verdict"),
    ("sni", "tls.handshake.extensions_server_name"),
    ("tls.sni", "tls.handshake.extensions_server_name"),
    ("alpn", "tls.handshake.extensions_alpn_str"),
    ("method", "http.request.method"),
    ("uri", "http.request.uri"),
    ("status", "http.response.code"),
    ("ip.version", "ip or ipv6"),
    ("tcp.flags.rst", "tcp.flags.reset"),
];

fn unknown_field(t: &Token, w: &str) -> FilterError {
    let suggestion = ALIASES.iter().find(|(a, _)| *a == w).map(|(_, f)| f.to_string()).or_else(|| {
        let (best, d) = FIELDS.iter().map(|(n, ..)| (*n, distance(w, n))).min_by_key(|(_, d)| *d)?;
        (d <= 2 || (d <= 4 && w.len() > 10)).then(|| best.to_string())
    });
    let message = if w.starts_with("eth.") || w.starts_with("sll.") {
        format!("`{w}`: pidcap captures from the IP header, there is no link layer")
    } else {
        match suggestion {
            Some(s) => format!("`{w}` is not a field: did you mean {s}?"),
            None => format!("`{w}` is not a field pidcap knows"),
        }
    };
    err(t, message)
}

/// Edit distance (Levenshtein), for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn parse_term(w: &str) -> Result<Term, String> {
    let lower = w.to_lowercase();
    if let Ok(p) = lower.parse::<Protocol>() {
        return Ok(Term::Protocol(p));
    }
    if let Ok(d) = lower.parse::<Direction>() {
        return Ok(Term::Direction(d));
    }
    if let Ok(v) = lower.parse::<Verdict>() {
        return Ok(Term::Verdict(v));
    }
    if lower == "tls" {
        return Ok(Term::Tls(None));
    }
    if lower == "wire" {
        return Ok(Term::Wire);
    }
    Ok(if let Some(l) = lower.strip_prefix("tls:") {
        Term::Tls(Some(l.parse().map_err(|_| format!("`{w}`: a TLS library is openssl, gnutls or nss"))?))
    } else if let Some(p) = lower.strip_prefix("port:") {
        Term::Port(p.parse().map_err(|_| format!("`{w}`: a port is 0..65535"))?)
    } else if let Some(p) = lower.strip_prefix("pid:") {
        Term::Pid(p.parse().map_err(|_| format!("`{w}`: a pid is a number"))?)
    } else if let Ok(port) = lower.parse::<u16>() {
        Term::Port(port)
    } else if lower.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("`{w}`: a port is 0..65535"));
    } else {
        match lower.parse::<IpNet>() {
            Ok(net) => Term::Net(net),
            // Looks like a network but is not one: say why rather than search the text.
            Err(e) if lower.contains('/') && lower.chars().next().is_some_and(|c| c.is_ascii_digit()) => {
                return Err(format!("`{w}` {e}"));
            }
            Err(_) => Term::Text(lower),
        }
    })
}

// ---- matching ----

/// A packet being matched, with what is decoded only when a term asks.
struct Ctx<'a> {
    p: &'a CapturedPacket,
    headers: OnceCell<Headers>,
    app: OnceCell<Option<App>>,
}

/// Which application protocol a test wants (see [`Ctx::app_of`]).
#[derive(Clone, Copy)]
enum Kind2 {
    Dns,
    Http,
    Tls,
    Quic,
}

/// One value of a field.
enum V<'a> {
    Int(u64),
    Addr(IpAddr),
    Str(&'a str),
    Owned(String),
    Bytes(&'a [u8]),
}

impl<'a> Ctx<'a> {
    fn new(p: &'a CapturedPacket) -> Ctx<'a> {
        Ctx { p, headers: OnceCell::new(), app: OnceCell::new() }
    }

    fn headers(&self) -> &Headers {
        self.headers.get_or_init(|| headers(&self.p.data))
    }

    /// The application message, read only when the packet could carry one of
    /// kind `want` (cheap tests of the protocol, the ports and the first
    /// bytes first: most packets never get to the parsers).
    fn app_of(&self, want: Kind2) -> Option<&App> {
        if let Some(done) = self.app.get() {
            return done.as_ref();
        }
        let d = &self.p.decoded;
        let payload = self.p.payload();
        let on = |ports: &[u16]| ports.contains(&d.local_port) || ports.contains(&d.remote_port);
        let could = match want {
            Kind2::Dns => match d.protocol {
                Protocol::Udp => on(&[53, 5353, 5355]),
                Protocol::Tcp => on(&[53]),
                _ => false,
            },
            Kind2::Http => d.protocol == Protocol::Tcp && payload.first().is_some_and(u8::is_ascii_uppercase),
            Kind2::Tls => d.protocol == Protocol::Tcp && info::tls::looks_like_tls(payload),
            Kind2::Quic => d.protocol == Protocol::Udp && payload.first().is_some_and(|b| b & 0x80 != 0 || on(&[443])),
        };
        if could {
            self.app()
        } else {
            None
        }
    }

    fn app(&self) -> Option<&App> {
        self.app
            .get_or_init(|| {
                let d = &self.p.decoded;
                info::app(d.protocol.number(), (d.local_port, d.remote_port), self.p.payload())
            })
            .as_ref()
    }

    /// (source, destination) as on the wire.
    fn ends<T: Copy>(&self, local: T, remote: T) -> (T, T) {
        match self.p.direction {
            Direction::Outbound => (local, remote),
            Direction::Inbound => (remote, local),
        }
    }

    fn tls_hello(&self) -> Option<&info::tls::Hello> {
        let app = self.app_of(Kind2::Tls).or_else(|| self.app_of(Kind2::Quic))?;
        match app {
            App::Tls(r) => info::tls::first_hello(r).map(|(_, h)| h),
            App::Quic(q) => q.decrypted.as_ref()?.client_hello.as_ref(),
            _ => None,
        }
    }

    /// Calls `f` on each value of field `field` until it returns true; true if one did.
    fn any(&self, field: Field, f: &mut dyn FnMut(V<'_>) -> bool) -> bool {
        let p = self.p;
        let d = &p.decoded;
        let tcp = d.protocol == Protocol::Tcp;
        let udp = d.protocol == Protocol::Udp;
        let int = |f: &mut dyn FnMut(V<'_>) -> bool, n: u64| f(V::Int(n));
        let flag =
            |f: &mut dyn FnMut(V<'_>) -> bool, bit: u8| d.tcp_flags.is_some_and(|x| f(V::Int(u64::from(x & bit != 0))));
        match field.name() {
            "frame" => f(V::Bytes(&p.data)),
            "frame.len" => int(f, u64::from(p.orig_len)),
            "frame.cap_len" => int(f, p.data.len() as u64),
            "frame.number" => int(f, p.id),
            "ip.src" | "ip.dst" | "ip.addr" | "ipv6.src" | "ipv6.dst" | "ipv6.addr" => {
                let want = if field.name().starts_with("ipv6") { 6 } else { 4 };
                if d.ip_version != want {
                    return false;
                }
                let (s, t) = self.ends(d.local_addr, d.remote_addr);
                match field.name().rsplit('.').next() {
                    Some("src") => f(V::Addr(s)),
                    Some("dst") => f(V::Addr(t)),
                    _ => f(V::Addr(s)) || f(V::Addr(t)),
                }
            }
            "ip.ttl" | "ip.proto" | "ip.len" | "ip.id" | "ip.flags.df" | "ip.flags.mf" => {
                let Some(IpHeader::V4(h)) = self.headers().ip else { return false };
                let n = match field.name() {
                    "ip.ttl" => u64::from(h.ttl),
                    "ip.proto" => u64::from(h.protocol),
                    "ip.len" => u64::from(h.total_len),
                    "ip.id" => u64::from(h.identification),
                    "ip.flags.df" => u64::from(h.dont_fragment),
                    _ => u64::from(h.more_fragments),
                };
                int(f, n)
            }
            "ipv6.hlim" | "ipv6.nxt" | "ipv6.plen" | "ipv6.flow" => {
                let Some(IpHeader::V6(h)) = self.headers().ip else { return false };
                let n = match field.name() {
                    "ipv6.hlim" => u64::from(h.hop_limit),
                    "ipv6.nxt" => u64::from(h.next_header),
                    "ipv6.plen" => u64::from(h.payload_len),
                    _ => u64::from(h.flow_label),
                };
                int(f, n)
            }
            "tcp.srcport" | "tcp.dstport" | "tcp.port" | "udp.srcport" | "udp.dstport" | "udp.port" => {
                if !(if field.name().starts_with("tcp") { tcp } else { udp }) {
                    return false;
                }
                let (s, t) = self.ends(d.local_port, d.remote_port);
                match field.name().split('.').nth(1) {
                    Some("srcport") => int(f, u64::from(s)),
                    Some("dstport") => int(f, u64::from(t)),
                    _ => int(f, u64::from(s)) || int(f, u64::from(t)),
                }
            }
            "tcp.seq" => d.tcp_seq.is_some_and(|n| int(f, u64::from(n))),
            "tcp.ack" => d.tcp_ack.is_some_and(|n| int(f, u64::from(n))),
            "tcp.len" => tcp && int(f, u64::from(d.payload_size)),
            "tcp.flags" => d.tcp_flags.is_some_and(|n| int(f, u64::from(n))),
            "tcp.flags.fin" => flag(f, 0x01),
            "tcp.flags.syn" => flag(f, 0x02),
            "tcp.flags.reset" => flag(f, 0x04),
            "tcp.flags.push" => flag(f, 0x08),
            "tcp.flags.ack" => flag(f, 0x10),
            "tcp.flags.urg" => flag(f, 0x20),
            "tcp.flags.ece" => flag(f, 0x40),
            "tcp.flags.cwr" => flag(f, 0x80),
            "tcp.window_size_value" | "tcp.hdr_len" => match self.headers().tcp() {
                Some(t) if field.name() == "tcp.hdr_len" => int(f, t.header_len as u64),
                Some(t) => int(f, u64::from(t.window)),
                None => false,
            },
            "tcp.payload" => tcp && f(V::Bytes(p.payload())),
            "udp.payload" => udp && f(V::Bytes(p.payload())),
            "udp.length" => self.headers().udp().is_some_and(|u| int(f, u64::from(u.length))),
            "icmp.type" | "icmp.code" | "icmpv6.type" | "icmpv6.code" => {
                let want = if field.name().starts_with("icmpv6") { Protocol::Icmpv6 } else { Protocol::Icmp };
                let h = self.headers();
                let (Some(TransportHeader::Icmp { header_len }), true) = (h.transport, d.protocol == want) else {
                    return false;
                };
                let at = h.payload_offset.saturating_sub(header_len) + usize::from(field.name().ends_with("code"));
                p.data.get(at).is_some_and(|&b| int(f, u64::from(b)))
            }
            name if name.starts_with("dns.") => {
                let Some(App::Dns(m)) = self.app_of(Kind2::Dns) else { return false };
                let bare = |n: &str| if n == "." { "<Root>".to_string() } else { n.trim_end_matches('.').to_string() };
                match name {
                    "dns.id" => int(f, u64::from(m.id)),
                    "dns.flags.response" => int(f, u64::from(m.response)),
                    "dns.flags.rcode" => int(f, u64::from(m.rcode)),
                    "dns.count.answers" => int(f, u64::from(m.counts[1])),
                    "dns.qry.name" => m.questions.iter().any(|q| f(V::Owned(bare(&q.name)))),
                    "dns.qry.type" => m.questions.iter().any(|q| int(f, u64::from(q.qtype))),
                    "dns.resp.name" => m.answers.iter().any(|a| f(V::Owned(bare(&a.name)))),
                    "dns.a" => {
                        m.answers.iter().any(|a| matches!(a.data, info::dns::RData::A(x) if f(V::Addr(x.into()))))
                    }
                    "dns.aaaa" => {
                        m.answers.iter().any(|a| matches!(a.data, info::dns::RData::Aaaa(x) if f(V::Addr(x.into()))))
                    }
                    _ => false,
                }
            }
            name if name.starts_with("http.") => {
                let line = match self.app_of(Kind2::Http) {
                    Some(App::HttpRequest(l)) => (true, l),
                    Some(App::HttpStatus(l)) => (false, l),
                    _ => return false,
                };
                let (request, line) = line;
                let mut parts = line.splitn(3, ' ');
                let (a, b, c) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                match (name, request) {
                    ("http.request", true) | ("http.response", false) => int(f, 1),
                    ("http.request.method", true) => f(V::Str(a)),
                    ("http.request.uri", true) => f(V::Str(b)),
                    ("http.request.version", true) => f(V::Str(c)),
                    ("http.response.code", false) => b.parse().is_ok_and(|n| int(f, n)),
                    ("http.response.phrase", false) => f(V::Str(c)),
                    ("http.host", _) => http_header(p.payload(), b"host").is_some_and(|v| f(V::Bytes(v))),
                    ("http.user_agent", _) => http_header(p.payload(), b"user-agent").is_some_and(|v| f(V::Bytes(v))),
                    _ => false,
                }
            }
            "tls.handshake.extensions_server_name" => {
                self.tls_hello().and_then(|h| h.sni.as_ref()).is_some_and(|(s, _)| f(V::Str(s)))
            }
            "tls.handshake.extensions_alpn_str" => {
                self.tls_hello().is_some_and(|h| h.alpn.iter().any(|(a, _)| f(V::Str(a))))
            }
            name if name.starts_with("tls.") => {
                let Some(App::Tls(records)) = self.app_of(Kind2::Tls) else { return false };
                match name {
                    "tls.record.content_type" => records.iter().any(|r| int(f, u64::from(r.content_type))),
                    "tls.record.version" => records.iter().any(|r| int(f, u64::from(r.version))),
                    _ => records.iter().flat_map(|r| &r.messages).any(|m| int(f, u64::from(m.kind))),
                }
            }
            name if name.starts_with("quic.") => {
                let Some(App::Quic(q)) = self.app_of(Kind2::Quic) else { return false };
                match (name, &q.long) {
                    ("quic.header_form", l) => int(f, u64::from(l.is_some())),
                    ("quic.version", Some(h)) => int(f, u64::from(h.version)),
                    ("quic.long.packet_type", Some(h)) => {
                        use info::quic::LongKind::*;
                        match h.kind {
                            Initial => int(f, 0),
                            ZeroRtt => int(f, 1),
                            Handshake => int(f, 2),
                            Retry => int(f, 3),
                            VersionNegotiation => false,
                        }
                    }
                    ("quic.dcid", Some(h)) => f(V::Bytes(&h.dcid)),
                    ("quic.scid", Some(h)) => f(V::Bytes(&h.scid)),
                    _ => false,
                }
            }
            "pidcap.pid" => int(f, u64::from(p.pid)),
            "pidcap.comm" => f(V::Str(&p.comm)),
            "pidcap.tid" => p.tid != 0 && int(f, u64::from(p.tid)),
            "pidcap.thread" => !p.thread.is_empty() && f(V::Str(&p.thread)),
            "pidcap.cookie" => int(f, p.socket_cookie),
            "pidcap.direction" => f(V::Str(p.direction.as_str())),
            "pidcap.verdict" => f(V::Str(p.verdict.as_str())),
            "pidcap.rule" => p.rule.is_some_and(|r| int(f, u64::from(r))),
            "pidcap.tls" => p.tls.is_some_and(|t| f(V::Str(t.library.as_str()))),
            name => {
                let Some(m) = p.process.as_deref() else { return false };
                let some = |s: &str| !s.is_empty();
                match name {
                    "pidcap.exe" => some(&m.exe) && f(V::Str(&m.exe)),
                    "pidcap.cmdline" => !m.cmdline.is_empty() && f(V::Owned(m.cmdline.join(" "))),
                    "pidcap.arg" => m.cmdline.iter().any(|a| f(V::Str(a))),
                    "pidcap.ppid" => m.ppid != 0 && int(f, u64::from(m.ppid)),
                    "pidcap.pcomm" => some(&m.parent_comm) && f(V::Str(&m.parent_comm)),
                    "pidcap.uid" => int(f, u64::from(m.uid)),
                    "pidcap.user" => some(&m.user) && f(V::Str(&m.user)),
                    "pidcap.cgroup" => some(&m.cgroup) && f(V::Str(&m.cgroup)),
                    "pidcap.container" => m.container.as_ref().is_some_and(|c| f(V::Owned(c.to_string()))),
                    _ => false,
                }
            }
        }
    }
}

/// The value of header `name` (lower case) in an HTTP/1.x head, trimmed.
pub fn http_header<'a>(payload: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head_end = payload.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(payload.len());
    payload[..head_end].split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        line[..colon].eq_ignore_ascii_case(name).then(|| line[colon + 1..].trim_ascii())
    })
}

fn bytes_of<'b>(v: &'b V<'_>) -> &'b [u8] {
    match v {
        V::Str(s) => s.as_bytes(),
        V::Owned(s) => s.as_bytes(),
        V::Bytes(b) => b,
        V::Int(_) | V::Addr(_) => &[],
    }
}

/// Does value `v` stand in relation `op` to `want`?
fn compare(v: &V<'_>, op: Op, want: &Value) -> bool {
    match (v, want) {
        (V::Int(n), Value::Int(w)) => op.holds(n.cmp(w)),
        (V::Addr(a), Value::Net(net)) => net.contains(*a) == (op == Op::Eq),
        (V::Addr(_), _) | (V::Int(_), _) => false,
        (v, Value::Str(s)) => op.holds(bytes_of(v).cmp(s.as_bytes())),
        (v, Value::Bytes(b)) => op.holds(bytes_of(v).cmp(b.as_slice())),
        _ => false,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

fn eval(e: &Expr, c: &Ctx<'_>) -> bool {
    match e {
        Expr::And(v) => v.iter().all(|e| eval(e, c)),
        Expr::Or(v) => v.iter().any(|e| eval(e, c)),
        Expr::Not(e) => !eval(e, c),
        Expr::Test(t) => test(t, c),
    }
}

fn test(t: &Test, c: &Ctx<'_>) -> bool {
    let p = c.p;
    match t {
        Test::Short(term) => term_matches(term, c),
        Test::Proto(proto) => match proto {
            Proto::Frame => true,
            Proto::Ip => p.decoded.ip_version == 4,
            Proto::Ipv6 => p.decoded.ip_version == 6,
            Proto::Icmp => p.decoded.protocol == Protocol::Icmp,
            Proto::Icmpv6 => p.decoded.protocol == Protocol::Icmpv6,
            Proto::Dns => matches!(c.app_of(Kind2::Dns), Some(App::Dns(_))),
            Proto::Http => matches!(c.app_of(Kind2::Http), Some(App::HttpRequest(_) | App::HttpStatus(_))),
            Proto::Tls => p.is_tls() || matches!(c.app_of(Kind2::Tls), Some(App::Tls(_))),
            Proto::Quic => matches!(c.app_of(Kind2::Quic), Some(App::Quic(_))),
        },
        Test::Exists(f) => c.any(*f, &mut |_| true),
        // Wireshark 4's `!=`: the field is there and none of its values is equal.
        Test::Cmp(f, Op::Ne, want) => c.any(*f, &mut |_| true) && !c.any(*f, &mut |v| compare(&v, Op::Eq, want)),
        Test::Cmp(f, op, want) => c.any(*f, &mut |v| compare(&v, *op, want)),
        Test::Contains(f, needle) => c.any(*f, &mut |v| contains(bytes_of(&v), needle)),
        Test::In(f, items) => c.any(*f, &mut |v| {
            items.iter().any(|(lo, hi)| match hi {
                None => compare(&v, Op::Eq, lo),
                Some(hi) => compare(&v, Op::Ge, lo) && compare(&v, Op::Le, hi),
            })
        }),
    }
}

fn term_matches(t: &Term, c: &Ctx<'_>) -> bool {
    let p = c.p;
    let d = &p.decoded;
    match t {
        Term::Protocol(x) => d.protocol == *x,
        Term::Direction(x) => p.direction == *x,
        Term::Verdict(x) => p.verdict == *x,
        Term::Port(x) => d.local_port == *x || d.remote_port == *x,
        Term::Pid(x) => p.pid == *x,
        Term::Net(n) => n.contains(d.local_addr) || n.contains(d.remote_addr),
        Term::Tls(None) => p.is_tls() || matches!(c.app_of(Kind2::Tls), Some(App::Tls(_))),
        Term::Tls(Some(l)) => p.tls.is_some_and(|t| t.library == *l),
        Term::Wire => !p.is_tls(),
        Term::Text(s) => contains_ci(p.payload(), s.as_bytes()) || p.comm.to_lowercase().contains(s.as_str()),
    }
}

#[cfg(test)]
mod tests;
