//! `pidcap ctl ...`: the daemon's command-line client.

use crate::output;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use pidcap_api::protocol::{ConnectionOp, EngineOp};
use pidcap_api::protocol::{Event, FilterInfo, State, DEFAULT_SOCKET};
use pidcap_api::Client;
use pidcap_engine::rules::Action;
use std::io::Write;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct CtlArgs {
    /// The daemon's socket (PIDCAP_SOCKET sets it for ctl, send, lib, ui and daemon).
    #[arg(long, value_name = "PATH", env = "PIDCAP_SOCKET", default_value = DEFAULT_SOCKET, global = true)]
    pub socket: PathBuf,

    /// Print the daemon's JSON results (one object per line) instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Subcommand, Debug)]
pub enum CtlCommand {
    /// Start capturing processes (by pid, name, cgroup, unit or container).
    Start {
        #[arg(short, long = "pid", value_name = "PID")]
        pids: Vec<u32>,
        #[arg(long = "name", value_name = "COMM")]
        names: Vec<String>,
        /// Bytes kept of each packet (1..=65535).
        #[arg(short = 's', long)]
        snaplen: Option<u32>,
        /// Packets the daemon keeps.
        #[arg(long)]
        ring_size: Option<usize>,
        /// Also capture the targets' children.
        #[arg(short = 'f', long)]
        follow_children: bool,
        // -- filter expressions --
        /// Keep only the packets matching EXPRESSION (pcap-filter, as
        /// tcpdump; words joined by spaces). The daemon refuses a malformed one.
        #[arg(value_name = "EXPRESSION")]
        expression: Vec<String>,
        // -- capture by cgroup, unit and container --
        /// Every process in cgroup PATH and below it, also those that join later (see `pidcap help capture`).
        #[arg(long = "cgroup", value_name = "PATH")]
        cgroups: Vec<String>,
        /// A systemd unit's processes (NAME or NAME.service).
        #[arg(long = "unit", value_name = "NAME")]
        units: Vec<String>,
        /// A container's processes (its id, 4 hex digits or more of it, or a machine name).
        #[arg(long = "container", value_name = "ID")]
        containers: Vec<String>,
    },
    /// Stop the capture (packets stay readable).
    Stop,
    /// Print held packets with an id greater than --since, oldest first.
    Packets {
        #[arg(long, default_value_t = 0)]
        since: u64,
        /// Most packets to print (default: all, fetched page by page).
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Follow new packets (and counters with --json) until interrupted.
    Watch {
        /// First replay the packets held with an id greater than this.
        #[arg(long)]
        since: Option<u64>,
    },
    /// Manage the filter rules.
    Filter {
        #[command(subcommand)]
        command: FilterCommand,
    },
    /// Drop the packets the daemon holds.
    Clear,
    /// Show whether a capture runs, its targets, counters, ring and rules.
    State,
    /// Resend a captured packet once, as it was (`pidcap send --packet ID`
    /// edits, loops and shows the statuses); prints the daemon's job.
    Inject {
        #[arg(long)]
        packet: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
pub enum FilterCommand {
    /// Add a rule (see `pidcap capture --help` for SPEC).
    #[command(group = clap::ArgGroup::new("action").required(true))]
    Add {
        #[arg(long, value_name = "SPEC", group = "action")]
        block: Option<String>,
        #[arg(long, value_name = "SPEC", group = "action")]
        allow: Option<String>,
        /// Insert at this position (default: last).
        #[arg(long)]
        index: Option<usize>,
    },
    /// Remove the rule with this id.
    Rm { id: u64 },
    /// Remove every rule.
    Clear,
    /// Enable the rule with this id.
    Enable { id: u64 },
    /// Disable the rule with this id (kept in place, skipped).
    Disable { id: u64 },
    /// List the rules with their hit counts.
    List,
}

pub fn run(args: CtlArgs) -> Result<u8> {
    let mut c = Client::connect(&args.socket)?;
    let json = args.json;
    let print_json = |v: &serde_json::Value| println!("{v}");
    match args.command {
        CtlCommand::Start {
            pids,
            names,
            snaplen,
            ring_size,
            follow_children,
            expression,
            cgroups,
            units,
            containers,
        } => {
            use pidcap_api::protocol::CgroupSpec;
            let cgroups: Vec<CgroupSpec> = cgroups
                .into_iter()
                .map(CgroupSpec::Path)
                .chain(units.into_iter().map(CgroupSpec::Unit))
                .chain(containers.into_iter().map(CgroupSpec::Container))
                .collect();
            if pids.is_empty() && names.is_empty() && cgroups.is_empty() {
                bail!("give --pid PID, --name COMM, --cgroup PATH, --unit NAME and/or --container ID");
            }
            let filter = pidcap_filter::expression_from_words(&expression);
            let v =
                c.call(EngineOp::StartCapture { pids, names, snaplen, ring_size, follow_children, filter, cgroups })?;
            if json {
                print_json(&v);
            } else {
                let s: pidcap_api::protocol::Started = serde_json::from_value(v)?;
                println!("capture {} started on {:?}; first packet id {}", s.session, s.targets, s.first_id);
            }
        }
        CtlCommand::Stop => {
            let v = c.call(EngineOp::StopCapture)?;
            if json {
                print_json(&v);
            } else {
                let s: State = serde_json::from_value(v)?;
                println!("capture stopped: {} packets received, {} held", s.stats.received, s.stats.ring_len);
            }
        }
        CtlCommand::Packets { since, limit } => {
            let mut since = since;
            let mut left = limit.unwrap_or(usize::MAX);
            let mut out = std::io::stdout().lock();
            while left > 0 {
                let page = c.get_packets(since, Some(left.min(pidcap_api::protocol::MAX_PAGE)))?;
                if page.missed > 0 && !json {
                    eprintln!("pidcap: {} packets after id {since} are no longer held", page.missed);
                }
                for p in &page.packets {
                    if json {
                        writeln!(out, "{}", output::packet_json(p))?;
                    } else {
                        writeln!(out, "{:>6} {}", p.id, output::packet_line(p))?;
                    }
                }
                left = left.saturating_sub(page.packets.len());
                since = page.next_since;
                if !page.more || page.packets.is_empty() {
                    break;
                }
            }
        }
        CtlCommand::Watch { since } => {
            let v = c.subscribe(since)?;
            if json {
                print_json(&serde_json::to_value(v)?);
            }
            loop {
                let e = c.next_event()?;
                let mut out = std::io::stdout().lock();
                if json {
                    writeln!(out, "{}", serde_json::to_string(&e)?)?;
                } else {
                    match e {
                        Event::Packet { packet } => writeln!(out, "{:>6} {}", packet.id, output::packet_line(&packet))?,
                        Event::Missed { count } => {
                            eprintln!("pidcap: this client missed {count} packets (reading too slowly)")
                        }
                        Event::Counters { .. } | Event::SendStatus { .. } | Event::JobDone { .. } => {}
                    }
                }
                out.flush()?;
            }
        }
        CtlCommand::Filter { command } => {
            let (op, action) = match command {
                FilterCommand::Add { block: Some(spec), index, .. } => {
                    (EngineOp::AddFilter { rule: spec, action: Some(Action::Block), index }, "added")
                }
                FilterCommand::Add { allow: Some(spec), index, .. } => {
                    (EngineOp::AddFilter { rule: spec, action: Some(Action::Allow), index }, "added")
                }
                FilterCommand::Add { .. } => bail!("give --block SPEC or --allow SPEC"),
                FilterCommand::Rm { id } => (EngineOp::RemoveFilter { filter: id }, "removed"),
                FilterCommand::Clear => (EngineOp::ClearFilters, "cleared"),
                FilterCommand::Enable { id } => (EngineOp::SetFilterEnabled { filter: id, enabled: true }, "enabled"),
                FilterCommand::Disable { id } => {
                    (EngineOp::SetFilterEnabled { filter: id, enabled: false }, "disabled")
                }
                FilterCommand::List => (EngineOp::GetState, "list"),
            };
            let v = c.call(op)?;
            if json {
                print_json(&v);
            } else {
                let filters: Vec<FilterInfo> = serde_json::from_value(v["filters"].clone())?;
                if let Some(f) = v.get("filter").filter(|f| !f.is_null()) {
                    let f: FilterInfo = serde_json::from_value(f.clone())?;
                    println!("{action} {f}");
                } else if action != "list" {
                    println!("{action}");
                }
                print_filters(&filters);
            }
        }
        CtlCommand::Clear => {
            let v = c.clear_buffer()?;
            if json {
                print_json(&serde_json::to_value(v)?);
            } else {
                println!("cleared {} packets", v.cleared);
            }
        }
        CtlCommand::State => {
            let v = c.call(EngineOp::GetState)?;
            if json {
                print_json(&v);
            } else {
                print_state(&serde_json::from_value(v)?);
            }
        }
        CtlCommand::Inject { packet } => {
            let args = pidcap_api::protocol::InjectArgs { packet, ..Default::default() };
            let v = c.call(ConnectionOp::Inject(Box::new(args)))?;
            println!("{}", serde_json::to_string(&v)?);
        }
    }
    Ok(0)
}

fn print_filters(filters: &[FilterInfo]) {
    if filters.is_empty() {
        println!("no filter rules (everything is allowed)");
    }
    for f in filters {
        println!("  {f}");
    }
}

fn print_state(s: &State) {
    let k = &s.stats.kernel;
    println!("capture:  {} (session {})", if s.running { "running" } else { "stopped" }, s.session);
    if let Some(o) = &s.settings {
        println!("settings: snap length {}, ring {}, follow children {}", o.snaplen, o.ring_size, o.follow_children);
    }
    for t in &s.targets {
        println!(
            "target:   pid {} {} {}{}",
            t.pid,
            t.comm.as_deref().unwrap_or("?"),
            if t.alive { "alive" } else { "exited" },
            if t.requested { "" } else { " (child or name match)" }
        );
    }
    for n in &s.names {
        println!("target:   name {n}");
    }
    println!(
        "kernel:   seen {} unattributed {} target {} captured {} ring-full {} load-failed {} blocked {} connect-blocked {}",
        k.seen, k.unattributed, k.target, k.captured, k.ring_full, k.load_failed, k.blocked, k.connect_blocked
    );
    println!(
        "user:     received {} held {}/{} evicted {} (ids {}..{})",
        s.stats.received,
        s.stats.ring_len,
        s.stats.ring_capacity,
        s.stats.evicted,
        s.oldest_id.map_or("-".into(), |i| i.to_string()),
        s.newest_id.map_or("-".into(), |i| i.to_string())
    );
    println!("clients:  {} subscribed", s.subscribers);
    println!("rules:");
    print_filters(&s.filters);
}
