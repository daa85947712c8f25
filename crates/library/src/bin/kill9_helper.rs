//! Not a tool: the child process of `tests/durability.rs`'s
//! `kill_9_while_saving_loses_nothing_reported`. Usage: `DB DPP`. Saves a
//! packet and imports the `.dpp` file in turn, printing `SAVED <ids>` after
//! each commit, until it is killed (the test kills it with SIGKILL and checks
//! that every packet reported saved is there).

use pidcap_library::{Library, NewPacket, PacketMeta};
use pidcap_packet::build::{build, flags, TcpFields, Transport};
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use std::path::PathBuf;

fn main() {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let (Some(db), Some(dpp)) = (args.next(), args.next()) else {
        eprintln!("usage: pidcap-library-kill9-helper DB DPP (the child of a library test)");
        std::process::exit(2);
    };
    let mut lib = Library::open(db).expect("open the library");
    let meta = PacketMeta { name: "single".into(), description: "about single".into(), tags: vec!["kill9".into()] };
    for i in 0..1_000_000u64 {
        if i % 2 == 0 {
            let tcp = TcpFields { seq: 1000 + i as u32, ack: 7, flags: flags::PSH | flags::ACK, window: 512 };
            let payload = format!("child payload {i}");
            let data = build(
                ([10, 0, 0, 1], 1).into(),
                ([10, 0, 0, 2], 2).into(),
                64,
                Transport::Tcp(tcp),
                payload.as_bytes(),
            )
            .expect("build a packet");
            let ts = 1_700_000_000_000_000_000 + i * 1_000_000;
            let p = CapturedPacket::new(
                i,
                ts,
                1,
                "child".into(),
                0,
                Direction::Outbound,
                Verdict::Pass,
                data.len() as u32,
                data,
            );
            let id = lib.save(&NewPacket::new(p, &meta, "test")).expect("save");
            println!("SAVED {id}");
        } else {
            let r = lib.import_dpp(&dpp).expect("import");
            let ids: Vec<String> = r.packet_ids.iter().map(|i| i.to_string()).collect();
            println!("SAVED {}", ids.join(" "));
        }
    }
}
