//! [`LayoutSpace`]: a search space given as data (stem, blocks, head, teacher and a rule that
//! turns a block option into layers).
//!
//! The built-in spaces are each a function that fills one in, and so can spaces read from
//! files or contributed by plugins. Block input and output shapes are not written by hand: they
//! are traced through the teacher, so every block's contract is the teacher's own.

use crate::arch::{Architecture, BlockOption};
use crate::error::{Result, SdkError};
use crate::layer::{FeatureShape, LayerSpec};
use crate::network::count_layers;
use crate::optim::OptimizerHint;
use crate::space::{BlockSpec, SearchSpace, SpaceConfig};

/// Turns option `option` of block `block` (whose spec is given) into layers.
pub type ExpandFn = dyn Fn(usize, &BlockSpec, &BlockOption) -> Result<Vec<LayerSpec>> + Send + Sync;

/// A search space described by data.
pub struct LayoutSpace {
    name: String,
    config: SpaceConfig,
    stem: Vec<LayerSpec>,
    blocks: Vec<BlockSpec>,
    head: Vec<LayerSpec>,
    teacher: Vec<BlockOption>,
    expand: Box<ExpandFn>,
    optimizer_hint: Option<OptimizerHint>,
}

impl LayoutSpace {
    /// Assembles a space. Each block declares its output channels in `output.channels`; input
    /// shapes and spatial sizes are traced through the stem and the `teacher`'s options. Fails if the teacher is not an
    /// architecture of the space or its layers do not fit together.
    pub fn new(
        name: &str,
        config: SpaceConfig,
        stem: Vec<LayerSpec>,
        mut blocks: Vec<BlockSpec>,
        head: Vec<LayerSpec>,
        teacher: Vec<BlockOption>,
        expand: Box<ExpandFn>,
    ) -> Result<Self> {
        if teacher.len() != blocks.len() {
            return Err(SdkError::Config(format!(
                "{name}: teacher has {} blocks, space has {}",
                teacher.len(),
                blocks.len()
            )));
        }
        let input = FeatureShape::new(config.in_channels, config.resolution, config.resolution);
        let mut shape = count_layers("stem", &stem, input)?.output;
        for (b, (spec, option)) in blocks.iter_mut().zip(&teacher).enumerate() {
            spec.option_index(b, option).map_err(|e| SdkError::Config(format!("{name} teacher: {e}")))?;
            spec.input = shape;
            shape = count_layers(&format!("b{b}"), &expand(b, spec, option)?, shape)?.output;
            if shape.channels != spec.output.channels {
                return Err(SdkError::Config(format!(
                    "{name} block {b}: declares {} output channels, its teacher option produces {}",
                    spec.output.channels, shape.channels
                )));
            }
            spec.output = shape;
        }
        count_layers("head", &head, shape)?;
        Ok(Self { name: name.to_owned(), config, stem, blocks, head, teacher, expand, optimizer_hint: None })
    }

    /// Builder: the optimizer the space's networks train with (see
    /// [`SearchSpace::optimizer_hint`]).
    pub fn with_optimizer_hint(mut self, hint: OptimizerHint) -> Self {
        self.optimizer_hint = Some(hint);
        self
    }
}

impl SearchSpace for LayoutSpace {
    fn name(&self) -> &str {
        &self.name
    }
    fn config(&self) -> &SpaceConfig {
        &self.config
    }
    fn blocks(&self) -> &[BlockSpec] {
        &self.blocks
    }
    fn teacher(&self) -> Architecture {
        Architecture { space: self.name.clone(), blocks: self.teacher.clone() }
    }
    fn stem_layers(&self) -> Vec<LayerSpec> {
        self.stem.clone()
    }
    fn block_layers(&self, block: usize, option: &BlockOption) -> Result<Vec<LayerSpec>> {
        let spec = self.blocks.get(block).ok_or_else(|| SdkError::Arch(format!("block {block} does not exist")))?;
        (self.expand)(block, spec, option)
    }
    fn head_layers(&self) -> Vec<LayerSpec> {
        self.head.clone()
    }
    fn optimizer_hint(&self) -> Option<OptimizerHint> {
        self.optimizer_hint
    }
}
