//! # Built-in layer types
//!
//! The bricks of the built-in search spaces, registered with `inventory` under these names:
//!
//! | name | what | settings |
//! |---|---|---|
//! | `conv_bn_act` | conv + batch norm + activation | `out`, `k`, `stride`=1, `groups`=1, `act`=relu |
//! | `pointwise` | 1x1 conv with bias (a per-position linear map) | `out` |
//! | `mbconv` | inverted residual (MobileNetV2 / EfficientNet MBConv) | `out`, `k`, `e`, `stride`=1, `se`=false, `act`=relu |
//! | `fused_mbconv` | fused inverted residual (EfficientNetV2) | as `mbconv` |
//! | `transformer` | pre-norm ViT layer: self-attention + MLP | `heads`, `mlp` |
//! | `conv_mixer` | the same layer with depthwise-conv token mixing | `mlp`, `k`=3 |
//! | `patch_embed` | non-overlapping patch projection + position embedding | `out`, `patch` |
//! | `classifier` | global average pool, optional layer norm, dropout, linear | `classes`, `norm`=none, `dropout`=0 |
//!
//! Each type is written once as a config struct ([`LayerConfig`]): its ops and its tch module
//! come from the same parsed settings, so counters and modules cannot drift apart.
#![deny(missing_docs)]

use std::marker::PhantomData;

use donna_sdk::registry::BuiltinPlugin;
use donna_sdk::{FeatureShape, LayerModule, LayerType, Op, Result, Settings};
use tch::nn;

pub mod classifier;
pub mod conv;
pub mod embed;
pub mod mbconv;
pub mod parts;
pub mod stage;
pub mod transformer;

/// A layer type's parsed settings for a given input.
pub trait LayerConfig: Sized {
    /// Parses and checks `settings` for `input`.
    fn parse(settings: &Settings, input: FeatureShape) -> Result<Self>;
    /// The output shape.
    fn output(&self) -> FeatureShape;
    /// The primitive ops on one sample.
    fn ops(&self) -> Vec<Op>;
    /// The module, with parameters under `path`.
    fn build(&self, path: &nn::Path) -> Result<LayerModule>;
}

/// Adapts a [`LayerConfig`] into a registered [`LayerType`].
pub struct Kind<C> {
    name: &'static str,
    summary: &'static str,
    config: PhantomData<fn() -> C>,
}

impl<C> Kind<C> {
    /// A layer type called `name`.
    pub const fn new(name: &'static str, summary: &'static str) -> Self {
        Self { name, summary, config: PhantomData }
    }
}

impl<C: LayerConfig> LayerType for Kind<C> {
    fn name(&self) -> &str {
        self.name
    }
    fn summary(&self) -> &str {
        self.summary
    }
    fn output_shape(&self, settings: &Settings, input: FeatureShape) -> Result<FeatureShape> {
        Ok(C::parse(settings, input)?.output())
    }
    fn ops(&self, settings: &Settings, input: FeatureShape) -> Result<Vec<Op>> {
        Ok(C::parse(settings, input)?.ops())
    }
    fn build(&self, path: &nn::Path, settings: &Settings, input: FeatureShape) -> Result<LayerModule> {
        C::parse(settings, input)?.build(path)
    }
}

static CONV_BN_ACT: Kind<conv::ConvBnAct> = Kind::new("conv_bn_act", "convolution + batch norm + activation");
static POINTWISE: Kind<conv::Pointwise> = Kind::new("pointwise", "1x1 convolution with bias (per-position linear map)");
static MBCONV: Kind<mbconv::MbConv> =
    Kind::new("mbconv", "inverted residual: 1x1 expand, kxk depthwise, optional squeeze-excite, 1x1 project");
static FUSED_MBCONV: Kind<mbconv::FusedMbConv> =
    Kind::new("fused_mbconv", "fused inverted residual: kxk expand, optional squeeze-excite, 1x1 project");
static TRANSFORMER: Kind<transformer::Transformer> =
    Kind::new("transformer", "pre-norm ViT layer: multi-head self-attention + MLP over positions");
static CONV_MIXER: Kind<transformer::ConvMixer> =
    Kind::new("conv_mixer", "ViT-shaped layer with depthwise-conv token mixing instead of attention");
static PATCH_EMBED: Kind<embed::PatchEmbed> =
    Kind::new("patch_embed", "non-overlapping patch projection + learned position embedding");
static CLASSIFIER: Kind<classifier::Classifier> =
    Kind::new("classifier", "global average pool, optional layer norm, dropout, linear");

inventory::submit! {
    BuiltinPlugin {
        layer_types: &[&CONV_BN_ACT, &POINTWISE, &MBCONV, &FUSED_MBCONV, &TRANSFORMER, &CONV_MIXER, &PATCH_EMBED, &CLASSIFIER],
        ..BuiltinPlugin::empty("layers", env!("CARGO_PKG_VERSION"), "the built-in layer types of the MobileNet, EfficientNet and attention spaces")
    }
}

#[cfg(test)]
mod tests;
