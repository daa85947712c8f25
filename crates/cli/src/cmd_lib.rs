//! `pidcap lib`: the packet library from the command line (save, list, show,
//! search, tag, untag, tags, edit, delete, import, export, seq), human output
//! or `--json`. The database is `--db PATH` (its directory must exist), else
//! the XDG default (`$XDG_DATA_HOME/pidcap/library.db` or
//! `~/.local/share/pidcap/library.db`, its directories created 0700); the
//! database is created 0600, exports too unless `--file-mode` says otherwise.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use pidcap_api::protocol::{State, DEFAULT_SOCKET};
use pidcap_api::Client;
use pidcap_library::{
    ExportFormat, Filter, Library, LibraryError, MetaEdit, PacketId, PacketMeta, PacketSource, SavedPacket, Selection,
    SequenceId,
};
use pidcap_packet::{CapturedPacket, Direction, Protocol};
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct LibArgs {
    /// Library database (default: $XDG_DATA_HOME/pidcap/library.db). Created
    /// (mode 0600) if missing; its directory must exist, and it must be a
    /// regular file (not /dev/null).
    #[arg(long, global = true)]
    db: Option<PathBuf>,
    #[command(subcommand)]
    cmd: LibCmd,
}

#[derive(Subcommand, Debug)]
enum LibCmd {
    /// Save packets from a pcap/pcapng file (all, or --frames), or from the
    /// running daemon by packet id (--packet).
    #[command(group = clap::ArgGroup::new("from").required(true).args(["pcap", "packet"]))]
    Save {
        /// The capture file.
        #[arg(long)]
        pcap: Option<PathBuf>,
        /// Frames, numbered from 1 as Wireshark does (non-IP frames count too,
        /// and are not saved: a note says which and why): 1-5,9,12-
        #[arg(long, requires = "pcap")]
        frames: Option<String>,
        /// Packet ids of the daemon's capture (as `pidcap ctl packets` shows them): 12,15,20-30
        #[arg(long, value_parser = parse_ids)]
        packet: Option<Ids>,
        /// The daemon's socket, with --packet (PIDCAP_SOCKET sets it for ctl, send, lib, ui and daemon).
        #[arg(long, value_name = "PATH", env = "PIDCAP_SOCKET", default_value = DEFAULT_SOCKET)]
        socket: PathBuf,
        #[command(flatten)]
        meta: MetaArgs,
        /// Also group the saved packets into a sequence with this name.
        #[arg(long)]
        sequence: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List saved packets.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show packets in full (metadata and a hex dump).
    Show {
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<PacketId>,
        #[arg(long)]
        json: bool,
    },
    /// Full-text search (words, `tag:x`, `comm:x`, hex bytes `47 45 54` or `hex:474554`), best first.
    ///
    /// A query matching more than 4,000 packets is ranked among its newest
    /// 4,000 matches only (newest first, unranked, above 150,000 matches);
    /// a note on stderr says so. `--limit 0` ranks every match, however slow.
    Search {
        query: String,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Add tags to packets, or rename a tag everywhere (`tag --rename OLD NEW`).
    Tag {
        /// Rename tag OLD to NEW on every packet (merging if NEW exists).
        #[arg(long, num_args = 2, value_names = ["OLD", "NEW"], conflicts_with_all = ["ids", "tags"])]
        rename: Option<Vec<String>>,
        /// Packet ids: 1,2,7-9
        #[arg(value_parser = parse_ids, required_unless_present = "rename")]
        ids: Option<Ids>,
        #[arg(required_unless_present = "rename")]
        tags: Vec<String>,
    },
    /// Remove tags from packets.
    Untag {
        /// Packet ids: 1,2,7-9
        #[arg(value_parser = parse_ids)]
        ids: Ids,
        #[arg(required = true)]
        tags: Vec<String>,
    },
    /// List tags with how many packets carry each.
    Tags {
        #[arg(long)]
        json: bool,
    },
    /// Change a packet's name or description.
    Edit {
        id: PacketId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete packets.
    Delete {
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<PacketId>,
    },
    /// Import `.dpp` files (DioProcess v1 or pidcap v2), each all-or-nothing.
    ///
    /// Every file is tried and reported; a file that cannot be imported adds
    /// nothing, and makes the exit status 1 (2 when none could).
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Export the library, or a selection, to .dpp (v2), pcapng or pcap.
    Export {
        /// Output file; the format comes from its extension unless --format is given.
        #[arg(short, long)]
        output: PathBuf,
        #[arg(long, value_parser = ["dpp", "pcapng", "pcap"])]
        format: Option<String>,
        /// Only these packets (comma-separated ids).
        #[arg(long, value_delimiter = ',')]
        ids: Vec<PacketId>,
        /// Only packets matching this search.
        #[arg(long)]
        search: Option<String>,
        /// Only this sequence (its packets in order, and the sequence itself).
        #[arg(long)]
        sequence: Option<SequenceId>,
        /// Mode of the exported file, in octal (default 600: saved traffic is private).
        #[arg(long = "file-mode", value_name = "MODE", default_value = "600",
              value_parser = pidcap_pcapfile::file::parse_file_mode)]
        file_mode: u32,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Sequences: ordered groups of packets.
    #[command(subcommand)]
    Seq(SeqCmd),
}

#[derive(Subcommand, Debug)]
enum SeqCmd {
    /// Group packets, in this order, into a sequence.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(required = true, value_delimiter = ',')]
        ids: Vec<PacketId>,
    },
    /// List sequences.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Add packets at the end of a sequence, in this order.
    Add {
        id: SequenceId,
        /// Packet ids: 1,2,7-9
        #[arg(value_parser = parse_ids)]
        packets: Ids,
    },
    /// Replace a sequence's packets by these, in this order (reorder, drop).
    Set {
        id: SequenceId,
        /// Packet ids: 4,1,2
        #[arg(value_parser = parse_ids)]
        packets: Ids,
    },
    /// Change a sequence's name or description.
    Edit {
        id: SequenceId,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a sequence (and with --packets its packets).
    Delete {
        id: SequenceId,
        #[arg(long)]
        packets: bool,
    },
}

/// Packet ids given as one argument: `1,2,7-9`.
#[derive(Clone, Debug, Default)]
struct Ids(Vec<PacketId>);

fn parse_ids(s: &str) -> Result<Ids, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| x.trim().parse::<PacketId>().map_err(|_| format!("bad packet id {x:?} in {s:?}"));
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if b < a || b - a > 1_000_000 {
                    return Err(format!("bad id range {part:?}"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err("no packet ids".into());
    }
    Ok(Ids(out))
}

#[derive(Args, Debug, Default)]
struct MetaArgs {
    #[arg(long, default_value = "")]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// Tag (repeat, or comma-separated).
    #[arg(long = "tag", value_delimiter = ',')]
    tags: Vec<String>,
}

#[derive(Args, Debug, Default)]
struct FilterArgs {
    /// tcp, udp, icmp, icmpv6 or a protocol number.
    #[arg(long)]
    protocol: Option<String>,
    /// Local or remote port.
    #[arg(long)]
    port: Option<u16>,
    /// in or out.
    #[arg(long)]
    direction: Option<String>,
    #[arg(long)]
    tag: Option<String>,
    #[arg(long)]
    pid: Option<u32>,
    /// Captured at or after this time (UNIX seconds, fractions allowed).
    #[arg(long)]
    since: Option<f64>,
    /// Captured at or before this time (UNIX seconds, fractions allowed).
    #[arg(long)]
    until: Option<f64>,
}

impl FilterArgs {
    fn to_filter(&self) -> anyhow::Result<Filter> {
        let protocol = match self.protocol.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => None,
            Some("tcp") => Some(Protocol::Tcp),
            Some("udp") => Some(Protocol::Udp),
            Some("icmp") => Some(Protocol::Icmp),
            Some("icmpv6") => Some(Protocol::Icmpv6),
            Some(n) => Some(Protocol::from_number(n.parse().with_context(|| format!("unknown protocol {n:?}"))?)),
        };
        let direction = match self.direction.as_deref().map(str::parse::<Direction>) {
            None => None,
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => bail!("--direction must be in or out, not {:?}", e.found),
        };
        let ns = |s: f64| (s * 1e9) as u64;
        Ok(Filter {
            protocol,
            port: self.port,
            direction,
            tag: self.tag.clone(),
            pid: self.pid,
            since_ns: self.since.map(ns),
            until_ns: self.until.map(ns),
        })
    }
}

/// The running daemon as a [`PacketSource`]: packets fetched by capture id
/// with `get_packets`, paging only over the id ranges asked for.
struct DaemonSource {
    client: RefCell<Client>,
}

impl DaemonSource {
    fn connect(socket: &Path) -> anyhow::Result<DaemonSource> {
        Ok(DaemonSource { client: RefCell::new(Client::connect(socket)?) })
    }
}

impl PacketSource for DaemonSource {
    fn packets_by_id(&self, ids: &[u64]) -> pidcap_library::Result<Vec<CapturedPacket>> {
        let daemon = |e: pidcap_api::ClientError| LibraryError::source_failed("the daemon", e);
        let want: BTreeSet<u64> = ids.iter().copied().collect();
        let Some(&hi) = want.last() else { return Ok(Vec::new()) };
        let mut client = self.client.borrow_mut();
        let mut found: HashMap<u64, CapturedPacket> = HashMap::new();
        // The smallest wanted id not asked for yet; a page starts just before it.
        let mut cursor = 0u64;
        while let Some(&id) = want.range(cursor..).next() {
            let since = id.saturating_sub(1);
            let limit = (hi - since).min(1000) as usize;
            let page = client.get_packets(since, Some(limit)).map_err(daemon)?;
            let Some(last) = page.packets.last().map(|p| p.id) else { break };
            for p in page.packets {
                if want.contains(&p.id) {
                    found.insert(p.id, p);
                }
            }
            if !page.more {
                break;
            }
            cursor = last.max(page.next_since) + 1;
        }
        let missing: Vec<String> = want.iter().filter(|i| !found.contains_key(i)).map(u64::to_string).collect();
        if !missing.is_empty() {
            let held = match client.get_state().map_err(daemon)? {
                State { oldest_id: Some(a), newest_id: Some(b), .. } => format!("it holds ids {a} to {b}"),
                _ => "it holds no packets".to_string(),
            };
            return Err(LibraryError::Source(format!(
                "the daemon does not hold packet(s) {} ({held}; older packets are evicted from its ring or cleared)",
                missing.join(", ")
            )));
        }
        Ok(ids.iter().map(|i| found[i].clone()).collect())
    }
}

fn open(args: &LibArgs) -> anyhow::Result<Library> {
    Ok(match &args.db {
        Some(p) => Library::open(p)?,
        None => Library::open_default()?,
    })
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

// -- library output (issue 14) --
/// An endpoint as the capture lines write it (`[::1]:80`, `10.0.0.1:80`).
fn endpoint(addr: std::net::IpAddr, port: u16) -> String {
    match addr {
        std::net::IpAddr::V6(a) => format!("[{a}]:{port}"),
        a => format!("{a}:{port}"),
    }
}

/// The sizes of a packet, labelled: its payload (what `len` is in the
/// capture lines) and the whole packet as it was on the wire (IP header on).
fn sizes(c: &CapturedPacket) -> String {
    format!("payload {} B, packet {} B", c.decoded.payload_size, c.orig_len)
}

/// `ID  DATE TIME  DIR PROTO local > remote  payload N B, packet M B  pid/comm  name [tags]`:
/// the time local (TZ respected), the arrow the way the packet went (`>`
/// out, `<` in), as in `pidcap run`/`capture`/`read`.
fn one_line(p: &SavedPacket) -> String {
    let c = &p.packet;
    let d = &c.decoded;
    let tags = if p.tags.is_empty() { String::new() } else { format!(" [{}]", p.tags.join(", ")) };
    format!(
        "{:>6}  {}  {:<3} {:<6} {} {} {}  {}  {}/{}  {}{tags}{}",
        p.id,
        crate::output::date_time(c.timestamp_ns, crate::output::Zone::Local),
        c.direction.as_str(),
        d.protocol.name(),
        endpoint(d.local_addr, d.local_port),
        if c.direction == Direction::Outbound { ">" } else { "<" },
        endpoint(d.remote_addr, d.remote_port),
        sizes(c),
        c.pid,
        c.comm,
        p.name,
        if p.synthesized { " (synthesised)" } else { "" },
    )
}

fn print_ids(what: &str, ids: &[PacketId], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&ids);
    }
    let list: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
    println!("{what} {} packet(s): {}", ids.len(), list.join(" "));
    Ok(())
}

/// Run `pidcap lib ...`; returns the process exit code.
pub fn run(args: LibArgs) -> anyhow::Result<i32> {
    // The daemon first: without one, fail before creating a database.
    let source = match &args.cmd {
        LibCmd::Save { packet: Some(_), socket, .. } => Some(DaemonSource::connect(socket)?),
        _ => None,
    };
    let mut lib = open(&args)?;
    match args.cmd {
        LibCmd::Save { pcap, frames, packet, meta, sequence, json, .. } => {
            let m = PacketMeta { name: meta.name, description: meta.description, tags: meta.tags };
            let ids = match (pcap, packet) {
                (Some(pcap), _) => {
                    let frames = frames.as_deref().map(pidcap_library::parse_frames).transpose()?;
                    let saved = lib.save_pcap(&pcap, frames.as_deref(), &m)?;
                    for line in pidcap_pcapfile::describe_skipped(&saved.skipped) {
                        eprintln!("note: {}: {line} (not saved)", pcap.display());
                    }
                    if let Some(cut) = &saved.cut {
                        eprintln!(
                            "note: {} was cut short ({cut}); its {} complete frames were read",
                            pcap.display(),
                            saved.frames
                        );
                    }
                    saved.ids
                }
                (None, Some(Ids(ids))) => {
                    let ids: Vec<u64> = ids.iter().map(|&i| i as u64).collect();
                    lib.save_from_source(source.as_ref().context("no daemon connection")?, &ids, &m)?
                }
                (None, None) => bail!("give --pcap FILE or --packet IDS"),
            };
            if let Some(name) = sequence {
                let sid = lib.create_sequence(&name, &m.description, &ids)?;
                if !json {
                    println!("sequence {sid} {name:?}");
                }
            }
            print_ids("saved", &ids, json)?;
        }
        LibCmd::List { filter, limit, offset, json } => {
            let list = lib.list(&filter.to_filter()?, limit, offset)?;
            if json {
                print_json(&list)?;
            } else {
                for p in &list {
                    println!("{}", one_line(p));
                }
            }
        }
        LibCmd::Show { ids, json } => {
            let mut found = Vec::new();
            let mut missing = false;
            for id in ids {
                match lib.get(id)? {
                    Some(p) => found.push(p),
                    None => {
                        eprintln!("no packet with id {id}");
                        missing = true;
                    }
                }
            }
            if json {
                print_json(&found)?;
            } else {
                for p in &found {
                    println!("{}", one_line(p));
                    if !p.description.is_empty() {
                        println!("  description: {}", p.description);
                    }
                    println!(
                        "  source: {}  saved: {}  capture id: {}  socket cookie: {}",
                        p.source,
                        crate::output::date_time(p.saved_at_ns, crate::output::Zone::Local),
                        p.packet.id,
                        p.packet.socket_cookie
                    );
                    println!(
                        "  verdict: {}  {} ({} B captured)  tcp flags: {}",
                        p.packet.verdict,
                        sizes(&p.packet),
                        p.packet.data.len(),
                        p.packet.decoded.tcp_flags_str()
                    );
                    print!("{}", pidcap_packet::hex_dump(&p.packet.data));
                    println!();
                }
            }
            return Ok(i32::from(missing));
        }
        LibCmd::Search { query, filter, limit, json } => {
            let r = lib.search_results(&query, &filter.to_filter()?, limit)?;
            if json {
                print_json(&r.hits)?;
            } else {
                for h in &r.hits {
                    println!("{:>8.2}  {}", -h.score, one_line(&h.packet));
                }
                if r.hits.is_empty() {
                    eprintln!("no match");
                }
            }
            match (r.window, r.ranked) {
                (Some(w), true) => eprintln!("note: {} packets match; ranked among the newest {w} of them", r.matches),
                (Some(w), false) => eprintln!(
                    "note: more than {} packets match; showing the newest first (among the newest {w}), not ranked; add words or filters to narrow the search",
                    r.matches.saturating_sub(1)
                ),
                (None, _) => {}
            }
        }
        LibCmd::Tag { rename: Some(r), .. } => {
            let n = lib.rename_tag(&r[0], &r[1])?;
            println!("renamed {:?} to {:?} ({n} packet(s))", r[0], r[1]);
        }
        LibCmd::Tag { rename: None, ids, tags } => {
            let ids = ids.unwrap_or_default().0;
            lib.tag(&ids, &tags)?;
            println!("tagged {} packet(s)", ids.len());
        }
        LibCmd::Untag { ids: Ids(ids), tags } => {
            lib.untag(&ids, &tags)?;
            println!("untagged {} packet(s)", ids.len());
        }
        LibCmd::Tags { json } => {
            let tags = lib.tags()?;
            if json {
                print_json(&tags)?;
            } else {
                for t in tags {
                    println!("{:>6}  {}", t.count, t.name);
                }
            }
        }
        LibCmd::Edit { id, name, description } => {
            if name.is_none() && description.is_none() {
                bail!("nothing to change: give --name and/or --description");
            }
            lib.edit(id, &MetaEdit { name, description })?;
            println!("edited packet {id}");
        }
        LibCmd::Delete { ids } => {
            let n = lib.delete(&ids)?;
            println!("deleted {n} packet(s)");
            if n < ids.len() {
                return Ok(1);
            }
        }
        LibCmd::Import { files, json } => {
            // Each file on its own (each is one transaction): a bad one is
            // reported and the others are still imported.
            let mut reports = Vec::new();
            let mut failed = 0;
            for f in &files {
                match lib.import_dpp(f) {
                    Ok(r) => {
                        if !json {
                            println!(
                                "{}: .dpp v{}, {} packet(s), {} sequence(s)",
                                f.display(),
                                r.version,
                                r.packet_ids.len(),
                                r.sequence_ids.len()
                            );
                        }
                        reports.push(serde_json::json!({
                            "file": f,
                            "version": r.version,
                            "packet_ids": r.packet_ids,
                            "sequence_ids": r.sequence_ids,
                        }));
                    }
                    Err(e) => {
                        failed += 1;
                        let e = anyhow::Error::new(e).context(format!("importing {}", f.display()));
                        let text = crate::output::error_text(&e);
                        eprintln!("pidcap: {text}");
                        reports.push(serde_json::json!({ "file": f, "error": text }));
                    }
                }
            }
            if json {
                print_json(&reports)?;
            }
            if failed > 0 {
                eprintln!(
                    "pidcap: {failed} of {} file(s) could not be imported (nothing of them was kept)",
                    files.len()
                );
                return Ok(if failed == files.len() { 2 } else { 1 });
            }
        }
        LibCmd::Export { output, format, ids, search, sequence, file_mode, filter } => {
            let format = match format {
                Some(f) => f.parse::<ExportFormat>().map_err(anyhow::Error::msg)?,
                None => ExportFormat::from_path(&output).with_context(|| {
                    format!("cannot tell the format of {} from its extension; use --format", output.display())
                })?,
            };
            let f = filter.to_filter()?;
            let sel = match (ids.is_empty(), search, sequence) {
                (false, None, None) => Selection::Ids(ids),
                (true, Some(query), None) => Selection::Search { query, filter: f, limit: 0 },
                (true, None, Some(id)) => Selection::Sequence(id),
                (true, None, None) if f == Filter::default() => Selection::All,
                (true, None, None) => Selection::Filter(f),
                _ => bail!("give only one of --ids, --search and --sequence"),
            };
            let n = lib.export_with_mode(&sel, format, &output, file_mode)?;
            println!("exported {n} packet(s) to {}", output.display());
        }
        LibCmd::Seq(SeqCmd::Create { name, description, ids }) => {
            let id = lib.create_sequence(&name, &description, &ids)?;
            println!("sequence {id} {name:?}: {} packet(s)", ids.len());
        }
        LibCmd::Seq(SeqCmd::List { json }) => {
            let seqs = lib.sequences()?;
            if json {
                print_json(&seqs)?;
            } else {
                for s in seqs {
                    let ids: Vec<String> = s.packet_ids.iter().map(|i| i.to_string()).collect();
                    println!("{:>6}  {}  [{}]", s.id, s.name, ids.join(" "));
                }
            }
        }
        LibCmd::Seq(SeqCmd::Add { id, packets: Ids(ids) }) => {
            lib.append_to_sequence(id, &ids)?;
            println!("sequence {id}: {} packet(s) now", lib.sequence(id)?.packet_ids.len());
        }
        LibCmd::Seq(SeqCmd::Set { id, packets: Ids(ids) }) => {
            lib.set_sequence_packets(id, &ids)?;
            println!("sequence {id}: {} packet(s) now", ids.len());
        }
        LibCmd::Seq(SeqCmd::Edit { id, name, description }) => {
            if name.is_none() && description.is_none() {
                bail!("nothing to change: give --name and/or --description");
            }
            lib.edit_sequence(id, &MetaEdit { name, description })?;
            println!("edited sequence {id}");
        }
        LibCmd::Seq(SeqCmd::Delete { id, packets }) => {
            lib.delete_sequence(id, packets)?;
            println!("deleted sequence {id}");
        }
    }
    Ok(0)
}
