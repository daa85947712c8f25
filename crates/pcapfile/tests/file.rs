//! Capture files on disk (`pidcap_pcapfile::file`): private modes, no
//! writing through symbolic or hard links, no writing into another user's
//! file in a sticky directory, and a full disk (a small tmpfs this test
//! mounts) leaving a file cut back to its last complete block, which
//! tshark reads without a warning. The sticky-directory and full-disk tests
//! need root (`require!`).

mod common;

use common::golden_packets;
use pidcap_pcapfile::file::{create, parse_file_mode};
use pidcap_pcapfile::{read_packets, CaptureFile, FileOutput, Format, PacketOutput, WriterOptions};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use pidcap_testkit::Scratch;

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_new_file_gets_exactly_the_mode_asked_whatever_the_umask() {
    let dir = Scratch::new("mode");
    for (name, want) in [("private", 0o600), ("shared", 0o666), ("group", 0o640)] {
        let p = dir.path(name);
        let (_, created) = create(&p, want).unwrap();
        assert!(created);
        assert_eq!(mode(&p), want, "{name}");
    }
    assert_eq!(parse_file_mode("0640"), Ok(0o640));
}

#[test]
fn an_existing_file_is_truncated_and_made_private() {
    let dir = Scratch::new("existing");
    let p = dir.path("old.pcapng");
    std::fs::write(&p, b"old contents").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, created) = create(&p, 0o600).unwrap();
    assert!(!created);
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    assert_eq!(mode(&p), 0o600);
}

#[test]
fn a_symbolic_link_is_refused_and_its_target_untouched() {
    let dir = Scratch::new("symlink");
    let victim = dir.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = dir.path("x.pcapng");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let err = CaptureFile::create(&link, 0o600).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(mode(&victim), 0o644);

    // A dangling link does not create its target.
    let missing = dir.path("would-be-created");
    let dangling = dir.path("dangling.pcapng");
    std::os::unix::fs::symlink(&missing, &dangling).unwrap();
    let err = create(&dangling, 0o600).unwrap_err();
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert!(!missing.exists());
}

#[test]
fn a_file_with_other_hard_links_is_refused() {
    let dir = Scratch::new("hardlink");
    let original = dir.path("original");
    std::fs::write(&original, b"keep me").unwrap();
    let other = dir.path("other.pcapng");
    std::fs::hard_link(&original, &other).unwrap();
    let err = create(&other, 0o600).unwrap_err();
    assert!(err.to_string().contains("2 hard links"), "{err}");
    assert_eq!(std::fs::read(&original).unwrap(), b"keep me");
}

#[test]
fn a_device_is_written_as_it_is_and_a_directory_refused() {
    let before = mode(Path::new("/dev/null"));
    let (mut f, created) = create(Path::new("/dev/null"), 0o600).unwrap();
    assert!(!created);
    std::io::Write::write_all(&mut f, b"gone").unwrap();
    assert_eq!(mode(Path::new("/dev/null")), before, "a device's mode is not changed");
    let dir = Scratch::new("dir");
    assert!(create(&dir.0, 0o600).is_err());
}

#[test]
fn another_users_file_in_a_sticky_directory_is_refused() {
    pidcap_testkit::require!(Root);
    let dir = Scratch::new("sticky");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let planted = dir.path("x.pcapng");
    std::fs::write(&planted, b"planted by nobody").unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    let err = create(&planted, 0o600).unwrap_err();
    assert!(err.to_string().contains("belongs to uid 65534"), "{err}");
    assert_eq!(std::fs::read(&planted).unwrap(), b"planted by nobody");
    assert_eq!(std::fs::metadata(&planted).unwrap().uid(), 65534);

    // The same file outside a sticky directory is the caller's to overwrite.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    create(&planted, 0o600).unwrap();
    assert_eq!(std::fs::metadata(&planted).unwrap().len(), 0);
}

#[test]
fn a_full_disk_leaves_a_file_cut_back_to_its_last_complete_block() {
    pidcap_testkit::require!(Root, Tool("mount"), Tool("umount"), Tool("tshark"));
    let fs = pidcap_testkit::tmpfs::Tmpfs::mount("full", "64k");
    let template = golden_packets()[0].clone();
    for format in [Format::Pcapng, Format::Pcap] {
        let path = fs.join(&format!("full.{format}"));
        let file = CaptureFile::create(&path, 0o600).unwrap();
        let mut out: Box<dyn PacketOutput> =
            Box::new(FileOutput::new(format, file, &WriterOptions::default()).unwrap());
        let mut handed = 0u64;
        let err = loop {
            let mut p = template.clone();
            p.id = handed + 1;
            // About 1,000 bytes a packet, so that a flush ends inside a block.
            p.data.resize(997, 0x5a);
            p.orig_len = p.data.len() as u32;
            let r = out.write_packet(&p).and_then(|()| if handed % 7 == 6 { out.flush() } else { Ok(()) });
            match r {
                Ok(()) => handed += 1,
                Err(e) => break e,
            }
            assert!(handed < 1000, "64 KiB never filled");
        };
        let io = match &err {
            pidcap_pcapfile::PcapError::Io(io) => io,
            other => panic!("{other:?}"),
        };
        assert_eq!(io.raw_os_error(), Some(libc::ENOSPC), "{err}");
        let kept = out.packets_kept().unwrap();
        assert!(kept > 10 && kept <= handed, "{format}: kept {kept} of {handed}");
        assert!(out.write_packet(&template).is_err(), "nothing is written after a failure");
        drop(out);
        let back = read_packets(std::fs::File::open(&path).unwrap()).expect("the file reads without error");
        assert_eq!(back.len() as u64, kept, "{format}");
        assert_eq!(back.last().unwrap().id, kept);
        let tshark = Command::new("tshark").arg("-r").arg(&path).args(["-T", "fields", "-e", "frame.number"]).output();
        let tshark = tshark.unwrap();
        let stderr = String::from_utf8_lossy(&tshark.stderr);
        let warnings: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("Running as user \"root\"")).collect();
        assert!(tshark.status.success() && warnings.is_empty(), "{format}: tshark: {stderr}");
        assert_eq!(String::from_utf8_lossy(&tshark.stdout).lines().count() as u64, kept, "{format}");
        std::fs::remove_file(&path).unwrap();
    }
}
