//! Analytical cost counters: parameters, MACs and memory traffic, per primitive op.
//!
//! Layer types describe themselves as a list of [`Op`]s. The counters of a layer, a block or a
//! whole network are sums over those ops, and analytical cost models (V100, S20) price each op
//! by its [`OpKind`], because a depthwise conv, a squeeze-excite and a matmul with the same MACs
//! run at very different speeds.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

/// What kind of primitive an op is, as far as hardware efficiency is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// Dense convolution with a spatial kernel (k > 1, groups = 1).
    Conv,
    /// Depthwise (or grouped) convolution.
    Depthwise,
    /// 1x1 convolution.
    Pointwise,
    /// Fully connected layer over tokens or pooled features.
    Linear,
    /// Batched matrix product inside attention.
    Matmul,
    /// Softmax over attention scores.
    Softmax,
    /// The pooling, gating and scaling of squeeze-excite (its 1x1 convs are `Pointwise`).
    SqueezeExcite,
    /// Pointwise non-linearity.
    Activation,
    /// Batch or layer normalisation.
    Norm,
    /// Global or local pooling.
    Pool,
    /// Residual add and other elementwise arithmetic.
    Elementwise,
}

impl OpKind {
    /// Every kind, for tables and calibration files.
    pub const ALL: [OpKind; 11] = [
        OpKind::Conv,
        OpKind::Depthwise,
        OpKind::Pointwise,
        OpKind::Linear,
        OpKind::Matmul,
        OpKind::Softmax,
        OpKind::SqueezeExcite,
        OpKind::Activation,
        OpKind::Norm,
        OpKind::Pool,
        OpKind::Elementwise,
    ];
}

/// One primitive operation for a single input sample (batch size 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Hardware-relevant kind.
    pub kind: OpKind,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Trainable parameters it owns.
    pub params: u64,
    /// Elements read from activations.
    pub input_elems: u64,
    /// Elements written.
    pub output_elems: u64,
}

impl Op {
    /// An op with no weights (activation, add, pooling...).
    pub fn elementwise(kind: OpKind, input_elems: u64, output_elems: u64) -> Self {
        Self { kind, macs: 0, params: 0, input_elems, output_elems }
    }
}

/// Totals over a list of ops, for one sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Trainable parameters.
    pub params: u64,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Activation elements read plus written.
    pub activation_elems: u64,
    /// Number of primitive ops (a proxy for per-kernel launch overhead).
    pub ops: u64,
}

/// The product of `factors` as a count: saturating at `u64::MAX` instead of overflowing (an
/// absurd layer from a space file or a fuzzer gets a huge count, which the caller can refuse,
/// rather than a panic or a wrapped-around number); a negative factor counts as 0.
pub fn prod(factors: &[i64]) -> u64 {
    factors.iter().fold(1u64, |acc, &f| acc.saturating_mul(u64::try_from(f).unwrap_or(0)))
}

impl Counters {
    /// Sums a list of ops.
    pub fn of(ops: &[Op]) -> Self {
        ops.iter().fold(Self::default(), |acc, op| {
            acc + Counters {
                params: op.params,
                macs: op.macs,
                activation_elems: op.input_elems.saturating_add(op.output_elems),
                ops: 1,
            }
        })
    }

    /// Activation memory traffic in bytes at `bytes_per_elem` (4 for fp32, 2 for fp16).
    pub fn activation_bytes(&self, bytes_per_elem: u64) -> u64 {
        self.activation_elems * bytes_per_elem
    }

    /// Weight memory traffic in bytes at `bytes_per_elem`.
    pub fn weight_bytes(&self, bytes_per_elem: u64) -> u64 {
        self.params * bytes_per_elem
    }
}

impl Add for Counters {
    type Output = Counters;
    fn add(self, o: Counters) -> Counters {
        Counters {
            params: self.params.saturating_add(o.params),
            macs: self.macs.saturating_add(o.macs),
            activation_elems: self.activation_elems.saturating_add(o.activation_elems),
            ops: self.ops.saturating_add(o.ops),
        }
    }
}

impl AddAssign for Counters {
    fn add_assign(&mut self, o: Counters) {
        *self = *self + o;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_sum_ops_and_scale_bytes() {
        let ops = [
            Op { kind: OpKind::Pointwise, macs: 100, params: 10, input_elems: 5, output_elems: 7 },
            Op::elementwise(OpKind::Activation, 7, 7),
        ];
        let c = Counters::of(&ops);
        assert_eq!(c, Counters { params: 10, macs: 100, activation_elems: 26, ops: 2 });
        assert_eq!(c.activation_bytes(4), 104);
        assert_eq!(c.weight_bytes(2), 20);
    }
}
