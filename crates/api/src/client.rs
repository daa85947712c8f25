//! A small blocking client of the daemon (the CLI's `pidcap ctl`, tests, and
//! a UI thread). One request at a time; events of a subscription that
//! arrive while a call waits for its reply are kept for [`Client::next_event`].
//! Every operation has a method that returns its typed result;
//! [`Client::call`] gives the raw JSON (`pidcap ctl --json`).

use crate::error::{ClientError, Result};
use crate::protocol::{
    Cleared, ConnectionOp, EngineOp, Event, FilterInfo, Filters, InjectArgs, JobInfo, JobReply, Jobs, Op, PacketPage,
    Reply, Request, Started, State, Subscribed, Watching, MAX_REPLY_BYTES, VERSION,
};
use pidcap_engine::rules::Action;
use pidcap_packet::CapturedPacket;
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
    path: PathBuf,
    events: VecDeque<(u64, Event)>,
}

impl Client {
    /// Connect to the daemon on `path`, with errors that say what to do.
    pub fn connect(path: &Path) -> Result<Client> {
        let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => ClientError::NotRunning(path.into()),
            ErrorKind::PermissionDenied => ClientError::PermissionDenied(path.into()),
            _ => ClientError::io(format!("connecting to {}", path.display()), e),
        })?;
        let writer = stream.try_clone().map_err(|e| ClientError::io("socket", e))?;
        Ok(Client { reader: BufReader::new(stream), writer, next_id: 1, path: path.into(), events: VecDeque::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Give up a read after `timeout` (None: wait forever).
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.writer.set_read_timeout(timeout).map_err(|e| ClientError::io("socket", e))
    }

    /// Send one raw line (tests of malformed input); a newline is added.
    pub fn send_line(&mut self, line: &[u8]) -> Result<()> {
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        self.writer.write_all(&buf).map_err(|e| ClientError::io("writing to the daemon", e))
    }

    /// Read the next line the daemon sends.
    pub fn read_reply(&mut self) -> Result<Reply> {
        let mut line = Vec::new();
        let n = (&mut self.reader)
            .take(MAX_REPLY_BYTES as u64)
            .read_until(b'\n', &mut line)
            .map_err(|e| ClientError::io("reading from the daemon", e))?;
        if n == 0 {
            return Err(ClientError::Closed);
        }
        serde_json::from_slice(&line).map_err(|source| ClientError::BadReply { line: excerpt(&line), source })
    }

    /// Send `op`, wait for its reply; the result as JSON, or the daemon's error.
    pub fn call(&mut self, op: impl Into<Op>) -> Result<serde_json::Value> {
        let op = op.into();
        let name = op.name();
        let id = self.next_id;
        self.next_id += 1;
        let req = serde_json::to_vec(&Request { v: VERSION, id, op })
            .map_err(|source| ClientError::Encode { op: name, source })?;
        if let Err(e) = self.send_line(&req) {
            // The daemon may have said why it closed (`busy`) before it did.
            return Err(match self.read_reply() {
                Ok(Reply { error: Some(api), .. }) => ClientError::Api(api),
                _ => e,
            });
        }
        loop {
            let reply = self.read_reply()?;
            if let Some(event) = reply.event {
                self.events.push_back((reply.id.unwrap_or(0), event));
                continue;
            }
            if reply.id.is_some() && reply.id != Some(id) {
                continue;
            }
            if let Some(e) = reply.error {
                return Err(ClientError::Api(e));
            }
            return Ok(reply.result.unwrap_or(serde_json::Value::Null));
        }
    }

    /// [`Client::call`], the result decoded as `T`.
    pub fn call_as<T: DeserializeOwned>(&mut self, op: impl Into<Op>) -> Result<T> {
        let op = op.into();
        let name = op.name();
        let v = self.call(op)?;
        serde_json::from_value(v).map_err(|source| ClientError::BadResult { op: name, source })
    }

    pub fn start_capture(
        &mut self,
        pids: Vec<u32>,
        names: Vec<String>,
        snaplen: Option<u32>,
        ring_size: Option<usize>,
        follow_children: bool,
    ) -> Result<Started> {
        self.start_capture_with(pids, names, snaplen, ring_size, follow_children, None)
    }

    // -- filter expressions --
    /// [`Client::start_capture`] keeping only the packets that match
    /// `filter`, a pcap-filter expression (tcpdump's).
    pub fn start_capture_filtered(
        &mut self,
        pids: Vec<u32>,
        names: Vec<String>,
        snaplen: Option<u32>,
        ring_size: Option<usize>,
        follow_children: bool,
        filter: &str,
    ) -> Result<Started> {
        self.start_capture_with(pids, names, snaplen, ring_size, follow_children, Some(filter.to_string()))
    }

    fn start_capture_with(
        &mut self,
        pids: Vec<u32>,
        names: Vec<String>,
        snaplen: Option<u32>,
        ring_size: Option<usize>,
        follow_children: bool,
        filter: Option<String>,
    ) -> Result<Started> {
        self.call_as(EngineOp::StartCapture {
            pids,
            names,
            snaplen,
            ring_size,
            follow_children,
            filter,
            cgroups: Vec::new(),
        })
    }

    pub fn stop_capture(&mut self) -> Result<State> {
        self.call_as(EngineOp::StopCapture)
    }

    pub fn get_packets(&mut self, since: u64, limit: Option<usize>) -> Result<PacketPage> {
        self.call_as(EngineOp::GetPackets { since, limit })
    }

    /// The packet with this id, if the daemon still holds it (None: evicted,
    /// cleared, or not captured yet).
    pub fn get_packet(&mut self, id: u64) -> Result<Option<CapturedPacket>> {
        if id == 0 {
            return Ok(None); // ids start at 1
        }
        let page = self.get_packets(id - 1, Some(1))?;
        Ok(page.packets.into_iter().find(|p| p.id == id))
    }

    pub fn get_state(&mut self) -> Result<State> {
        self.call_as(EngineOp::GetState)
    }

    pub fn add_filter(&mut self, spec: &str, action: Action, index: Option<usize>) -> Result<FilterInfo> {
        let f: Filters = self.call_as(EngineOp::AddFilter { rule: spec.into(), action: Some(action), index })?;
        f.filter.ok_or(ClientError::Incomplete { op: "add_filter", missing: "the filter added" })
    }

    pub fn remove_filter(&mut self, id: u64) -> Result<Filters> {
        self.call_as(EngineOp::RemoveFilter { filter: id })
    }

    pub fn set_filter_enabled(&mut self, id: u64, enabled: bool) -> Result<Filters> {
        self.call_as(EngineOp::SetFilterEnabled { filter: id, enabled })
    }

    pub fn clear_filters(&mut self) -> Result<Filters> {
        self.call_as(EngineOp::ClearFilters)
    }

    pub fn clear_buffer(&mut self) -> Result<Cleared> {
        self.call_as(EngineOp::ClearBuffer)
    }

    /// Start a send job (`inject`); follow it with [`Client::watch_job`].
    pub fn inject(&mut self, args: InjectArgs) -> Result<JobInfo> {
        self.call_as::<JobReply>(ConnectionOp::Inject(Box::new(args))).map(|r| r.job)
    }

    pub fn list_jobs(&mut self) -> Result<Vec<JobInfo>> {
        self.call_as::<Jobs>(ConnectionOp::ListJobs).map(|j| j.jobs)
    }

    /// Stream a job's statuses on this connection: then read
    /// [`Event::SendStatus`] and finally [`Event::JobDone`] with [`Client::next_event`].
    pub fn watch_job(&mut self, job: u64) -> Result<JobInfo> {
        self.call_as::<Watching>(ConnectionOp::WatchJob { job }).map(|w| w.job)
    }

    /// Stop a job; returns it once stopped.
    pub fn stop_job(&mut self, job: u64) -> Result<JobInfo> {
        self.call_as::<JobReply>(ConnectionOp::StopJob { job }).map(|r| r.job)
    }

    /// Subscribe this connection to packets (and counters); then read them
    /// with [`Client::next_event`].
    pub fn subscribe(&mut self, since: Option<u64>) -> Result<Subscribed> {
        self.call_as(ConnectionOp::Subscribe { since })
    }

    /// The next event of the subscription (blocks; see [`Client::set_read_timeout`]).
    pub fn next_event(&mut self) -> Result<Event> {
        if let Some((_, e)) = self.events.pop_front() {
            return Ok(e);
        }
        loop {
            let reply = self.read_reply()?;
            if let Some(e) = reply.event {
                return Ok(e);
            }
        }
    }
}

/// The start of a line, for an error message.
fn excerpt(line: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX)]);
    let text = text.trim_end();
    if line.len() > MAX {
        format!("{text}...")
    } else {
        text.to_string()
    }
}
