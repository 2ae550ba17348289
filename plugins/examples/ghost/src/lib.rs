//! # ghost: a new layer type and a search space that uses it, as a donna plugin
//!
//! `ghost` is GhostNet's cheap convolution (Han et al., CVPR 2020): a 1x1 convolution makes
//! half of the output channels, a depthwise `k x k` convolution derives the other half
//! ("ghost" features) from them, and the two halves are concatenated; with stride 1 and equal
//! widths a residual connection is added. Settings: `out` (even), `k`=3, `stride`=1.
//!
//! `ghostnet` is a small space of four blocks whose options mix `ghost` layers with the
//! built-in `mbconv`: type `t` {ghost, mb}, kernel `k` {3, 5}, depth `d` {1, 2}; the teacher is
//! `mb` k3 d2 in every block. Stem and head use the host's built-in `conv_bn_act` and
//! `classifier`, which a plugin can name like its own layer types.
#![deny(missing_docs)]

use donna_plugin_abi::{PluginBuilder, PluginSpace, SpaceLayout};
use donna_sdk::counters::{Op, OpKind};
use donna_sdk::space::{enumerate_options, scaled_strides};
use donna_sdk::{
    BlockOption, BlockSpec, Dimension, FeatureShape, LayerModule, LayerSpec, LayerType, Result, SdkError, Settings,
    SpaceConfig,
};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The parsed settings of a `ghost` layer on a given input.
#[derive(Clone, Copy, Debug)]
pub struct Ghost {
    input: FeatureShape,
    out: i64,
    k: i64,
    stride: i64,
}

impl Ghost {
    /// Parses and checks `settings` for `input`.
    pub fn parse(s: &Settings, input: FeatureShape) -> Result<Self> {
        let out = s.int("out")?;
        let k = s.int_or("k", 3)?;
        let stride = s.int_or("stride", 1)?;
        if out < 2 || out % 2 != 0 {
            return Err(SdkError::Setting(format!("ghost: `out` must be even and >= 2, got {out}")));
        }
        if k < 1 || k % 2 == 0 {
            return Err(SdkError::Setting(format!("ghost: kernel `k` must be odd, got {k}")));
        }
        if !(1..=2).contains(&stride) {
            return Err(SdkError::Setting(format!("ghost: `stride` must be 1 or 2, got {stride}")));
        }
        Ok(Self { input, out, k, stride })
    }

    /// The output shape (the 1x1 primary convolution carries the stride).
    pub fn output(&self) -> FeatureShape {
        self.input.conv_output(self.out, 1, self.stride)
    }

    fn residual(&self) -> bool {
        self.stride == 1 && self.input.channels == self.out
    }

    /// The primitive ops on one sample.
    pub fn ops(&self) -> Vec<Op> {
        let half = (self.out / 2) as u64;
        let o = self.output();
        let pos = o.positions() as u64;
        let c_in = self.input.channels as u64;
        let k2 = (self.k * self.k) as u64;
        let mut ops = vec![
            Op {
                kind: OpKind::Pointwise,
                macs: c_in * half * pos,
                params: c_in * half,
                input_elems: self.input.elems(),
                output_elems: half * pos,
            },
            Op { kind: OpKind::Norm, macs: 0, params: 2 * half, input_elems: half * pos, output_elems: half * pos },
            Op::elementwise(OpKind::Activation, half * pos, half * pos),
            Op {
                kind: OpKind::Depthwise,
                macs: half * k2 * pos,
                params: half * k2,
                input_elems: half * pos,
                output_elems: half * pos,
            },
            Op { kind: OpKind::Norm, macs: 0, params: 2 * half, input_elems: half * pos, output_elems: half * pos },
            Op::elementwise(OpKind::Activation, half * pos, half * pos),
            Op::elementwise(OpKind::Elementwise, o.elems(), o.elems()),
        ];
        if self.residual() {
            ops.push(Op::elementwise(OpKind::Elementwise, 2 * o.elems(), o.elems()));
        }
        ops
    }

    /// The module, with parameters under `path`.
    pub fn build(&self, path: &nn::Path) -> GhostModule {
        let half = self.out / 2;
        let no_bias =
            |stride, padding, groups| nn::ConvConfig { stride, padding, groups, bias: false, ..Default::default() };
        GhostModule {
            primary: nn::conv2d(path / "primary", self.input.channels, half, 1, no_bias(self.stride, 0, 1)),
            primary_bn: nn::batch_norm2d(path / "primary_bn", half, Default::default()),
            cheap: nn::conv2d(path / "cheap", half, half, self.k, no_bias(1, self.k / 2, half)),
            cheap_bn: nn::batch_norm2d(path / "cheap_bn", half, Default::default()),
            residual: self.residual(),
        }
    }
}

/// A built `ghost` layer.
#[derive(Debug)]
pub struct GhostModule {
    primary: nn::Conv2D,
    primary_bn: nn::BatchNorm,
    cheap: nn::Conv2D,
    cheap_bn: nn::BatchNorm,
    residual: bool,
}

impl ModuleT for GhostModule {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let a = xs.apply(&self.primary).apply_t(&self.primary_bn, train).relu();
        let b = a.apply(&self.cheap).apply_t(&self.cheap_bn, train).relu();
        let y = Tensor::cat(&[a, b], 1);
        if self.residual {
            y + xs
        } else {
            y
        }
    }
}

/// The `ghost` layer type.
pub struct GhostLayer;

impl LayerType for GhostLayer {
    fn name(&self) -> &str {
        "ghost"
    }
    fn summary(&self) -> &str {
        "ghost convolution: 1x1 conv to half the channels + depthwise ghost features (plugin)"
    }
    fn output_shape(&self, settings: &Settings, input: FeatureShape) -> Result<FeatureShape> {
        Ok(Ghost::parse(settings, input)?.output())
    }
    fn ops(&self, settings: &Settings, input: FeatureShape) -> Result<Vec<Op>> {
        Ok(Ghost::parse(settings, input)?.ops())
    }
    fn build(&self, path: &nn::Path, settings: &Settings, input: FeatureShape) -> Result<LayerModule> {
        Ok(Box::new(Ghost::parse(settings, input)?.build(path)))
    }
}

/// (output channels, stride at 224 px) of each block; the stem has stride 2.
const BLOCKS: [(i64, i64); 4] = [(24, 2), (40, 2), (80, 2), (112, 1)];

/// The `ghostnet` space.
pub struct GhostNet;

fn dims() -> Vec<Dimension> {
    vec![
        Dimension::new("t", "type", ["ghost", "mb"]),
        Dimension::new("k", "kernel", [3i64, 5]),
        Dimension::new("d", "depth", [1i64, 2]),
    ]
}

impl PluginSpace for GhostNet {
    fn name(&self) -> &str {
        "ghostnet"
    }
    fn summary(&self) -> &str {
        "ghost convolutions or inverted residuals per block (plugin example); teacher mbconv k3 d2"
    }
    fn layout(&self, config: &SpaceConfig) -> Result<SpaceLayout, String> {
        let mut reference = vec![2];
        reference.extend(BLOCKS.iter().map(|b| b.1));
        let strides = scaled_strides(&reference, config.resolution);
        let dims = dims();
        let options = enumerate_options(&dims, Some);
        let ch = |c: i64| config.channels(c, 8);
        let blocks = BLOCKS
            .iter()
            .zip(&strides[1..])
            .map(|(&(out, _), &stride)| BlockSpec {
                input: FeatureShape::new(0, 0, 0),
                output: FeatureShape::new(ch(out), 0, 0),
                stride,
                dims: dims.clone(),
                options: options.clone(),
                rules: Vec::new(),
            })
            .collect();
        let teacher = BlockOption::new().with("t", "mb").with("k", 3i64).with("d", 2i64);
        Ok(SpaceLayout {
            stem: vec![LayerSpec::new(
                "conv_bn_act",
                Settings::new().with("out", ch(16)).with("k", 3i64).with("stride", strides[0]),
            )],
            blocks,
            head: vec![
                LayerSpec::new("conv_bn_act", Settings::new().with("out", ch(320)).with("k", 1i64)),
                LayerSpec::new("classifier", Settings::new().with("classes", config.num_classes).with("dropout", 0.2)),
            ],
            teacher: vec![teacher; BLOCKS.len()],
        })
    }
    fn block_layers(
        &self,
        _config: &SpaceConfig,
        _index: usize,
        block: &BlockSpec,
        option: &BlockOption,
    ) -> Result<Vec<LayerSpec>, String> {
        let layers = || -> Result<Vec<LayerSpec>> {
            let (kind, k, depth) = (option.name("t")?, option.int("k")?, option.int("d")?);
            (0..depth)
                .map(|i| {
                    let s = Settings::new()
                        .with("out", block.output.channels)
                        .with("k", k)
                        .with("stride", if i == 0 { block.stride } else { 1 });
                    Ok(match kind {
                        "ghost" => LayerSpec::new("ghost", s),
                        _ => LayerSpec::new("mbconv", s.with("e", 4i64)),
                    })
                })
                .collect()
        };
        layers().map_err(|e| e.to_string())
    }
}

fn plugin() -> PluginBuilder {
    PluginBuilder::new("ghost", env!("CARGO_PKG_VERSION"), "example layer type `ghost` and space `ghostnet`")
        .layer_type(GhostLayer)
        .space(GhostNet)
}

donna_plugin_abi::export_plugin!(plugin);
