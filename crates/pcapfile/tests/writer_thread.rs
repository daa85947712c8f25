//! The capture file's writer thread (`pidcap_pcapfile::file`): blocks keep
//! their order across the batches handed to it, a flush or a stop leaves
//! nothing behind, interleaved sockets each keep their own comment, and a
//! write error on the writer (a small tmpfs that fills: root) reaches the
//! caller with its source, stops everything after it and leaves the file
//! cut back to its last complete block.

mod common;

use common::golden_packets;
use pidcap_packet::{CapturedPacket, Direction, Verdict};
use pidcap_pcapfile::{read_packets, CaptureFile, FileOutput, Format, PacketOutput, PcapError, WriterOptions};
use std::io::Write;

use pidcap_testkit::Scratch;

/// Packet `id` of `size` bytes, its id in the payload's first eight bytes.
fn packet(id: u64, size: usize) -> CapturedPacket {
    let mut p = golden_packets()[1].clone(); // IPv4 UDP
    p.id = id;
    p.timestamp_ns += id;
    p.data.resize(size.max(36), 0);
    p.data[28..36].copy_from_slice(&id.to_be_bytes());
    p.orig_len = p.data.len() as u32;
    p
}

fn id_of(p: &CapturedPacket) -> u64 {
    u64::from_be_bytes(p.data[28..36].try_into().unwrap())
}

fn output(path: &std::path::Path, format: Format) -> Box<dyn PacketOutput> {
    let file = CaptureFile::create(path, 0o600).unwrap();
    Box::new(FileOutput::new(format, file, &WriterOptions::default()).unwrap())
}

#[test]
fn blocks_keep_their_order_across_many_batches_and_a_stop_writes_them_all() {
    let dir = Scratch::new("order");
    for format in [Format::Pcapng, Format::Pcap] {
        let path = dir.path(&format!("order.{format}"));
        let mut out = output(&path, format);
        // About 12 MiB in blocks of varied sizes: a dozen batches, the queue full at times.
        let n = 9_000u64;
        for id in 1..=n {
            out.write_packet(&packet(id, 200 + (id as usize * 37) % 2400)).unwrap();
            if id % 1000 == 0 {
                out.flush().unwrap(); // a hand-over mid-batch, as the capture loop does every step
            }
        }
        // No flush before the end: finishing writes everything.
        out.finish().unwrap();
        let back = read_packets(std::fs::File::open(&path).unwrap()).unwrap();
        assert_eq!(back.len() as u64, n, "{format}");
        assert!(back.iter().map(id_of).eq(1..=n), "{format}: every packet once, in order");
        assert!(std::fs::metadata(&path).unwrap().len() > 10 << 20);
    }
}

#[test]
fn a_flush_hands_over_and_the_packets_kept_are_counted_once_written() {
    let dir = Scratch::new("flush");
    let path = dir.path("flush.pcapng");
    let mut out = output(&path, Format::Pcapng);
    for id in 1..=10 {
        out.write_packet(&packet(id, 100)).unwrap();
    }
    out.flush().unwrap();
    // packets_kept waits for the writer: exact, not what happened to be written yet.
    assert_eq!(out.packets_kept(), Some(10));
    // The file holds them while the output is still open (tshark -r on a growing file).
    let back = read_packets(std::fs::File::open(&path).unwrap()).unwrap();
    assert!(back.iter().map(id_of).eq(1..=10));
    out.write_packet(&packet(11, 100)).unwrap();
    // Dropped without finish (a panic, an early return): what was taken is still written.
    drop(out);
    let back = read_packets(std::fs::File::open(&path).unwrap()).unwrap();
    assert!(back.iter().map(id_of).eq(1..=11), "nothing lost at the stop");
}

#[test]
fn interleaved_sockets_each_keep_their_own_comment() {
    let dir = Scratch::new("comments");
    let path = dir.path("c.pcapng");
    let mut out = output(&path, Format::Pcapng);
    let mut sent = Vec::new();
    for id in 1..=60u64 {
        let mut p = packet(id, 100);
        // Three sockets of two processes interleaved, as two sender threads and a sink are in the ring.
        (p.pid, p.socket_cookie, p.tid) = match id % 3 {
            0 => (100, 7, 101),
            1 => (100, 8, 102),
            _ => (200, 9, 200),
        };
        p.comm = if p.pid == 100 { "flood".into() } else { "sink".into() };
        p.thread = p.comm.clone();
        p.verdict = if id % 5 == 0 { Verdict::Blocked } else { Verdict::Pass };
        p.direction = if p.pid == 200 { Direction::Inbound } else { Direction::Outbound };
        if id > 40 && p.pid == 100 {
            p.comm = "renamed".into(); // a rename (or exec) of the same process: a new comment
        }
        out.write_packet(&p).unwrap();
        sent.push(p);
    }
    out.finish().unwrap();
    let back = read_packets(std::fs::File::open(&path).unwrap()).unwrap();
    assert_eq!(back.len(), sent.len());
    for (got, want) in back.iter().zip(&sent) {
        assert_eq!(
            (got.pid, got.socket_cookie, got.tid, got.comm.as_str(), got.thread.as_str(), got.verdict),
            (want.pid, want.socket_cookie, want.tid, want.comm.as_str(), want.thread.as_str(), want.verdict),
            "packet {}",
            id_of(got)
        );
    }
}

#[test]
fn a_write_error_on_the_writer_reaches_the_caller_with_its_source_and_stops_the_file() {
    pidcap_testkit::require!(Root, Tool("mount"), Tool("umount"));
    let fs = pidcap_testkit::tmpfs::Tmpfs::mount("writer-full", "128k");
    // The bare file: sync says how the writer's writes went.
    let path = fs.join("bare");
    let mut file = CaptureFile::create(&path, 0o600).unwrap();
    let block = vec![0x5au8; 1000];
    for _ in 0..400 {
        file.write_all(&block).unwrap(); // gathered: nothing written yet, nothing fails
    }
    let err = file.sync().unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "the writer's own error: {err}");
    assert!(file.failed());
    let kept = file.blocks();
    assert!(kept > 50 && kept < 400, "kept {kept}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), kept * 1000, "cut back to whole blocks");
    let again = file.write(&block).unwrap_err();
    assert!(again.to_string().contains("an earlier write"), "{again}");
    assert!(file.flush().is_err() && file.sync().is_err(), "everything after it fails");
    drop(file);
    std::fs::remove_file(&path).unwrap();

    // Through a FileOutput, flushing as the capture loop does: the error comes
    // back from a later write or flush, as the I/O error with its errno.
    let path = fs.join("out.pcapng");
    let mut out = output(&path, Format::Pcapng);
    let mut handed = 0u64;
    let err = loop {
        match out.write_packet(&packet(handed + 1, 997)).and_then(|()| out.flush()) {
            Ok(()) => handed += 1,
            Err(e) => break e,
        }
        assert!(handed < 100_000, "the tmpfs never filled");
    };
    match &err {
        PcapError::Io(io) => assert_eq!(io.raw_os_error(), Some(libc::ENOSPC), "{err}"),
        other => panic!("{other:?}"),
    }
    let kept = out.packets_kept().unwrap();
    assert!(kept > 10 && kept <= handed, "kept {kept} of {handed}");
    assert!(out.write_packet(&packet(1, 100)).is_err(), "nothing is written after a failure");
    drop(out);
    let back = read_packets(std::fs::File::open(&path).unwrap()).expect("the file reads without error");
    assert_eq!(back.len() as u64, kept);
    assert!(back.iter().map(id_of).eq(1..=kept));
    std::fs::remove_file(&path).unwrap();

    // An error only the last write meets is returned by finish (Ctrl-C: the summary says so).
    let path = fs.join("last.pcap");
    let mut out = output(&path, Format::Pcap);
    for id in 1..=100 {
        out.write_packet(&packet(id, 1400)).unwrap(); // about 140 KiB, one batch: written at the end only
    }
    let err = out.finish().unwrap_err();
    match &err {
        PcapError::Io(io) => assert_eq!(io.raw_os_error(), Some(libc::ENOSPC), "{err}"),
        other => panic!("{other:?}"),
    }
    let back = read_packets(std::fs::File::open(&path).unwrap()).expect("cut back: it reads");
    assert!(!back.is_empty() && back.len() < 100 && back.iter().map(id_of).eq(1..=back.len() as u64));
}

#[test]
fn a_vectored_write_is_one_block_whatever_its_parts() {
    let dir = Scratch::new("vectored");
    let path = dir.path("v.bin");
    let mut file = CaptureFile::create(&path, 0o600).unwrap();
    let parts = [std::io::IoSlice::new(b"head"), std::io::IoSlice::new(b""), std::io::IoSlice::new(b"data!!")];
    assert_eq!(file.write_vectored(&parts).unwrap(), 10);
    file.write_all(b"next").unwrap();
    file.sync().unwrap();
    assert_eq!(file.blocks(), 2, "the three parts are one block, the write after it another");
    file.close().unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"headdata!!next");
}
