//! Blocks made of inverted residuals, shared by the MobileNet and EfficientNet spaces.
//!
//! A block option `{t, k, e, d, se, a, w}` becomes `d` layers of type `t` (`mb` or `fused`):
//! the first carries the block's stride, the last produces the block's output channels, and the
//! layers in between run at `w` times the output width. Width does not apply at depth 1, so
//! those options have no `w` (and the space has no duplicate networks).

use donna_sdk::space::{enumerate_options, make_divisible, scaled_strides};
use donna_sdk::{BlockOption, BlockSpec, Dimension, FeatureShape, LayerSpec, Result, SdkError, Settings, SpaceConfig};

/// Rule text shown when a combination is not an option.
pub const WIDTH_RULE: &str = "width `w` applies only at depth >= 2 and must be given there";

/// All options over `dims`, dropping `w` at depth 1.
pub fn options(dims: &[Dimension]) -> Vec<BlockOption> {
    enumerate_options(dims, |mut o| {
        if o.int("d").ok() == Some(1) {
            let mut c = BlockOption::new();
            for (k, v) in o.iter().filter(|(k, _)| *k != "w") {
                c.set(k, v.clone());
            }
            o = c;
        }
        Some(o)
    })
}

/// The stem's stride and the blocks of a space whose reference layout (at 224 px) is a stride-2
/// stem followed by blocks of `(output channels, stride)`, scaled to `config`: channels by the
/// width multiplier, strides by the resolution. Every block offers all options over `dims`.
pub fn blocks(config: &SpaceConfig, reference: &[(i64, i64)], dims: &[Dimension]) -> (i64, Vec<BlockSpec>) {
    let mut layout = vec![2];
    layout.extend(reference.iter().map(|b| b.1));
    let strides = scaled_strides(&layout, config.resolution);
    let options = options(dims);
    let blocks = reference
        .iter()
        .zip(&strides[1..])
        .map(|(&(out, _), &stride)| BlockSpec {
            input: FeatureShape::new(0, 0, 0),
            output: FeatureShape::new(config.channels(out, 8), 0, 0),
            stride,
            dims: dims.to_vec(),
            options: options.clone(),
            rules: vec![WIDTH_RULE.to_owned()],
        })
        .collect();
    (strides[0], blocks)
}

/// The layers of `option` in block `spec`; `act` and `kind` apply where the option has no `a`
/// or `t` setting.
pub fn layers(spec: &BlockSpec, option: &BlockOption, act: &str) -> Result<Vec<LayerSpec>> {
    let out = spec.output.channels;
    let depth = option.int("d")?;
    let width = option.float_or("w", 1.0)?;
    let kind = match option.name_or("t", "mb")? {
        "mb" => "mbconv",
        "fused" => "fused_mbconv",
        other => return Err(SdkError::Setting(format!("layer type `{other}` not in {{mb,fused}}"))),
    };
    let act = option.name_or("a", act)?;
    let inner = make_divisible(out as f64 * width, 8);
    (0..depth)
        .map(|i| {
            let settings = Settings::new()
                .with("out", if i == depth - 1 { out } else { inner })
                .with("k", option.int("k")?)
                .with("e", option.int("e")?)
                .with("stride", if i == 0 { spec.stride } else { 1 })
                .with("se", option.flag_or("se", false)?)
                .with("act", act);
            Ok(LayerSpec::new(kind, settings))
        })
        .collect::<Result<Vec<_>>>()
}
