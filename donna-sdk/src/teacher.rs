//! Training whole networks from scratch: the teacher stage, and baselines for comparison.
//!
//! Teacher artifacts: `DIR/teacher.safetensors` (weights named by the space's block structure,
//! e.g. `blocks.2.0.dw.conv.weight`) and `DIR/teacher.json` (how it was made, how accurate it
//! is). Baselines (`donna train`): `DIR/baselines/<name>.{safetensors,json}`. While training,
//! `<stem>.ckpt.*` beside them hold the last finished epoch.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT, VarStore};
use tch::Tensor;

use crate::arch::Architecture;
use crate::artifact;
use crate::checkpoint;
use crate::error::{Result, SdkError};
use crate::network::{build_network, count_block, count_network, use_channels_last, Network};
use crate::progress::Progress;
use crate::run_dir::RunDir;
use crate::space::SearchSpace;
use crate::train::{evaluate, train_classifier, CheckpointPaths, EpochRecord, TrainConfig, TrainData};

/// What a trained model's JSON (`teacher.json`, `baselines/<name>.json`) records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    /// The architecture in text form (`linear` for the linear baseline).
    pub arch: String,
    /// Trainable parameters.
    pub params: u64,
    /// MACs per image.
    pub macs: u64,
    /// Final validation accuracy.
    pub val_accuracy: f64,
    /// Training settings, when trained here.
    pub config: Option<TrainConfig>,
    /// Seed, when trained here.
    pub seed: u64,
    /// Per-epoch history, when trained here.
    pub history: Vec<EpochRecord>,
    /// The file imported, when imported.
    pub imported_from: Option<String>,
    /// Wall time of the training steps of all epochs (0 when imported).
    pub train_seconds: f64,
}

/// What to train.
pub enum Model<'a> {
    /// An architecture of the space.
    Arch(&'a Architecture),
    /// A linear classifier on the normalised pixels (the floor any network must beat).
    Linear,
}

/// Where a model's artifacts go: `<dir>/<stem>.safetensors`, `<dir>/<stem>.json`.
pub struct ModelFiles {
    dir: PathBuf,
    stem: String,
}

impl ModelFiles {
    /// The teacher of `run`.
    pub fn teacher(run: &RunDir) -> Self {
        Self { dir: run.root().to_owned(), stem: "teacher".into() }
    }

    /// The baseline `name` of `run`.
    pub fn baseline(run: &RunDir, name: &str) -> Self {
        Self { dir: run.root().join("baselines"), stem: name.into() }
    }

    /// The weights file.
    pub fn weights(&self) -> PathBuf {
        self.dir.join(format!("{}.safetensors", self.stem))
    }

    /// The report file.
    pub fn report(&self) -> PathBuf {
        self.dir.join(format!("{}.json", self.stem))
    }

    /// The report, if the model is finished.
    pub fn existing(&self) -> Result<Option<ModelReport>> {
        // Both are checked, so a damaged one is moved aside even when the other is missing.
        let (report, weights) = (artifact::usable(&self.report())?, artifact::usable(&self.weights())?);
        if report && weights {
            return Ok(Some(artifact::read_json(&self.report())?));
        }
        Ok(None)
    }

    fn finish(&self, vs: &VarStore, report: &ModelReport) -> Result<()> {
        checkpoint::save(&self.weights(), &checkpoint::variables(vs))?;
        artifact::write_json(&self.report(), report)
    }
}

/// The linear baseline: flatten, linear.
#[derive(Debug)]
struct LinearModel(nn::Linear);

impl ModuleT for LinearModel {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.flatten(1, -1).apply(&self.0)
    }
}

fn build(space: &dyn SearchSpace, model: &Model, vs: &VarStore) -> Result<(Box<dyn ModuleT>, String, u64, u64)> {
    match model {
        Model::Arch(arch) => {
            let net = build_network(space, arch, &vs.root())?;
            let count = count_network(space, arch)?;
            Ok((Box::new(net), space.format_arch(arch), count.total.params, count.total.macs))
        }
        Model::Linear => {
            let input = space.input_shape().elems() as i64;
            let classes = space.config().num_classes;
            let lin = nn::linear(vs.root() / "linear", input, classes, Default::default());
            let params = (input * classes + classes) as u64;
            Ok((Box::new(LinearModel(lin)), "linear".into(), params, params - classes as u64))
        }
    }
}

/// Trains `model` from scratch under `config`, resuming an interrupted run; returns the
/// existing report when the model is already trained with the same settings.
#[allow(clippy::too_many_arguments)]
pub fn train_model(
    files: &ModelFiles,
    space: &dyn SearchSpace,
    model: &Model,
    data: &TrainData,
    config: &TrainConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<ModelReport> {
    if let Some(done) = files.existing()? {
        if done.config.as_ref() == Some(config) && done.seed == seed {
            return Ok(done);
        }
        return Err(SdkError::Config(format!(
            "{} holds a model made with other settings; delete it and {} to retrain",
            files.report().display(),
            files.weights().display()
        )));
    }
    tch::manual_seed(seed as i64);
    let vs = VarStore::new(data.device);
    let (net, arch, params, macs) = build(space, model, &vs)?;
    use_channels_last(&vs);
    let ckpt = CheckpointPaths::new(&files.dir, &files.stem);
    let history = train_classifier(&vs, net.as_ref(), data, config, seed, &ckpt, progress)?;
    let report = ModelReport {
        arch,
        params,
        macs,
        val_accuracy: history.last().map(|h| h.val_accuracy).unwrap_or(0.0),
        config: Some(config.clone()),
        seed,
        train_seconds: history.iter().map(|h| h.train_seconds).sum(),
        history,
        imported_from: None,
    };
    files.finish(&vs, &report)?;
    ckpt.remove();
    Ok(report)
}

/// Trains the teacher of `space` (see [`train_model`]).
pub fn train(
    run: &RunDir,
    space: &dyn SearchSpace,
    data: &TrainData,
    config: &TrainConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<ModelReport> {
    train_model(&ModelFiles::teacher(run), space, &Model::Arch(&space.teacher()), data, config, seed, progress)
}

/// The finished teacher's report, if the stage is done.
pub fn existing(run: &RunDir) -> Result<Option<ModelReport>> {
    ModelFiles::teacher(run).existing()
}

/// Imports pretrained teacher weights from `file` (names as in `teacher.safetensors`),
/// measures their accuracy and writes the teacher artifacts.
pub fn import(
    run: &RunDir,
    space: &dyn SearchSpace,
    data: &TrainData,
    file: &Path,
    progress: &dyn Progress,
) -> Result<ModelReport> {
    let arch = space.teacher();
    let vs = VarStore::new(data.device);
    let (net, text, params, macs) = build(space, &Model::Arch(&arch), &vs)?;
    use_channels_last(&vs);
    checkpoint::copy_into(&vs, &checkpoint::load(file)?, true, &file.display().to_string())?;
    let val_accuracy = evaluate(net.as_ref(), data, None, progress)?;
    let report = ModelReport {
        arch: text,
        params,
        macs,
        val_accuracy,
        config: None,
        seed: 0,
        history: Vec::new(),
        imported_from: Some(file.display().to_string()),
        train_seconds: 0.0,
    };
    ModelFiles::teacher(run).finish(&vs, &report)?;
    Ok(report)
}

/// Builds the teacher network of `space` in `vs` and loads the trained weights of `run`.
pub fn load(run: &RunDir, space: &dyn SearchSpace, vs: &VarStore) -> Result<Network> {
    let net = build_network(space, &space.teacher(), &vs.root())?;
    use_channels_last(vs);
    let path = run.teacher();
    if !path.exists() {
        return Err(SdkError::Config(format!(
            "{}: no teacher yet; run `donna teacher --run {}` first",
            path.display(),
            run.root().display()
        )));
    }
    checkpoint::copy_into(vs, &checkpoint::load(&path)?, true, &path.display().to_string())?;
    Ok(net)
}

/// The architecture with, in every block, the option of fewest (`largest = false`) or most
/// MACs: the ends of the space's capacity range.
pub fn extreme_architecture(space: &dyn SearchSpace, largest: bool) -> Result<Architecture> {
    let mut blocks = Vec::new();
    for (b, spec) in space.blocks().iter().enumerate() {
        let mut keyed = Vec::with_capacity(spec.options.len());
        for option in &spec.options {
            let c = count_block(space, b, option)?.counters;
            keyed.push(((c.macs, c.params), option));
        }
        let pick = if largest { keyed.iter().max_by_key(|k| k.0) } else { keyed.iter().min_by_key(|k| k.0) };
        let (_, option) = pick.ok_or_else(|| SdkError::Config(format!("block {b} has no options")))?;
        blocks.push((*option).clone());
    }
    Ok(Architecture { space: space.name().to_owned(), blocks })
}
