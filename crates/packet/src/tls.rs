//! TLS plaintext records: the application data a target handed to (or got
//! from) its TLS library, taken by the kernel layer's uprobes, as opposed to
//! the packets that carried it encrypted.
//!
//! A record is a [`CapturedPacket`] whose [`CapturedPacket::tls`] is set. Its
//! `data` is a synthesized IP + TCP packet on the record's connection (the
//! socket's 5-tuple, in the record's direction) whose payload is the
//! plaintext, so that everything which reads packets (addresses, ports,
//! payload, the display filter, the hex view, resend in connect mode, the
//! library) reads records unchanged. Such a packet never crossed the wire:
//! every layer that shows it marks it as decrypted, and the pcapng writer
//! does not write it as a packet of the capture interface.

use crate::build::{build, TcpFields, Transport};
use crate::{decode, CapturedPacket, Direction, Verdict};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

/// The most plaintext bytes one record keeps: what fits in the synthesized
/// IPv6 + TCP packet (65535 minus 40 and 20 bytes of headers). Longer calls
/// keep this much, with their true length in `orig_len`.
pub const MAX_TLS_BYTES: usize = 65535 - 40 - 20;

/// The TLS library a record was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsLibrary {
    /// OpenSSL, LibreSSL, BoringSSL (`SSL_read`/`SSL_write` and their `_ex` forms).
    Openssl,
    /// GnuTLS (`gnutls_record_recv`/`gnutls_record_send`).
    Gnutls,
    /// NSS through NSPR (`PR_Read`/`PR_Write`/`PR_Recv`/`PR_Send`).
    Nss,
}

impl TlsLibrary {
    /// `openssl`, `gnutls`, `nss` (as serde writes it).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsLibrary::Openssl => "openssl",
            TlsLibrary::Gnutls => "gnutls",
            TlsLibrary::Nss => "nss",
        }
    }
}

impl fmt::Display for TlsLibrary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TlsLibrary {
    type Err = crate::ParseNameError;
    fn from_str(s: &str) -> Result<TlsLibrary, crate::ParseNameError> {
        match s {
            "openssl" => Ok(TlsLibrary::Openssl),
            "gnutls" => Ok(TlsLibrary::Gnutls),
            "nss" => Ok(TlsLibrary::Nss),
            _ => Err(crate::ParseNameError { found: s.into(), expected: "openssl, gnutls or nss" }),
        }
    }
}

/// What a TLS plaintext record has beyond a packet's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsInfo {
    /// The thread that made the library call.
    pub tid: u32,
    /// The library that carried the plaintext.
    pub library: TlsLibrary,
}

/// The fields of one TLS plaintext record, as the engine hands them to
/// [`CapturedPacket::tls_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRecord<'a> {
    pub id: u64,
    pub timestamp_ns: u64,
    pub pid: u32,
    pub comm: String,
    /// The socket the plaintext went out or came in on (0: not known).
    pub socket_cookie: u64,
    pub direction: Direction,
    /// The socket's own address and its peer's (`0.0.0.0:0` when not known).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub info: TlsInfo,
    /// The plaintext as captured (at most [`MAX_TLS_BYTES`] are kept).
    pub plaintext: &'a [u8],
    /// Bytes the call really carried (>= `plaintext.len()`).
    pub true_len: u64,
    /// TCP sequence number of the synthesized packet: by convention the
    /// plaintext's offset in its direction of the connection, so that a
    /// stream of records reassembles in order (0 when not tracked).
    pub stream_offset: u32,
}

impl CapturedPacket {
    /// The record as a packet: a synthesized IP + TCP packet on the record's
    /// connection carrying the plaintext (see the module doc). `orig_len`
    /// and `decoded.payload_size` give the true length of the plaintext.
    pub fn tls_record(r: TlsRecord<'_>) -> CapturedPacket {
        let kept = &r.plaintext[..r.plaintext.len().min(MAX_TLS_BYTES)];
        let (mut local, mut remote) = (r.local, r.remote);
        if local.is_ipv4() != remote.is_ipv4() {
            // Cannot happen for one socket; keep the record rather than lose it.
            (local, remote) = (unknown_addr(), unknown_addr());
        }
        let (src, dst) = match r.direction {
            Direction::Outbound => (local, remote),
            Direction::Inbound => (remote, local),
        };
        let tcp = TcpFields { seq: r.stream_offset, ..TcpFields::default() };
        let data = build(src, dst, crate::build::DEFAULT_TTL, Transport::Tcp(tcp), kept)
            .expect("a TCP packet of at most MAX_TLS_BYTES between addresses of one version always builds");
        let header_len = data.len() - kept.len();
        let true_len = r.true_len.max(kept.len() as u64);
        let mut decoded = decode(&data, r.direction);
        decoded.payload_size = u32::try_from(true_len).unwrap_or(u32::MAX);
        CapturedPacket {
            id: r.id,
            timestamp_ns: r.timestamp_ns,
            pid: r.pid,
            comm: r.comm,
            socket_cookie: r.socket_cookie,
            direction: r.direction,
            verdict: Verdict::Pass,
            rule: None,
            orig_len: u32::try_from(header_len as u64 + true_len).unwrap_or(u32::MAX),
            data,
            decoded,
            tls: Some(r.info),
            tid: 0,
            thread: String::new(),
            process: None,
        }
    }

    /// True for a TLS plaintext record, false for a packet.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }
}

/// `0.0.0.0:0`: the connection of a record whose socket is not known.
pub fn unknown_addr() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Protocol;

    fn record(direction: Direction, plaintext: &[u8], true_len: u64) -> CapturedPacket {
        CapturedPacket::tls_record(TlsRecord {
            id: 3,
            timestamp_ns: 1_700_000_000_000_000_000,
            pid: 42,
            comm: "curl".into(),
            socket_cookie: 77,
            direction,
            local: "127.0.0.1:40000".parse().unwrap(),
            remote: "127.0.0.1:8443".parse().unwrap(),
            info: TlsInfo { tid: 43, library: TlsLibrary::Openssl },
            plaintext,
            true_len,
            stream_offset: 100,
        })
    }

    #[test]
    fn a_record_reads_like_a_packet_of_its_connection() {
        for dir in [Direction::Outbound, Direction::Inbound] {
            let p = record(dir, b"GET / HTTP/1.1\r\n\r\n", 18);
            assert!(p.is_tls());
            assert_eq!(p.payload(), b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(p.decoded.protocol, Protocol::Tcp);
            assert_eq!((p.decoded.local_port, p.decoded.remote_port), (40000, 8443), "{dir:?}");
            assert_eq!(p.decoded.tcp_seq, Some(100));
            assert!(!p.is_truncated());
            let back: CapturedPacket = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
            assert_eq!(back, p);
        }
    }

    #[test]
    fn the_true_length_survives_a_cut_and_huge_calls_are_kept_in_part() {
        let p = record(Direction::Outbound, b"abcd", 1000);
        assert!(p.is_truncated());
        assert_eq!(p.decoded.payload_size, 1000);
        assert_eq!(p.orig_len as usize, p.data.len() - 4 + 1000);
        let big = vec![b'x'; MAX_TLS_BYTES + 10];
        let p = record(Direction::Inbound, &big, big.len() as u64);
        assert_eq!(p.payload().len(), MAX_TLS_BYTES);
        assert_eq!(p.decoded.payload_size as usize, big.len());
        let v6 = CapturedPacket::tls_record(TlsRecord {
            local: "[::1]:1".parse().unwrap(),
            remote: "[::1]:2".parse().unwrap(),
            plaintext: &big,
            ..TlsRecord {
                id: 1,
                timestamp_ns: 1,
                pid: 1,
                comm: String::new(),
                socket_cookie: 0,
                direction: Direction::Outbound,
                local: unknown_addr(),
                remote: unknown_addr(),
                info: TlsInfo { tid: 1, library: TlsLibrary::Nss },
                plaintext: b"",
                true_len: 0,
                stream_offset: 0,
            }
        });
        assert_eq!(v6.payload().len(), MAX_TLS_BYTES);
        assert_eq!(v6.data.len(), 65535);
    }

    #[test]
    fn a_packet_is_not_a_record_and_old_json_still_reads() {
        let p = record(Direction::Outbound, b"x", 1);
        let mut j: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(j["tls"]["library"], "openssl");
        j.as_object_mut().unwrap().remove("tls");
        let back: CapturedPacket = serde_json::from_value(j).unwrap();
        assert!(!back.is_tls());
        for l in [TlsLibrary::Openssl, TlsLibrary::Gnutls, TlsLibrary::Nss] {
            assert_eq!(l.to_string().parse::<TlsLibrary>().unwrap(), l);
        }
    }
}
