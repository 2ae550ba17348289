//! # The `mobilenet` search space
//!
//! MobileNetV2-style inverted residual blocks around the MobileNetV2-1.0 layout, which is also
//! the teacher. Stem (3x3 conv, first inverted residual) and head (1x1 conv, classifier) are
//! fixed; six blocks are searched, one per stage of the reference:
//!
//! | block | out | stride (224 px) | teacher |
//! |---|---|---|---|
//! | b0 | 24 | 2 | k3-e6-d2-se0-w1 |
//! | b1 | 32 | 2 | k3-e6-d3-se0-w1 |
//! | b2 | 64 | 2 | k3-e6-d4-se0-w1 |
//! | b3 | 96 | 1 | k3-e6-d3-se0-w1 |
//! | b4 | 160 | 2 | k3-e6-d3-se0-w1 |
//! | b5 | 320 | 1 | k3-e6-d1-se0 |
//!
//! Per block: kernel `k` {3,5,7}, expansion `e` {2,3,4,6}, depth `d` {1..4}, squeeze-excite
//! `se` {0,1}, and width `w` {0.5,0.75,1} of the layers inside the block (at depth >= 2):
//! 240 options per block, 240^6 ~ 1.9e14 networks.
//!
//! Deviations from torchvision's MobileNetV2, on purpose: ReLU instead of ReLU6 (same
//! parameters; ReLU6's backward is 1.6x slower on CPU), and below width 1.0 the head's 1280
//! channels shrink with the width multiplier so small configurations stay small. At width 1.0
//! and 224 px the teacher has exactly torchvision's 3,504,872 parameters.

use donna_layers::stage;
use donna_sdk::registry::{BuiltinPlugin, SpaceFn};
use donna_sdk::{BlockOption, Dimension, LayerSpec, LayoutSpace, Result, Settings, SpaceConfig};

/// (output channels, stride at 224 px, teacher depth) of each block.
const BLOCKS: [(i64, i64, i64); 6] = [(24, 2, 2), (32, 2, 3), (64, 2, 4), (96, 1, 3), (160, 2, 3), (320, 1, 1)];

/// The per-block choices.
pub fn dimensions() -> Vec<Dimension> {
    vec![
        Dimension::new("k", "kernel", [3i64, 5, 7]),
        Dimension::new("e", "expansion", [2i64, 3, 4, 6]),
        Dimension::new("d", "depth", [1i64, 2, 3, 4]),
        Dimension::new("se", "squeeze-excite", [false, true]),
        Dimension::new("w", "width", [0.5, 0.75, 1.0]),
    ]
}

/// The teacher's option for a block of depth `d`.
fn teacher_option(d: i64) -> BlockOption {
    let o = BlockOption::new().with("k", 3i64).with("e", 6i64).with("d", d).with("se", false);
    if d > 1 {
        o.with("w", 1.0)
    } else {
        o
    }
}

/// The space for `config`.
pub fn space(config: &SpaceConfig) -> Result<LayoutSpace> {
    let reference: Vec<(i64, i64)> = BLOCKS.iter().map(|b| (b.0, b.1)).collect();
    let (stem_stride, blocks) = stage::blocks(config, &reference, &dimensions());
    let ch = |c: i64| config.channels(c, 8);
    let stem = vec![
        LayerSpec::new("conv_bn_act", Settings::new().with("out", ch(32)).with("k", 3i64).with("stride", stem_stride)),
        LayerSpec::new("mbconv", Settings::new().with("out", ch(16)).with("k", 3i64).with("e", 1i64)),
    ];
    let head = vec![
        LayerSpec::new("conv_bn_act", Settings::new().with("out", ch(1280)).with("k", 1i64)),
        LayerSpec::new("classifier", Settings::new().with("classes", config.num_classes).with("dropout", 0.2)),
    ];
    let teacher = BLOCKS.iter().map(|b| teacher_option(b.2)).collect();
    LayoutSpace::new(
        "mobilenet",
        config.clone(),
        stem,
        blocks,
        head,
        teacher,
        Box::new(|_, spec, option| stage::layers(spec, option, "relu")),
    )
}

static PROVIDER: SpaceFn = SpaceFn {
    name: "mobilenet",
    summary: "MobileNetV2-style inverted residuals; teacher MobileNetV2-1.0",
    build: |config| Ok(Box::new(space(config)?)),
};

inventory::submit! {
    BuiltinPlugin { spaces: &[&PROVIDER], ..BuiltinPlugin::empty("space-mobilenet", env!("CARGO_PKG_VERSION"), "the MobileNetV2 search space") }
}
