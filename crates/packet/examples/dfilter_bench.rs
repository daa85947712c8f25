//! How long the display filter takes per packet, the way the UI uses it: a
//! filter parsed once, then matched against every held packet (10,000 here,
//! the UI's default) on each keystroke. Run in release:
//! `cargo run --release -p pidcap-packet --example dfilter_bench`.
//! Then the Info column (`info::column`) and the detail tree (`dissect`) per
//! packet. Prints the load average with the figures (the machine is shared).

use pidcap_packet::build::{build, TcpFields, Transport};
use pidcap_packet::dfilter::DisplayFilter;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use std::time::Instant;

fn main() {
    let mut held = Vec::new();
    for i in 0..10_000u32 {
        let port = [80u16, 443, 53, 8089][i as usize % 4];
        let src = format!("10.0.{}.{}:{}", (i >> 8) & 255, i & 255, 40000 + (i % 1000)).parse().unwrap();
        let dst = format!("10.1.2.3:{port}").parse().unwrap();
        let payload: Vec<u8> = match port {
            80 => b"GET /index.html HTTP/1.1\r\nHost: example.org\r\nUser-Agent: curl/8\r\n\r\n".to_vec(),
            53 => vec![
                0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, b'e', b'x', b'a', b'm', b'p', b'l', b'e', 3, b'c', b'o',
                b'm', 0, 0, 1, 0, 1,
            ],
            443 => vec![0x17, 3, 3, 0, 200].into_iter().chain(std::iter::repeat_n(0xab, 200)).collect(),
            _ => vec![b'x'; 1000],
        };
        let transport = if port == 53 {
            Transport::Udp
        } else {
            Transport::Tcp(TcpFields { seq: i, ack: 7, flags: if i % 10 == 0 { 0x02 } else { 0x18 }, window: 512 })
        };
        let data = build(src, dst, 64, transport, &payload).unwrap();
        let len = data.len() as u32;
        held.push(CapturedPacket::new(
            u64::from(i),
            0,
            1234,
            "curl".into(),
            1,
            Direction::Outbound,
            Verdict::Pass,
            len,
            data,
        ));
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("10,000 packets; load average {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    for f in [
        "tcp",
        "tcp.port == 80",
        "ip.addr == 10.0.0.0/16 && tcp.flags.syn == 1",
        "frame.len > 100 && !udp",
        "pidcap.pid == 1234 || pidcap.comm contains \"x\"",
        "ip.ttl == 64",
        "\"example\"",
        "http.request.method == \"GET\"",
        "http.host contains \"example\"",
        "dns.qry.name == \"example.com\"",
        "tls",
    ] {
        let filter = DisplayFilter::parse(f).unwrap();
        // Best of 5 passes over the 10,000.
        let mut best = f64::MAX;
        let mut shown = 0;
        for _ in 0..5 {
            let t = Instant::now();
            shown = held.iter().filter(|p| filter.matches(p)).count();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{:>52}: {:>7.0} ns/packet, {:>6.2} ms per 10,000 ({shown} shown)", f, best * 1e9 / 1e4, best * 1e3);
    }
    for (what, run) in [
        (
            "info::column",
            &(|p: &CapturedPacket| pidcap_packet::info::column(p).info.len()) as &dyn Fn(&CapturedPacket) -> usize,
        ),
        ("dissect", &|p: &CapturedPacket| pidcap_packet::dissect::dissect(p).len()),
    ] {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            let n: usize = held.iter().map(run).sum();
            std::hint::black_box(n);
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{what:>52}: {:>7.0} ns/packet, {:>6.2} ms per 10,000", best * 1e9 / 1e4, best * 1e3);
    }
}
