//! A small blocking client of the daemon (the CLI's `pidcap ctl`, tests, and
//! a UI thread). One request at a time; events of a subscription that
//! arrive while a call waits for its reply are kept for [`Client::next_event`].

use crate::error::{ClientError, Result};
use crate::protocol::{
    Event, FilterInfo, Filters, InjectArgs, JobInfo, JobReply, Jobs, Op, PacketPage, Reply, Request, Started, State,
    MAX_REPLY_BYTES, VERSION,
};
use pidcap_engine::rules::Action;
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
            return Err(ClientError::Protocol("the daemon closed the connection".into()));
        }
        serde_json::from_slice(&line)
            .map_err(|e| ClientError::Protocol(format!("{e}: {}", String::from_utf8_lossy(&line))))
    }

    /// Send `op`, wait for its reply; the result, or the daemon's error.
    pub fn call(&mut self, op: Op) -> Result<serde_json::Value> {
        let id = self.next_id;
        self.next_id += 1;
        let req =
            serde_json::to_vec(&Request { v: VERSION, id, op }).map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.send_line(&req)?;
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
    pub fn call_as<T: DeserializeOwned>(&mut self, op: Op) -> Result<T> {
        let v = self.call(op)?;
        serde_json::from_value(v).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    pub fn start_capture(
        &mut self,
        pids: Vec<u32>,
        names: Vec<String>,
        snaplen: Option<u32>,
        ring_size: Option<usize>,
        follow_children: bool,
    ) -> Result<Started> {
        self.call_as(Op::StartCapture { pids, names, snaplen, ring_size, follow_children })
    }

    pub fn stop_capture(&mut self) -> Result<State> {
        self.call_as(Op::StopCapture)
    }

    pub fn get_packets(&mut self, since: u64, limit: Option<usize>) -> Result<PacketPage> {
        self.call_as(Op::GetPackets { since, limit })
    }

    pub fn get_state(&mut self) -> Result<State> {
        self.call_as(Op::GetState)
    }

    pub fn add_filter(&mut self, spec: &str, action: Action, index: Option<usize>) -> Result<FilterInfo> {
        let f: Filters = self.call_as(Op::AddFilter { rule: spec.into(), action: Some(action), index })?;
        f.filter.ok_or_else(|| ClientError::Protocol("add_filter returned no filter".into()))
    }

    pub fn remove_filter(&mut self, id: u64) -> Result<Filters> {
        self.call_as(Op::RemoveFilter { filter: id })
    }

    pub fn set_filter_enabled(&mut self, id: u64, enabled: bool) -> Result<Filters> {
        self.call_as(Op::SetFilterEnabled { filter: id, enabled })
    }

    pub fn clear_filters(&mut self) -> Result<Filters> {
        self.call_as(Op::ClearFilters)
    }

    pub fn clear_buffer(&mut self) -> Result<serde_json::Value> {
        self.call(Op::ClearBuffer)
    }

    /// Start a send job (`inject`); follow it with [`Client::watch_job`].
    pub fn inject(&mut self, args: InjectArgs) -> Result<JobInfo> {
        self.call_as::<JobReply>(Op::Inject(Box::new(args))).map(|r| r.job)
    }

    pub fn list_jobs(&mut self) -> Result<Vec<JobInfo>> {
        self.call_as::<Jobs>(Op::ListJobs).map(|j| j.jobs)
    }

    /// Stream a job's statuses on this connection: then read
    /// [`Event::SendStatus`] and finally [`Event::JobDone`] with [`Client::next_event`].
    pub fn watch_job(&mut self, job: u64) -> Result<JobInfo> {
        let v = self.call(Op::WatchJob { job })?;
        serde_json::from_value(v["job"].clone()).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Stop a job; returns it once stopped.
    pub fn stop_job(&mut self, job: u64) -> Result<JobInfo> {
        self.call_as::<JobReply>(Op::StopJob { job }).map(|r| r.job)
    }

    /// Subscribe this connection to packets (and counters); then read them
    /// with [`Client::next_event`].
    pub fn subscribe(&mut self, since: Option<u64>) -> Result<serde_json::Value> {
        self.call(Op::Subscribe { since })
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
