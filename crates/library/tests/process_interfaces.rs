//! Importing pidcap's pcapng (issue 13): a file whose processes are in
//! interfaces of their own and the same packets in the older form (the whole
//! process in every comment) give the library the same packets.

use pidcap_library::{Library, PacketMeta};
use std::path::PathBuf;

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pcapfile/tests/data").join(name)
}

#[test]
fn both_forms_of_pidcaps_pcapng_import_the_same_processes() {
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::open(dir.path().join("lib.db")).unwrap();
    let mut imported = Vec::new();
    for name in ["golden.pcapng", "golden-v1.pcapng"] {
        let saved = lib.save_pcap(&golden(name), None, &PacketMeta::default()).unwrap();
        assert!(saved.skipped.is_empty() && saved.cut.is_none(), "{name}");
        let packets: Vec<_> = saved
            .ids
            .iter()
            .map(|&id| {
                let p = lib.packet(id).unwrap().packet;
                (p.pid, p.comm, p.socket_cookie, p.verdict, p.rule, p.direction, p.data)
            })
            .collect();
        imported.push(packets);
    }
    assert_eq!(imported[0].len(), 6);
    assert_eq!(imported[0], imported[1]);
    assert_eq!((imported[0][5].0, imported[0][5].1.as_str(), imported[0][5].2), (9001, "Web Content", 1));
    assert_eq!(imported[0][4].4, Some(3));
}
