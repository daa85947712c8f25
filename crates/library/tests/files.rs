//! The library's files: the database (and its -wal/-shm) private, no
//! database beside a device or in a directory that does not exist, exports
//! private and never through a link; and capture files as they come: frames
//! numbered as Wireshark numbers them (non-IP frames counted and reported),
//! and a file cut short read up to its last complete block.

mod common;

use common::packet;
use pidcap_library::{ExportFormat, Library, LibraryError, PacketMeta, Selection};
use pidcap_packet::Direction;
use pidcap_pcapfile::{Format, PacketWriter, WriterOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o7777
}

#[test]
fn a_new_library_is_private_with_its_wal_and_shm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lib.db");
    let mut lib = Library::open(&db).unwrap();
    common::sample(&mut lib);
    // While the library is open, its WAL and shared-memory files exist.
    for f in ["lib.db", "lib.db-wal", "lib.db-shm"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f} (the test runs under the usual umask 022)");
    }
    drop(lib);
    assert_eq!(mode(&db), 0o600);
}

#[test]
fn a_missing_directory_or_a_device_is_refused_and_nothing_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("no/such/dir/x.db");
    let err = Library::open(&nested).unwrap_err();
    assert!(matches!(err, LibraryError::Invalid(_)), "{err:?}");
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!dir.path().join("no").exists(), "no directory is created");

    let err = Library::open("/dev/null").unwrap_err();
    assert!(err.to_string().contains("/dev/null is not a regular file"), "{err}");
    for companion in ["/dev/null-journal", "/dev/null-wal", "/dev/null-shm"] {
        assert!(!Path::new(companion).exists(), "{companion}");
    }
    assert!(Library::open_read_only("/dev/null").is_err());
    let err = Library::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("is not a regular file"), "{err}");

    // A dangling link is not followed to create the database.
    let target = dir.path().join("elsewhere.db");
    let link = dir.path().join("link.db");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let err = Library::open(&link).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!target.exists());
}

#[test]
fn exports_are_private_unless_asked_and_never_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::open(dir.path().join("lib.db")).unwrap();
    common::sample(&mut lib);
    for (name, format) in
        [("a.pcapng", ExportFormat::Pcapng), ("a.pcap", ExportFormat::Pcap), ("a.dpp", ExportFormat::Dpp)]
    {
        let out = dir.path().join(name);
        lib.export(&Selection::All, format, &out).unwrap();
        assert_eq!(mode(&out), 0o600, "{name}");
    }
    let shared = dir.path().join("shared.pcapng");
    lib.export_with_mode(&Selection::All, ExportFormat::Pcapng, &shared, 0o644).unwrap();
    assert_eq!(mode(&shared), 0o644);

    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.path().join("link.pcapng");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let err = lib.export(&Selection::All, ExportFormat::Pcapng, &link).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is not replaced either");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A classic pcap file of `linktype` with these frames.
fn pcap_file(path: &Path, linktype: u32, frames: &[Vec<u8>]) {
    let mut b = Vec::new();
    for v in [0xa1b2c3d4u32, 0x0004_0002, 0, 0, 65535, linktype] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        for v in [1_700_000_000 + i as u32, 0, f.len() as u32, f.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(f);
    }
    std::fs::write(path, b).unwrap();
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

#[test]
fn frames_are_numbered_as_wireshark_does_and_skipped_ones_said() {
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::open(dir.path().join("lib.db")).unwrap();
    let ip = |n: u64| packet(n, 1, "x", Direction::Outbound, true, 4000, 7, format!("frame {n}").as_bytes()).data;
    let arp = ethernet(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1]);
    let file = dir.path().join("mixed.pcap");
    // Frames: 1 IP, 2 ARP, 3 ARP, 4 IP, 5 IP.
    pcap_file(
        &file,
        1,
        &[ethernet(0x0800, &ip(1)), arp.clone(), arp, ethernet(0x0800, &ip(4)), ethernet(0x0800, &ip(5))],
    );

    let all = lib.save_pcap(&file, None, &PacketMeta::default()).unwrap();
    assert_eq!((all.ids.len(), all.frames), (3, 5));
    let names: Vec<String> = all.ids.iter().map(|&i| lib.packet(i).unwrap().name).collect();
    assert_eq!(names, ["mixed.pcap #1", "mixed.pcap #4", "mixed.pcap #5"]);
    assert_eq!(
        pidcap_pcapfile::describe_skipped(&all.skipped),
        ["frames 2-3 skipped: not an IPv4 or IPv6 packet (ethertype 0x0806, ARP)"]
    );

    // Frame 4 is Wireshark's frame 4, the file's second packet.
    let four = lib.save_pcap(&file, Some(&pidcap_library::parse_frames("4").unwrap()), &PacketMeta::default()).unwrap();
    let p = lib.packet(four.ids[0]).unwrap();
    assert_eq!((p.name.as_str(), p.packet.id), ("mixed.pcap #4", 4));
    assert!(p.packet.payload().ends_with(b"frame 4"));
    assert!(four.skipped.is_empty(), "only the frames asked for are reported");

    // Only skipped frames asked for: an error that says why, nothing saved.
    let before = lib.count(&Default::default()).unwrap();
    let err =
        lib.save_pcap(&file, Some(&pidcap_library::parse_frames("2-3").unwrap()), &PacketMeta::default()).unwrap_err();
    assert!(
        err.to_string().contains("frames 2-3 skipped: not an IPv4 or IPv6 packet (ethertype 0x0806, ARP)"),
        "{err}"
    );
    assert!(lib.save_pcap(&file, Some(&pidcap_library::parse_frames("6").unwrap()), &PacketMeta::default()).is_err());

    // A link type pidcap does not read: not "0 frames", but why.
    let usb = dir.path().join("usb.pcap");
    pcap_file(&usb, 220, &[vec![0; 64], vec![1; 64]]);
    let err = lib.save_pcap(&usb, None, &PacketMeta::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("frames 1-2 skipped: link type 220 (USB_LINUX) is not one pidcap reads"), "{msg}");
    assert_eq!(lib.count(&Default::default()).unwrap(), before);
}

#[test]
fn a_file_cut_short_is_saved_up_to_its_last_complete_block() {
    let dir = tempfile::tempdir().unwrap();
    let mut lib = Library::open(dir.path().join("lib.db")).unwrap();
    for format in [Format::Pcapng, Format::Pcap] {
        let file = dir.path().join(format!("cut.{format}"));
        let mut w = PacketWriter::new(format, Vec::new(), &WriterOptions::default()).unwrap();
        for i in 1..=400 {
            w.write_packet(&packet(i, 1, "x", Direction::Outbound, true, 4000, 7, b"some payload")).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        std::fs::write(&file, &bytes[..bytes.len() - 10]).unwrap();
        let saved = lib.save_pcap(&file, None, &PacketMeta::default()).unwrap();
        assert_eq!((saved.ids.len(), saved.frames), (399, 399), "{format}");
        let cut = saved.cut.expect("the cut is said");
        assert!(cut.to_string().starts_with("truncated"), "{cut}");
        // Asking past the cut says so.
        let err = lib
            .save_pcap(&file, Some(&pidcap_library::parse_frames("400").unwrap()), &PacketMeta::default())
            .unwrap_err();
        assert!(err.to_string().contains("up to where it was cut"), "{err}");
    }
}
