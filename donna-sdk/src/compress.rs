//! Hardware-aware compression as in the DONNA paper: a given model becomes the teacher, and a
//! space of smaller options is built around each of its blocks.
//!
//! `compress:ARCH` (e.g. `compress:mobilenet:k3-e6-d2-se0-w1/...`) is a search space: the
//! space of `ARCH` whose teacher is `ARCH` and whose block `b` offers every option of the
//! original block that costs no more than `ARCH`'s own option in both MACs and parameters:
//! narrower, shallower, smaller kernels, without squeeze-excite, cheaper layer types, and the
//! option itself. Distillation, the predictor, search and finetuning then run on it unchanged,
//! with the model's own weights imported as the teacher (`donna compress`).

use crate::arch::{Architecture, BlockOption};
use crate::error::{Result, SdkError};
use crate::layer::LayerSpec;
use crate::network::count_block;
use crate::optim::OptimizerHint;
use crate::registry;
use crate::space::{BlockSpec, SearchSpace, SpaceConfig};

/// The compression space around `teacher` in `inner`.
pub struct CompressSpace {
    inner: Box<dyn SearchSpace>,
    name: String,
    teacher: Architecture,
    blocks: Vec<BlockSpec>,
}

/// The spec prefix of compression spaces.
pub const PREFIX: &str = "compress:";

impl CompressSpace {
    /// The space around `arch_text` (`SPACE:OPT/...`) for `config`.
    pub fn new(arch_text: &str, config: &SpaceConfig) -> Result<Self> {
        let (space_name, _) = arch_text.split_once(':').ok_or_else(|| {
            SdkError::Arch(format!("`{PREFIX}{arch_text}`: expected {PREFIX}SPACE:OPTION/OPTION/..."))
        })?;
        if space_name.starts_with("compress") {
            return Err(SdkError::Config(
                "a compression space cannot be compressed again; give the model's own space".into(),
            ));
        }
        let inner = registry::space(space_name, config)?;
        let teacher = inner.parse_arch(arch_text)?;
        let genome = inner.validate(&teacher)?;
        let mut blocks = Vec::new();
        for (b, spec) in inner.blocks().iter().enumerate() {
            let own = count_block(inner.as_ref(), b, &spec.options[genome.option(b)])?.counters;
            let mut options: Vec<BlockOption> = Vec::new();
            for option in &spec.options {
                let c = count_block(inner.as_ref(), b, option)?.counters;
                if c.macs <= own.macs && c.params <= own.params {
                    options.push(option.clone());
                }
            }
            let mut rules = spec.rules.clone();
            rules.push(format!(
                "compression keeps the {} options of {} no larger than the model's `{}`",
                options.len(),
                spec.options.len(),
                spec.format_option(&spec.options[genome.option(b)])
            ));
            blocks.push(BlockSpec { options, rules, ..spec.clone() });
        }
        Ok(Self { name: inner.name().to_owned(), inner, teacher, blocks })
    }
}

impl SearchSpace for CompressSpace {
    fn name(&self) -> &str {
        &self.name
    }
    fn config(&self) -> &SpaceConfig {
        self.inner.config()
    }
    fn blocks(&self) -> &[BlockSpec] {
        &self.blocks
    }
    fn teacher(&self) -> Architecture {
        self.teacher.clone()
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
