//! Talking to a donna-agent: one TCP connection per request, with timeouts.

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use donna_sdk::{Result, SdkError};

use crate::protocol::{
    read_frame, write_frame, AgentDescription, AgentStats, ErrorKind, FrameError, MeasureRequest, Reply, ReplyBody,
    Request, RequestBody, DEFAULT_PORT, MAX_REPLY_BYTES, PROTOCOL_VERSION,
};

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

    /// Sends `body` and waits up to `timeout` for the reply; an error reply becomes an error.
    pub fn call(&self, body: RequestBody, timeout: Duration) -> Result<ReplyBody> {
        let mut stream = self.connect()?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(timeout))
            .and_then(|_| stream.set_write_timeout(Some(timeout)))
            .map_err(|e| self.io_error(e, "setting up"))?;
        let request = Request { protocol: PROTOCOL_VERSION, token: self.token.clone(), body };
        write_frame(&mut stream, &request).map_err(|e| self.io_error(e, "sending the request"))?;
        let frame = read_frame(&mut stream, MAX_REPLY_BYTES).map_err(|e| match e {
            FrameError::Io(e) => self.io_error(e, &format!("waiting {} s for the reply", timeout.as_secs())),
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
