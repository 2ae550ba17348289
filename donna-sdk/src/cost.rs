//! Hardware cost models: latency of architectures on a target.
//!
//! One call prices many architectures, because a search evaluates a whole generation at once
//! and a real device measures a batch far more cheaply than one request per network.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::arch::Architecture;
use crate::error::Result;
use crate::space::SearchSpace;

/// How a latency figure was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyMethod {
    /// Computed from counters with a calibrated model.
    Analytical,
    /// Summed from a per-block lookup table.
    LookupTable,
    /// Timed on the device.
    Measured,
}

impl fmt::Display for LatencyMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LatencyMethod::Analytical => "analytical",
            LatencyMethod::LookupTable => "lookup table",
            LatencyMethod::Measured => "measured",
        })
    }
}

/// Numeric precision of inference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// 32-bit float.
    #[default]
    Fp32,
    /// 16-bit float.
    Fp16,
    /// 8-bit integer.
    Int8,
}

impl Precision {
    /// Bytes per tensor element.
    pub fn bytes(&self) -> u64 {
        match self {
            Precision::Fp32 => 4,
            Precision::Fp16 => 2,
            Precision::Int8 => 1,
        }
    }
}

/// What a cost model is and how it knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device name (`v100`, `cpu`, `agent:host:port`).
    pub device: String,
    /// Runtime measured or modelled (`libtorch`, `ncnn-vulkan`...).
    pub runtime: String,
    /// Its version: cached measurements are keyed by it.
    pub runtime_version: String,
    /// Analytical, lookup table or measured.
    pub method: LatencyMethod,
    /// The precision the runtime computes in by default.
    pub precision: Precision,
}

/// The inference setting priced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CostQuery {
    /// Batch size.
    pub batch: i64,
    /// Numeric precision.
    pub precision: Precision,
}

impl Default for CostQuery {
    fn default() -> Self {
        Self { batch: 1, precision: Precision::Fp32 }
    }
}

/// One latency figure.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Milliseconds per batch (the median when measured).
    pub ms: f64,
    /// Coefficient of variation of repeated measurements, when measured.
    pub cv: Option<f64>,
}

/// A hardware target's latency model.
pub trait CostModel: Send + Sync {
    /// What it is.
    fn info(&self) -> DeviceInfo;

    /// Latencies of `archs` (all from `space`), in order.
    fn latency(&self, space: &dyn SearchSpace, archs: &[Architecture], query: &CostQuery) -> Result<Vec<Latency>>;
}
