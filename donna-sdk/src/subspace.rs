//! A space restricted to some options per block: the options that were distilled.
//!
//! The predictor knows only the options that have an NSR, so sampling for the predictor and
//! searching must stay inside them. [`Restricted`] is a [`SearchSpace`] with the same name,
//! layers and teacher whose blocks list only the kept options, so every searcher, sampler and
//! parser works on it unchanged, and its architectures are valid in the full space.

use crate::arch::{Architecture, BlockOption};
use crate::error::{Result, SdkError};
use crate::layer::LayerSpec;
use crate::optim::OptimizerHint;
use crate::space::{BlockSpec, SearchSpace, SpaceConfig};

/// `inner` with, in block `b`, only the options `keep[b]` (indices into the full list).
pub struct Restricted<'a> {
    inner: &'a dyn SearchSpace,
    blocks: Vec<BlockSpec>,
}

impl<'a> Restricted<'a> {
    /// Keeps options `keep[b]` of each block `b`.
    pub fn new(inner: &'a dyn SearchSpace, keep: &[Vec<usize>]) -> Result<Self> {
        let full = inner.blocks();
        if keep.len() != full.len() {
            return Err(SdkError::Config(format!(
                "a restriction of `{}` needs an option list for each of its {} blocks, got {}",
                inner.name(),
                full.len(),
                keep.len()
            )));
        }
        let mut blocks = Vec::with_capacity(full.len());
        for (b, (spec, kept)) in full.iter().zip(keep).enumerate() {
            if kept.is_empty() {
                return Err(SdkError::Config(format!("block {b} has no distilled option")));
            }
            let mut sorted = kept.clone();
            sorted.sort_unstable();
            sorted.dedup();
            let options = sorted
                .iter()
                .map(|&o| {
                    spec.options.get(o).cloned().ok_or_else(|| {
                        SdkError::Config(format!("block {b}: option {o} out of range ({} options)", spec.options.len()))
                    })
                })
                .collect::<Result<Vec<BlockOption>>>()?;
            let mut rules = spec.rules.clone();
            rules.push(format!("only the {} distilled options of {} are searched", options.len(), spec.options.len()));
            blocks.push(BlockSpec { options, rules, ..spec.clone() });
        }
        Ok(Self { inner, blocks })
    }

    /// The full space.
    pub fn inner(&self) -> &dyn SearchSpace {
        self.inner
    }
}

impl SearchSpace for Restricted<'_> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn config(&self) -> &SpaceConfig {
        self.inner.config()
    }

    fn blocks(&self) -> &[BlockSpec] {
        &self.blocks
    }

    fn teacher(&self) -> Architecture {
        self.inner.teacher()
    }

    fn stem_layers(&self) -> Vec<LayerSpec> {
        self.inner.stem_layers()
    }

    fn block_layers(&self, block: usize, option: &BlockOption) -> Result<Vec<LayerSpec>> {
        self.inner.block_layers(block, option)
    }

    fn head_layers(&self) -> Vec<LayerSpec> {
        self.inner.head_layers()
    }

    fn optimizer_hint(&self) -> Option<OptimizerHint> {
        self.inner.optimizer_hint()
    }
}
