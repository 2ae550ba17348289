//! Talking to a donna-agent: one TCP connection per request, with timeouts, each request with
//! a fresh id that its reply must carry.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use donna_sdk::{Result, SdkError};

use crate::protocol::{
    read_frame, write_frame, AgentDescription, AgentStats, ErrorKind, FrameError, MeasureRequest, Reply, ReplyBody,
    Request, RequestBody, DEFAULT_PORT, MAX_REPLY_BYTES, PROTOCOL_VERSION,
};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A request id not used before by this process: the process id in the high 32 bits (so that
/// an agent's log tells clients apart), a counter in the low ones.
pub fn fresh_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (u64::from(std::process::id()) << 32) | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
}

/// A connection setting for one agent.
#[derive(Clone, Debug)]
pub struct AgentClient {
    address: String,
    token: Option<String>,
}

impl AgentClient {
    /// A client for the agent at `address` (`HOST:PORT`, `HOST` for the default port, or
    /// `[IPV6]:PORT`), sending `token` with every request.
    pub fn new(address: &str, token: Option<String>) -> Self {
        let address = match address.rsplit_once(':') {
            Some((_, port)) if port.parse::<u16>().is_ok() && !address.ends_with(']') => address.to_owned(),
            _ => format!("{address}:{DEFAULT_PORT}"),
        };
        Self { address, token }
    }

    /// `HOST:PORT`.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn io_error(&self, e: io::Error, what: &str) -> SdkError {
        let hint = match e.kind() {
            io::ErrorKind::ConnectionRefused => {
                " (is donna-agent running there? start it with `donna-agent --listen HOST:PORT`)".to_owned()
            }
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(" ({what} timed out)"),
            _ => String::new(),
        };
        SdkError::Io { path: format!("agent {}", self.address), source: io::Error::new(e.kind(), format!("{e}{hint}")) }
    }

    fn connect(&self) -> Result<TcpStream> {
        let addrs: Vec<SocketAddr> = self
            .address
            .to_socket_addrs()
            .map_err(|e| SdkError::Config(format!("agent {}: cannot resolve the address: {e}", self.address)))?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(self.io_error(last, "connecting"))
    }

    /// Sends `body` with a fresh id and waits up to `timeout` for the reply; an error reply
    /// becomes an error, and so does a reply to another request (another id).
    pub fn call(&self, body: RequestBody, timeout: Duration) -> Result<ReplyBody> {
        let id = fresh_id();
        let mut stream = self.connect()?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| self.io_error(e, "setting up"))?;
        let request = Request { protocol: PROTOCOL_VERSION, id: Some(id), token: self.token.clone(), body };
        write_frame(&mut stream, &request).map_err(|e| self.io_error(e, "sending the request"))?;
        let frame = read_frame(&mut stream, MAX_REPLY_BYTES).map_err(|e| match e {
            FrameError::Io(e) => self.io_error(e, &format!("waiting {} s for the reply", timeout.as_secs())),
            FrameError::Closed => self.io_error(
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "closed the connection without replying (did it stop?)",
                ),
                "reading the reply",
            ),
            other => self.io_error(io::Error::other(other.to_string()), "reading the reply"),
        })?;
        let reply: Reply = serde_json::from_slice(&frame)
            .map_err(|e| SdkError::Json { path: format!("reply of agent {}", self.address), source: e })?;
        if reply.protocol != PROTOCOL_VERSION {
            return Err(SdkError::Config(format!(
                "agent {} speaks protocol {}, this donna {PROTOCOL_VERSION}: use matching versions",
                self.address, reply.protocol
            )));
        }
        // No id: an agent from before ids, or a refusal sent before the request was read.
        if let Some(other) = reply.id.filter(|&r| r != id) {
            return Err(SdkError::Config(format!(
                "agent {}: the reply answers request {other}, not this one ({id}): replies are mixed up",
                self.address
            )));
        }
        match reply.body {
            ReplyBody::Error { kind, message } => Err(SdkError::Config(match kind {
                ErrorKind::Token => format!(
                    "agent {}: {message} (give the agent's token in DONNA_AGENT_TOKEN or token_file=PATH)",
                    self.address
                ),
                _ => format!("agent {}: {message}", self.address),
            })),
            body => Ok(body),
        }
    }

    fn unexpected(&self, body: &ReplyBody) -> SdkError {
        SdkError::Config(format!("agent {}: unexpected reply {body:?}", self.address))
    }

    /// The agent's device, runtime and limits.
    pub fn hello(&self, timeout: Duration) -> Result<AgentDescription> {
        match self.call(RequestBody::Hello, timeout)? {
            ReplyBody::Hello(d) => Ok(d),
            other => Err(self.unexpected(&other)),
        }
    }

    /// What the agent has done since it started.
    pub fn stats(&self, timeout: Duration) -> Result<AgentStats> {
        match self.call(RequestBody::Stats, timeout)? {
            ReplyBody::Stats(s) => Ok(s),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Measures `request.archs`; one result each, in order.
    pub fn measure(&self, request: MeasureRequest, timeout: Duration) -> Result<Vec<crate::protocol::ArchResult>> {
        let n = request.archs.len();
        match self.call(RequestBody::Measure(request), timeout)? {
            ReplyBody::Measure { results } if results.len() == n => Ok(results),
            other => Err(self.unexpected(&other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{read_frame, write_frame, AgentStats};
    use std::net::TcpListener;

    /// An agent stand-in that answers each of `ids.len()` connections with a `stats` reply
    /// whose id is `ids[i]` applied to the request's id.
    fn fake(ids: Vec<fn(Option<u64>) -> Option<u64>>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for answer in ids {
                let (mut s, _) = listener.accept().unwrap();
                let request: Request = serde_json::from_slice(&read_frame(&mut s, 1 << 20).unwrap()).unwrap();
                let stats = AgentStats { requests: 1, errors: 0, measured: 0, connections: 1, uptime_s: 1.0 };
                write_frame(&mut s, &Reply::new(ReplyBody::Stats(stats)).with_id(answer(request.id))).unwrap();
            }
        });
        addr
    }

    #[test]
    fn a_reply_with_another_id_is_an_error_and_one_without_is_accepted() {
        let addr = fake(vec![|id| id, |id| id.map(|i| i + 1), |_| None]);
        let client = AgentClient::new(&addr, None);
        let t = Duration::from_secs(10);
        assert_eq!(client.stats(t).unwrap().requests, 1, "its own id");
        let e = client.stats(t).unwrap_err().to_string();
        assert!(e.contains("replies are mixed up") && e.contains(&addr), "{e}");
        assert_eq!(client.stats(t).unwrap().requests, 1, "no id: an agent from before ids");
        let (a, b) = (fresh_id(), fresh_id());
        assert!(a != b && a >> 32 == u64::from(std::process::id()), "{a} {b}");
    }
}
