//! `start_capture` with a filter expression (pcap-filter, compiled by
//! libpcap), on the scripted kernel: only matching packets are kept, paged
//! without gaps and counted as `filtered`; a malformed expression is refused
//! with libpcap's message and starts nothing; an unknown field is still refused.

mod common;

use common::{udp_packet, wait_for, InProcess};
use pidcap_api::protocol::ErrorCode;
use pidcap_api::{ClientError, EngineOp};
use std::time::Duration;

fn me() -> u32 {
    std::process::id()
}

#[test]
fn only_packets_that_match_are_kept_and_the_others_counted() {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    c.start_capture_filtered(vec![me()], vec![], None, None, false, "udp src port 1001 or udp src port 1003").unwrap();
    for port in 1000..1005 {
        fake.push(me(), udp_packet(port, b"x"));
    }
    assert!(
        wait_for(Duration::from_secs(5), || {
            let s = c.get_state().unwrap().stats;
            s.received + s.filtered >= 5
        }),
        "{:?}",
        c.get_state().unwrap().stats
    );
    let stats = c.get_state().unwrap().stats;
    assert_eq!((stats.received, stats.filtered), (2, 3));
    let page = c.get_packets(0, None).unwrap();
    let got: Vec<(u64, u16)> = page.packets.iter().map(|p| (p.id, p.decoded.local_port)).collect();
    assert_eq!(got, [(1, 1001), (2, 1003)], "kept ones, numbered without a gap");

    // The next capture has no filter unless it asks for one.
    c.stop_capture().unwrap();
    c.start_capture(vec![me()], vec![], None, None, false).unwrap();
    fake.push(me(), udp_packet(1000, b"x"));
    assert!(wait_for(Duration::from_secs(5), || c.get_state().unwrap().stats.received >= 1));
    assert_eq!(c.get_state().unwrap().stats.filtered, 0);
}

#[test]
fn a_malformed_expression_is_refused_with_libpcaps_message_and_starts_nothing() {
    let (d, fake) = InProcess::fake(None);
    let mut c = d.client();
    match c.start_capture_filtered(vec![me()], vec![], None, None, false, "tcp prot 80") {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.code, ErrorCode::InvalidArgument);
            assert_eq!(e.message, "invalid filter expression \"tcp prot 80\": syntax error");
        }
        r => panic!("not refused: {r:?}"),
    }
    assert!(!c.get_state().unwrap().running);
    assert!(fake.state().targets.is_empty(), "no target was added");
    // A filter that is not a string is a bad request, and unknown fields are still refused.
    for fields in [r#""filter":7"#, r#""filtr":"udp""#] {
        let line = format!(r#"{{"v":2,"id":9,"op":"start_capture","pids":[{}],{fields}}}"#, me());
        c.send_line(line.as_bytes()).unwrap();
        let r = c.read_reply().unwrap();
        assert!(r.error.is_some(), "{fields}: {r:?}");
    }
    assert!(!c.get_state().unwrap().running);
    // An empty one is no filter.
    c.call(EngineOp::StartCapture {
        pids: vec![me()],
        names: vec![],
        snaplen: None,
        ring_size: None,
        follow_children: false,
        filter: Some(" ".into()),
        cgroups: vec![],
    })
    .unwrap();
    assert!(c.get_state().unwrap().running);
}
