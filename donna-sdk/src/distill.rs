//! Blockwise knowledge distillation (BKD): every selected option of every block learns to
//! reproduce the teacher's block, alone, and its held-out NSR becomes its quality.
//!
//! Work is split into units, one per (block, option). A unit's result depends only on the run
//! seed, the block and the option (its initial weights and the batch sequence of its block are
//! seeded by those), never on which other units share its process, pass or shard. So units can
//! be trained K at a time on one teacher pass, in any number of shards, and resumed after a
//! crash, all giving the same table.
//!
//! Cost: the teacher's forward pass up to block `b` runs once per batch for a group of up to K
//! options of block `b`, so its cost is `steps × (blocks × options / K)` block-prefix passes,
//! while the options' own training is `steps × blocks × options` block passes: BKD grows
//! linearly with the number of options and blocks, and K divides only the teacher's share.
//!
//! Artifacts: `DIR/bkd/b<block>/o<option>.safetensors` (the option's weights, named as in a
//! whole network: `blocks.<b>.…`) and `.json` (its result); `DIR/quality.json` once every
//! planned unit is done.

use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::Tensor;

use crate::arch::Architecture;
use crate::artifact;
use crate::checkpoint;
use crate::data::{Augment, Loader, LoaderConfig, Split};
use crate::error::{Result, SdkError};
use crate::network::{build_block, build_network, count_block, use_channels_last, LayerStack, Network};
use crate::nsr::{nsr_loss, NsrAccumulator};
use crate::optim::{Cosine, Optimizer, OptimizerConfig, OptimizerKind};
use crate::progress::Progress;
use crate::rng::SplitMix64;
use crate::run_dir::RunDir;
use crate::space::SearchSpace;
use crate::train::TrainData;

/// How options are distilled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// Training steps per option.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate (AdamW, cosine schedule, 5% warm-up).
    pub lr: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Held-out validation images the NSR is measured on.
    pub val_images: usize,
    /// Options of a block trained together on one teacher pass.
    pub options_per_pass: usize,
    /// Options distilled per block (a seeded sample that always includes the teacher's);
    /// `None` = all.
    pub max_options: Option<usize>,
}

/// One (block, option) work unit; `option` indexes the block's option list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Unit {
    /// Block index.
    pub block: usize,
    /// Option index.
    pub option: usize,
}

/// The result of one unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnitResult {
    /// Block index.
    pub block: usize,
    /// Option index in the block's list.
    pub option: usize,
    /// The option in text form (`k5-e4-d2-se0-w1`).
    pub option_text: String,
    /// Held-out NSR after training: the quality metric (lower is better).
    pub nsr: f64,
    /// The metric's definition ([`crate::nsr::METRIC`]).
    pub metric: String,
    /// Held-out NSR of the untrained option, for reference.
    pub initial_nsr: f64,
    /// Training NSR averaged over the first tenth of the steps.
    pub first_train_nsr: f64,
    /// Training NSR averaged over the last tenth of the steps.
    pub train_nsr: f64,
    /// Steps trained.
    pub steps: usize,
    /// Wall time of its group's training divided by the group size.
    pub seconds: f64,
    /// Run seed.
    pub seed: u64,
    /// Parameters of the option.
    pub params: u64,
    /// MACs of the option per image.
    pub macs: u64,
}

/// `DIR/quality.json`: the NSR of every distilled option.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QualityTable {
    /// Space name.
    pub space: String,
    /// Run seed.
    pub seed: u64,
    /// Settings used.
    pub config: DistillConfig,
    /// Per block, the option indices that were measured.
    pub measured: Vec<Vec<usize>>,
    /// Every unit's result, ordered by block then option.
    pub units: Vec<UnitResult>,
}

impl QualityTable {
    /// The NSR of option `option` of block `block`, if measured.
    pub fn nsr(&self, block: usize, option: usize) -> Option<f64> {
        self.units.iter().find(|u| u.block == block && u.option == option).map(|u| u.nsr)
    }
}

/// The option indices of each block to distill under `config` (all blocks, or `blocks`).
pub fn plan(space: &dyn SearchSpace, config: &DistillConfig, seed: u64, blocks: Option<&[usize]>) -> Result<Vec<Unit>> {
    let teacher = space.validate(&space.teacher())?;
    let all: Vec<usize> = (0..space.blocks().len()).collect();
    let chosen = blocks.unwrap_or(&all);
    let mut units = Vec::new();
    for &b in chosen {
        let spec = space.blocks().get(b).ok_or_else(|| {
            SdkError::Config(format!(
                "block {b} does not exist (space `{}` has {})",
                space.name(),
                space.blocks().len()
            ))
        })?;
        let n = spec.options.len();
        let mut options: Vec<usize> = match config.max_options {
            Some(m) if m < n => {
                // A seeded sample that always contains the teacher's option.
                let t = teacher.option(b);
                let mut rest: Vec<usize> = (0..n).filter(|&o| o != t).collect();
                let mut rng = SplitMix64::derive(seed, &format!("bkd-options/{b}"));
                for i in (1..rest.len()).rev() {
                    rest.swap(i, rng.below(i + 1));
                }
                let mut picked = vec![t];
                picked.extend(rest.into_iter().take(m.saturating_sub(1)));
                picked
            }
            _ => (0..n).collect(),
        };
        options.sort_unstable();
        units.extend(options.into_iter().map(|option| Unit { block: b, option }));
    }
    units.sort_unstable();
    units.dedup();
    Ok(units)
}

/// The units of shard `index` of `count` (units dealt round-robin in (block, option) order).
pub fn shard(units: &[Unit], index: usize, count: usize) -> Vec<Unit> {
    units.iter().enumerate().filter(|(i, _)| i % count.max(1) == index).map(|(_, u)| *u).collect()
}

fn unit_path(run: &RunDir, u: Unit, ext: &str) -> PathBuf {
    run.root().join("bkd").join(format!("b{}", u.block)).join(format!("o{:04}.{ext}", u.option))
}

/// The checkpoint of a distilled unit (names as in a whole network).
pub fn unit_weights(run: &RunDir, u: Unit) -> PathBuf {
    unit_path(run, u, "safetensors")
}

/// A finished unit's result, if present and made with the same settings.
pub fn unit_result(run: &RunDir, u: Unit) -> Result<Option<UnitResult>> {
    let json = unit_path(run, u, "json");
    let (json_ok, weights_ok) = (artifact::usable(&json)?, artifact::usable(&unit_weights(run, u))?);
    if !json_ok || !weights_ok {
        return Ok(None);
    }
    Ok(Some(artifact::read_json(&json)?))
}

/// Whether a finished unit counts for a run with `config` and `seed`.
pub fn reusable(r: &UnitResult, config: &DistillConfig, seed: u64) -> bool {
    r.steps == config.steps && r.seed == seed && r.metric == crate::nsr::METRIC
}

fn unit_seed(seed: u64, u: Unit) -> i64 {
    (SplitMix64::derive(seed, &format!("bkd-init/{}/{}", u.block, u.option)).next_u64() >> 1) as i64
}

struct Student {
    unit: Unit,
    vs: VarStore,
    module: LayerStack,
    opt: Optimizer,
    first: Vec<f64>,
    recent: Vec<f64>,
}

/// Everything a distillation pass needs, shared by its units.
pub struct Distiller<'a> {
    /// The run directory the unit artifacts go to.
    pub run: &'a RunDir,
    /// The space.
    pub space: &'a dyn SearchSpace,
    /// The trained teacher network.
    pub teacher: &'a Network,
    /// The run's data.
    pub data: &'a TrainData,
    /// Settings.
    pub config: &'a DistillConfig,
    /// Run seed.
    pub seed: u64,
}

impl Distiller<'_> {
    /// Distills `units` that are not done yet, `config.options_per_pass` at a time per block,
    /// and returns the results of all `units`.
    pub fn distill(&self, units: &[Unit], progress: &dyn Progress) -> Result<Vec<UnitResult>> {
        let (config, seed) = (self.config, self.seed);
        let mut done = Vec::new();
        let mut pending = Vec::new();
        for &u in units {
            match unit_result(self.run, u)? {
                Some(r) if reusable(&r, config, seed) => done.push(r),
                _ => pending.push(u),
            }
        }
        let mut blocks: Vec<usize> = pending.iter().map(|u| u.block).collect();
        blocks.dedup();
        // A plugin layer that fails inside its forward pass fails its group of units only: the
        // other groups are still distilled and saved, and the failures are reported at the end.
        let mut failed = Vec::new();
        for b in blocks {
            let block_units: Vec<Unit> = pending.iter().copied().filter(|u| u.block == b).collect();
            let total = units.iter().filter(|u| u.block == b).count();
            for group in block_units.chunks(config.options_per_pass.max(1)) {
                let finished = done.iter().filter(|r: &&UnitResult| r.block == b).count();
                let phase = format!("b{b} {}/{total}", finished + group.len());
                match crate::error::catch_plugin_failure(|| self.train_group(b, group, &phase, progress)) {
                    Ok(results) => done.extend(results),
                    Err(SdkError::Plugin(why)) => {
                        let names: Vec<String> = group.iter().map(|u| format!("b{}/o{}", u.block, u.option)).collect();
                        failed.push(format!("{}: {why}", names.join(" ")));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        if !failed.is_empty() {
            return Err(SdkError::Plugin(format!(
                "{} group(s) of units failed (the others are saved): {}",
                failed.len(),
                failed.join("; ")
            )));
        }
        done.sort_by_key(|r| (r.block, r.option));
        Ok(done)
    }

    fn train_group(&self, b: usize, group: &[Unit], phase: &str, progress: &dyn Progress) -> Result<Vec<UnitResult>> {
        let (run, space, teacher, data, config, seed) =
            (self.run, self.space, self.teacher, self.data, self.config, self.seed);
        let spec = &space.blocks()[b];
        let mut students = Vec::with_capacity(group.len());
        for &unit in group {
            tch::manual_seed(unit_seed(seed, unit));
            let vs = VarStore::new(data.device);
            let module = build_block(space, b, &spec.options[unit.option], &vs.root())?;
            use_channels_last(&vs);
            let opt = Optimizer::new(
                &vs,
                OptimizerConfig { kind: OptimizerKind::Adamw, momentum: 0.9, weight_decay: config.weight_decay },
            );
            students.push(Student { unit, vs, module, opt, first: Vec::new(), recent: Vec::new() });
        }
        let initial = self.held_out_nsr(&students, b)?;
        let schedule = Cosine { base: config.lr, warmup: (config.steps / 20) as u64, total: config.steps as u64 };
        let train_len = data.dataset.info().train_len;
        let per_epoch = (train_len / config.batch_size.max(1)).max(1);
        progress.start(phase, config.steps as u64);
        let start = Instant::now();
        let mut step = 0usize;
        let mut epoch = 0u64;
        let tail = (config.steps / 10).max(1);
        while step < config.steps {
            // The batch sequence depends on (seed, block) only, not on the group.
            let loader = Loader::new(
                data.dataset.clone(),
                Split::Train,
                LoaderConfig {
                    batch_size: config.batch_size,
                    resolution: data.resolution,
                    augment: Some(Augment { crop_padding: 4, flip: true }),
                    shuffle: true,
                    drop_last: true,
                    seed: SplitMix64::derive(seed, &format!("bkd-data/{b}")).next_u64(),
                    epoch,
                    limit: Some(((config.steps - step).min(per_epoch)) * config.batch_size),
                    prefetch: 3,
                    device: data.device,
                },
                data.normalization.clone(),
            );
            for batch in loader {
                let batch = batch?;
                let (x, y) = tch::no_grad(|| teacher.block_io(&batch.images, b, false));
                let lr = schedule.at(step as u64);
                let mut last = 0.0;
                for s in &mut students {
                    s.opt.zero_grad();
                    let loss = nsr_loss(&s.module.forward_t(&x, true), &y);
                    loss.backward();
                    s.opt.step(lr);
                    last = loss.double_value(&[]);
                    if !last.is_finite() {
                        return Err(SdkError::Config(format!(
                            "block {b} option {}: distillation diverged at step {step}; lower --lr",
                            spec.format_option(&spec.options[s.unit.option])
                        )));
                    }
                    if step < tail {
                        s.first.push(last);
                    }
                    if step + tail >= config.steps {
                        s.recent.push(last);
                    }
                }
                step += 1;
                progress.advance(1, &format!("NSR {last:.3} ({} options)", students.len()));
                if step >= config.steps {
                    break;
                }
            }
            epoch += 1;
        }
        let seconds = start.elapsed().as_secs_f64() / students.len() as f64;
        let finals = self.held_out_nsr(&students, b)?;
        let mut results = Vec::new();
        for ((s, nsr), initial_nsr) in students.iter().zip(finals).zip(initial) {
            let option = &spec.options[s.unit.option];
            let counters = count_block(space, b, option)?.counters;
            let result = UnitResult {
                block: b,
                option: s.unit.option,
                option_text: spec.format_option(option),
                nsr,
                metric: crate::nsr::METRIC.to_owned(),
                initial_nsr,
                first_train_nsr: s.first.iter().sum::<f64>() / s.first.len().max(1) as f64,
                train_nsr: s.recent.iter().sum::<f64>() / s.recent.len().max(1) as f64,
                steps: config.steps,
                seconds,
                seed,
                params: counters.params,
                macs: counters.macs,
            };
            checkpoint::save(&unit_weights(run, s.unit), &checkpoint::variables(&s.vs))?;
            artifact::write_json(&unit_path(run, s.unit, "json"), &result)?;
            results.push(result);
        }
        let best = results.iter().map(|r| r.nsr).fold(f64::INFINITY, f64::min);
        progress.finish(&format!("{phase}: {} options distilled, best held-out NSR {best:.4}", results.len()));
        Ok(results)
    }

    fn held_out_nsr(&self, students: &[Student], b: usize) -> Result<Vec<f64>> {
        let (teacher, data, config) = (self.teacher, self.data, self.config);
        let mut acc: Vec<NsrAccumulator> = students.iter().map(|_| NsrAccumulator::new()).collect();
        let loader = Loader::new(
            data.dataset.clone(),
            Split::Val,
            LoaderConfig {
                batch_size: 256,
                resolution: data.resolution,
                augment: None,
                shuffle: false,
                drop_last: false,
                seed: 0,
                epoch: 0,
                limit: Some(config.val_images),
                prefetch: 2,
                device: data.device,
            },
            data.normalization.clone(),
        );
        tch::no_grad(|| -> Result<()> {
            for batch in loader {
                let batch = batch?;
                let (x, y) = teacher.block_io(&batch.images, b, false);
                for (s, a) in students.iter().zip(acc.iter_mut()) {
                    a.add(&s.module.forward_t(&x, false), &y);
                }
            }
            Ok(())
        })?;
        Ok(acc.iter().map(NsrAccumulator::value).collect())
    }
}

/// Collects the results of all `units` into `DIR/quality.json` when every one is done;
/// returns the table, or the number of units still missing.
pub fn merge(
    run: &RunDir,
    space: &dyn SearchSpace,
    config: &DistillConfig,
    seed: u64,
    units: &[Unit],
) -> Result<std::result::Result<QualityTable, usize>> {
    let mut results = Vec::new();
    let mut missing = 0;
    for &u in units {
        match unit_result(run, u)? {
            Some(r) if reusable(&r, config, seed) => results.push(r),
            _ => missing += 1,
        }
    }
    if missing > 0 {
        return Ok(Err(missing));
    }
    let mut measured = vec![Vec::new(); space.blocks().len()];
    for u in units {
        measured[u.block].push(u.option);
    }
    let table = QualityTable { space: space.name().to_owned(), seed, config: config.clone(), measured, units: results };
    artifact::write_json(&run.quality(), &table)?;
    Ok(Ok(table))
}

/// Loads `DIR/quality.json`.
pub fn load_quality(run: &RunDir) -> Result<QualityTable> {
    let path = run.quality();
    if !path.exists() {
        return Err(SdkError::Config(format!("{}: no quality table yet; run `donna distill` first", path.display())));
    }
    artifact::read_json(&path)
}

/// Builds `arch` in `vs` from distilled parts: the teacher's stem and head, and for every
/// block the weights its option got in distillation (which must have been distilled).
pub fn stitch(run: &RunDir, space: &dyn SearchSpace, arch: &Architecture, vs: &VarStore) -> Result<Network> {
    let genome = space.validate(arch)?;
    let net = build_network(space, arch, &vs.root())?;
    use_channels_last(vs);
    let teacher_path = run.teacher();
    let fixed: Vec<(String, Tensor)> =
        checkpoint::load(&teacher_path)?.into_iter().filter(|(n, _)| !n.starts_with("blocks.")).collect();
    let mut given = fixed;
    for b in 0..space.blocks().len() {
        let u = Unit { block: b, option: genome.option(b) };
        if unit_result(run, u)?.is_none() {
            return Err(SdkError::Config(format!(
                "block {b}: option {} was not distilled; run `donna distill` with it",
                space.blocks()[b].format_option(&arch.blocks[b])
            )));
        }
        given.extend(checkpoint::load(&unit_weights(run, u))?);
    }
    checkpoint::copy_into(vs, &given, true, &format!("{} (stitched)", run.root().display()))?;
    Ok(net)
}
