//! # The `attention` search space
//!
//! A vision-transformer space around a DeiT-style teacher (DeiT-Tiny at width 1.0: embedding
//! 192, 3 heads, MLP ratio 4, 12 layers), split into four blocks of three layers. Each block
//! chooses its token mixing `x` {attn, conv} (self-attention, or a depthwise 3x3 conv as in
//! hybrid conv/attention models), inner embedding width `w` {0.5,0.75,1} (with 1x1 projections
//! in and out when narrower), heads `h` {2,3,4} (attention only), MLP ratio `m` {2,3,4} and
//! depth `d` {1..4}: 144 options per block, ~4.3e8 networks.
//!
//! Scaled to the input: patches of 16 px from 128 px up (14x14 tokens at 224), otherwise
//! `resolution / 8` px (8x8 tokens). Widths are multiples of 12 so any head count divides them.
//! Its networks train with AdamW (lr 2e-3, weight decay 0.05) instead of the presets' SGD,
//! as transformers do. Differences from DeiT, on purpose: no class token (the head averages the tokens, then a
//! layer norm), so at 224 px and width 1.0 the teacher has DeiT-Tiny's 5,717,416 parameters
//! minus the class token and its position (384): 5,717,032.

use donna_sdk::optim::{OptimizerHint, OptimizerKind};
use donna_sdk::registry::{BuiltinPlugin, SpaceFn};
use donna_sdk::space::{enumerate_options, make_divisible};
use donna_sdk::{
    BlockOption, BlockSpec, Dimension, FeatureShape, LayerSpec, LayoutSpace, Result, SdkError, Settings, SpaceConfig,
};

/// Searchable blocks.
const BLOCKS: usize = 4;

/// The per-block choices.
pub fn dimensions() -> Vec<Dimension> {
    vec![
        Dimension::new("x", "token mixing", ["attn", "conv"]),
        Dimension::new("w", "width", [0.5, 0.75, 1.0]),
        Dimension::new("h", "heads", [2i64, 3, 4]),
        Dimension::new("m", "mlp ratio", [2i64, 3, 4]),
        Dimension::new("d", "depth", [1i64, 2, 3, 4]),
    ]
}

/// Patch size for a resolution.
pub fn patch_size(resolution: i64) -> Result<i64> {
    let patch = if resolution >= 128 { 16 } else { (resolution / 8).max(1) };
    if resolution % patch != 0 {
        return Err(SdkError::Config(format!(
            "attention space: resolution {resolution} is not a multiple of its patch size {patch}"
        )));
    }
    Ok(patch)
}

fn expand(spec: &BlockSpec, option: &BlockOption) -> Result<Vec<LayerSpec>> {
    let dim = spec.output.channels;
    let inner = make_divisible(dim as f64 * option.float("w")?, 12);
    let mut layers = Vec::new();
    if inner != dim {
        layers.push(LayerSpec::new("pointwise", Settings::new().with("out", inner)));
    }
    let mlp = option.int("m")?;
    for _ in 0..option.int("d")? {
        layers.push(match option.name("x")? {
            "attn" => LayerSpec::new("transformer", Settings::new().with("heads", option.int("h")?).with("mlp", mlp)),
            _ => LayerSpec::new("conv_mixer", Settings::new().with("mlp", mlp)),
        });
    }
    if inner != dim {
        layers.push(LayerSpec::new("pointwise", Settings::new().with("out", dim)));
    }
    Ok(layers)
}

/// The space for `config`.
pub fn space(config: &SpaceConfig) -> Result<LayoutSpace> {
    let dim = config.channels(192, 12);
    let stem = vec![LayerSpec::new(
        "patch_embed",
        Settings::new().with("out", dim).with("patch", patch_size(config.resolution)?),
    )];
    let dims = dimensions();
    let options = enumerate_options(&dims, |o| {
        if o.name("x").ok() == Some("conv") {
            let mut c = BlockOption::new();
            for (k, v) in o.iter().filter(|(k, _)| *k != "h") {
                c.set(k, v.clone());
            }
            return Some(c);
        }
        Some(o)
    });
    let blocks = (0..BLOCKS)
        .map(|_| BlockSpec {
            input: FeatureShape::new(0, 0, 0),
            output: FeatureShape::new(dim, 0, 0),
            stride: 1,
            dims: dims.clone(),
            options: options.clone(),
            rules: vec!["heads `h` applies only to attention mixing (`xattn`) and must be given there".to_owned()],
        })
        .collect();
    let head =
        vec![LayerSpec::new("classifier", Settings::new().with("classes", config.num_classes).with("norm", "ln"))];
    let teacher_option =
        BlockOption::new().with("x", "attn").with("w", 1.0).with("h", 3i64).with("m", 4i64).with("d", 3i64);
    LayoutSpace::new(
        "attention",
        config.clone(),
        stem,
        blocks,
        head,
        vec![teacher_option; BLOCKS],
        Box::new(|_, spec, option| expand(spec, option)),
    )
    .map(|s| s.with_optimizer_hint(OptimizerHint { kind: OptimizerKind::Adamw, lr: 2e-3, weight_decay: 0.05 }))
}

static PROVIDER: SpaceFn = SpaceFn {
    name: "attention",
    summary: "ViT blocks with attention or conv token mixing; teacher DeiT-Tiny-style",
    build: |config| Ok(Box::new(space(config)?)),
};

inventory::submit! {
    BuiltinPlugin { spaces: &[&PROVIDER], ..BuiltinPlugin::empty("space-attention", env!("CARGO_PKG_VERSION"), "the attention (vision transformer) search space") }
}
