//! Building networks and counting their cost from a space's layer lists.
//!
//! Parameter names follow the module tree: `stem.<layer>.…`, `blocks.<b>.<layer>.…`,
//! `head.<layer>.…`. A block built alone with [`build_block`] gets exactly the names it has
//! inside the whole network, so a distilled block's checkpoint stitches into any network that
//! picks the same option for that block.

use std::fmt;

use serde::Serialize;
use tch::nn::{self, ModuleT};
use tch::Tensor;

use crate::arch::{Architecture, BlockOption};
use crate::counters::{Counters, Op};
use crate::error::{Result, SdkError};
use crate::layer::{FeatureShape, LayerModule, LayerSpec};
use crate::registry;
use crate::space::SearchSpace;

/// Layers applied in sequence.
pub struct LayerStack {
    layers: Vec<LayerModule>,
}

impl fmt::Debug for LayerStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LayerStack({} layers)", self.layers.len())
    }
}

impl nn::ModuleT for LayerStack {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut it = self.layers.iter();
        match it.next() {
            None => xs.shallow_clone(),
            Some(first) => it.fold(first.forward_t(xs, train), |x, l| l.forward_t(&x, train)),
        }
    }
}

/// Builds `specs` in order under `path / 0`, `path / 1`, … and returns the stack and its output
/// shape.
pub fn build_layers(path: &nn::Path, specs: &[LayerSpec], input: FeatureShape) -> Result<(LayerStack, FeatureShape)> {
    let mut shape = input;
    let mut layers = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let lt = registry::layer_type(&spec.kind)?;
        let layer_path = path / i;
        layers.push(lt.build(&layer_path, &spec.settings, shape).map_err(|e| layer_error(&layer_path, e))?);
        shape = lt
            .output_shape(&spec.settings, shape)
            .and_then(|s| checked_shape(&spec.kind, s))
            .map_err(|e| layer_error(&layer_path, e))?;
    }
    Ok((LayerStack { layers }, shape))
}

/// The largest feature map a layer may produce, per dimension and in elements per sample: far
/// above any real network (a 2^20-channel map, 2^36 values = 256 GiB in fp32), and low enough
/// that the next layer's sizes stay within `i64`.
pub const MAX_FEATURE_DIM: i64 = 1 << 24;
/// See [`MAX_FEATURE_DIM`].
pub const MAX_FEATURE_ELEMS: u64 = 1 << 36;

/// `shape`, or an error when a `kind` layer's output is empty or absurdly large.
fn checked_shape(kind: &str, shape: FeatureShape) -> Result<FeatureShape> {
    let dims = [shape.channels, shape.height, shape.width];
    if dims.iter().any(|&d| !(1..=MAX_FEATURE_DIM).contains(&d)) || shape.elems() > MAX_FEATURE_ELEMS {
        return Err(SdkError::Config(format!(
            "a `{kind}` layer would output {shape}: each dimension must be in 1..={MAX_FEATURE_DIM} and the map at most \
             {MAX_FEATURE_ELEMS} values"
        )));
    }
    Ok(shape)
}

fn layer_error(path: &nn::Path, e: SdkError) -> SdkError {
    match e {
        SdkError::Setting(m) => {
            SdkError::Setting(format!("layer {}: {m}", path.components().collect::<Vec<_>>().join(".")))
        }
        SdkError::Config(m) => {
            SdkError::Config(format!("layer {}: {m}", path.components().collect::<Vec<_>>().join(".")))
        }
        other => other,
    }
}

/// A whole network: stem, one layer stack per block, head.
#[derive(Debug)]
pub struct Network {
    /// Fixed layers before block 0.
    pub stem: LayerStack,
    /// The searchable blocks.
    pub blocks: Vec<LayerStack>,
    /// Fixed layers producing logits.
    pub head: LayerStack,
}

impl Network {
    /// The stem's output followed by every block's output (`blocks + 1` tensors) and the logits.
    /// Distillation uses these as block inputs and targets.
    pub fn features_t(&self, xs: &Tensor, train: bool) -> (Vec<Tensor>, Tensor) {
        let mut feats = Vec::with_capacity(self.blocks.len() + 1);
        let mut x = self.stem.forward_t(xs, train);
        for b in &self.blocks {
            let y = b.forward_t(&x, train);
            feats.push(std::mem::replace(&mut x, y));
        }
        let logits = self.head.forward_t(&x, train);
        feats.push(x);
        (feats, logits)
    }
}

impl Network {
    /// The input and output of block `b` for the batch `xs`: what an option of that block is
    /// distilled on. Only the stem and blocks up to `b` run.
    pub fn block_io(&self, xs: &Tensor, b: usize, train: bool) -> (Tensor, Tensor) {
        let x = self.blocks[..b].iter().fold(self.stem.forward_t(xs, train), |x, blk| blk.forward_t(&x, train));
        let y = self.blocks[b].forward_t(&x, train);
        (x, y)
    }
}

impl nn::ModuleT for Network {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let x = self.stem.forward_t(xs, train);
        let x = self.blocks.iter().fold(x, |x, b| b.forward_t(&x, train));
        self.head.forward_t(&x, train)
    }
}

/// The variable-store path of block `b` inside a network rooted at `root`.
pub fn block_path<'a>(root: &nn::Path<'a>, b: usize) -> nn::Path<'a> {
    root / "blocks" / b
}

/// Builds `arch` (validated here) with parameters under `root`.
pub fn build_network(space: &dyn SearchSpace, arch: &Architecture, root: &nn::Path) -> Result<Network> {
    space.validate(arch)?;
    let (stem, mut shape) = build_layers(&(root / "stem"), &space.stem_layers(), space.input_shape())?;
    let mut blocks = Vec::new();
    for (b, option) in arch.blocks.iter().enumerate() {
        let (stack, out) = build_block_from(space, b, option, root, shape)?;
        blocks.push(stack);
        shape = out;
    }
    let (head, _) = build_layers(&(root / "head"), &space.head_layers(), shape)?;
    Ok(Network { stem, blocks, head })
}

/// Builds block `b` with `option` alone, with the parameter names it has in a whole network
/// rooted at `root`.
pub fn build_block(space: &dyn SearchSpace, b: usize, option: &BlockOption, root: &nn::Path) -> Result<LayerStack> {
    let spec = space.blocks().get(b).ok_or_else(|| {
        SdkError::Arch(format!("block {b} does not exist (space `{}` has {})", space.name(), space.blocks().len()))
    })?;
    spec.option_index(b, option)?;
    Ok(build_block_from(space, b, option, root, spec.input)?.0)
}

fn build_block_from(
    space: &dyn SearchSpace,
    b: usize,
    option: &BlockOption,
    root: &nn::Path,
    input: FeatureShape,
) -> Result<(LayerStack, FeatureShape)> {
    let (stack, out) = build_layers(&block_path(root, b), &space.block_layers(b, option)?, input)?;
    let want = space.blocks()[b].output;
    if out != want {
        return Err(SdkError::Config(format!("block {b}: option produces {out}, the block must produce {want}")));
    }
    Ok((stack, out))
}

/// Counters of one layer.
#[derive(Clone, Debug, Serialize)]
pub struct LayerCount {
    /// Layer type.
    pub kind: String,
    /// Output shape.
    pub output: FeatureShape,
    /// Its primitive ops.
    pub ops: Vec<Op>,
    /// Totals of the ops.
    pub counters: Counters,
}

/// Counters of a part of the network (stem, a block, head).
#[derive(Clone, Debug, Serialize)]
pub struct PartCount {
    /// `stem`, `b0`, `b1`, …, `head`.
    pub name: String,
    /// Input shape.
    pub input: FeatureShape,
    /// Output shape.
    pub output: FeatureShape,
    /// Per-layer counts.
    pub layers: Vec<LayerCount>,
    /// Totals of the part.
    pub counters: Counters,
}

/// Counters of a whole network, for one sample.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkCount {
    /// Stem, blocks and head, in order.
    pub parts: Vec<PartCount>,
    /// Whole-network totals.
    pub total: Counters,
}

impl NetworkCount {
    /// Every primitive op of the network, in execution order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.parts.iter().flat_map(|p| p.layers.iter().flat_map(|l| l.ops.iter()))
    }
}

/// Counts the layers of one part.
pub fn count_layers(name: &str, specs: &[LayerSpec], input: FeatureShape) -> Result<PartCount> {
    let mut shape = input;
    let mut layers = Vec::with_capacity(specs.len());
    for spec in specs {
        let lt = registry::layer_type(&spec.kind)?;
        let ops = lt.ops(&spec.settings, shape)?;
        let output = checked_shape(&spec.kind, lt.output_shape(&spec.settings, shape)?)?;
        layers.push(LayerCount { kind: spec.kind.clone(), output, counters: Counters::of(&ops), ops });
        shape = output;
    }
    let counters = layers.iter().fold(Counters::default(), |acc, l| acc + l.counters);
    Ok(PartCount { name: name.to_owned(), input, output: shape, layers, counters })
}

/// Counts block `b` with `option` at its place in the network.
pub fn count_block(space: &dyn SearchSpace, b: usize, option: &BlockOption) -> Result<PartCount> {
    let spec = &space.blocks()[b];
    count_layers(&format!("b{b}"), &space.block_layers(b, option)?, spec.input)
}

/// Counts `arch` (validated here): parameters, MACs, activation traffic, per part and layer.
pub fn count_network(space: &dyn SearchSpace, arch: &Architecture) -> Result<NetworkCount> {
    space.validate(arch)?;
    let mut parts = vec![count_layers("stem", &space.stem_layers(), space.input_shape())?];
    for (b, option) in arch.blocks.iter().enumerate() {
        let input = parts.last().map(|p| p.output).unwrap_or(space.input_shape());
        parts.push(count_layers(&format!("b{b}"), &space.block_layers(b, option)?, input)?);
    }
    let last = parts.last().map(|p| p.output).unwrap_or(space.input_shape());
    parts.push(count_layers("head", &space.head_layers(), last)?);
    let total = parts.iter().fold(Counters::default(), |acc, p| acc + p.counters);
    Ok(NetworkCount { parts, total })
}

/// Stores 4-D weights channels-last (NHWC in memory), the layout oneDNN's CPU convolutions
/// are fastest with (1.4x for a MobileNet training step here). Call before creating an
/// optimizer; values and names are unchanged.
pub fn use_channels_last(vs: &nn::VarStore) {
    tch::no_grad(|| {
        for (_, mut v) in vs.variables() {
            if v.dim() == 4 {
                v.set_data(&to_channels_last(&v));
            }
        }
    });
}

/// A 4-D tensor with the same values in channels-last memory layout.
pub fn to_channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Number of trainable elements in a variable store (what [`Counters::params`] must equal).
pub fn trainable_elems(vs: &nn::VarStore) -> u64 {
    vs.trainable_variables().iter().map(|t| t.numel() as u64).sum()
}
