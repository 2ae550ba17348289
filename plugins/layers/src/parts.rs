//! Pieces shared by the layer types: activations and conv + batch-norm units, each with the
//! ops it contributes, so that a layer's `ops` and `build` are written from the same parts.

use donna_sdk::counters::prod;
use donna_sdk::{FeatureShape, Op, OpKind, Result, SdkError, Settings};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A pointwise non-linearity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// x * sigmoid(x) (SiLU).
    Swish,
    /// Gaussian error linear unit.
    Gelu,
}

impl Act {
    /// Reads setting `key` (default `default`).
    pub fn from_settings(s: &Settings, key: &str, default: &str) -> Result<Self> {
        match s.name_or(key, default)? {
            "none" => Ok(Act::None),
            "relu" => Ok(Act::Relu),
            "swish" | "silu" => Ok(Act::Swish),
            "gelu" => Ok(Act::Gelu),
            other => Err(SdkError::Setting(format!("activation `{other}` not in {{none,relu,swish,gelu}}"))),
        }
    }

    /// Applies the activation.
    pub fn apply(self, x: Tensor) -> Tensor {
        match self {
            Act::None => x,
            Act::Relu => x.relu(),
            Act::Swish => x.silu(),
            Act::Gelu => x.gelu("none"),
        }
    }

    /// The op it adds on `elems` elements (none for identity).
    pub fn ops(self, elems: u64) -> Vec<Op> {
        if self == Act::None {
            vec![]
        } else {
            vec![Op::elementwise(OpKind::Activation, elems, elems)]
        }
    }
}

/// Geometry of a 2-D convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    /// Input channels.
    pub cin: i64,
    /// Output channels.
    pub cout: i64,
    /// Kernel size.
    pub k: i64,
    /// Stride.
    pub stride: i64,
    /// Groups (cin for depthwise).
    pub groups: i64,
    /// Whether it has a bias.
    pub bias: bool,
    /// `false` for patch embeddings (no padding), `true` for "same" padding.
    pub same_padding: bool,
}

impl ConvGeom {
    /// A "same"-padded conv without bias (the usual conv before batch norm).
    pub fn new(cin: i64, cout: i64, k: i64, stride: i64, groups: i64) -> Self {
        Self { cin, cout, k, stride, groups, bias: false, same_padding: true }
    }

    /// A 1x1 conv.
    pub fn pointwise(cin: i64, cout: i64) -> Self {
        Self::new(cin, cout, 1, 1, 1)
    }

    /// Builder: with a bias.
    pub fn with_bias(self) -> Self {
        Self { bias: true, ..self }
    }

    /// Output shape for `input`.
    pub fn output(&self, input: FeatureShape) -> FeatureShape {
        if self.same_padding {
            input.conv_output(self.cout, self.k, self.stride)
        } else {
            let o = |n: i64| (n - self.k) / self.stride + 1;
            FeatureShape::new(self.cout, o(input.height), o(input.width))
        }
    }

    /// Checks the geometry and the input shape.
    pub fn check(&self, input: FeatureShape) -> Result<()> {
        if self.cin != input.channels {
            return Err(SdkError::Config(format!("conv expects {} input channels, got {}", self.cin, input.channels)));
        }
        if self.cin <= 0 || self.cout <= 0 || self.k <= 0 || self.stride <= 0 || self.groups <= 0 {
            return Err(SdkError::Config(format!("conv geometry must be positive: {self:?}")));
        }
        if self.cin % self.groups != 0 || self.cout % self.groups != 0 {
            return Err(SdkError::Config(format!("groups {} must divide {} and {}", self.groups, self.cin, self.cout)));
        }
        let out = self.output(input);
        if out.height < 1 || out.width < 1 {
            return Err(SdkError::Config(format!("input {input} too small for a {}x{} conv", self.k, self.k)));
        }
        Ok(())
    }

    fn weight_params(&self) -> u64 {
        prod(&[self.cout, self.cin / self.groups, self.k, self.k]) + if self.bias { prod(&[self.cout]) } else { 0 }
    }

    /// The conv's op on `input`.
    pub fn op(&self, input: FeatureShape) -> Op {
        let out = self.output(input);
        let kind = if self.groups > 1 {
            OpKind::Depthwise
        } else if self.k == 1 {
            OpKind::Pointwise
        } else {
            OpKind::Conv
        };
        Op {
            kind,
            macs: out.elems().saturating_mul(prod(&[self.cin / self.groups, self.k, self.k])),
            params: self.weight_params(),
            input_elems: input.elems(),
            output_elems: out.elems(),
        }
    }

    /// Builds the conv under `path`.
    pub fn build(&self, path: &nn::Path) -> Result<nn::Conv2D> {
        let cfg = nn::ConvConfig {
            stride: self.stride,
            padding: if self.same_padding { self.k / 2 } else { 0 },
            groups: self.groups,
            bias: self.bias,
            ..Default::default()
        };
        // tch's constructor panics on a bad path; the geometry was checked before.
        Ok(nn::conv2d(path, self.cin / self.groups * self.groups, self.cout, self.k, cfg))
    }
}

/// Conv, batch norm and activation: the unit most CNN layers are made of.
#[derive(Debug)]
pub struct ConvBn {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    act: Act,
}

impl ConvBn {
    /// The ops of conv + BN + activation on `input`.
    pub fn ops(geom: &ConvGeom, act: Act, input: FeatureShape) -> Vec<Op> {
        let out = geom.output(input);
        let mut ops = vec![
            geom.op(input),
            Op {
                kind: OpKind::Norm,
                macs: 0,
                params: 2 * geom.cout as u64,
                input_elems: out.elems(),
                output_elems: out.elems(),
            },
        ];
        ops.extend(act.ops(out.elems()));
        ops
    }

    /// Builds `conv` and `bn` under `path`.
    pub fn build(path: &nn::Path, geom: &ConvGeom, act: Act) -> Result<Self> {
        Ok(Self {
            conv: geom.build(&(path / "conv"))?,
            bn: nn::batch_norm2d(path / "bn", geom.cout, Default::default()),
            act,
        })
    }
}

impl ModuleT for ConvBn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.act.apply(xs.apply(&self.conv).apply_t(&self.bn, train))
    }
}

/// Squeeze-and-excite: global pool, 1x1 reduce, activation, 1x1 expand, sigmoid gate.
#[derive(Debug)]
pub struct SqueezeExcite {
    reduce: nn::Conv2D,
    expand: nn::Conv2D,
    act: Act,
}

impl SqueezeExcite {
    /// The squeeze width for a block whose input has `block_in` channels (EfficientNet's rule).
    pub fn squeeze(block_in: i64) -> i64 {
        (block_in / 4).max(1)
    }

    /// Ops on a `channels x h x w` map with `squeeze` hidden units.
    pub fn ops(shape: FeatureShape, squeeze: i64, act: Act) -> Vec<Op> {
        let c = shape.channels;
        let pooled = FeatureShape::new(c, 1, 1);
        let mut ops = vec![Op::elementwise(OpKind::Pool, shape.elems(), c as u64)];
        ops.push(ConvGeom::pointwise(c, squeeze).with_bias().op(pooled));
        ops.extend(act.ops(squeeze as u64));
        ops.push(ConvGeom::pointwise(squeeze, c).with_bias().op(FeatureShape::new(squeeze, 1, 1)));
        ops.push(Op::elementwise(OpKind::SqueezeExcite, shape.elems().saturating_add(prod(&[c])), shape.elems()));
        ops
    }

    /// Builds `reduce` and `expand` under `path`.
    pub fn build(path: &nn::Path, channels: i64, squeeze: i64, act: Act) -> Result<Self> {
        Ok(Self {
            reduce: ConvGeom::pointwise(channels, squeeze).with_bias().build(&(path / "reduce"))?,
            expand: ConvGeom::pointwise(squeeze, channels).with_bias().build(&(path / "expand"))?,
            act,
        })
    }
}

impl ModuleT for SqueezeExcite {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let s = xs.adaptive_avg_pool2d([1, 1]).apply(&self.reduce);
        let gate = self.act.apply(s).apply(&self.expand).sigmoid();
        xs * gate
    }
}

/// The residual add's op.
pub fn residual_op(shape: FeatureShape) -> Op {
    Op::elementwise(OpKind::Elementwise, shape.elems().saturating_mul(2), shape.elems())
}

/// Reads a positive integer setting.
pub fn positive(s: &Settings, key: &str) -> Result<i64> {
    let v = s.int(key)?;
    if !(1..=MAX_SETTING).contains(&v) {
        return Err(SdkError::Setting(format!("setting `{key}` must be in 1..={MAX_SETTING}, got {v}")));
    }
    Ok(v)
}

/// The largest integer setting a built-in layer takes (channels, kernel, expansion, heads,
/// classes, ...): far above any real network, low enough that sizes computed from a few of
/// them stay within `i64` (counts saturate beyond that, see `donna_sdk::counters::prod`).
pub const MAX_SETTING: i64 = 1 << 20;

/// Reads a positive integer setting with a default.
pub fn positive_or(s: &Settings, key: &str, default: i64) -> Result<i64> {
    if s.contains(key) {
        positive(s, key)
    } else {
        Ok(default)
    }
}
