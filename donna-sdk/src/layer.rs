//! Layer types: the bricks that block options are made of.
//!
//! A search space never builds tensors itself: it describes each block option as a list of
//! [`LayerSpec`]s (a registered layer type's name plus its settings). The SDK then builds the
//! tch modules and computes the counters from the same description, so the two can never
//! disagree, and a plugin that registers a new [`LayerType`] makes it usable in every space
//! defined from layer names.

use serde::{Deserialize, Serialize};
use tch::nn;

use crate::counters::Op;
use crate::error::Result;
use crate::value::Settings;

/// The shape of one sample's feature map: channels x height x width.
///
/// Every layer takes and returns NCHW tensors; token-based layers (attention) reshape inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureShape {
    /// Channels (or embedding width).
    pub channels: i64,
    /// Height.
    pub height: i64,
    /// Width.
    pub width: i64,
}

impl FeatureShape {
    /// A `c x h x w` shape.
    pub fn new(channels: i64, height: i64, width: i64) -> Self {
        Self { channels, height, width }
    }

    /// Elements in one sample.
    pub fn elems(&self) -> u64 {
        crate::counters::prod(&[self.channels, self.height, self.width])
    }

    /// Spatial positions (tokens).
    pub fn positions(&self) -> i64 {
        self.height.saturating_mul(self.width)
    }

    /// The same map with another channel count.
    pub fn with_channels(&self, channels: i64) -> Self {
        Self { channels, ..*self }
    }

    /// The spatial size after a `k x k` convolution with `stride` and "same" padding `k / 2`.
    pub fn conv_output(&self, channels: i64, k: i64, stride: i64) -> Self {
        // Saturating, so absurd sizes give an absurd shape (refused by the caller), not a panic.
        let out =
            |n: i64| n.saturating_add(2 * (k / 2)).saturating_sub(k).checked_div(stride).unwrap_or(0).saturating_add(1);
        Self { channels, height: out(self.height), width: out(self.width) }
    }

    /// The shape as a batch tensor's size.
    pub fn batch(&self, n: i64) -> [i64; 4] {
        [n, self.channels, self.height, self.width]
    }
}

impl std::fmt::Display for FeatureShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.channels, self.height, self.width)
    }
}

/// One layer of a network: a registered layer type and its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// The [`LayerType::name`] to build it with.
    pub kind: String,
    /// Its settings (output channels, kernel, stride...).
    pub settings: Settings,
}

impl LayerSpec {
    /// A layer of type `kind` with `settings`.
    pub fn new(kind: &str, settings: Settings) -> Self {
        Self { kind: kind.to_owned(), settings }
    }
}

/// A built layer: a tch module that maps NCHW to NCHW.
pub type LayerModule = Box<dyn nn::ModuleT + Send>;

/// A kind of layer that spaces can use by name.
///
/// Implementations must keep [`LayerType::ops`] in exact agreement with what
/// [`LayerType::build`] creates: the parameter count of the ops equals the number of trainable
/// elements registered under the path (the SDK's tests check this for every built-in layer).
pub trait LayerType: Send + Sync {
    /// The registered name, e.g. `mbconv`.
    fn name(&self) -> &str;

    /// One line for `donna layers`.
    fn summary(&self) -> &str;

    /// The output shape for `input`, or an error naming the bad setting.
    fn output_shape(&self, settings: &Settings, input: FeatureShape) -> Result<FeatureShape>;

    /// The primitive ops this layer performs on one sample of `input`.
    fn ops(&self, settings: &Settings, input: FeatureShape) -> Result<Vec<Op>>;

    /// Builds the layer, registering its parameters under `path`.
    fn build(&self, path: &nn::Path, settings: &Settings, input: FeatureShape) -> Result<LayerModule>;
}
