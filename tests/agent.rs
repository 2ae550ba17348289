//! The device agent end to end: `donna-agent` on 127.0.0.1, `donna cost --device agent:…`
//! measuring through it with the latency cache in front, and the requests the agent must
//! refuse (malformed, oversized, wrong token) while it keeps serving.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use donna_device_agent::protocol::{read_frame, write_frame, write_frame_bytes, Reply, ReplyBody};
use donna_device_agent::AgentClient;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

/// A `donna-agent` process on a free loopback port, stopped when dropped.
struct Agent {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    addr: String,
}

impl Agent {
    fn start(token: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_donna-agent"))
            .args(["--listen", "127.0.0.1:0", "--device", "cpu:threads=1,warmup=1,repeats=3,rounds=2,max_rounds=3"])
            .args(extra)
            .env("DONNA_AGENT_TOKEN", token)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("donna-agent starts");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr =
            line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line: {line:?}")).to_owned();
        Self { child, _stdout: stdout, addr }
    }

    fn client(&self, token: &str) -> AgentClient {
        AgentClient::new(&self.addr, Some(token.to_owned()))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `donna cost` of `extra` (architectures and flags; the tiny mobilenet teacher if none) on a
/// tiny space configuration through `device`, with `token` in the environment.
fn cost(device: &str, token: Option<&str>, extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_donna"));
    cmd.args(["cost", "--device", device, "--resolution", "16", "--width-mult", "0.25", "--classes", "10"])
        .args(if extra.iter().any(|a| a.starts_with("mobilenet:")) { &[][..] } else { &["mobilenet:teacher"][..] })
        .args(extra)
        .env_remove("DONNA_AGENT_TOKEN");
    if let Some(t) = token {
        cmd.env("DONNA_AGENT_TOKEN", t);
    }
    cmd.output().expect("donna runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends raw bytes as one frame and reads the reply.
fn raw(stream: &mut TcpStream, body: &[u8]) -> Reply {
    write_frame_bytes(stream, body).unwrap();
    serde_json::from_slice(&read_frame(stream, 1 << 20).unwrap()).unwrap()
}

fn error_kind(reply: &Reply) -> String {
    match &reply.body {
        ReplyBody::Error { kind, .. } => serde_json::to_value(kind).unwrap().as_str().unwrap().to_owned(),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn cost_measures_through_the_agent_and_the_second_request_is_served_by_the_cache() {
    let agent = Agent::start("s3cret", &[]);
    let dir = std::env::temp_dir().join(format!("donna-agent-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cache = dir.join("latency.jsonl");
    let device = format!("agent:{}", agent.addr);
    let cache_flag = ["--cache", cache.to_str().unwrap()];

    let first = cost(&device, Some("s3cret"), &cache_flag);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let out = text(&first.stdout);
    assert!(out.contains("via donna-agent") && out.contains("2.13.0") && out.contains(" ms"), "{out}");
    let stats = agent.client("s3cret").stats(TIMEOUT).unwrap();
    assert_eq!(stats.measured, 1, "{stats:?}");
    let lines = std::fs::read_to_string(&cache).unwrap();
    assert_eq!(lines.lines().count(), 1, "{lines}");

    let second = cost(&device, Some("s3cret"), &cache_flag);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(text(&second.stdout), out, "the cached latency is printed again");
    let again = agent.client("s3cret").stats(TIMEOUT).unwrap();
    assert_eq!(again.measured, 1, "nothing measured the second time: {again:?}");
    assert_eq!(again.requests, stats.requests + 2, "only `hello` and this `stats` reached the agent: {again:?}");
    assert_eq!(std::fs::read_to_string(&cache).unwrap(), lines);
    std::fs::remove_dir_all(&dir).unwrap();

    // Several architectures of one space travel in one request, as a search generation does.
    let two = cost(&device, Some("s3cret"), &["mobilenet:teacher", "mobilenet:smallest"]);
    assert!(two.status.success(), "{}", text(&two.stderr));
    let after = agent.client("s3cret").stats(TIMEOUT).unwrap();
    assert_eq!((after.measured, after.requests), (3, again.requests + 3), "hello, one measure, stats: {after:?}");
}

#[test]
fn malformed_oversized_and_wrong_token_requests_get_error_replies_and_the_agent_keeps_serving() {
    let agent = Agent::start("right", &["--max-request-bytes", "4096"]);
    let mut s = TcpStream::connect(&agent.addr).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();

    assert_eq!(error_kind(&raw(&mut s, b"{not json")), "malformed");
    assert_eq!(error_kind(&raw(&mut s, b"")), "malformed");
    let wrong = json!({"protocol": 1, "token": "wrong", "request": "hello"});
    assert_eq!(error_kind(&raw(&mut s, wrong.to_string().as_bytes())), "token");
    let missing = json!({"protocol": 1, "request": "hello"});
    assert_eq!(error_kind(&raw(&mut s, missing.to_string().as_bytes())), "token");
    let future = json!({"protocol": 2, "token": "right", "request": "hello"});
    assert_eq!(error_kind(&raw(&mut s, future.to_string().as_bytes())), "protocol");
    let unknown = json!({"protocol": 1, "token": "right", "request": "reboot"});
    assert_eq!(error_kind(&raw(&mut s, unknown.to_string().as_bytes())), "malformed");
    let bad_measure = json!({"protocol": 1, "token": "right", "request": "measure", "space": 3});
    assert_eq!(error_kind(&raw(&mut s, bad_measure.to_string().as_bytes())), "malformed");
    // The same connection still serves a good request.
    let hello = json!({"protocol": 1, "token": "right", "request": "hello"});
    assert!(matches!(raw(&mut s, hello.to_string().as_bytes()).body, ReplyBody::Hello(_)));

    // Oversized: an error reply before the body is read, then the connection is closed.
    let mut big = TcpStream::connect(&agent.addr).unwrap();
    big.set_read_timeout(Some(TIMEOUT)).unwrap();
    let padding = "x".repeat(5000);
    let oversized = json!({"protocol": 1, "token": "right", "request": "hello", "padding": padding});
    assert_eq!(error_kind(&raw(&mut big, oversized.to_string().as_bytes())), "too_large");
    assert_eq!(big.read(&mut [0u8; 16]).unwrap_or(0), 0, "closed after an oversized request");
    // A length prefix claiming 4 GiB is refused the same way, without the agent allocating it.
    let mut huge = TcpStream::connect(&agent.addr).unwrap();
    huge.set_read_timeout(Some(TIMEOUT)).unwrap();
    std::io::Write::write_all(&mut huge, &u32::MAX.to_be_bytes()).unwrap();
    let reply: Reply = serde_json::from_slice(&read_frame(&mut huge, 1 << 20).unwrap()).unwrap();
    assert_eq!(error_kind(&reply), "too_large");

    // A client that hangs up mid-frame does not disturb the others.
    let mut cut = TcpStream::connect(&agent.addr).unwrap();
    std::io::Write::write_all(&mut cut, &[0, 0, 1, 0, b'{']).unwrap();
    drop(cut);

    // Still serving, to new connections and through donna.
    let mut fresh = TcpStream::connect(&agent.addr).unwrap();
    fresh.set_read_timeout(Some(TIMEOUT)).unwrap();
    write_frame(&mut fresh, &hello).unwrap();
    let reply: Reply = serde_json::from_slice(&read_frame(&mut fresh, 1 << 20).unwrap()).unwrap();
    assert!(matches!(reply.body, ReplyBody::Hello(_)), "{reply:?}");
    let o = cost(&format!("agent:{}", agent.addr), Some("right"), &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let o = cost(&format!("agent:{}", agent.addr), Some("wrong"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("wrong or missing token"), "{}", text(&o.stderr));
    let stats = agent.client("right").stats(TIMEOUT).unwrap();
    assert_eq!(stats.errors, 10, "{stats:?}");
}

#[test]
fn an_agent_that_is_not_there_is_a_one_line_error() {
    // Bind and release a port so that nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let o = cost(&format!("agent:127.0.0.1:{port}"), None, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("agent 127.0.0.1:{port}")) && err.contains("is donna-agent running"), "{err}");
}
