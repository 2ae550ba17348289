//! A per-block latency lookup table, built from measurements.
//!
//! The classic shortcut for hardware-aware search: time every option of every block once, in
//! isolation at the block's input shape, plus the stem and the head, and price a network as
//! the sum of its parts. It is cheap (one measurement per option instead of one per network)
//! but blind to what happens between blocks: caches warmed or flushed by the neighbours, the
//! per-call overheads of a runtime that fuses or overlaps work across blocks. The DONNA paper
//! measures whole networks for that reason; `donna cost lut-error` shows the error here.
//!
//! ```no_run
//! # use donna_sdk::{registry, SpaceConfig};
//! # use donna_device_measured::{lut::BlockLut, Measured};
//! let space = registry::space("mobilenet", &SpaceConfig::default())?;
//! let cpu = Measured::from_spec("cpu:threads=2")?;
//! let teacher = space.teacher();
//! let lut = BlockLut::build(&cpu, space.as_ref(), std::slice::from_ref(&teacher), 1)?;
//! println!("{:.3} ms", lut.latency_ms(space.as_ref(), &teacher)?);
//! # Ok::<(), donna_sdk::SdkError>(())
//! ```

use std::collections::BTreeMap;

use donna_sdk::cost::{CostModel, DeviceInfo, Latency};
use donna_sdk::network::{build_block, build_layers};
use donna_sdk::{Architecture, BlockOption, Result, SdkError, SearchSpace, SpaceConfig};
use serde::{Deserialize, Serialize};
use tch::nn::ModuleT;

use crate::{Measured, Workload};

/// Latencies of a network's parts, each timed alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockLut {
    /// The space the table is for.
    pub space: String,
    /// Its configuration (shapes depend on it).
    pub config: SpaceConfig,
    /// Batch size measured.
    pub batch: i64,
    /// Where it was measured.
    pub device: DeviceInfo,
    /// The stem's latency.
    pub stem: Latency,
    /// For each block, its options' latencies by option text.
    pub blocks: Vec<BTreeMap<String, Latency>>,
    /// The head's latency.
    pub head: Latency,
}

/// Whatever part of a network one table entry times.
enum Part {
    Stem,
    Block(usize, String),
    Head,
}

impl BlockLut {
    /// Times the stem, the head and every block option used by `archs` on `measured`, all
    /// interleaved, at `batch`.
    pub fn build(measured: &Measured, space: &dyn SearchSpace, archs: &[Architecture], batch: i64) -> Result<Self> {
        let specs = space.blocks();
        let mut options: Vec<BTreeMap<String, BlockOption>> = vec![BTreeMap::new(); specs.len()];
        for arch in archs {
            space.validate(arch)?;
            for (b, option) in arch.blocks.iter().enumerate() {
                options[b].entry(specs[b].format_option(option)).or_insert_with(|| option.clone());
            }
        }
        let boxed = |r: Result<_>| r.map(|m| Box::new(m) as Box<dyn ModuleT>);
        let mut parts = vec![Part::Stem];
        let mut workloads: Vec<Workload> = vec![measured.workload(space.input_shape(), batch, |root| {
            boxed(build_layers(&(root / "stem"), &space.stem_layers(), space.input_shape()).map(|(m, _)| m))
        })?];
        for (b, opts) in options.iter().enumerate() {
            for (text, option) in opts {
                parts.push(Part::Block(b, text.clone()));
                workloads
                    .push(measured.workload(specs[b].input, batch, |root| boxed(build_block(space, b, option, root)))?);
            }
        }
        let head_input = specs.last().map_or(space.input_shape(), |s| s.output);
        parts.push(Part::Head);
        workloads.push(measured.workload(head_input, batch, |root| {
            boxed(build_layers(&(root / "head"), &space.head_layers(), head_input).map(|(m, _)| m))
        })?);

        let refs: Vec<&Workload> = workloads.iter().collect();
        let timed = measured.time(&refs, None);
        let mut lut = Self {
            space: space.name().to_owned(),
            config: space.config().clone(),
            batch,
            device: measured.info(),
            stem: Latency { ms: 0.0, cv: None },
            blocks: vec![BTreeMap::new(); specs.len()],
            head: Latency { ms: 0.0, cv: None },
        };
        for (part, latency) in parts.into_iter().zip(timed) {
            let latency = latency.ok_or_else(|| SdkError::Config("a table entry was not measured".into()))?;
            match part {
                Part::Stem => lut.stem = latency,
                Part::Block(b, text) => {
                    lut.blocks[b].insert(text, latency);
                }
                Part::Head => lut.head = latency,
            }
        }
        Ok(lut)
    }

    /// Number of block options in the table.
    pub fn options(&self) -> usize {
        self.blocks.iter().map(BTreeMap::len).sum()
    }

    /// `arch`'s latency as the sum of its parts' (ms); fails if an option is not in the table.
    pub fn latency_ms(&self, space: &dyn SearchSpace, arch: &Architecture) -> Result<f64> {
        if space.name() != self.space || space.config() != &self.config {
            return Err(SdkError::Config(format!(
                "the table is for space `{}` with {:?}, not `{}` with {:?}",
                self.space,
                self.config,
                space.name(),
                space.config()
            )));
        }
        space.validate(arch)?;
        let mut ms = self.stem.ms + self.head.ms;
        for (b, option) in arch.blocks.iter().enumerate() {
            let text = space.blocks()[b].format_option(option);
            let entry = self
                .blocks
                .get(b)
                .and_then(|m| m.get(&text))
                .ok_or_else(|| SdkError::Config(format!("block {b} option {text} is not in the lookup table")))?;
            ms += entry.ms;
        }
        Ok(ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donna_layers as _;
    use donna_sdk::registry;
    use donna_space_mobilenet as _;

    #[test]
    fn the_table_holds_each_used_option_once_and_sums_stem_blocks_and_head() {
        let config = SpaceConfig { resolution: 16, width_mult: 0.25, num_classes: 10, in_channels: 3 };
        let space = registry::space("mobilenet", &config).unwrap();
        let cpu = Measured::from_spec("cpu:threads=1,warmup=1,repeats=3,rounds=2,max_rounds=2").unwrap();
        let teacher = space.teacher();
        let mut other = teacher.clone();
        other.blocks[0] = space.blocks()[0].options[0].clone();
        let lut = BlockLut::build(&cpu, space.as_ref(), &[teacher.clone(), other], 1).unwrap();
        let expected_options = space.blocks().len() + usize::from(space.blocks()[0].options[0] != teacher.blocks[0]);
        assert_eq!(lut.options(), expected_options);
        let sum = lut.stem.ms
            + lut.head.ms
            + teacher
                .blocks
                .iter()
                .enumerate()
                .map(|(b, o)| lut.blocks[b][&space.blocks()[b].format_option(o)].ms)
                .sum::<f64>();
        assert!((lut.latency_ms(space.as_ref(), &teacher).unwrap() - sum).abs() < 1e-9);

        let mut unseen = teacher.clone();
        unseen.blocks[1] = space.blocks()[1].options.iter().find(|o| **o != teacher.blocks[1]).unwrap().clone();
        let e = lut.latency_ms(space.as_ref(), &unseen).unwrap_err().to_string();
        assert!(e.contains("block 1") && e.contains("not in the lookup table"), "{e}");
    }
}
