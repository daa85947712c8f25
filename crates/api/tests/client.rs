//! The client against a scripted peer (no daemon): what it sends for each
//! typed call, how it decodes the answers, and the typed errors it returns
//! (with serde's error as their source) when the peer sends something else.

use pidcap_api::protocol::{Event, PacketPage, Reply};
use pidcap_api::{ApiError, Client, ClientError, ErrorCode};
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static N: AtomicU32 = AtomicU32::new(0);

/// What the peer writes back for one request.
type Answer = Box<dyn Fn(&serde_json::Value) -> Vec<String> + Send>;

/// A peer on a fresh socket that reads one request per entry of `answers`,
/// hands it to the entry, and writes the lines it returns. Returns the
/// socket and a handle yielding the requests it read.
fn peer(answers: Vec<Answer>) -> (PathBuf, std::thread::JoinHandle<Vec<serde_json::Value>>) {
    let dir =
        std::env::temp_dir().join(format!("pidcap-api-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst)));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("peer.sock");
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let thread = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut rd = BufReader::new(stream.try_clone().unwrap());
        let mut wr = stream;
        let mut seen = Vec::new();
        for answer in answers {
            let mut line = String::new();
            if rd.read_line(&mut line).unwrap() == 0 {
                break;
            }
            let req: serde_json::Value = serde_json::from_str(&line).unwrap();
            for out in answer(&req) {
                wr.write_all(out.as_bytes()).unwrap();
                wr.write_all(b"\n").unwrap();
            }
            seen.push(req);
        }
        seen
    });
    (path, thread)
}

fn connect(path: &std::path::Path) -> Client {
    let c = Client::connect(path).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c
}

fn packet(id: u64) -> CapturedPacket {
    CapturedPacket::new(id, 5, 42, "curl".into(), 7, Direction::Outbound, Verdict::Pass, 3, vec![0x45, 0, 3])
}

fn ok(req: &serde_json::Value, result: serde_json::Value) -> String {
    serde_json::to_string(&Reply::ok(req["id"].as_u64().unwrap(), result)).unwrap()
}

#[test]
fn get_packet_asks_for_the_one_packet_and_events_before_the_reply_are_kept() {
    let (path, peer) = peer(vec![
        Box::new(|req| {
            let page = PacketPage { packets: vec![packet(9)], next_since: 9, more: false, missed: 0 };
            // A subscription's event first, then the reply.
            let event = serde_json::to_string(&Reply::<()>::event(1, Event::Missed { count: 4 })).unwrap();
            vec![event, ok(req, serde_json::to_value(page).unwrap())]
        }),
        Box::new(|req| {
            // Not held: the page starts after it.
            let page = PacketPage { packets: vec![packet(12)], next_since: 12, more: false, missed: 2 };
            vec![ok(req, serde_json::to_value(page).unwrap())]
        }),
    ]);
    let mut c = connect(&path);
    assert_eq!(c.get_packet(0).unwrap(), None, "ids start at 1: nothing to ask");
    assert_eq!(c.get_packet(9).unwrap(), Some(packet(9)));
    assert_eq!(c.get_packet(10).unwrap(), None);
    assert_eq!(c.next_event().unwrap(), Event::Missed { count: 4 });
    let seen = peer.join().unwrap();
    let asked: Vec<_> = seen.iter().map(|r| (r["op"].clone(), r["since"].clone(), r["limit"].clone())).collect();
    assert_eq!(asked, [("get_packets".into(), 8.into(), 1.into()), ("get_packets".into(), 9.into(), 1.into())]);
    assert!(
        seen.iter().all(|r| r["v"] == pidcap_api::VERSION && pidcap_api::VERSION == 2),
        "the client speaks version 2"
    );
}

#[test]
fn typed_results_are_decoded_and_api_errors_come_back_as_such() {
    let (path, peer) = peer(vec![
        Box::new(|req| vec![ok(req, serde_json::json!({"cleared": 3, "next_id": 10}))]),
        Box::new(|req| vec![ok(req, serde_json::json!({"subscribed": true, "backlog": 0, "protocol": 1}))]),
        Box::new(|req| {
            let e = ApiError::new(ErrorCode::NoSuchJob, "no job 7 (see list_jobs)");
            vec![serde_json::to_string(&Reply::<()>::err(req["id"].as_u64(), e)).unwrap()]
        }),
    ]);
    let mut c = connect(&path);
    let cleared = c.clear_buffer().unwrap();
    assert_eq!((cleared.cleared, cleared.next_id), (3, 10));
    assert_eq!(c.subscribe(Some(4)).unwrap().backlog, 0);
    match c.stop_job(7) {
        Err(ClientError::Api(e)) => assert_eq!(e.code, ErrorCode::NoSuchJob),
        other => panic!("expected the daemon's error, got {other:?}"),
    }
    let seen = peer.join().unwrap();
    assert_eq!(seen[1]["op"], "subscribe");
    assert_eq!(seen[1]["since"], 4);
    assert_eq!((seen[2]["op"].as_str(), seen[2]["job"].as_u64()), (Some("stop_job"), Some(7)));
}

#[test]
fn what_the_client_cannot_decode_is_a_typed_error_with_serdes_error_as_source() {
    let (path, peer) = peer(vec![
        Box::new(|_| vec!["this is not json".into()]),
        Box::new(|req| vec![ok(req, serde_json::json!({"cleared": "three"}))]),
        Box::new(|req| vec![ok(req, serde_json::json!({"filter": null, "filters": []}))]),
    ]);
    let mut c = connect(&path);
    let e = c.get_state().unwrap_err();
    assert!(matches!(&e, ClientError::BadReply { line, .. } if line == "this is not json"), "{e:?}");
    let source = std::error::Error::source(&e).expect("a source");
    assert!(source.downcast_ref::<serde_json::Error>().is_some(), "{source:?}");

    let e = c.clear_buffer().unwrap_err();
    assert!(matches!(&e, ClientError::BadResult { op: "clear_buffer", .. }), "{e:?}");
    assert!(std::error::Error::source(&e).and_then(|s| s.downcast_ref::<serde_json::Error>()).is_some());
    assert!(e.to_string().contains("clear_buffer"), "{e}");

    let e = c.add_filter("tcp:1", pidcap_engine::rules::Action::Block, None).unwrap_err();
    assert!(matches!(e, ClientError::Incomplete { op: "add_filter", .. }), "{e:?}");
    peer.join().unwrap();
    // The peer is gone: the next call says the connection closed.
    assert!(matches!(c.get_state().unwrap_err(), ClientError::Closed | ClientError::Io { .. }));
}
