//! Search spaces: a fixed stem, searchable blocks with their options, and a fixed head.
//!
//! A space is described, not coded against tensors: [`SearchSpace`] returns layer lists and
//! option lists, and the SDK derives everything else from them (validation, the text form,
//! sampling and variation for searchers, the exact size, module building and counters in
//! [`crate::network`]). Every option of block `b` maps the teacher's block `b - 1` output shape
//! to the teacher's block `b` output shape, which is what lets blocks be distilled alone and
//! stitched together later.

use serde::{Deserialize, Serialize};

use crate::arch::{Architecture, BlockOption, Genome, SpaceSize};
use crate::error::{Result, SdkError};
use crate::layer::{FeatureShape, LayerSpec};
use crate::rng::SplitMix64;
use crate::value::Value;

/// One axis of choice inside a block, e.g. kernel size `k` in `{3,5,7}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dimension {
    /// Short key used in the text form (`k`, `e`, `se`...).
    pub key: String,
    /// Readable name used in messages (`kernel`, `expansion`...).
    pub name: String,
    /// Allowed values, in display order.
    pub values: Vec<Value>,
}

impl Dimension {
    /// A dimension `key` called `name` with `values`.
    pub fn new<V: Into<Value>>(key: &str, name: &str, values: impl IntoIterator<Item = V>) -> Self {
        Self { key: key.to_owned(), name: name.to_owned(), values: values.into_iter().map(Into::into).collect() }
    }

    /// The allowed values as `{2,3,4,6}`.
    pub fn allowed(&self) -> String {
        let v: Vec<String> = self.values.iter().map(Value::token).collect();
        format!("{{{}}}", v.join(","))
    }

    /// The canonical value whose token equals `token`.
    pub fn find(&self, token: &str) -> Option<&Value> {
        self.values.iter().find(|v| v.token() == token)
    }
}

/// Every combination of the dimensions' values, passed through `canonical`, which may drop
/// settings that do not apply (e.g. width at depth 1) or reject the combination (`None`).
/// Duplicates are removed, keeping first occurrences, so the order is deterministic.
pub fn enumerate_options(
    dims: &[Dimension],
    canonical: impl Fn(BlockOption) -> Option<BlockOption>,
) -> Vec<BlockOption> {
    let mut combos = vec![BlockOption::new()];
    for d in dims {
        combos =
            combos.into_iter().flat_map(|c| d.values.iter().map(move |v| c.clone().with(&d.key, v.clone()))).collect();
    }
    // Options are equal when their keys and value tokens are (see `Value`'s equality); a set of
    // those keeps this linear, where comparing with every kept option was quadratic.
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<BlockOption> = Vec::new();
    for o in combos.into_iter().filter_map(canonical) {
        if seen.insert(o.iter().map(|(k, v)| (k.to_owned(), v.token())).collect::<Vec<_>>()) {
            out.push(o);
        }
    }
    out
}

/// A searchable block: where it sits in the network and what it may be.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockSpec {
    /// Input shape (the teacher's previous block output).
    pub input: FeatureShape,
    /// Output shape that every option must produce.
    pub output: FeatureShape,
    /// Spatial stride of the block.
    pub stride: i64,
    /// The axes of choice.
    pub dims: Vec<Dimension>,
    /// The options, each a setting per applicable dimension. Option indices refer to this list.
    pub options: Vec<BlockOption>,
    /// Human-readable rules about which combinations exist, shown when one does not.
    pub rules: Vec<String>,
}

impl BlockSpec {
    /// The text form of an option: `k3-e6-d2`, settings in dimension order.
    pub fn format_option(&self, option: &BlockOption) -> String {
        let parts: Vec<String> =
            self.dims.iter().filter_map(|d| option.get(&d.key).map(|v| format!("{}{}", d.key, v.token()))).collect();
        parts.join("-")
    }

    fn dim(&self, key: &str) -> Option<&Dimension> {
        self.dims.iter().find(|d| d.key == key)
    }

    fn keys(&self) -> String {
        self.dims.iter().map(|d| d.key.as_str()).collect::<Vec<_>>().join(", ")
    }

    /// Parses the text form of one option of block `index`.
    pub fn parse_option(&self, index: usize, text: &str) -> Result<BlockOption> {
        let err = |msg: String| SdkError::Arch(format!("block {index}: {msg}"));
        if text.is_empty() {
            return Err(err("empty option".into()));
        }
        let mut option = BlockOption::new();
        for token in text.split('-') {
            // Longest key first, so `se1` is squeeze-excite and not `s` + `e1`.
            let dim = self
                .dims
                .iter()
                .filter(|d| token.len() > d.key.len() && token.starts_with(&d.key))
                .max_by_key(|d| d.key.len())
                .ok_or_else(|| err(format!("unknown setting `{token}` (keys: {})", self.keys())))?;
            let raw = &token[dim.key.len()..];
            let value = dim.find(raw).ok_or_else(|| err(format!("{} {raw} not in {}", dim.name, dim.allowed())))?;
            if option.contains(&dim.key) {
                return Err(err(format!("{} given twice", dim.name)));
            }
            option.set(&dim.key, value.clone());
        }
        Ok(option)
    }

    /// The index of `option` in this block's list, after checking each setting.
    pub fn option_index(&self, index: usize, option: &BlockOption) -> Result<usize> {
        let err = |msg: String| SdkError::Arch(format!("block {index}: {msg}"));
        let mut canonical = BlockOption::new();
        for (key, value) in option.iter() {
            let dim = self.dim(key).ok_or_else(|| err(format!("unknown setting `{key}` (keys: {})", self.keys())))?;
            let v = dim
                .find(&value.token())
                .ok_or_else(|| err(format!("{} {value} not in {}", dim.name, dim.allowed())))?;
            canonical.set(key, v.clone());
        }
        self.options.iter().position(|o| *o == canonical).ok_or_else(|| {
            let rules = if self.rules.is_empty() { String::new() } else { format!(" ({})", self.rules.join("; ")) };
            err(format!("`{}` is not an option of this block{rules}", self.format_option(&canonical)))
        })
    }
}

/// How a space is instantiated: input size, width and classes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpaceConfig {
    /// Input height and width in pixels (square inputs).
    pub resolution: i64,
    /// Global channel multiplier applied to the reference layout (stem, blocks, head).
    pub width_mult: f64,
    /// Classifier outputs.
    pub num_classes: i64,
    /// Input channels (3 for RGB, 1 for greyscale).
    pub in_channels: i64,
}

impl Default for SpaceConfig {
    fn default() -> Self {
        Self { resolution: 224, width_mult: 1.0, num_classes: 1000, in_channels: 3 }
    }
}

impl SpaceConfig {
    /// Checks the ranges every space relies on.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(SdkError::Config(m));
        if !(8..=1024).contains(&self.resolution) {
            return bad(format!("resolution {} out of range 8..=1024", self.resolution));
        }
        if !(self.width_mult > 0.0 && self.width_mult <= 4.0) {
            return bad(format!("width multiplier {} out of range (0, 4]", self.width_mult));
        }
        if !(2..=100_000).contains(&self.num_classes) {
            return bad(format!("class count {} out of range 2..=100000", self.num_classes));
        }
        if !(1..=16).contains(&self.in_channels) {
            return bad(format!("input channels {} out of range 1..=16", self.in_channels));
        }
        Ok(())
    }

    /// `c * width_mult` rounded to a multiple of `divisor`, never below `divisor` and never
    /// more than 10% below the exact value (the MobileNet rule).
    pub fn channels(&self, c: i64, divisor: i64) -> i64 {
        make_divisible(c as f64 * self.width_mult, divisor)
    }
}

/// Rounds `x` to the nearest multiple of `divisor` (at least `divisor`), going up a step when
/// rounding would lose more than 10%: the rule of the MobileNet and EfficientNet references.
pub fn make_divisible(x: f64, divisor: i64) -> i64 {
    let d = divisor as f64;
    let mut v = (((x + d / 2.0) / d).floor() * d).max(d) as i64;
    if (v as f64) < 0.9 * x {
        v += divisor;
    }
    v
}

/// Adapts a reference stride layout (stem first, then blocks; strides 1 or 2) to `resolution`:
/// the total downsampling is capped so that the last feature map keeps at least 4x4 pixels.
/// Strides are removed from the earliest block first, then the latest, alternating inward, and
/// the stem's stride last, so small inputs keep the cheap early downsampling of the reference.
pub fn scaled_strides(reference: &[i64], resolution: i64) -> Vec<i64> {
    let total: i64 = reference.iter().product();
    let mut allowed = 1;
    while allowed * 2 <= total && resolution / (allowed * 2) >= 4 {
        allowed *= 2;
    }
    let mut strides = reference.to_vec();
    let mut excess = total / allowed;
    let block_positions: Vec<usize> = (1..strides.len()).filter(|&i| strides[i] > 1).collect();
    let (mut lo, mut hi) = (0usize, block_positions.len());
    let mut from_front = true;
    while excess > 1 && lo < hi {
        let pos = if from_front {
            lo += 1;
            block_positions[lo - 1]
        } else {
            hi -= 1;
            block_positions[hi]
        };
        from_front = !from_front;
        strides[pos] = 1;
        excess /= 2;
    }
    if excess > 1 && strides[0] > 1 {
        strides[0] = 1;
    }
    strides
}

/// A search space. Implementors describe layers and options; the provided methods do the rest.
pub trait SearchSpace: Send + Sync {
    /// The registered name (`mobilenet`).
    fn name(&self) -> &str;

    /// The configuration this instance was built for.
    fn config(&self) -> &SpaceConfig;

    /// The searchable blocks in order.
    fn blocks(&self) -> &[BlockSpec];

    /// The reference (teacher) network, expressed in the space's own options.
    fn teacher(&self) -> Architecture;

    /// The fixed layers before block 0.
    fn stem_layers(&self) -> Vec<LayerSpec>;

    /// The layers of `option` in block `block` (the option is already validated).
    fn block_layers(&self, block: usize, option: &BlockOption) -> Result<Vec<LayerSpec>>;

    /// The fixed layers after the last block, ending in class logits.
    fn head_layers(&self) -> Vec<LayerSpec>;

    /// The optimizer this space's networks should train with, when the preset's default
    /// (SGD) does not suit them.
    fn optimizer_hint(&self) -> Option<crate::optim::OptimizerHint> {
        None
    }

    /// The shape of one input sample.
    fn input_shape(&self) -> FeatureShape {
        let c = self.config();
        FeatureShape::new(c.in_channels, c.resolution, c.resolution)
    }

    /// The exact number of architectures.
    fn size(&self) -> SpaceSize {
        SpaceSize::product(self.blocks().iter().map(|b| b.options.len()))
    }

    /// Checks `arch` against the space and returns its option indices.
    fn validate(&self, arch: &Architecture) -> Result<Genome> {
        if arch.space != self.name() {
            return Err(SdkError::Arch(format!("architecture is for space `{}`, not `{}`", arch.space, self.name())));
        }
        let blocks = self.blocks();
        if arch.blocks.len() != blocks.len() {
            return Err(SdkError::Arch(format!(
                "space `{}` has {} blocks, the architecture has {}",
                self.name(),
                blocks.len(),
                arch.blocks.len()
            )));
        }
        let idx = blocks
            .iter()
            .zip(&arch.blocks)
            .enumerate()
            .map(|(i, (spec, o))| spec.option_index(i, o).map(|x| x as u32))
            .collect::<Result<Vec<_>>>()?;
        Ok(Genome(idx))
    }

    /// The architecture of a genome (indices must be in range).
    fn decode(&self, genome: &Genome) -> Architecture {
        let blocks = self.blocks().iter().zip(&genome.0).map(|(b, &i)| b.options[i as usize].clone()).collect();
        Architecture { space: self.name().to_owned(), blocks }
    }

    /// Parses `space:opt/opt/...` and validates it.
    fn parse_arch(&self, text: &str) -> Result<Architecture> {
        let text = text.trim();
        let (space, body) = text.split_once(':').ok_or_else(|| {
            SdkError::Arch(format!("`{text}` is not an architecture: expected `SPACE:OPTION/OPTION/...`"))
        })?;
        if space != self.name() {
            return Err(SdkError::Arch(format!("architecture is for space `{space}`, not `{}`", self.name())));
        }
        let parts: Vec<&str> = body.split('/').collect();
        let blocks = self.blocks();
        if parts.len() != blocks.len() {
            return Err(SdkError::Arch(format!(
                "space `{}` has {} blocks, the architecture has {}",
                self.name(),
                blocks.len(),
                parts.len()
            )));
        }
        let options =
            blocks.iter().zip(parts).enumerate().map(|(i, (b, p))| b.parse_option(i, p)).collect::<Result<Vec<_>>>()?;
        let arch = Architecture { space: self.name().to_owned(), blocks: options };
        let genome = self.validate(&arch)?;
        Ok(self.decode(&genome))
    }

    /// The text form `space:opt/opt/...`.
    fn format_arch(&self, arch: &Architecture) -> String {
        let parts: Vec<String> = self.blocks().iter().zip(&arch.blocks).map(|(b, o)| b.format_option(o)).collect();
        format!("{}:{}", arch.space, parts.join("/"))
    }

    /// A uniformly random architecture.
    fn sample(&self, rng: &mut SplitMix64) -> Genome {
        Genome(self.blocks().iter().map(|b| rng.below(b.options.len()) as u32).collect())
    }

    /// Re-draws each block with probability `rate`; at least one block changes when any block
    /// has more than one option.
    fn mutate(&self, genome: &Genome, rate: f64, rng: &mut SplitMix64) -> Genome {
        let blocks = self.blocks();
        let mut out = genome.clone();
        let redraw = |b: usize, cur: u32, rng: &mut SplitMix64| -> u32 {
            let n = blocks[b].options.len();
            if n < 2 {
                return cur;
            }
            // Draw among the other options so a mutation never silently keeps the value.
            let x = rng.below(n - 1) as u32;
            if x >= cur {
                x + 1
            } else {
                x
            }
        };
        let mut changed = false;
        for b in 0..blocks.len() {
            if rng.unit() < rate {
                let v = redraw(b, out.0[b], rng);
                changed |= v != out.0[b];
                out.0[b] = v;
            }
        }
        let mutable: Vec<usize> = (0..blocks.len()).filter(|&b| blocks[b].options.len() > 1).collect();
        if !changed && !mutable.is_empty() {
            let b = mutable[rng.below(mutable.len())];
            out.0[b] = redraw(b, out.0[b], rng);
        }
        out
    }

    /// Block-wise uniform crossover: each block comes from either parent.
    fn crossover(&self, a: &Genome, b: &Genome, rng: &mut SplitMix64) -> Genome {
        Genome(a.0.iter().zip(&b.0).map(|(&x, &y)| if rng.unit() < 0.5 { x } else { y }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_follows_the_mobilenet_rule() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(8.0, 8), 8);
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(24.0 * 0.75, 8), 24); // 18 -> 16 would lose 11%
        assert_eq!(make_divisible(96.0 * 0.35, 8), 32);
    }

    #[test]
    fn strides_shrink_for_small_inputs_and_keep_at_least_4x4() {
        let reference = [2, 2, 2, 2, 1, 2, 1];
        assert_eq!(scaled_strides(&reference, 224), reference.to_vec());
        assert_eq!(scaled_strides(&reference, 32), vec![2, 1, 2, 2, 1, 1, 1]);
        assert_eq!(scaled_strides(&reference, 64), vec![2, 1, 2, 2, 1, 2, 1]);
        assert_eq!(scaled_strides(&reference, 8), vec![2, 1, 1, 1, 1, 1, 1]);
        assert_eq!(scaled_strides(&reference, 4), vec![1, 1, 1, 1, 1, 1, 1]);
    }

    #[test]
    fn enumerate_options_applies_the_canonical_rule_and_dedups() {
        let dims = vec![Dimension::new("d", "depth", [1i64, 2]), Dimension::new("w", "width", [0.5, 1.0])];
        let opts = enumerate_options(&dims, |o| {
            if o.int("d").unwrap() == 1 {
                let mut c = BlockOption::new();
                c.set("d", 1i64);
                Some(c)
            } else {
                Some(o)
            }
        });
        assert_eq!(opts.len(), 3);
    }
}
