//! The fuzz targets: one per parser that takes outside input. Each is a
//! `fn(&[u8]) -> u64` that panics when something that must hold does not
//! (beyond "no panic": round trips, agreement between two ways of doing the
//! same thing, bounds), and returns a coarse signature of what the input
//! did (an error kind, how many packets...). The stable driver keeps inputs
//! with a new signature as extra seeds; libFuzzer ignores it.

pub mod capture;
pub mod decode;
pub mod dfilter;
pub mod dissect;
pub mod dns;
pub mod dpp;
pub mod edit;
pub mod library_query;
pub mod request;
pub mod rule;

use crate::mutate::fnv1a;

/// A fuzz target and what the driver needs to run it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Its name: the corpus directory (`corpus/<name>`), `--target`, the cargo-fuzz binary.
    pub name: &'static str,
    /// The parser, in a few words.
    pub about: &'static str,
    pub run: fn(&[u8]) -> u64,
    /// Longest input the driver makes.
    pub max_len: usize,
    pub dictionary: &'static [&'static [u8]],
}

/// Every target, in the order the driver runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "pcap",
        about: "classic pcap reading (pidcap_pcapfile::PacketReader), then pidcap's writers",
        run: capture::run,
        max_len: 64 << 10,
        dictionary: capture::DICTIONARY,
    },
    Target {
        name: "pcapng",
        about: "pcapng reading (pidcap_pcapfile::PacketReader), then pidcap's writers",
        run: capture::run,
        max_len: 64 << 10,
        dictionary: capture::DICTIONARY,
    },
    Target {
        name: "dpp",
        about: ".dpp import (pidcap_library::parse_dpp), then write_dpp and back",
        run: dpp::run,
        max_len: 64 << 10,
        dictionary: dpp::DICTIONARY,
    },
    Target {
        name: "rule",
        about: "rule specs (pidcap_engine::rules::Rule: FromStr, parse_spec, Display) and CIDRs (net::parse_net)",
        run: rule::run,
        max_len: 4 << 10,
        dictionary: rule::DICTIONARY,
    },
    Target {
        name: "request",
        about: "the daemon's request lines (framing as server.rs, pidcap_api::protocol::parse_request), then its add_filter and inject planning",
        run: request::run,
        max_len: 64 << 10,
        dictionary: request::DICTIONARY,
    },
    Target {
        name: "edit",
        about: "hex and escaped-ASCII editing (pidcap_packet::hex::parse, ascii::unescape) and pidcap_resend's patches, replaces, durations, endpoints",
        run: edit::run,
        max_len: 16 << 10,
        dictionary: edit::DICTIONARY,
    },
    Target {
        name: "decode",
        about: "the packet decoder (pidcap_packet::headers, decode), rebuilt with build::build, as JSON and back",
        run: decode::run,
        max_len: 4 << 10,
        dictionary: decode::DICTIONARY,
    },
    Target {
        name: "dns",
        about: "the DNS parser (pidcap_packet::info::dns) and the one-line summaries on it (info::app, info, verbose)",
        run: dns::run,
        max_len: 4 << 10,
        dictionary: dns::DICTIONARY,
    },
    Target {
        name: "library_query",
        about: "the library's search queries (pidcap_library::build_match, run on an FTS5 table) and frame ranges (parse_frames)",
        run: library_query::run,
        max_len: 2 << 10,
        dictionary: library_query::DICTIONARY,
    },
    Target {
        name: "dfilter",
        about: "the display filter (pidcap_packet::dfilter: Wireshark's subset and pidcap's short words)",
        run: dfilter::run,
        max_len: 2 << 10,
        dictionary: dfilter::DICTIONARY,
    },
    Target {
        name: "dissect",
        about: "the packet detail tree (pidcap_packet::dissect) and the Info line on any bytes, as an IP packet and as a payload",
        run: dissect::run,
        max_len: 4 << 10,
        dictionary: dissect::DICTIONARY,
    },
];

/// Targets that fail on purpose when their input holds a word (`boom`:
/// panic, `hang`: loop, `oom`: allocate without end), so that tests can check
/// the driver catches each kind of failure. Not part of `--all`.
pub const SELF_TESTS: &[Target] = &[
    Target { name: "selftest-panic", about: "panics on `boom`", run: selftest_panic, max_len: 64, dictionary: &[] },
    Target { name: "selftest-hang", about: "loops on `hang`", run: selftest_hang, max_len: 64, dictionary: &[] },
    Target {
        name: "selftest-oom",
        about: "allocates without end on `oom`",
        run: selftest_oom,
        max_len: 64,
        dictionary: &[],
    },
];

fn holds(data: &[u8], word: &[u8]) -> bool {
    data.windows(word.len()).any(|w| w == word)
}

fn selftest_panic(data: &[u8]) -> u64 {
    assert!(!holds(data, b"boom"), "selftest-panic: the input holds `boom`");
    0
}

fn selftest_hang(data: &[u8]) -> u64 {
    while holds(std::hint::black_box(data), b"hang") {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    0
}

fn selftest_oom(data: &[u8]) -> u64 {
    let mut keep: Vec<Vec<u8>> = Vec::new();
    while holds(data, b"oom") {
        keep.push(vec![1u8; 64 << 20]);
        std::hint::black_box(&keep);
    }
    0
}

/// The target called `name` (the self-tests included).
pub fn find(name: &str) -> Option<&'static Target> {
    TARGETS.iter().chain(SELF_TESTS).find(|t| t.name == name)
}

/// A stable hash of an input (names of saved inputs, cut points).
pub fn hash(data: &[u8]) -> u64 {
    fnv1a(data)
}

/// A signature made of a few values.
pub fn outcome(parts: &[u64]) -> u64 {
    let mut bytes = Vec::with_capacity(parts.len() * 8);
    for p in parts {
        bytes.extend_from_slice(&p.to_le_bytes());
    }
    fnv1a(&bytes)
}

/// A count in buckets (0, 1, 2, 3-4, 5-8, more), as AFL counts hits.
pub fn shape(n: usize) -> u64 {
    match n {
        0..=2 => n as u64,
        3..=4 => 3,
        5..=8 => 4,
        _ => 5,
    }
}

/// A message without its numbers and quoted parts, so that one kind of
/// error is one signature whatever the offsets and values in it.
pub fn text_shape(s: &str) -> u64 {
    let mut out = Vec::new();
    let mut quoted = false;
    for b in s.bytes().take(160) {
        match b {
            b'"' | b'`' => quoted = !quoted,
            _ if quoted || b.is_ascii_digit() => {}
            b => out.push(b),
        }
    }
    fnv1a(&out)
}

/// The input as text, as a parser of strings gets it: only valid UTF-8
/// (the CLI, JSON and the UI never hand a parser anything else).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
