//! `pidcap read FILE` (and `pidcap -r FILE`): a pcap or pcapng file, whoever
//! wrote it, printed in the live capture's line or JSON format
//! ([`crate::output`]), selected by `--pid`/`--name` (the process pidcap's
//! pcapng comments carry), or written to `-w` (pcapng keeps the process).
//! Skipped frames are listed as the reader describes them; a summary ends
//! on stderr. A filter expression after FILE (or `--filter-file`) selects
//! too, matched on each packet's IP packet as read (Ethernet and loopback
//! frames of tcpdump's files are converted first) with its original length.

use crate::output::{self, LineFormat, Lines, TextOptions};
use anyhow::{Context, Result};
use clap::Args;
use pidcap_packet::CapturedPacket;
use pidcap_pcapfile::reader::{describe_skipped, PacketReader};
use pidcap_pcapfile::{
    rotate, CaptureFile, FileOutput, Format, PacketOutput, PacketWriter, PcapError, RotatingOutput, WriterOptions,
};
use std::io::{BufReader, BufWriter, ErrorKind, Read};
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// The pcap or pcapng file to read (`-` for stdin).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Keep the packets of this process id (repeatable). A packet from a file
    /// without process information (not written by pidcap as pcapng) matches no pid.
    #[arg(short, long = "pid", value_name = "PID")]
    pub pids: Vec<u32>,

    /// Keep the packets of this process name (repeatable), compared on the
    /// first 15 bytes as the kernel keeps it. A packet without process
    /// information matches no name. With --pid: packets matching either.
    #[arg(long = "name", value_name = "COMM")]
    pub names: Vec<String>,

    /// Write the selected packets to OUT (pcapng by default, keeping each
    /// packet's process; `-` for stdout) instead of printing them. Created as
    /// the capture commands create their files (mode --file-mode, never
    /// through a symbolic link), before the input is read. TLS keys of the
    /// input's Decryption Secrets Blocks go into a pcapng OUT too (those of
    /// the connections in it).
    #[arg(short = 'w', long = "write", value_name = "OUT")]
    pub write: Option<PathBuf>,

    /// Mode of the file -w creates, in octal.
    #[arg(long = "file-mode", value_name = "MODE", default_value = "600",
          value_parser = pidcap_pcapfile::file::parse_file_mode)]
    pub file_mode: u32,

    /// File format for -w: pcapng or pcap. Default: from OUT's extension, else pcapng.
    #[arg(short = 'F', long = "format", value_name = "FORMAT")]
    pub format: Option<Format>,

    /// Stop after COUNT selected packets.
    #[arg(short = 'c', long = "count", value_name = "COUNT")]
    pub count: Option<u64>,

    /// Print one JSON object per packet on stdout.
    #[arg(long, conflicts_with = "write")]
    pub json: bool,
    /// tcpdump's output letters, as for `run` and `capture`.
    #[command(flatten)]
    pub output: crate::cli::OutputOpts,

    // -- filter expressions --
    #[command(flatten)]
    pub filter: crate::cli::FilterOpts,

    // -- rotation (tcpdump's -C, -W, -G) --
    #[command(flatten)]
    pub rotate: crate::cli::RotateOpts,
}

impl ReadArgs {
    fn selects(&self, p: &CapturedPacket) -> bool {
        if self.pids.is_empty() && self.names.is_empty() {
            return true;
        }
        // pid 0 and an empty name: the file had no process for this packet.
        (p.pid != 0 && self.pids.contains(&p.pid))
            || (!p.comm.is_empty() && self.names.iter().any(|n| same_comm(n, &p.comm)))
    }
}

/// A name given on the command line against a packet's `comm`: the kernel
/// keeps 15 bytes of it.
fn same_comm(given: &str, comm: &str) -> bool {
    let cut = |s: &str| -> Vec<u8> { s.as_bytes().iter().copied().take(15).collect() };
    cut(given) == cut(comm)
}

/// The output, what to call it in errors and in the summary, and the file it created.
struct Out {
    out: Box<dyn PacketOutput>,
    what: String,
    shown: &'static str,
    created: Option<PathBuf>,
}

fn open_output(args: &ReadArgs) -> Result<Out> {
    let rotation = args.rotate.rotation(args.write.as_deref()).map_err(anyhow::Error::msg)?;
    let Some(path) = &args.write else {
        let format = if args.json { LineFormat::Json } else { LineFormat::Text };
        return Ok(Out {
            out: Box::new(Lines::with_options(
                BufWriter::with_capacity(1 << 16, std::io::stdout()),
                format,
                TextOptions::from_cli(&args.output),
            )),
            what: "cannot write to stdout".into(),
            shown: "shown",
            created: None,
        });
    };
    let format = args.format.or_else(|| Format::from_path(path)).unwrap_or(Format::Pcapng);
    if format == Format::Pcap {
        let name = if path.as_os_str() == "-" { "stdout".into() } else { path.display().to_string() };
        eprintln!("{}", output::pcap_warning(&name));
    }
    let wopts = WriterOptions { snaplen: 65535, application: format!("pidcap {}", env!("CARGO_PKG_VERSION")) };
    if path.as_os_str() == "-" {
        let w = PacketWriter::new(format, BufWriter::with_capacity(1 << 20, std::io::stdout()), &wopts)
            .context("cannot write to stdout")?;
        return Ok(Out { out: Box::new(w), what: "cannot write to stdout".into(), shown: "written", created: None });
    }
    if let Some(rotation) = rotation {
        // -C/-G: the rotating output makes every file as below, and removes the first if its headers fail.
        let out = RotatingOutput::create(path, format, &wopts, args.file_mode, rotation, rotate::wall_clock())
            .with_context(|| format!("cannot start the files of -w {}", path.display()))?;
        return Ok(Out {
            created: out.first_created().then(|| out.current().to_path_buf()),
            out: Box::new(out),
            what: format!("cannot write the files of -w {}", path.display()),
            shown: "written",
        });
    }
    let file =
        CaptureFile::create(path, args.file_mode).with_context(|| format!("cannot create {}", path.display()))?;
    let created = file.created().then(|| path.clone());
    let what = format!("cannot write {}", path.display());
    match FileOutput::new(format, file, &wopts) {
        Ok(w) => Ok(Out { out: Box::new(w), what, shown: "written", created }),
        Err(e) => {
            if let Some(c) = &created {
                let _ = std::fs::remove_file(c);
            }
            Err(anyhow::Error::new(e).context(what))
        }
    }
}

fn is_broken_pipe(e: &PcapError) -> bool {
    matches!(e, PcapError::Io(io) if io.kind() == ErrorKind::BrokenPipe)
}

pub fn run(args: ReadArgs) -> Result<u8> {
    // A bad expression is refused before a file is opened or created.
    let filter = args.filter.compile()?;
    let mut filtered = 0u64;
    let name = args.file.display().to_string();
    let input: Box<dyn Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::fs::File::open(&args.file).with_context(|| format!("cannot open {name}"))?)
    };
    // The output exists (or was refused) before a byte of the input is read.
    let mut out = open_output(&args)?;
    let mut reader = match PacketReader::new(BufReader::with_capacity(1 << 16, input)) {
        Ok(r) => r,
        Err(e) => {
            if let Some(c) = &out.created {
                let _ = std::fs::remove_file(c);
            }
            return Err(anyhow::Error::new(e).context(format!("cannot read {name}")));
        }
    };
    let (mut read, mut selected, mut keys_given) = (0u64, 0u64, 0usize);
    let mut failure: Option<anyhow::Error> = None;
    let mut cut: Option<PcapError> = None;
    while args.count.is_none_or(|c| selected < c) {
        let p = match reader.next() {
            None => break,
            Some(Ok(p)) => p,
            Some(Err(e @ PcapError::Truncated { .. })) => {
                cut = Some(e);
                break;
            }
            Some(Err(e)) => {
                failure = Some(anyhow::Error::new(e).context(format!("cannot read {name}")));
                break;
            }
        };
        read += 1;
        // Keys of the file's Decryption Secrets Blocks go on to a pcapng output before the packets after them.
        if reader.keylog().len() > keys_given {
            if let Err(e) = out.out.add_tls_keys(&reader.keylog()[keys_given..]) {
                failure = Some(anyhow::Error::new(e).context(out.what.clone()));
                break;
            }
            keys_given = reader.keylog().len();
        }
        if !args.selects(&p) {
            continue;
        }
        if filter.as_ref().is_some_and(|f| !f.matches(&p.data, p.orig_len)) {
            filtered += 1;
            continue;
        }
        if let Err(e) = out.out.write_packet(&p) {
            if !is_broken_pipe(&e) {
                failure = Some(anyhow::Error::new(e).context(out.what.clone()));
            }
            break;
        }
        if !out.out.accepts() {
            // -G -W: the last file is done (this packet was not written).
            break;
        }
        selected += 1;
    }
    // Keys in blocks after the last packet read.
    if failure.is_none() && reader.keylog().len() > keys_given {
        if let Err(e) = out.out.add_tls_keys(&reader.keylog()[keys_given..]) {
            failure = Some(anyhow::Error::new(e).context(out.what.clone()));
        }
    }
    let files = out.out.files();
    if let Err(e) = out.out.finish() {
        if failure.is_none() && !is_broken_pipe(&e) {
            failure = Some(anyhow::Error::new(e).context(out.what.clone()));
        }
    }
    for line in describe_skipped(reader.skipped_frames()) {
        eprintln!("pidcap: {line}");
    }
    if let Some(e) = cut {
        eprintln!(
            "pidcap: warning: {name} was cut short ({}): its {} complete frames were read",
            output::error_text(&anyhow::Error::new(e)),
            reader.frames()
        );
    }
    let target = match &args.write {
        Some(path) if path.as_os_str() != "-" => format!(" to {}", path.display()),
        _ => String::new(),
    };
    eprintln!(
        "pidcap: {read} packets read from {name}, {selected} {}{target}, {} frames skipped",
        out.shown,
        reader.skipped()
    );
    if filter.is_some() {
        eprintln!("pidcap: {filtered} packets did not match the filter expression");
    }
    if let Some(files) = files {
        eprintln!("pidcap: {files}");
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(0),
    }
}
