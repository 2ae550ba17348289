//! # The `efficientnet` search space
//!
//! EfficientNet-B0-style blocks with MBConv or fused-MBConv layers around the EfficientNet-B0
//! layout, which is also the teacher. Stem (3x3 conv, first MBConv) and head (1x1 conv,
//! classifier) are fixed; six blocks are searched:
//!
//! | block | out | stride (224 px) | teacher |
//! |---|---|---|---|
//! | b0 | 24 | 2 | tmb-k3-e6-d2-se1-aswish-w1 |
//! | b1 | 40 | 2 | tmb-k5-e6-d2-se1-aswish-w1 |
//! | b2 | 80 | 2 | tmb-k3-e6-d3-se1-aswish-w1 |
//! | b3 | 112 | 1 | tmb-k5-e6-d3-se1-aswish-w1 |
//! | b4 | 192 | 2 | tmb-k5-e6-d4-se1-aswish-w1 |
//! | b5 | 320 | 1 | tmb-k3-e6-d1-se1-aswish |
//!
//! Per block: layer type `t` {mb, fused}, kernel `k` {3,5,7}, expansion `e` {2,3,4,6}, depth
//! `d` {1..4}, squeeze-excite `se` {0,1}, activation `a` {relu, swish}, and width `w`
//! {0.5,0.75,1} of the inner layers (at depth >= 2): 960 options per block, ~7.8e17 networks.
//!
//! At width 1.0 and 224 px the teacher has exactly torchvision's EfficientNet-B0 parameter
//! count (5,288,548); below width 1.0 the head shrinks with the width multiplier.

use donna_layers::stage;
use donna_sdk::registry::{BuiltinPlugin, SpaceFn};
use donna_sdk::{BlockOption, Dimension, LayerSpec, LayoutSpace, Result, Settings, SpaceConfig};

/// (output channels, stride at 224 px, teacher kernel, teacher depth) of each block.
const BLOCKS: [(i64, i64, i64, i64); 6] =
    [(24, 2, 3, 2), (40, 2, 5, 2), (80, 2, 3, 3), (112, 1, 5, 3), (192, 2, 5, 4), (320, 1, 3, 1)];

/// The per-block choices.
pub fn dimensions() -> Vec<Dimension> {
    vec![
        Dimension::new("t", "layer type", ["mb", "fused"]),
        Dimension::new("k", "kernel", [3i64, 5, 7]),
        Dimension::new("e", "expansion", [2i64, 3, 4, 6]),
        Dimension::new("d", "depth", [1i64, 2, 3, 4]),
        Dimension::new("se", "squeeze-excite", [false, true]),
        Dimension::new("a", "activation", ["relu", "swish"]),
        Dimension::new("w", "width", [0.5, 0.75, 1.0]),
    ]
}

fn teacher_option(k: i64, d: i64) -> BlockOption {
    let o = BlockOption::new()
        .with("t", "mb")
        .with("k", k)
        .with("e", 6i64)
        .with("d", d)
        .with("se", true)
        .with("a", "swish");
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
        LayerSpec::new(
            "conv_bn_act",
            Settings::new().with("out", ch(32)).with("k", 3i64).with("stride", stem_stride).with("act", "swish"),
        ),
        LayerSpec::new(
            "mbconv",
            Settings::new().with("out", ch(16)).with("k", 3i64).with("e", 1i64).with("se", true).with("act", "swish"),
        ),
    ];
    let head = vec![
        LayerSpec::new("conv_bn_act", Settings::new().with("out", ch(1280)).with("k", 1i64).with("act", "swish")),
        LayerSpec::new("classifier", Settings::new().with("classes", config.num_classes).with("dropout", 0.2)),
    ];
    let teacher = BLOCKS.iter().map(|b| teacher_option(b.2, b.3)).collect();
    LayoutSpace::new(
        "efficientnet",
        config.clone(),
        stem,
        blocks,
        head,
        teacher,
        Box::new(|_, spec, option| stage::layers(spec, option, "swish")),
    )
}

static PROVIDER: SpaceFn = SpaceFn {
    name: "efficientnet",
    summary: "EfficientNet-B0-style MBConv / fused-MBConv, ReLU or Swish; teacher EfficientNet-B0",
    build: |config| Ok(Box::new(space(config)?)),
};

inventory::submit! {
    BuiltinPlugin { spaces: &[&PROVIDER], ..BuiltinPlugin::empty("space-efficientnet", env!("CARGO_PKG_VERSION"), "the EfficientNet search space") }
}
