//! Token-mixing layers on NCHW maps: `transformer` (self-attention) and `conv_mixer`.
//!
//! Both keep the feature map's shape, so attention and convolution layers can be mixed in one
//! block and distilled against the same teacher features. The positions of the map are the
//! tokens: a `C x H x W` map is `H*W` tokens of width `C`.

use donna_sdk::counters::prod;
use donna_sdk::{FeatureShape, LayerModule, Op, OpKind, Result, SdkError, Settings};
use tch::nn::{self, Module, ModuleT};
use tch::Tensor;

use crate::parts::{positive, positive_or, residual_op, Act, ConvGeom};
use crate::LayerConfig;

/// LayerNorm epsilon of DeiT.
const LN_EPS: f64 = 1e-6;

fn norm_op(shape: FeatureShape) -> Op {
    Op {
        kind: OpKind::Norm,
        macs: 0,
        params: 2 * shape.channels as u64,
        input_elems: shape.elems(),
        output_elems: shape.elems(),
    }
}

fn linear_op(tokens: i64, cin: i64, cout: i64) -> Op {
    Op {
        kind: OpKind::Linear,
        macs: prod(&[tokens, cin, cout]),
        params: prod(&[cin, cout]).saturating_add(prod(&[cout])),
        input_elems: prod(&[tokens, cin]),
        output_elems: prod(&[tokens, cout]),
    }
}

/// MLP ratio setting, shared by both layers.
fn mlp_ratio(s: &Settings) -> Result<i64> {
    positive(s, "mlp")
}

/// Pre-norm transformer layer: `x + attn(ln(x))`, then `x + mlp(ln(x))` with GELU.
pub struct Transformer {
    shape: FeatureShape,
    heads: i64,
    mlp: i64,
}

impl LayerConfig for Transformer {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let heads = positive(s, "heads")?;
        if input.channels % heads != 0 {
            return Err(SdkError::Config(format!("{heads} heads do not divide width {}", input.channels)));
        }
        Ok(Self { shape: input, heads, mlp: mlp_ratio(s)? })
    }
    fn output(&self) -> FeatureShape {
        self.shape
    }
    fn ops(&self) -> Vec<Op> {
        let (n, c) = (self.shape.positions(), self.shape.channels);
        let scores = prod(&[self.heads, n, n]);
        let tokens = self.shape.elems();
        vec![
            norm_op(self.shape),
            linear_op(n, c, c.saturating_mul(3)),
            Op {
                kind: OpKind::Matmul,
                macs: prod(&[n, n, c]),
                params: 0,
                input_elems: tokens.saturating_mul(2),
                output_elems: scores,
            },
            Op::elementwise(OpKind::Softmax, scores, scores),
            Op {
                kind: OpKind::Matmul,
                macs: prod(&[n, n, c]),
                params: 0,
                input_elems: scores.saturating_add(tokens),
                output_elems: tokens,
            },
            linear_op(n, c, c),
            residual_op(self.shape),
            norm_op(self.shape),
            linear_op(n, c, self.mlp.saturating_mul(c)),
            Op::elementwise(OpKind::Activation, prod(&[n, self.mlp, c]), prod(&[n, self.mlp, c])),
            linear_op(n, self.mlp.saturating_mul(c), c),
            residual_op(self.shape),
        ]
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        let c = self.shape.channels;
        let ln = nn::LayerNormConfig { eps: LN_EPS, ..Default::default() };
        Ok(Box::new(TransformerModule {
            ln1: nn::layer_norm(path / "ln1", vec![c], ln),
            qkv: nn::linear(path / "qkv", c, 3 * c, Default::default()),
            proj: nn::linear(path / "proj", c, c, Default::default()),
            ln2: nn::layer_norm(path / "ln2", vec![c], ln),
            fc1: nn::linear(path / "fc1", c, self.mlp * c, Default::default()),
            fc2: nn::linear(path / "fc2", self.mlp * c, c, Default::default()),
            heads: self.heads,
        }))
    }
}

#[derive(Debug)]
struct TransformerModule {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
    heads: i64,
}

impl TransformerModule {
    fn attention(&self, x: &Tensor) -> Tensor {
        let (b, n, c) = x.size3().expect("tokens are 3-D");
        let qkv = x.apply(&self.qkv).reshape([b, n, 3, self.heads, c / self.heads]).permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false);
        y.transpose(1, 2).reshape([b, n, c]).apply(&self.proj)
    }
}

impl ModuleT for TransformerModule {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let (b, c, h, w) = xs.size4().expect("feature maps are NCHW");
        let tokens = xs.flatten(2, 3).transpose(1, 2);
        let x = &tokens + self.attention(&tokens.apply(&self.ln1));
        let x = &x + x.apply(&self.ln2).apply(&self.fc1).gelu("none").apply(&self.fc2);
        x.transpose(1, 2).reshape([b, c, h, w])
    }
}

/// The transformer layer's shape with depthwise-conv token mixing:
/// `x + dwconv(bn(x))`, then `x + mlp(bn(x))` with 1x1 convs and GELU.
pub struct ConvMixer {
    shape: FeatureShape,
    mlp: i64,
    k: i64,
}

impl ConvMixer {
    fn geoms(&self) -> [ConvGeom; 3] {
        let c = self.shape.channels;
        [
            ConvGeom::new(c, c, self.k, 1, c).with_bias(),
            ConvGeom::pointwise(c, self.mlp * c).with_bias(),
            ConvGeom::pointwise(self.mlp * c, c).with_bias(),
        ]
    }
}

impl LayerConfig for ConvMixer {
    fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let k = positive_or(s, "k", 3)?;
        if k % 2 == 0 {
            return Err(SdkError::Setting(format!("kernel {k} must be odd")));
        }
        Ok(Self { shape: input, mlp: mlp_ratio(s)?, k })
    }
    fn output(&self) -> FeatureShape {
        self.shape
    }
    fn ops(&self) -> Vec<Op> {
        let [mix, fc1, fc2] = self.geoms();
        let hidden = self.shape.with_channels(self.mlp * self.shape.channels);
        let mut ops = vec![norm_op(self.shape), mix.op(self.shape), residual_op(self.shape), norm_op(self.shape)];
        ops.push(fc1.op(self.shape));
        ops.extend(Act::Gelu.ops(hidden.elems()));
        ops.push(fc2.op(hidden));
        ops.push(residual_op(self.shape));
        ops
    }
    fn build(&self, path: &nn::Path) -> Result<LayerModule> {
        let [mix, fc1, fc2] = self.geoms();
        let c = self.shape.channels;
        Ok(Box::new(ConvMixerModule {
            bn1: nn::batch_norm2d(path / "bn1", c, Default::default()),
            mix: mix.build(&(path / "mix"))?,
            bn2: nn::batch_norm2d(path / "bn2", c, Default::default()),
            fc1: fc1.build(&(path / "fc1"))?,
            fc2: fc2.build(&(path / "fc2"))?,
        }))
    }
}

#[derive(Debug)]
struct ConvMixerModule {
    bn1: nn::BatchNorm,
    mix: nn::Conv2D,
    bn2: nn::BatchNorm,
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
}

impl ModuleT for ConvMixerModule {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = xs + self.mix.forward(&xs.apply_t(&self.bn1, train));
        let y = x.apply_t(&self.bn2, train).apply(&self.fc1).gelu("none").apply(&self.fc2);
        x + y
    }
}
