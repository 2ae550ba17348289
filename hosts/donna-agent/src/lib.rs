//! # donna-agent: measures architectures for a donna running elsewhere
//!
//! A search runs where the GPUs for training are; the latency that matters is the target
//! device's (a GPU server, a Jetson, a laptop). `donna-agent` runs on the target, listens on a
//! TCP port and times, with libtorch and the same code as `--device cpu`/`cuda`, the
//! architectures a `donna --device agent:HOST:PORT` sends it. The wire format is
//! `donna_device_agent::protocol` (length-prefixed JSON, versioned).
//!
//! Shape of the server: one thread per connection reads requests and answers what needs no
//! device (`hello`, `stats`, every refusal) itself; measurements go through a queue to a single
//! worker thread, so two requests never run on the device at once, however many clients are
//! connected. Every request has a deadline (queueing included): what is not measured by then is
//! reported as such. Bad input of any kind gets an error reply; a libtorch failure inside a
//! measurement becomes one too, so the agent keeps serving.
//!
//! Security: it listens on loopback unless told otherwise, and refuses to listen elsewhere
//! without a shared-secret token, which every request must then carry (compared in constant
//! time). The token is not encryption: on an untrusted network, tunnel the port (`ssh -L`).
#![deny(missing_docs)]

// The spaces and layer types the agent can build: named here so the linker keeps their
// registrations.
use donna_layers as _;
use donna_space_attention as _;
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::Parser;
use donna_device_agent::protocol::{
    read_frame, token_matches, write_frame, AgentDescription, AgentLimits, AgentStats, ArchResult, ErrorKind,
    FrameError, MeasureRequest, Reply, ReplyBody, Request, RequestBody, RequestHeader, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_PORT, PROTOCOL_VERSION,
};
use donna_device_agent::TOKEN_ENV;
use donna_device_measured::{Measured, LIBTORCH_VERSION};
use donna_sdk::cost::Precision;
use donna_sdk::{registry, SdkError};

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// `ADDR:PORT` to listen on (port 0: any free port).
    pub listen: String,
    /// `cpu[:SETTINGS]` or `cuda[:SETTINGS]`.
    pub device: String,
    /// The shared secret requests must carry, if any.
    pub token: Option<String>,
    /// Longest request read, in bytes.
    pub max_request_bytes: u32,
    /// Most architectures per request.
    pub max_archs: usize,
    /// Largest batch size.
    pub max_batch: i64,
    /// Longest a request may take from arrival to reply.
    pub time_limit: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            listen: format!("127.0.0.1:{DEFAULT_PORT}"),
            device: "cpu".into(),
            token: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_archs: 256,
            max_batch: 256,
            time_limit: Duration::from_secs(600),
            max_connections: 32,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

/// A measurement waiting for the worker.
struct Job {
    request: MeasureRequest,
    deadline: Instant,
    reply: mpsc::Sender<Reply>,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    measured: AtomicU64,
}

/// What every connection thread sees.
struct Shared {
    config: AgentConfig,
    description: AgentDescription,
    jobs: mpsc::Sender<Job>,
    counters: Arc<Counters>,
    started: Instant,
    connections: AtomicUsize,
}

/// A bound agent, ready to serve.
pub struct Agent {
    listener: TcpListener,
    shared: Arc<Shared>,
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if rc == 0 && len > 0 {
        String::from_utf8_lossy(&buf[..len]).into_owned()
    } else {
        "unknown-host".into()
    }
}

impl Agent {
    /// Checks `config`, prepares the device and binds the listening socket.
    pub fn bind(config: AgentConfig) -> anyhow::Result<Self> {
        let measured = Measured::from_spec(&config.device)?;
        if config.token.as_deref() == Some("") {
            anyhow::bail!("the token is empty; give a real secret or none");
        }
        if config.max_archs == 0 || config.max_batch < 1 || config.max_connections == 0 {
            anyhow::bail!("--max-archs, --max-batch and --max-connections must be at least 1");
        }
        let listener =
            TcpListener::bind(&config.listen).map_err(|e| anyhow::anyhow!("listening on {}: {e}", config.listen))?;
        let addr = listener.local_addr()?;
        if config.token.is_none() && !addr.ip().is_loopback() {
            anyhow::bail!(
                "refusing to listen on {addr} without a token: anyone who can reach it could make this machine \
                 measure. Set {TOKEN_ENV} (or --token-file), or listen on 127.0.0.1 and tunnel the port"
            );
        }
        let c = measured.config();
        let (device, kind) = match measured.device() {
            tch::Device::Cuda(i) => (format!("cuda:{i}"), "cuda"),
            _ => ("cpu".to_owned(), "cpu"),
        };
        let description = AgentDescription {
            device,
            kind: kind.into(),
            threads: c.threads,
            runtime: "libtorch".into(),
            runtime_version: LIBTORCH_VERSION.into(),
            hostname: hostname(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            measure: format!(
                "warmup={},repeats={},rounds={},max_rounds={},tolerance={}%",
                c.warmup,
                c.repeats,
                c.rounds,
                c.max_rounds,
                100.0 * c.tolerance
            ),
            limits: AgentLimits {
                max_request_bytes: config.max_request_bytes,
                max_archs: config.max_archs,
                max_batch: config.max_batch,
                time_limit_s: config.time_limit.as_secs_f64(),
            },
        };
        let counters = Arc::new(Counters::default());
        let (jobs, queue) = mpsc::channel::<Job>();
        let worker_counters = counters.clone();
        std::thread::Builder::new().name("measure".into()).spawn(move || {
            for job in queue {
                let reply = catch_unwind(AssertUnwindSafe(|| measure(&measured, &job, &worker_counters)))
                    .unwrap_or_else(|_| Reply::error(ErrorKind::Internal, "the measurement failed inside libtorch"));
                let _ = job.reply.send(reply);
            }
        })?;
        let shared = Arc::new(Shared {
            config,
            description,
            jobs,
            counters,
            started: Instant::now(),
            connections: AtomicUsize::new(0),
        });
        Ok(Self { listener, shared })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// What the agent tells clients about itself.
    pub fn description(&self) -> &AgentDescription {
        &self.shared.description
    }

    /// Serves connections until the process ends, one thread each.
    pub fn serve(self) -> io::Result<()> {
        for stream in self.listener.incoming() {
            let Ok(stream) = stream else { continue };
            let shared = self.shared.clone();
            let open = shared.connections.fetch_add(1, Ordering::SeqCst);
            let spawned = std::thread::Builder::new().name("connection".into()).spawn(move || {
                if open >= shared.config.max_connections {
                    refuse_busy(stream, &shared);
                } else {
                    serve_connection(stream, &shared);
                }
                shared.connections.fetch_sub(1, Ordering::SeqCst);
            });
            if let Err(e) = spawned {
                eprintln!("donna-agent: cannot start a connection thread: {e}");
                self.shared.connections.fetch_sub(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

fn refuse_busy(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    shared.counters.errors.fetch_add(1, Ordering::Relaxed);
    let message = format!("busy: {} connections are open already; retry later", shared.config.max_connections);
    let _ = write_frame(&mut stream, &Reply::error(ErrorKind::Busy, message));
}

fn serve_connection(mut stream: TcpStream, shared: &Shared) {
    let peer = stream.peer_addr().map_or_else(|_| "?".to_owned(), |a| a.to_string());
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(shared.config.idle_timeout)).is_err()
        || stream.set_write_timeout(Some(Duration::from_secs(60))).is_err()
    {
        return;
    }
    loop {
        let (reply, close) = match read_frame(&mut stream, shared.config.max_request_bytes) {
            Ok(frame) => (shared.handle(&frame, &peer), false),
            Err(FrameError::TooLarge { len, limit }) => {
                shared.counters.requests.fetch_add(1, Ordering::Relaxed);
                let message = format!("a request of {len} bytes is over this agent's limit of {limit} bytes");
                (Reply::error(ErrorKind::TooLarge, message), true)
            }
            Err(FrameError::Closed | FrameError::Io(_)) => return,
        };
        if let ReplyBody::Error { message, .. } = &reply.body {
            shared.counters.errors.fetch_add(1, Ordering::Relaxed);
            eprintln!("donna-agent: {peer}: refused: {message}");
        }
        if write_frame(&mut stream, &reply).is_err() || close {
            return;
        }
    }
}

impl Shared {
    /// The reply to one request, carrying the request's id when it has one.
    fn handle(&self, frame: &[u8], peer: &str) -> Reply {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let header: RequestHeader = match serde_json::from_slice(frame) {
            Ok(h) => h,
            Err(e) => return Reply::error(ErrorKind::Malformed, format!("not a JSON request: {e}")),
        };
        let id = header.id.as_ref().and_then(serde_json::Value::as_u64);
        self.answer(header, frame, id, peer).with_id(id)
    }

    fn answer(&self, header: RequestHeader, frame: &[u8], id: Option<u64>, peer: &str) -> Reply {
        match header.protocol.as_ref().and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
            _ => {
                let given = header.protocol.map_or_else(|| "none".to_owned(), |v| v.to_string());
                return Reply::error(
                    ErrorKind::Protocol,
                    format!("this agent speaks protocol {PROTOCOL_VERSION}, the request {given}"),
                );
            }
        }
        if let Some(expected) = &self.config.token {
            if !header.token.as_deref().is_some_and(|t| token_matches(t, expected)) {
                return Reply::error(ErrorKind::Token, "wrong or missing token");
            }
        }
        let request: Request = match serde_json::from_slice(frame) {
            Ok(r) => r,
            Err(e) => {
                return Reply::error(ErrorKind::Malformed, format!("not a protocol {PROTOCOL_VERSION} request: {e}"))
            }
        };
        match request.body {
            RequestBody::Hello => Reply::new(ReplyBody::Hello(self.description.clone())),
            RequestBody::Stats => Reply::new(ReplyBody::Stats(AgentStats {
                requests: self.counters.requests.load(Ordering::Relaxed),
                errors: self.counters.errors.load(Ordering::Relaxed),
                measured: self.counters.measured.load(Ordering::Relaxed),
                connections: self.connections.load(Ordering::SeqCst) as u64,
                uptime_s: self.started.elapsed().as_secs_f64(),
            })),
            RequestBody::Measure(m) => self.enqueue(m, id, peer),
        }
    }

    fn enqueue(&self, m: MeasureRequest, id: Option<u64>, peer: &str) -> Reply {
        let c = &self.config;
        if m.archs.len() > c.max_archs {
            let message =
                format!("{} architectures in one request; this agent takes at most {}", m.archs.len(), c.max_archs);
            return Reply::error(ErrorKind::Limit, message);
        }
        if !(1..=c.max_batch).contains(&m.batch) {
            return Reply::error(
                ErrorKind::Limit,
                format!("batch {} out of this agent's range 1..={}", m.batch, c.max_batch),
            );
        }
        if m.precision != Precision::Fp32 {
            return Reply::error(
                ErrorKind::BadRequest,
                format!("this agent measures fp32 only, not {:?}", m.precision),
            );
        }
        let started = Instant::now();
        let (n, space, batch) = (m.archs.len(), m.space.clone(), m.batch);
        let (tx, rx) = mpsc::channel();
        if self.jobs.send(Job { request: m, deadline: started + c.time_limit, reply: tx }).is_err() {
            return Reply::error(ErrorKind::Internal, "the measuring thread has stopped");
        }
        let reply = rx.recv().unwrap_or_else(|_| Reply::error(ErrorKind::Internal, "the measuring thread has stopped"));
        if let ReplyBody::Measure { results } = &reply.body {
            let ok = results.iter().filter(|r| matches!(r, ArchResult::Latency(_))).count();
            let request = id.map_or_else(String::new, |id| format!(" (request {id})"));
            eprintln!(
                "donna-agent: {peer}: measured {ok} of {n} {space} architectures at batch {batch} in {:.2} s{request}",
                started.elapsed().as_secs_f64()
            );
        }
        reply
    }
}

/// Runs on the worker thread: the only place the device is used.
fn measure(measured: &Measured, job: &Job, counters: &Counters) -> Reply {
    let r = &job.request;
    let space = match registry::space(&r.space, &r.config) {
        Ok(s) => s,
        Err(e) => return Reply::error(ErrorKind::BadRequest, e.to_string()),
    };
    let parsed: Vec<Result<donna_sdk::Architecture, SdkError>> = r.archs.iter().map(|a| space.parse_arch(a)).collect();
    let valid: Vec<donna_sdk::Architecture> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let mut timed = measured.measure_many(space.as_ref(), &valid, r.batch, Some(job.deadline)).into_iter();
    let results: Vec<ArchResult> = parsed
        .into_iter()
        .map(|p| match p.and_then(|_| timed.next().unwrap_or_else(|| Err(SdkError::Config("not measured".into())))) {
            Ok(l) => {
                counters.measured.fetch_add(1, Ordering::Relaxed);
                ArchResult::Latency(l)
            }
            Err(e) => ArchResult::Error(e.to_string()),
        })
        .collect();
    Reply::new(ReplyBody::Measure { results })
}

/// `donna-agent`'s command line.
#[derive(Parser)]
#[command(name = "donna-agent", version, about, long_about = None)]
struct Cli {
    /// Address to listen on; port 0 picks a free port. The first line printed is
    /// `listening on ADDR:PORT`, the address actually bound.
    #[arg(long, default_value_t = format!("127.0.0.1:{DEFAULT_PORT}"))]
    listen: String,
    /// What to measure on: `cpu[:SETTINGS]` or `cuda[:SETTINGS]`, settings as for
    /// `donna cost --device cpu:threads=2,...`.
    #[arg(long, short = 'd', default_value = "cpu")]
    device: String,
    /// Shared secret every request must carry. Prefer DONNA_AGENT_TOKEN or --token-file: a
    /// command line is visible to other users of the machine.
    #[arg(long, conflicts_with = "token_file")]
    token: Option<String>,
    /// A file holding the shared secret.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Longest request, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    max_request_bytes: u32,
    /// Most architectures per request.
    #[arg(long, default_value_t = 256)]
    max_archs: usize,
    /// Largest batch size.
    #[arg(long, default_value_t = 256)]
    max_batch: i64,
    /// Longest a request may take from arrival to reply, queueing included, in seconds.
    #[arg(long, default_value_t = 600.0)]
    time_limit: f64,
    /// Most connections open at once.
    #[arg(long, default_value_t = 32)]
    max_connections: usize,
    /// Seconds after which a silent connection is closed.
    #[arg(long, default_value_t = 300.0)]
    idle_timeout: f64,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    if s > 0.0 && s <= 7.0 * 86_400.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        anyhow::bail!("{flag} {s}: give a number of seconds in (0, 604800]")
    }
}

fn config_from(cli: Cli) -> anyhow::Result<AgentConfig> {
    let token = match (cli.token, &cli.token_file) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?.trim().to_owned(),
        ),
        (None, None) => std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty()),
    };
    Ok(AgentConfig {
        listen: cli.listen,
        device: cli.device,
        token,
        max_request_bytes: cli.max_request_bytes,
        max_archs: cli.max_archs,
        max_batch: cli.max_batch,
        time_limit: seconds("--time-limit", cli.time_limit)?,
        max_connections: cli.max_connections,
        idle_timeout: seconds("--idle-timeout", cli.idle_timeout)?,
    })
}

/// The `donna-agent` program: parses the command line, binds, prints the bound address as its
/// first line, and serves.
pub fn main() -> ExitCode {
    let run = || -> anyhow::Result<()> {
        let agent = Agent::bind(config_from(Cli::parse())?)?;
        let addr = agent.local_addr()?;
        println!("listening on {addr}");
        io::stdout().flush()?;
        let d = agent.description();
        eprintln!(
            "donna-agent {}: {} on {} ({} threads, {} {}; {}), token {}",
            d.agent_version,
            d.device,
            d.hostname,
            d.threads,
            d.runtime,
            d.runtime_version,
            d.measure,
            if agent.shared.config.token.is_some() { "required" } else { "not required (loopback only)" }
        );
        agent.serve()?;
        Ok(())
    };
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            let user = e.chain().any(|c| c.downcast_ref::<SdkError>().is_some_and(SdkError::is_user_error));
            ExitCode::from(if user { 2 } else { 1 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donna_device_agent::AgentClient;
    use donna_sdk::SpaceConfig;

    fn start(config: AgentConfig) -> SocketAddr {
        let agent = Agent::bind(AgentConfig { listen: "127.0.0.1:0".into(), ..config }).unwrap();
        let addr = agent.local_addr().unwrap();
        std::thread::spawn(move || agent.serve());
        addr
    }

    fn tiny_request(archs: Vec<String>) -> MeasureRequest {
        MeasureRequest {
            space: "mobilenet".into(),
            config: SpaceConfig { resolution: 16, width_mult: 0.25, num_classes: 10, in_channels: 3 },
            archs,
            batch: 1,
            precision: Precision::Fp32,
        }
    }

    const QUICK: &str = "cpu:threads=1,warmup=1,repeats=2,rounds=2,max_rounds=2";

    #[test]
    fn each_architecture_gets_its_latency_or_its_own_error() {
        let addr = start(AgentConfig { device: QUICK.into(), ..AgentConfig::default() });
        let client = AgentClient::new(&addr.to_string(), None);
        let hello = client.hello(Duration::from_secs(10)).unwrap();
        assert_eq!((hello.kind.as_str(), hello.runtime_version.as_str(), hello.threads), ("cpu", LIBTORCH_VERSION, 1));
        let results = client
            .measure(
                tiny_request(vec!["mobilenet:teacher".into(), "mobilenet:nonsense".into()]),
                Duration::from_secs(60),
            )
            .unwrap();
        assert!(
            matches!(&results[0], ArchResult::Error(_)),
            "`teacher` is a donna keyword, not a text form: {results:?}"
        );
        assert!(
            matches!(&results[1], ArchResult::Error(e) if e.contains("nonsense") || e.contains("block")),
            "{results:?}"
        );
        let space = registry::space("mobilenet", &tiny_request(vec![]).config).unwrap();
        let teacher = space.format_arch(&space.teacher());
        let results = client.measure(tiny_request(vec![teacher]), Duration::from_secs(60)).unwrap();
        assert!(matches!(results[0], ArchResult::Latency(l) if l.ms > 0.0), "{results:?}");
        assert_eq!(client.stats(Duration::from_secs(5)).unwrap().measured, 1);
    }

    #[test]
    fn requests_over_a_limit_or_past_the_deadline_are_refused_and_the_agent_keeps_serving() {
        let addr = start(AgentConfig {
            device: QUICK.into(),
            max_archs: 2,
            max_batch: 4,
            time_limit: Duration::from_nanos(1),
            ..AgentConfig::default()
        });
        let client = AgentClient::new(&addr.to_string(), None);
        let t = Duration::from_secs(30);
        let e = client.measure(tiny_request(vec!["a".into(); 3]), t).unwrap_err().to_string();
        assert!(e.contains("at most 2"), "{e}");
        let e = client.measure(MeasureRequest { batch: 5, ..tiny_request(vec![]) }, t).unwrap_err().to_string();
        assert!(e.contains("batch 5"), "{e}");
        let e = client
            .measure(MeasureRequest { precision: Precision::Int8, ..tiny_request(vec![]) }, t)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fp32 only"), "{e}");
        let e = client.measure(MeasureRequest { space: "resnet".into(), ..tiny_request(vec![]) }, t).unwrap_err();
        assert!(e.to_string().contains("unknown search space"), "{e}");
        let space = registry::space("mobilenet", &tiny_request(vec![]).config).unwrap();
        let results = client.measure(tiny_request(vec![space.format_arch(&space.teacher())]), t).unwrap();
        assert!(matches!(&results[0], ArchResult::Error(e) if e.contains("time limit")), "{results:?}");
        let stats = client.stats(t).unwrap();
        assert_eq!((stats.requests, stats.errors, stats.measured), (6, 4, 0));
    }

    #[test]
    fn a_token_is_required_off_loopback_and_must_not_be_empty() {
        let e = Agent::bind(AgentConfig { listen: "0.0.0.0:0".into(), ..AgentConfig::default() }).err().unwrap();
        assert!(e.to_string().contains("without a token"), "{e}");
        let e = Agent::bind(AgentConfig {
            listen: "127.0.0.1:0".into(),
            token: Some(String::new()),
            ..AgentConfig::default()
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("empty"), "{e}");
        assert!(Agent::bind(AgentConfig {
            listen: "0.0.0.0:0".into(),
            token: Some("t".into()),
            ..AgentConfig::default()
        })
        .is_ok());
    }
}
