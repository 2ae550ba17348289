//! Accuracy predictors: from per-block quality (NSR) features to accuracy.
//!
//! A predictor is fitted once per space and reused for every device, so it is a value that can
//! be saved (`to_json`) and reloaded by its provider.

use crate::error::Result;

/// A model from features (one per block, plus whatever the model adds) to accuracy.
pub trait Predictor: Send + Sync {
    /// Name, e.g. `linear`, `ridge`, `mlp`.
    fn name(&self) -> &str;

    /// Fits the model to `features[i] -> targets[i]`.
    fn fit(&mut self, features: &[Vec<f64>], targets: &[f64]) -> Result<()>;

    /// Predicted accuracy for one feature vector.
    fn predict(&self, features: &[f64]) -> Result<f64>;

    /// The fitted state, to persist in `predictor.json`.
    fn to_json(&self) -> serde_json::Value;
}
