//! The reader on inputs pidcap does not write: big-endian files, several
//! sections and interfaces, other timestamp resolutions, other link types,
//! unknown and obsolete blocks. The files are built byte by byte here.

mod common;

use common::golden_packets;
use pidcap_packet::{Direction, Verdict};
use pidcap_pcapfile::{describe_skipped, read_packets, PacketReader, PcapError, SkipReason};

/// A tiny pcapng builder with a chosen byte order.
struct Ng {
    big: bool,
    out: Vec<u8>,
}

impl Ng {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn opt(&self, code: u16, value: &[u8]) -> Vec<u8> {
        let mut o = [self.u16(code), self.u16(value.len() as u16)].concat();
        o.extend_from_slice(value);
        o.resize(o.len().next_multiple_of(4), 0);
        o
    }

    fn block(&mut self, block_type: u32, body: &[u8]) {
        let mut body = body.to_vec();
        body.resize(body.len().next_multiple_of(4), 0);
        let total = body.len() as u32 + 12;
        let b = [&self.u32(block_type)[..], &self.u32(total), &body, &self.u32(total)].concat();
        self.out.extend_from_slice(&b);
    }

    fn shb(&mut self) {
        let body = [&self.u32(0x1a2b3c4d)[..], &self.u16(1), &self.u16(0), &[0xff; 8]].concat();
        self.block(0x0a0d0d0a, &body);
    }

    fn idb(&mut self, linktype: u16, options: &[u8]) {
        let body = [&self.u16(linktype)[..], &self.u16(0), &self.u32(0), options].concat();
        self.block(1, &body);
    }

    fn epb(&mut self, iface: u32, ts: u64, frame: &[u8], options: &[u8]) {
        let mut data = frame.to_vec();
        data.resize(data.len().next_multiple_of(4), 0);
        let (hi, lo) = ((ts >> 32) as u32, ts as u32);
        let len = frame.len() as u32;
        let body = [&self.u32(iface)[..], &self.u32(hi), &self.u32(lo), &self.u32(len), &self.u32(len), &data, options]
            .concat();
        self.block(6, &body);
    }
}

fn ip_packet(n: usize) -> Vec<u8> {
    golden_packets()[n].data.clone()
}

#[test]
fn big_endian_sections_interfaces_and_resolutions() {
    let ip = ip_packet(0);
    let mut ng = Ng { big: true, out: Vec::new() };
    ng.shb();
    ng.idb(101, &[]); // default resolution: microseconds
    let tsresol_2 = ng.opt(9, &[0x80 | 10]); // 2^-10 s
    let tsoffset = ng.opt(14, &ng.u32(0).iter().chain(&ng.u32(100)).copied().collect::<Vec<_>>());
    ng.idb(228, &[tsresol_2, tsoffset].concat());
    ng.block(0x0bad_cafe, b"unknown block, skipped");
    let comment = ng.opt(1, b"pid=7 comm=sh cookie=3 verdict=blocked rule=9");
    let flags = ng.opt(2, &ng.u32(1));
    ng.epb(0, 1_500_000, &ip, &[comment, flags].concat());
    ng.epb(1, 2048, &ip, &[]);
    let mut bytes = ng.out;
    // A second section, little-endian, nanoseconds.
    let mut le = Ng { big: false, out: Vec::new() };
    le.shb();
    let ns = le.opt(9, &[9]);
    le.idb(229, &ns);
    let v6 = ip_packet(2);
    le.epb(0, 42, &v6, &le.opt(1, b"not our comment"));
    bytes.extend_from_slice(&le.out);

    let ps = read_packets(&bytes[..]).expect("read");
    assert_eq!(ps.len(), 3);
    assert_eq!((ps[0].id, ps[0].timestamp_ns, ps[0].pid, ps[0].comm.as_str()), (1, 1_500_000_000, 7, "sh"));
    assert_eq!(
        (ps[0].socket_cookie, ps[0].verdict, ps[0].rule, ps[0].direction),
        (3, Verdict::Blocked, Some(9), Direction::Inbound)
    );
    assert_eq!(ps[0].data, ip);
    assert_eq!(ps[1].timestamp_ns, 100_000_000_000 + 2_000_000_000, "2^-10 resolution plus if_tsoffset");
    assert_eq!((ps[1].pid, ps[1].direction), (0, Direction::Outbound));
    assert_eq!((ps[2].id, ps[2].timestamp_ns, ps[2].decoded.ip_version, ps[2].pid), (3, 42, 6, 0));
}

#[test]
fn link_layers_are_stripped_and_non_ip_frames_skipped() {
    let ip = ip_packet(1);
    let mut eth_vlan = vec![0xaa; 12];
    eth_vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x88, 0xa8, 0x00, 0x06, 0x08, 0x00]);
    eth_vlan.extend_from_slice(&ip);
    let mut arp = vec![0xaa; 12];
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0]);
    // LINUX_SLL: packet type 4 = outgoing, protocol at 14.
    let mut sll = vec![0, 4, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    // LINUX_SLL2: protocol at 0, packet type at 10 (0 = to us).
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
    sll2.extend_from_slice(&ip);
    let null_le = [&2u32.to_le_bytes()[..], &ip].concat();
    let loop_be = [&2u32.to_be_bytes()[..], &ip].concat();
    let not_ip_raw = vec![0x11; 20];

    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    for lt in [1u16, 113, 276, 0, 108, 101, 147] {
        ng.idb(lt, &[]);
    }
    ng.epb(0, 1, &eth_vlan, &[]);
    ng.epb(0, 2, &arp, &[]);
    ng.epb(1, 3, &sll, &[]);
    ng.epb(2, 4, &sll2, &[]);
    ng.epb(3, 5, &null_le, &[]);
    ng.epb(4, 6, &loop_be, &[]);
    ng.epb(5, 7, &not_ip_raw, &[]);
    ng.epb(6, 8, &ip, &[]); // unsupported link type (USER0)

    let mut r = PacketReader::new(&ng.out[..]).expect("header");
    let ps: Vec<_> = r.by_ref().collect::<Result<_, _>>().expect("read");
    assert_eq!(r.skipped(), 3);
    assert_eq!(ps.iter().map(|p| p.id).collect::<Vec<_>>(), [1, 3, 4, 5, 6], "ids are frame numbers");
    for p in &ps {
        assert_eq!(p.data, ip, "frame {}", p.id);
        assert_eq!(p.orig_len as usize, ip.len(), "frame {}", p.id);
    }
    assert_eq!(ps[1].direction, Direction::Outbound, "SLL outgoing");
    assert_eq!(ps[2].direction, Direction::Inbound, "SLL2 host");
    // Which frames were skipped, and why, by frame number.
    let skipped: Vec<_> = r.skipped_frames().iter().map(|s| (s.frames.clone(), s.reason)).collect();
    assert_eq!(
        skipped,
        [
            (2..=2, SkipReason::NotIp { linktype: 1, protocol: Some(0x0806) }),
            (7..=7, SkipReason::NotIp { linktype: 101, protocol: Some(1) }),
            (8..=8, SkipReason::LinkType(147)),
        ]
    );
    assert_eq!(r.frames(), 8);
    assert_eq!(
        describe_skipped(r.skipped_frames()),
        [
            "frame 2 skipped: not an IPv4 or IPv6 packet (ethertype 0x0806, ARP)",
            "frame 7 skipped: not an IPv4 or IPv6 packet (IP version 1)",
            "frame 8 skipped: link type 147 (USER0) is not one pidcap reads (it reads RAW, IPV4, IPV6, ETHERNET, \
             LINUX_SLL, LINUX_SLL2, NULL and LOOP)",
        ]
    );
}

#[test]
fn consecutive_skipped_frames_are_one_run_and_lists_stay_short() {
    let ip = ip_packet(0);
    let mut arp = vec![0xaa; 12];
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0]);
    let mut eth_ip = vec![0xaa; 12];
    eth_ip.extend_from_slice(&[0x08, 0x00]);
    eth_ip.extend_from_slice(&ip);
    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    ng.idb(1, &[]);
    // Frames 1-3 ARP, 4 IP, then ARP and IP alternating up to frame 40.
    for f in 1..=40u64 {
        let ip_frame = f == 4 || (f > 4 && f % 2 == 0);
        ng.epb(0, f, if ip_frame { &eth_ip } else { &arp }, &[]);
    }
    let c = PacketReader::new(&ng.out[..]).unwrap().read_to_end().unwrap();
    assert_eq!((c.frames, c.packets.len()), (40, 19));
    assert!(c.cut.is_none());
    assert_eq!(c.skipped[0].frames, 1..=3);
    assert_eq!(c.skipped.len(), 1 + 18);
    assert_eq!(
        describe_skipped(&c.skipped),
        ["frames 1-3, 5, 7, 9, 11, 13, 15, 17, 19, 21, and 9 more skipped: not an IPv4 or IPv6 packet (ethertype 0x0806, ARP)"]
    );
    assert_eq!(c.packets.iter().map(|p| p.id).take(3).collect::<Vec<_>>(), [4, 6, 8], "ids are frame numbers");
}

#[test]
fn a_file_cut_inside_its_last_block_reads_up_to_it_and_says_where() {
    let ip = ip_packet(0);
    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    ng.idb(101, &[]);
    for f in 1..=5 {
        ng.epb(0, f, &ip, &[]);
    }
    let full = ng.out.len();
    for cut in [full - 1, full - ip.len(), full - 40] {
        let c = PacketReader::new(&ng.out[..cut]).unwrap().read_to_end().unwrap();
        assert_eq!(c.packets.len(), 4, "cut at {cut}");
        let e = c.cut.expect("the cut is reported");
        assert!(matches!(e, PcapError::Truncated { .. }), "{e:?}");
        assert!(e.to_string().starts_with("truncated pcapng Enhanced Packet Block at byte offset"), "{e}");
    }
    // Any other error is still one.
    let mut bad = ng.out.clone();
    let last_epb = full - (12 + 20 + ip.len().next_multiple_of(4));
    bad[last_epb + 4] = 3;
    assert!(PacketReader::new(&bad[..]).unwrap().read_to_end().is_err());
}

#[test]
fn simple_and_obsolete_packet_blocks() {
    let ip = ip_packet(0);
    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    ng.idb(101, &[]);
    let spb = [&ng.u32(ip.len() as u32)[..], &ip].concat();
    ng.block(3, &spb);
    let mut data = ip.clone();
    data.resize(data.len().next_multiple_of(4), 0);
    let len = ng.u32(ip.len() as u32);
    let comment = ng.opt(1, b"pid=5 comm=old");
    let pb = [&ng.u16(0)[..], &ng.u16(0), &ng.u32(0), &ng.u32(9), &len, &len, &data, &comment].concat();
    ng.block(2, &pb);
    let ps = read_packets(&ng.out[..]).expect("read");
    assert_eq!(ps.len(), 2);
    assert_eq!((ps[0].data.as_slice(), ps[0].timestamp_ns), (ip.as_slice(), 0));
    assert_eq!((ps[1].pid, ps[1].comm.as_str(), ps[1].timestamp_ns), (5, "old", 9_000));
}

#[test]
fn classic_pcap_big_endian_microseconds_ethernet() {
    let ip = ip_packet(0);
    let mut frame = vec![0xaa; 12];
    frame.extend_from_slice(&[0x86, 0xdd]); // claims IPv6: still kept, it is an IP ethertype
    frame.extend_from_slice(&ip);
    let mut b = 0xa1b2c3d4u32.to_be_bytes().to_vec();
    b.extend_from_slice(&2u16.to_be_bytes());
    b.extend_from_slice(&4u16.to_be_bytes());
    for v in [0u32, 0, 65535, 1] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    for v in [10u32, 500_000, frame.len() as u32, frame.len() as u32 + 100] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b.extend_from_slice(&frame);
    let ps = read_packets(&b[..]).expect("read");
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].timestamp_ns, 10_500_000_000);
    assert_eq!(ps[0].data, ip);
    assert_eq!(ps[0].orig_len as usize, ip.len() + 100);
}

#[test]
fn bad_headers_are_errors_not_panics() {
    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    ng.out[12] = 2; // version 2.0
    let e = read_packets(&ng.out[..]).expect_err("version");
    assert!(e.to_string().contains("unsupported pcapng version 2.0"), "{e}");

    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    ng.epb(0, 0, &ip_packet(0), &[]);
    let e = read_packets(&ng.out[..]).expect_err("no interface");
    assert!(e.to_string().contains("interface id 0 is not defined"), "{e}");

    let mut ng = Ng { big: false, out: Vec::new() };
    ng.shb();
    ng.idb(101, &[]);
    let bad_opt = [&ng.u16(1)[..], &ng.u16(200), b"short"].concat();
    ng.epb(0, 0, &ip_packet(0), &bad_opt);
    let e = read_packets(&ng.out[..]).expect_err("option too long");
    assert!(e.to_string().contains("option 1 at byte offset"), "{e}");
}
