//! The agent protocol, version 1: length-prefixed JSON over TCP.
//!
//! Every message, either way, is a 4-byte big-endian length followed by that many bytes of one
//! JSON object. Both sides carry `"protocol": 1`; requests carry the shared-secret `token` when
//! the agent has one. A request names what it wants in `"request"`, a reply what it is in
//! `"reply"`:
//!
//! ```text
//! -> {"protocol":1,"token":"…","request":"hello"}
//! <- {"protocol":1,"reply":"hello","device":"cpu","kind":"cpu","threads":2,"runtime":"libtorch",…}
//! -> {"protocol":1,"token":"…","request":"measure","space":"mobilenet",
//!     "config":{"resolution":224,"width_mult":1.0,"num_classes":1000,"in_channels":3},
//!     "archs":["mobilenet:k3-e6-d2-se0-w1/…"],"batch":1,"precision":"fp32"}
//! <- {"protocol":1,"reply":"measure","results":[{"latency":{"ms":9.16,"cv":0.04}},{"error":"…"}]}
//! -> {"protocol":1,"token":"…","request":"stats"}
//! <- {"protocol":1,"reply":"stats","requests":3,"errors":0,"measured":1,"connections":1,"uptime_s":12.5}
//! <- {"protocol":1,"reply":"error","kind":"token","message":"wrong or missing token"}
//! ```
//!
//! A request may carry an `"id"` (an unsigned 64-bit integer of the client's choosing); the
//! reply to it then carries the same `"id"`, so a client can tell that a reply is the answer to
//! its own request and not to another. The agent echoes it on every reply to a request it could
//! read that far, refusals included; a reply sent before the request was read (`busy`,
//! `too_large`, JSON that does not parse) has none. The field is optional both ways, so peers
//! from before it interoperate: an older agent ignores it (and its replies have no id), an
//! older client never sends one. `donna`'s client sends a fresh id with every request and
//! treats a reply with another id as an error.
//!
//! ```text
//! -> {"protocol":1,"id":17,"token":"…","request":"stats"}
//! <- {"protocol":1,"id":17,"reply":"stats","requests":4,"errors":0,"measured":1,"connections":1,"uptime_s":13.0}
//! ```
//!
//! A connection carries any number of request/reply pairs, one at a time. A request the agent
//! cannot read (bad JSON, wrong protocol or token, over a limit) gets an `error` reply; one
//! longer than the agent's size limit gets that reply and the connection is closed, since the
//! rest of it cannot be skipped safely. A new field may be added to a message without a new
//! protocol version (readers ignore unknown fields); anything else needs one.

use std::io::{self, Read, Write};

use donna_sdk::cost::{Latency, Precision};
use donna_sdk::SpaceConfig;
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The port an agent listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 7878;

/// The largest request an agent reads by default (1 MiB: thousands of architectures).
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 1 << 20;

/// The largest reply a client reads.
pub const MAX_REPLY_BYTES: u32 = 64 << 20;

/// A request: protocol version, token, and what is asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The client's name for this request, echoed in the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The agent's shared secret, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// What is asked.
    #[serde(flatten)]
    pub body: RequestBody,
}

/// The first thing an agent reads of a request, whatever else it holds: enough to refuse
/// another protocol version or a wrong token before reading further.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RequestHeader {
    /// The protocol version, if the request has one.
    pub protocol: Option<serde_json::Value>,
    /// The request id, if any (echoed only when it is an unsigned 64-bit integer).
    pub id: Option<serde_json::Value>,
    /// The token, if any.
    pub token: Option<String>,
}

/// What a request asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum RequestBody {
    /// The agent's device, runtime and limits.
    Hello,
    /// Measure architectures.
    Measure(MeasureRequest),
    /// What the agent has done since it started.
    Stats,
}

/// Architectures of one space to measure at one batch size and precision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasureRequest {
    /// The search space's registered name.
    pub space: String,
    /// Its configuration.
    pub config: SpaceConfig,
    /// Architectures in text form (`mobilenet:k3-e6-…/…`).
    pub archs: Vec<String>,
    /// Batch size.
    pub batch: i64,
    /// Precision.
    pub precision: Precision,
}

/// A reply: protocol version and what it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The id of the request this answers, when it had one and was read that far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// The reply itself.
    #[serde(flatten)]
    pub body: ReplyBody,
}

impl Reply {
    /// `body` in this protocol version.
    pub fn new(body: ReplyBody) -> Self {
        Self { protocol: PROTOCOL_VERSION, id: None, body }
    }

    /// This reply, answering the request `id`.
    pub fn with_id(self, id: Option<u64>) -> Self {
        Self { id, ..self }
    }

    /// An error reply.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(ReplyBody::Error { kind, message: message.into() })
    }
}

/// What a reply carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ReplyBody {
    /// The answer to `hello`.
    Hello(AgentDescription),
    /// One result per requested architecture, in order.
    Measure {
        /// The results.
        results: Vec<ArchResult>,
    },
    /// The answer to `stats`.
    Stats(AgentStats),
    /// The request was refused as a whole.
    Error {
        /// Why, for programs.
        kind: ErrorKind,
        /// Why, for people.
        message: String,
    },
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Another protocol version, or none.
    Protocol,
    /// A missing or wrong token.
    Token,
    /// Not JSON, or not a request this protocol knows.
    Malformed,
    /// Longer than the agent's request size limit.
    TooLarge,
    /// Over another limit (architectures per request, batch size).
    Limit,
    /// Well-formed but not measurable here (unknown space, bad configuration, precision).
    BadRequest,
    /// Too many connections at once.
    Busy,
    /// The agent failed.
    Internal,
}

/// One architecture's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchResult {
    /// Its latency.
    Latency(Latency),
    /// Why it was not measured.
    Error(String),
}

/// An agent's device, runtime, measurement settings and limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentDescription {
    /// The device measured on (`cpu`, `cuda:0`).
    pub device: String,
    /// Its kind (`cpu` or `cuda`).
    pub kind: String,
    /// libtorch intra-op threads.
    pub threads: i32,
    /// The runtime (`libtorch`).
    pub runtime: String,
    /// Its version: cached latencies are keyed by it.
    pub runtime_version: String,
    /// The agent machine's host name.
    pub hostname: String,
    /// The agent's own version.
    pub agent_version: String,
    /// How each architecture is timed (`warmup=5,repeats=10,…`).
    pub measure: String,
    /// The agent's limits.
    pub limits: AgentLimits,
}

/// What an agent accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentLimits {
    /// Longest request, in bytes.
    pub max_request_bytes: u32,
    /// Most architectures per `measure` request.
    pub max_archs: usize,
    /// Largest batch size.
    pub max_batch: i64,
    /// Longest a request may take from arrival to reply, queueing included, in seconds.
    pub time_limit_s: f64,
}

/// What an agent has done since it started.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentStats {
    /// Requests read (including refused ones).
    pub requests: u64,
    /// Error replies sent.
    pub errors: u64,
    /// Architectures measured.
    pub measured: u64,
    /// Connections open now, the one asking included (0 from agents older than this field).
    #[serde(default)]
    pub connections: u64,
    /// Seconds since the agent started.
    pub uptime_s: f64,
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum FrameError {
    /// The peer closed the connection between frames.
    Closed,
    /// The frame announces more bytes than allowed; its body was not read.
    TooLarge {
        /// The announced length.
        len: u32,
        /// The limit.
        limit: u32,
    },
    /// The connection failed or timed out, possibly in the middle of a frame.
    Io(io::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Closed => f.write_str("connection closed"),
            FrameError::TooLarge { len, limit } => write!(f, "a message of {len} bytes is over the limit of {limit}"),
            FrameError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Writes `msg` as one frame (length, then JSON) and flushes.
pub fn write_frame(w: &mut impl Write, msg: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_frame_bytes(w, &body)
}

/// Writes `body` as one frame and flushes.
pub fn write_frame_bytes(w: &mut impl Write, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("message longer than 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(body);
    w.write_all(&frame)?;
    w.flush()
}

/// Reads one frame's body, refusing (before reading it) one longer than `limit` bytes.
pub fn read_frame(r: &mut impl Read, limit: u32) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(FrameError::Closed),
            Ok(0) => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len);
    if len > limit {
        return Err(FrameError::TooLarge { len, limit });
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(FrameError::Io)?;
    Ok(body)
}

/// Whether `given` is `expected`, in a time that does not depend on where they differ.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let mut diff = u8::from(a.len() != b.len());
    for (i, &expected) in b.iter().enumerate() {
        diff |= a.get(i).copied().unwrap_or(0) ^ expected;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_back_to_back_on_one_stream() {
        let hello = Request { protocol: 1, id: Some(7), token: Some("s3cret".into()), body: RequestBody::Hello };
        let measure = Request {
            protocol: 1,
            id: None,
            token: None,
            body: RequestBody::Measure(MeasureRequest {
                space: "mobilenet".into(),
                config: SpaceConfig::default(),
                archs: vec!["mobilenet:teacher".into()],
                batch: 1,
                precision: Precision::Fp32,
            }),
        };
        let mut stream = Vec::new();
        write_frame(&mut stream, &hello).unwrap();
        write_frame(&mut stream, &measure).unwrap();
        let first_len = u32::from_be_bytes(stream[..4].try_into().unwrap()) as usize;
        assert_eq!(&stream[4..4 + 13], br#"{"protocol":1"#, "big-endian length, then JSON");
        let mut r = &stream[..];
        let a: Request = serde_json::from_slice(&read_frame(&mut r, 1 << 20).unwrap()).unwrap();
        let b: Request = serde_json::from_slice(&read_frame(&mut r, 1 << 20).unwrap()).unwrap();
        assert_eq!((a, b), (hello, measure));
        assert!(matches!(read_frame(&mut r, 1 << 20), Err(FrameError::Closed)));
        assert!(first_len > 0);
    }

    #[test]
    fn messages_have_the_documented_json_form() {
        let r: Request =
            serde_json::from_str(r#"{"protocol":1,"token":"t","request":"stats","future_field":3}"#).unwrap();
        assert_eq!(r.body, RequestBody::Stats);
        let reply = Reply::new(ReplyBody::Measure {
            results: vec![ArchResult::Latency(Latency { ms: 1.5, cv: Some(0.1) }), ArchResult::Error("no".into())],
        });
        assert_eq!(
            serde_json::to_string(&reply).unwrap(),
            r#"{"protocol":1,"reply":"measure","results":[{"latency":{"ms":1.5,"cv":0.1}},{"error":"no"}]}"#
        );
        let e = serde_json::to_string(&Reply::error(ErrorKind::TooLarge, "big")).unwrap();
        assert_eq!(e, r#"{"protocol":1,"reply":"error","kind":"too_large","message":"big"}"#);
        let header: RequestHeader = serde_json::from_str(r#"{"protocol":"2","whatever":[1]}"#).unwrap();
        assert_eq!(header.protocol, Some(serde_json::json!("2")));
    }

    #[test]
    fn the_request_id_is_optional_both_ways_and_echoed_in_the_reply() {
        // A request from a client that knows no ids, and one that sends one.
        let old: Request = serde_json::from_str(r#"{"protocol":1,"request":"hello"}"#).unwrap();
        assert_eq!(old.id, None);
        let new = Request { protocol: 1, id: Some(u64::MAX), token: None, body: RequestBody::Stats };
        let text = serde_json::to_string(&new).unwrap();
        assert_eq!(text, format!(r#"{{"protocol":1,"id":{},"request":"stats"}}"#, u64::MAX));
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), new);
        let header: RequestHeader = serde_json::from_str(&text).unwrap();
        assert_eq!(header.id.and_then(|v| v.as_u64()), Some(u64::MAX));
        // A reply without an id (an older agent, or a refusal before the request was read)
        // still reads; one with an id carries it.
        let old: Reply = serde_json::from_str(
            r#"{"protocol":1,"reply":"stats","requests":1,"errors":0,"measured":0,"uptime_s":1.0}"#,
        )
        .unwrap();
        assert_eq!(old.id, None);
        assert!(matches!(old.body, ReplyBody::Stats(AgentStats { connections: 0, .. })));
        let busy = Reply::error(ErrorKind::Busy, "busy").with_id(Some(9));
        let text = serde_json::to_string(&busy).unwrap();
        assert_eq!(text, r#"{"protocol":1,"id":9,"reply":"error","kind":"busy","message":"busy"}"#);
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), busy);
    }

    #[test]
    fn oversized_truncated_and_empty_frames_are_told_apart() {
        let mut big = Vec::new();
        write_frame_bytes(&mut big, &[b'x'; 100]).unwrap();
        match read_frame(&mut &big[..], 99) {
            Err(FrameError::TooLarge { len: 100, limit: 99 }) => {}
            other => panic!("{other:?}"),
        }
        assert!(matches!(read_frame(&mut &big[..50], 1000), Err(FrameError::Io(_))), "cut short in the body");
        assert!(matches!(read_frame(&mut &big[..2], 1000), Err(FrameError::Io(_))), "cut short in the length");
        assert!(matches!(read_frame(&mut &[][..], 1000), Err(FrameError::Closed)));
        assert_eq!(read_frame(&mut &[0u8, 0, 0, 0][..], 1000).unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("abcd", "abc"));
        assert!(!token_matches("", "abc"));
        assert!(token_matches("", ""));
    }
}
