//! # The `agent` cost model: latency measured by a donna-agent on the target device
//!
//! The target of a search (a GPU server, a Jetson, a laptop) runs `donna-agent`, which times
//! the architectures it is sent with libtorch, one request at a time. This crate is the other
//! end: `--device agent:HOST:PORT` connects, asks the agent what it measures on (device,
//! threads, libtorch version: the latency cache keys on them), and sends each generation of a
//! search as one request, split only where the agent's limits say so.
//!
//! `--device agent:HOST1:PORT1,HOST2:PORT2,…` is a pool of agents on identical devices: each
//! must measure the same way (device kind, threads, libtorch version, measurement settings),
//! and a generation is cut into chunks that the agents take from a shared queue, so a faster
//! agent measures more of it; an agent that fails gives its chunk back to the others
//! ([`pool`]).
//!
//! `--device agent:HOST[:PORT][,HOST[:PORT]…][,timeout=SECONDS][,token_file=PATH]`; the token
//! (one for the whole pool) is read from `token_file`, else from the `DONNA_AGENT_TOKEN`
//! environment variable (never from the device string itself, which ends up in logs and `ps`).
//! [`protocol`] describes the wire format; [`client`] holds the connection code the agent's
//! tests use too.
#![deny(missing_docs)]

pub mod client;
pub mod pool;
pub mod protocol;

use std::time::Duration;

use donna_sdk::cost::{CostModel, CostQuery, DeviceInfo, Latency, LatencyMethod, Precision};
use donna_sdk::registry::{BuiltinPlugin, DeviceProvider};
use donna_sdk::{Architecture, Result, SdkError, SearchSpace};

pub use client::AgentClient;
use protocol::{AgentDescription, ArchResult, MeasureRequest};

/// Where the token comes from when no `token_file` is given.
pub const TOKEN_ENV: &str = "DONNA_AGENT_TOKEN";

/// How long `hello` may take when the device is built.
const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

/// Room left in a request for everything but the architectures.
const REQUEST_OVERHEAD: usize = 4096;

/// With several agents, a generation is cut into about this many chunks per agent, so that a
/// faster agent can take more of them and a failed agent's chunk is a small part of the work.
const CHUNKS_PER_AGENT: usize = 4;

/// One agent of the model.
struct Member {
    client: AgentClient,
    agent: AgentDescription,
}

/// A cost model backed by one donna-agent or a pool of them.
pub struct AgentModel {
    members: Vec<Member>,
    timeout: Option<Duration>,
}

/// What must be equal for two agents' latencies to be comparable.
fn measures_as(a: &AgentDescription) -> String {
    format!("{} with {} threads, {} {}, {}", a.kind, a.threads, a.runtime, a.runtime_version, a.measure)
}

impl AgentModel {
    /// Connects to the agents described by `args`
    /// (`HOST[:PORT][,HOST[:PORT]…][,timeout=S][,token_file=PATH]`), asks each what it
    /// measures on, and refuses a pool whose agents measure differently.
    pub fn connect(args: &str) -> Result<Self> {
        let mut addresses = Vec::new();
        let mut timeout = None;
        let mut token = None;
        for part in args.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                None => addresses.push(part),
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
        if addresses.is_empty() {
            return Err(SdkError::Config(
                "agent: give the agent's address, `--device agent:HOST:PORT` (or several, comma-separated)".into(),
            ));
        }
        let token = token.or_else(|| std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()));
        let clients: Vec<AgentClient> = addresses.iter().map(|a| AgentClient::new(a, token.clone())).collect();
        for (i, c) in clients.iter().enumerate() {
            if clients[..i].iter().any(|d| d.address() == c.address()) {
                return Err(SdkError::Config(format!("agent: {} is named twice in the pool", c.address())));
            }
        }
        // Ask them all at once: a pool of slow or unreachable agents costs one timeout, not many.
        let hellos: Vec<Result<AgentDescription>> = std::thread::scope(|scope| {
            let asks: Vec<_> =
                clients.iter().map(|c| scope.spawn(move || c.hello(timeout.unwrap_or(HELLO_TIMEOUT)))).collect();
            asks.into_iter().map(|a| a.join().expect("a hello thread panicked")).collect()
        });
        let mut members = Vec::with_capacity(clients.len());
        for (client, hello) in clients.into_iter().zip(hellos) {
            members.push(Member { agent: hello?, client });
        }
        let first = &members[0];
        if let Some(odd) = members.iter().find(|m| measures_as(&m.agent) != measures_as(&first.agent)) {
            return Err(SdkError::Config(format!(
                "agent pool: {} measures {}, but {} measures {}: their latencies would not be comparable; start every \
                 agent of a pool with the same --device settings and libtorch",
                first.client.address(),
                measures_as(&first.agent),
                odd.client.address(),
                measures_as(&odd.agent)
            )));
        }
        Ok(Self { members, timeout })
    }

    /// What each agent said it measures on, in the order they were given.
    pub fn agents(&self) -> impl Iterator<Item = &AgentDescription> {
        self.members.iter().map(|m| &m.agent)
    }

    fn timeout(&self, agent: &AgentDescription) -> Duration {
        // The agent answers within its time limit (queueing included) plus the architecture
        // in flight when the limit passes.
        self.timeout.unwrap_or_else(|| Duration::from_secs_f64(agent.limits.time_limit_s + 120.0))
    }

    /// Splits `archs` (text forms) into requests every agent accepts: one request with one
    /// agent unless its limits say otherwise; with several, about [`CHUNKS_PER_AGENT`] per
    /// agent.
    fn chunks(&self, archs: &[String]) -> Vec<std::ops::Range<usize>> {
        let max_archs = self.agents().map(|a| a.limits.max_archs).min().unwrap_or(1).max(1);
        let max_bytes = self.agents().map(|a| a.limits.max_request_bytes as usize).min().unwrap_or(0);
        let room = max_bytes.saturating_sub(REQUEST_OVERHEAD).max(1);
        let per_chunk = match self.members.len() {
            1 => max_archs,
            k => max_archs.min(archs.len().div_ceil(CHUNKS_PER_AGENT * k).max(1)),
        };
        let mut out = Vec::new();
        let (mut start, mut bytes) = (0, 0);
        for (i, a) in archs.iter().enumerate() {
            let len = a.len() + 3;
            if i > start && (i - start >= per_chunk || bytes + len > room) {
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
        let a = &self.members[0].agent;
        let (device, via) = if self.members.len() == 1 {
            (format!("{}:{}", a.hostname, a.device), "donna-agent".to_owned())
        } else {
            // Named by its hosts, in an order that does not depend on the order given.
            let mut hosts: Vec<&str> = self.agents().map(|m| m.hostname.as_str()).collect();
            hosts.sort_unstable();
            let same_device = self.agents().all(|m| m.device == a.device);
            let device = if same_device { &a.device } else { &a.kind };
            (format!("{}:{device}", hosts.join("+")), format!("{} donna-agents", self.members.len()))
        };
        DeviceInfo {
            device,
            runtime: format!("{} eager, {} threads, via {via}", a.runtime, a.threads),
            runtime_version: a.runtime_version.clone(),
            method: LatencyMethod::Measured,
            precision: Precision::Fp32,
        }
    }

    fn latency(&self, space: &dyn SearchSpace, archs: &[Architecture], query: &CostQuery) -> Result<Vec<Latency>> {
        let texts: Vec<String> = archs.iter().map(|a| space.format_arch(a)).collect();
        pool::spread(self.members.len(), &texts, &self.chunks(&texts), |agent, texts| {
            let m = &self.members[agent];
            let request = MeasureRequest {
                space: space.name().to_owned(),
                config: space.config().clone(),
                archs: texts.to_vec(),
                batch: query.batch,
                precision: query.precision,
            };
            let results = m.client.measure(request, self.timeout(&m.agent))?;
            results
                .into_iter()
                .zip(texts)
                .map(|(result, text)| match result {
                    ArchResult::Latency(l) => Ok(l),
                    ArchResult::Error(e) => Err(SdkError::Config(format!("agent {}: {text}: {e}", m.client.address()))),
                })
                .collect()
        })
    }
}

struct Agent;

impl DeviceProvider for Agent {
    fn name(&self) -> &str {
        "agent"
    }
    fn summary(&self) -> &str {
        "measured on another machine by donna-agent, or a pool of them [agent:HOST:PORT[,HOST:PORT…],timeout=S,token_file=PATH; or the token in DONNA_AGENT_TOKEN]"
    }
    fn build(&self, args: &str) -> Result<Box<dyn CostModel>> {
        Ok(Box::new(AgentModel::connect(args)?))
    }
}

static AGENT: Agent = Agent;
inventory::submit! {
    BuiltinPlugin { devices: &[&AGENT], ..BuiltinPlugin::empty("device-agent", env!("CARGO_PKG_VERSION"), "latency measured by donna-agent on another machine") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donna_sdk::searcher::GridSpace;
    use protocol::{read_frame, write_frame, AgentLimits, Reply, ReplyBody, Request, RequestBody};
    use std::net::TcpListener;

    fn description(hostname: &str, threads: i32, max_archs: usize, max_request_bytes: u32) -> AgentDescription {
        AgentDescription {
            device: "cpu".into(),
            kind: "cpu".into(),
            threads,
            runtime: "libtorch".into(),
            runtime_version: "2.13.0".into(),
            hostname: hostname.into(),
            agent_version: "0.1.0".into(),
            measure: "warmup=1".into(),
            limits: AgentLimits { max_request_bytes, max_archs, max_batch: 64, time_limit_s: 60.0 },
        }
    }

    fn model(max_archs: usize, max_request_bytes: u32) -> AgentModel {
        pool_of(&[("box", max_archs, max_request_bytes)])
    }

    fn pool_of(agents: &[(&str, usize, u32)]) -> AgentModel {
        let members = agents
            .iter()
            .map(|&(host, max_archs, bytes)| Member {
                client: AgentClient::new("127.0.0.1:1", None),
                agent: description(host, 2, max_archs, bytes),
            })
            .collect();
        AgentModel { members, timeout: None }
    }

    /// What a fake agent answers for `text`: a latency that depends on the text alone.
    fn fake_ms(text: &str) -> f64 {
        (donna_sdk::rng::fnv1a(text) % 10_000) as f64 / 10.0 + 0.1
    }

    /// How a fake agent behaves.
    #[derive(Clone, Copy)]
    enum Fake {
        /// Answers every measure request after this many milliseconds.
        Answers(u64),
        /// Answers `hello`, then hangs up on every measure request (a crash mid-way).
        HangsUp,
    }

    /// An agent stand-in on a free loopback port, describing itself as `hello`.
    fn fake(hello: AgentDescription, how: Fake) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (mut s, hello) = (stream.unwrap(), hello.clone());
                std::thread::spawn(move || {
                    while let Ok(frame) = read_frame(&mut s, 1 << 20) {
                        let request: Request = serde_json::from_slice(&frame).unwrap();
                        let body = match (request.body, how) {
                            (RequestBody::Hello, _) => ReplyBody::Hello(hello.clone()),
                            (RequestBody::Measure(_), Fake::HangsUp) => return,
                            (RequestBody::Measure(m), Fake::Answers(ms)) => {
                                std::thread::sleep(Duration::from_millis(ms));
                                let results = m
                                    .archs
                                    .iter()
                                    .map(|a| match a.contains("v9") {
                                        true => ArchResult::Error("v9 is not measurable".into()),
                                        false => ArchResult::Latency(Latency { ms: fake_ms(a), cv: None }),
                                    })
                                    .collect();
                                ReplyBody::Measure { results }
                            }
                            (RequestBody::Stats, _) => unreachable!(),
                        };
                        write_frame(&mut s, &Reply::new(body).with_id(request.id)).unwrap();
                    }
                });
            }
        });
        addr
    }

    /// A loopback address nothing listens on.
    fn dead() -> String {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
    }

    /// `n` (at most 81) architectures of a grid space, none with a `v9` in it.
    fn grid_archs(n: usize) -> (GridSpace, Vec<Architecture>) {
        let space = GridSpace::new(&[9, 9, 10]);
        let archs = (0..n)
            .map(|i| space.decode(&donna_sdk::Genome(vec![(i % 9) as u32, (i / 9 % 9) as u32, (i / 81) as u32])))
            .collect();
        (space, archs)
    }

    const QUERY: CostQuery = CostQuery { batch: 1, precision: Precision::Fp32 };

    #[test]
    fn a_generation_is_one_request_unless_the_agent_limits_say_otherwise() {
        let archs: Vec<String> = (0..10).map(|i| format!("mobilenet:{i:0100}")).collect();
        assert_eq!(model(256, 1 << 20).chunks(&archs), vec![0..10]);
        assert_eq!(model(4, 1 << 20).chunks(&archs), vec![0..4, 4..8, 8..10]);
        let by_size = model(256, REQUEST_OVERHEAD as u32 + 3 * 113 + 10).chunks(&archs);
        assert_eq!(by_size, vec![0..3, 3..6, 6..9, 9..10]);
        assert!(model(4, 1).chunks(&[]).is_empty());
    }

    #[test]
    fn a_pool_cuts_a_generation_into_chunks_every_agent_accepts() {
        let archs: Vec<String> = (0..100).map(|i| format!("mobilenet:{i:0100}")).collect();
        let pool = pool_of(&[("a", 256, 1 << 20), ("b", 256, 1 << 20)]);
        let chunks = pool.chunks(&archs);
        assert_eq!(chunks.len(), 8, "about four per agent: {chunks:?}");
        assert!(chunks.iter().all(|c| c.len() == 13 || c == &(91..100)), "{chunks:?}");
        // The smallest limits of the pool hold for every chunk.
        let pool = pool_of(&[("a", 256, 1 << 20), ("b", 5, 1 << 20), ("c", 256, REQUEST_OVERHEAD as u32 + 3 * 113)]);
        let chunks = pool.chunks(&archs);
        assert!(chunks.iter().all(|c| c.len() == 3 || c == &(99..100)), "{chunks:?}");
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 100);
        assert_eq!(pool_of(&[("a", 256, 1 << 20), ("b", 256, 1 << 20)]).chunks(&archs[..3]).len(), 3);
    }

    #[test]
    fn the_cache_key_names_the_agent_host_device_and_libtorch_version() {
        let info = model(1, 1).info();
        assert_eq!(info.device, "box:cpu");
        assert_eq!(info.runtime_version, "2.13.0");
        assert!(info.runtime.contains("2 threads") && info.runtime.ends_with("via donna-agent"), "{}", info.runtime);
        // A pool is named by its hosts, whatever order they were given in.
        let pool = pool_of(&[("zeta", 4, 1 << 20), ("alpha", 4, 1 << 20), ("alpha", 4, 1 << 20)]);
        let info = pool.info();
        assert_eq!(info.device, "alpha+alpha+zeta:cpu");
        assert!(info.runtime.ends_with("via 3 donna-agents"), "{}", info.runtime);
        assert_eq!(pool_of(&[("alpha", 4, 1 << 20), ("zeta", 4, 1 << 20), ("alpha", 4, 1 << 20)]).info(), info);
    }

    #[test]
    fn a_pool_answers_in_order_with_agents_of_uneven_speed_and_survives_failed_agents() {
        let (space, archs) = grid_archs(40);
        let expected: Vec<f64> = archs.iter().map(|a| fake_ms(&space.format_arch(a))).collect();
        let d = |host: &str| description(host, 1, 256, 1 << 20);
        let fast = fake(d("fast"), Fake::Answers(1));
        let slow = fake(d("slow"), Fake::Answers(30));
        let model = AgentModel::connect(&format!("{fast},{slow},timeout=20")).unwrap();
        assert_eq!(model.info().device, "fast+slow:cpu");
        let got: Vec<f64> = model.latency(&space, &archs, &QUERY).unwrap().iter().map(|l| l.ms).collect();
        assert_eq!(got, expected, "each latency in the place of its architecture");

        // One agent hangs up on every measure request (it crashed after `hello`), another is
        // gone by the time the generation is measured: the third does everything.
        let crashing = fake(d("crashing"), Fake::HangsUp);
        let gone = fake(d("gone"), Fake::Answers(1));
        let mut model = AgentModel::connect(&format!("{crashing},{gone},{fast}")).unwrap();
        model.members[1].client = AgentClient::new(&dead(), None);
        let got: Vec<f64> = model.latency(&space, &archs, &QUERY).unwrap().iter().map(|l| l.ms).collect();
        assert_eq!(got, expected);

        // Only failing agents: an error that names each.
        let mut model = AgentModel::connect(&format!("{crashing},{gone}")).unwrap();
        model.members[1].client = AgentClient::new(&dead(), None);
        let e = model.latency(&space, &archs, &QUERY).unwrap_err().to_string();
        assert!(e.starts_with("agent pool: every agent failed: ") && e.contains(&crashing), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");

        // An architecture an agent cannot measure is an error, not a reason to ask another.
        let model = AgentModel::connect(&format!("{fast},{slow}")).unwrap();
        let mut with_bad = archs.clone();
        with_bad[17] = space.decode(&donna_sdk::Genome(vec![0, 0, 9]));
        let e = model.latency(&space, &with_bad, &QUERY).unwrap_err();
        assert!(matches!(&e, SdkError::Config(m) if m.ends_with("grid:v0/v0/v9: v9 is not measurable")), "{e:?}");
    }

    #[test]
    fn agents_that_measure_differently_a_duplicate_or_an_unreachable_agent_are_refused_at_connect() {
        let one = fake(description("a", 1, 256, 1 << 20), Fake::Answers(1));
        let two = fake(description("b", 2, 256, 1 << 20), Fake::Answers(1));
        let e = AgentModel::connect(&format!("{one},{two}")).err().unwrap().to_string();
        assert!(e.contains("not be comparable") && e.contains("1 threads") && e.contains("2 threads"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let e = AgentModel::connect(&format!("{one},{one}")).err().unwrap().to_string();
        assert!(e.contains("named twice"), "{e}");
        let nobody = dead();
        let e = AgentModel::connect(&format!("{one},{nobody}")).err().unwrap().to_string();
        assert!(e.contains(&format!("agent {nobody}")) && e.contains("is donna-agent running"), "{e}");
        // Limits may differ: they only shape the requests.
        let small = fake(description("c", 1, 2, 1 << 20), Fake::Answers(1));
        assert!(AgentModel::connect(&format!("{one},{small}")).is_ok());
    }

    #[test]
    fn a_refused_connection_is_a_clear_io_error_and_bad_settings_are_refused() {
        // Port 1 on loopback: nothing listens there.
        let e = AgentModel::connect("127.0.0.1:1").err().unwrap();
        assert!(matches!(e, SdkError::Io { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("agent 127.0.0.1:1") && msg.contains("is donna-agent running"), "{msg}");
        assert!(AgentModel::connect("").is_err());
        assert!(AgentModel::connect("timeout=3").err().unwrap().to_string().contains("give the agent's address"));
        let e = AgentModel::connect("localhost:1,token=abc").err().unwrap().to_string();
        assert!(e.contains("unknown setting `token=abc`"), "{e}");
        assert!(AgentModel::connect("localhost:1,timeout=-3").is_err());
        assert_eq!(AgentClient::new("gpu-box", None).address(), "gpu-box:7878");
        assert_eq!(AgentClient::new("[::1]:9000", None).address(), "[::1]:9000");
        assert_eq!(AgentClient::new("[::1]", None).address(), "[::1]:7878");
    }
}
