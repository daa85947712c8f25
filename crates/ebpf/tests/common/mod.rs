//! What the privileged test files share: a python3 "agent", a process that
//! does one socket operation per line of its stdin (the script is the test
//! file's) and answers each with one line.
#![allow(dead_code)]

use pidcap_engine::process::Process;
use std::io::{BufRead, BufReader, Write};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

/// A python3 process running `script`, one socket operation per command.
pub struct Agent {
    child: pidcap_testkit::KillOnDrop,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Agent {
    pub fn start(script: &str) -> Agent {
        let mut child =
            Command::new("python3").args(["-c", script]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Agent { child: pidcap_testkit::KillOnDrop(child), stdin, stdout }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn process(&self) -> Process {
        Process::open(self.pid()).unwrap()
    }

    /// Send a command without waiting for its answer.
    pub fn tell(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
    }

    /// The answer to the last command told.
    pub fn answer(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the agent exited");
        line.trim().to_string()
    }

    /// Send a command, return the agent's answer (once the operation is done).
    pub fn ask(&mut self, cmd: &str) -> String {
        self.tell(cmd);
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "the agent exited on {cmd:?}");
        line.trim().to_string()
    }
}

/// An agent script that sends `N` UDP datagrams `PAYLOAD` to 127.0.0.1:PORT
/// from one socket at `send PORT N PAYLOAD`, and says `sent` once it has
/// (the egress program runs in the send, so the records are in the ring by then).
pub const UDP_SENDER: &str = "import socket, sys\n\
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
    for line in sys.stdin:\n\
    \x20   _, port, n, payload = line.split()\n\
    \x20   for _ in range(int(n)): s.sendto(payload.encode(), ('127.0.0.1', int(port)))\n\
    \x20   print('sent', flush=True)\n";

impl Agent {
    /// [`UDP_SENDER`]'s `send`: `n` datagrams `payload` to 127.0.0.1:`port`, sent when it returns.
    pub fn send_udp(&mut self, port: u16, n: u32, payload: &str) {
        assert_eq!(self.ask(&format!("send {port} {n} {payload}")), "sent");
    }
}
