//! NETLINK_SOCK_DIAG (inet_diag) dump of every TCP and UDP socket, IPv4 and
//! IPv6, in every state, with its inode and kernel socket cookie.
//!
//! Joined with the socket inodes in `/proc/PID/fd`, this attributes the
//! sockets a target already had open before the eBPF hooks saw them: the
//! cookie reported here equals `bpf_get_socket_cookie()` for the same socket.
//!
//! Written by hand rather than with a netlink crate: it is one fixed request
//! and one fixed reply layout (`inet_diag_req_v2`, `inet_diag_msg` from
//! `linux/inet_diag.h`), and the crates that cover all of netlink would be
//! several dependencies for 100 lines.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_SOCK_DIAG: libc::c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
/// inet_diag_msg: family, state, timer, retrans, sockid (48), expires, rqueue, wqueue, uid, inode.
const INET_DIAG_MSG_LEN: usize = 72;
pub const TCP_LISTEN: u8 = 10;

/// One socket as inet_diag reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiagSocket {
    pub family: u8,
    pub protocol: u8,
    /// TCP state number (`TCP_LISTEN` = 10; UDP: 7 unconnected, 1 connected).
    pub state: u8,
    pub src_port: u16,
    pub dst_port: u16,
    pub inode: u64,
    pub cookie: u64,
}

fn dump(family: u8, protocol: u8, out: &mut Vec<DiagSocket>) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the result is checked.
    let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, NETLINK_SOCK_DIAG) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    let mut req = Vec::with_capacity(NLMSG_HDRLEN + 56);
    req.extend_from_slice(&((NLMSG_HDRLEN + 56) as u32).to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
    req.extend_from_slice(&[family, protocol, 0, 0]); // family, protocol, ext, pad
    req.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    req.extend_from_slice(&[0u8; 48]); // inet_diag_sockid: match anything
                                       // SAFETY: `req` is a valid buffer of `req.len()` bytes for the whole call.
    let sent = unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }

    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: `buf` is writable for `buf.len()` bytes for the whole call.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        if parse_messages(&buf[..n as usize], out)? {
            return Ok(());
        }
    }
}

/// Parse one datagram of netlink messages; Ok(true) once NLMSG_DONE is seen.
fn parse_messages(mut data: &[u8], out: &mut Vec<DiagSocket>) -> io::Result<bool> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("sock_diag reply: {what}"));
    while data.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes(data[0..4].try_into().expect("4 bytes")) as usize;
        let kind = u16::from_ne_bytes(data[4..6].try_into().expect("2 bytes"));
        if len < NLMSG_HDRLEN || len > data.len() {
            return Err(bad("message length out of range"));
        }
        let payload = &data[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = payload.get(0..4).map(|b| i32::from_ne_bytes(b.try_into().expect("4 bytes"))).unwrap_or(0);
                if errno == 0 {
                    return Ok(true);
                }
                return Err(io::Error::from_raw_os_error(-errno));
            }
            SOCK_DIAG_BY_FAMILY => {
                if payload.len() < INET_DIAG_MSG_LEN {
                    return Err(bad("short inet_diag_msg"));
                }
                let u32_at = |o: usize| u32::from_ne_bytes(payload[o..o + 4].try_into().expect("4 bytes"));
                out.push(DiagSocket {
                    family: payload[0],
                    state: payload[1],
                    protocol: 0, // filled by the caller's request
                    src_port: u16::from_be_bytes([payload[4], payload[5]]),
                    dst_port: u16::from_be_bytes([payload[6], payload[7]]),
                    cookie: u64::from(u32_at(44)) | (u64::from(u32_at(48)) << 32),
                    inode: u64::from(u32_at(68)),
                });
            }
            _ => {}
        }
        let aligned = (len + 3) & !3;
        data = data.get(aligned..).unwrap_or(&[]);
    }
    Ok(false)
}

/// Dump every IPv4/IPv6 TCP/UDP socket of this network namespace.
pub fn dump_all() -> io::Result<Vec<DiagSocket>> {
    let mut out = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        for protocol in [libc::IPPROTO_TCP as u8, libc::IPPROTO_UDP as u8] {
            let start = out.len();
            dump(family, protocol, &mut out)?;
            for s in &mut out[start..] {
                s.protocol = protocol;
            }
        }
    }
    Ok(out)
}

/// Dump the sockets of the network namespace `pid` lives in (a container's,
/// say), from a short-lived thread that joins that namespace: setns(2)
/// changes only the calling thread, so the rest of pidcap stays where it is.
pub fn dump_in_netns_of(pid: u32) -> io::Result<Vec<DiagSocket>> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))?;
    let mine = std::fs::metadata("/proc/thread-self/ns/net")?;
    let theirs = ns.metadata()?;
    use std::os::unix::fs::MetadataExt;
    if (mine.dev(), mine.ino()) == (theirs.dev(), theirs.ino()) {
        return dump_all();
    }
    std::thread::spawn(move || {
        // SAFETY: setns on a valid namespace fd, affecting only this thread,
        // which exits right after the dump.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        dump_all()
    })
    .join()
    .map_err(|_| io::Error::other("sock_diag thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, UdpSocket};
    use std::os::unix::fs::MetadataExt;

    fn inode_of(fd: &impl AsRawFd) -> u64 {
        std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap().ino()
    }

    #[test]
    fn finds_our_own_listening_tcp_and_udp_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let u = UdpSocket::bind("[::1]:0").unwrap();
        let all = dump_all().unwrap();
        let tl = all.iter().find(|s| s.inode == inode_of(&l)).expect("listener in dump");
        assert_eq!(tl.state, TCP_LISTEN);
        assert_eq!(tl.protocol, libc::IPPROTO_TCP as u8);
        assert_eq!(tl.src_port, l.local_addr().unwrap().port());
        assert_ne!(tl.cookie, 0);
        let tu = all.iter().find(|s| s.inode == inode_of(&u)).expect("udp socket in dump");
        assert_eq!(tu.family, libc::AF_INET6 as u8);
        assert_eq!(tu.protocol, libc::IPPROTO_UDP as u8);
        assert_eq!(tu.src_port, u.local_addr().unwrap().port());
    }

    #[test]
    fn rejects_malformed_replies() {
        let mut out = vec![];
        let mut msg = vec![0u8; 20];
        msg[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(parse_messages(&msg, &mut out).is_err());
        msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        assert!(parse_messages(&msg, &mut out).is_err(), "short inet_diag_msg");
        msg[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        assert!(parse_messages(&msg, &mut out).unwrap());
    }
}
