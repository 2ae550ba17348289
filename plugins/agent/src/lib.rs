//! # The `agent` cost model: latency measured by a donna-agent on the target device
//!
//! The target of a search (a GPU server, a Jetson, a laptop) runs `donna-agent`, which times
//! the architectures it is sent with libtorch, one request at a time. This crate is the other
//! end: `--device agent:HOST:PORT` connects, asks the agent what it measures on (device,
//! threads, libtorch version: the latency cache keys on them), and sends each generation of a
//! search as one request, split only where the agent's limits say so.
//!
//! `--device agent:HOST[:PORT][,timeout=SECONDS][,token_file=PATH]`; the token is read from
//! `token_file`, else from the `DONNA_AGENT_TOKEN` environment variable (never from the device
//! string itself, which ends up in logs and `ps`). [`protocol`] describes the wire format;
//! [`client`] holds the connection code the agent's tests use too.
#![deny(missing_docs)]

pub mod client;
pub mod protocol;

use std::time::Duration;

use donna_sdk::cost::{CostModel, CostQuery, DeviceInfo, Latency, LatencyMethod, Precision};
use donna_sdk::registry::{DeviceProvider, DeviceRegistration};
use donna_sdk::{Architecture, Result, SdkError, SearchSpace};

pub use client::AgentClient;
use protocol::{AgentDescription, ArchResult, MeasureRequest};

/// Where the token comes from when no `token_file` is given.
pub const TOKEN_ENV: &str = "DONNA_AGENT_TOKEN";

/// How long `hello` may take when the device is built.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Room left in a request for everything but the architectures.
const REQUEST_OVERHEAD: usize = 4096;

/// A cost model backed by a donna-agent.
pub struct AgentModel {
    client: AgentClient,
    agent: AgentDescription,
    timeout: Option<Duration>,
}

impl AgentModel {
    /// Connects to the agent described by `args` (`HOST[:PORT][,timeout=S][,token_file=PATH]`)
    /// and asks what it measures on.
    pub fn connect(args: &str) -> Result<Self> {
        let mut parts = args.split(',');
        let address = parts.next().unwrap_or("").trim();
        if address.is_empty() {
            return Err(SdkError::Config("agent: give the agent's address, `--device agent:HOST:PORT`".into()));
        }
        let mut timeout = None;
        let mut token = None;
        for part in parts.filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("timeout", v)) => match v.parse::<f64>() {
                    Ok(s) if s > 0.0 && s <= 86_400.0 => timeout = Some(Duration::from_secs_f64(s)),
                    _ => return Err(SdkError::Config(format!("agent: timeout={v} is not a number of seconds in (0, 86400]"))),
                },
                Some(("token_file", path)) => {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| SdkError::Io { path: path.to_owned(), source: e })?;
                    token = Some(text.trim().to_owned());
                }
                _ => {
                    return Err(SdkError::Config(format!(
                        "agent: unknown setting `{part}` (timeout=SECONDS, token_file=PATH; the token itself goes in {TOKEN_ENV})"
                    )))
                }
            }
        }
        let token = token.or_else(|| std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()));
        let client = AgentClient::new(address, token);
        let agent = client.hello(timeout.unwrap_or(HELLO_TIMEOUT))?;
        Ok(Self { client, agent, timeout })
    }

    /// What the agent said it measures on.
    pub fn agent(&self) -> &AgentDescription {
        &self.agent
    }

    fn timeout(&self) -> Duration {
        // The agent answers within its time limit (queueing included) plus the architecture
        // in flight when the limit passes.
        self.timeout.unwrap_or_else(|| Duration::from_secs_f64(self.agent.limits.time_limit_s + 120.0))
    }

    /// Splits `archs` (text forms) into requests the agent accepts.
    fn batches(&self, archs: &[String]) -> Vec<std::ops::Range<usize>> {
        let limits = &self.agent.limits;
        let room = (limits.max_request_bytes as usize).saturating_sub(REQUEST_OVERHEAD).max(1);
        let mut out = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, a) in archs.iter().enumerate() {
            let len = a.len() + 3;
            if i > start && (i - start >= limits.max_archs.max(1) || bytes + len > room) {
                out.push(start..i);
                (start, bytes) = (i, 0);
            }
            bytes += len;
        }
        if start < archs.len() {
            out.push(start..archs.len());
        }
        out
    }
}

impl CostModel for AgentModel {
    fn info(&self) -> DeviceInfo {
        let a = &self.agent;
        DeviceInfo {
            device: format!("{}:{}", a.hostname, a.device),
            runtime: format!("{} eager, {} threads, via donna-agent", a.runtime, a.threads),
            runtime_version: a.runtime_version.clone(),
            method: LatencyMethod::Measured,
            precision: Precision::Fp32,
        }
    }

    fn latency(&self, space: &dyn SearchSpace, archs: &[Architecture], query: &CostQuery) -> Result<Vec<Latency>> {
        let texts: Vec<String> = archs.iter().map(|a| space.format_arch(a)).collect();
        let mut out = Vec::with_capacity(archs.len());
        for range in self.batches(&texts) {
            let request = MeasureRequest {
                space: space.name().to_owned(),
                config: space.config().clone(),
                archs: texts[range.clone()].to_vec(),
                batch: query.batch,
                precision: query.precision,
            };
            for (result, text) in self.client.measure(request, self.timeout())?.into_iter().zip(&texts[range]) {
                match result {
                    ArchResult::Latency(l) => out.push(l),
                    ArchResult::Error(e) => {
                        return Err(SdkError::Config(format!("agent {}: {text}: {e}", self.client.address())))
                    }
                }
            }
        }
        Ok(out)
    }
}

struct Agent;

impl DeviceProvider for Agent {
    fn name(&self) -> &str {
        "agent"
    }
    fn summary(&self) -> &str {
        "measured on another machine by donna-agent [agent:HOST:PORT,timeout=S,token_file=PATH; or the token in DONNA_AGENT_TOKEN]"
    }
    fn build(&self, args: &str) -> Result<Box<dyn CostModel>> {
        Ok(Box::new(AgentModel::connect(args)?))
    }
}

static AGENT: Agent = Agent;
inventory::submit! { DeviceRegistration(&AGENT) }

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::AgentLimits;

    fn model(max_archs: usize, max_request_bytes: u32) -> AgentModel {
        AgentModel {
            client: AgentClient::new("127.0.0.1:1", None),
            agent: AgentDescription {
                device: "cpu".into(),
                kind: "cpu".into(),
                threads: 2,
                runtime: "libtorch".into(),
                runtime_version: "2.13.0".into(),
                hostname: "box".into(),
                agent_version: "0.1.0".into(),
                measure: String::new(),
                limits: AgentLimits { max_request_bytes, max_archs, max_batch: 64, time_limit_s: 60.0 },
            },
            timeout: None,
        }
    }

    #[test]
    fn a_generation_is_one_request_unless_the_agent_limits_say_otherwise() {
        let archs: Vec<String> = (0..10).map(|i| format!("mobilenet:{i:0100}")).collect();
        assert_eq!(model(256, 1 << 20).batches(&archs), vec![0..10]);
        assert_eq!(model(4, 1 << 20).batches(&archs), vec![0..4, 4..8, 8..10]);
        let by_size = model(256, REQUEST_OVERHEAD as u32 + 3 * 113 + 10).batches(&archs);
        assert_eq!(by_size, vec![0..3, 3..6, 6..9, 9..10]);
        assert!(model(4, 1).batches(&[]).is_empty());
    }

    #[test]
    fn the_cache_key_names_the_agent_host_device_and_libtorch_version() {
        let info = model(1, 1).info();
        assert_eq!(info.device, "box:cpu");
        assert_eq!(info.runtime_version, "2.13.0");
        assert!(info.runtime.contains("2 threads"), "{}", info.runtime);
    }

    #[test]
    fn a_refused_connection_is_a_clear_io_error_and_bad_settings_are_refused() {
        // Port 1 on loopback: nothing listens there.
        let e = AgentModel::connect("127.0.0.1:1").err().unwrap();
        assert!(matches!(e, SdkError::Io { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("agent 127.0.0.1:1") && msg.contains("is donna-agent running"), "{msg}");
        assert!(AgentModel::connect("").is_err());
        let e = AgentModel::connect("localhost:1,token=abc").err().unwrap().to_string();
        assert!(e.contains("unknown setting `token=abc`"), "{e}");
        assert!(AgentModel::connect("localhost:1,timeout=-3").is_err());
        assert_eq!(AgentClient::new("gpu-box", None).address(), "gpu-box:7878");
        assert_eq!(AgentClient::new("[::1]:9000", None).address(), "[::1]:9000");
        assert_eq!(AgentClient::new("[::1]", None).address(), "[::1]:7878");
    }
}
