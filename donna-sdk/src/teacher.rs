//! The teacher stage: train (or import) the space's reference network.
//!
//! Artifacts: `DIR/teacher.safetensors` (weights named by the space's block structure, e.g.
//! `blocks.2.0.dw.conv.weight`) and `DIR/teacher.json` (how it was made and how accurate it
//! is). While training, `DIR/teacher.ckpt.*` hold the last finished epoch.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use crate::artifact;
use crate::checkpoint;
use crate::error::{Result, SdkError};
use crate::network::{build_network, count_network, use_channels_last, Network};
use crate::progress::Progress;
use crate::run_dir::RunDir;
use crate::space::SearchSpace;
use crate::train::{evaluate, train_classifier, CheckpointPaths, EpochRecord, TrainConfig, TrainData};

/// What `teacher.json` records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TeacherReport {
    /// The teacher architecture in text form.
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

fn report_path(run: &RunDir) -> std::path::PathBuf {
    run.root().join("teacher.json")
}

/// The finished teacher's report, if the stage is done.
pub fn existing(run: &RunDir) -> Result<Option<TeacherReport>> {
    let path = report_path(run);
    if path.exists() && run.teacher().exists() {
        return Ok(Some(artifact::read_json(&path)?));
    }
    Ok(None)
}

fn finish(run: &RunDir, vs: &VarStore, report: &TeacherReport) -> Result<()> {
    checkpoint::save(&run.teacher(), &checkpoint::variables(vs))?;
    artifact::write_json(&report_path(run), report)
}

/// Trains the teacher of `space` under `config`, resuming an interrupted run, or returns the
/// existing report when the teacher is already trained with the same settings.
pub fn train(
    run: &RunDir,
    space: &dyn SearchSpace,
    data: &TrainData,
    config: &TrainConfig,
    seed: u64,
    progress: &dyn Progress,
) -> Result<TeacherReport> {
    if let Some(done) = existing(run)? {
        if done.config.as_ref() == Some(config) && done.seed == seed {
            return Ok(done);
        }
        return Err(SdkError::Config(format!(
            "{} holds a teacher made with other settings; delete teacher.safetensors and teacher.json to retrain",
            run.root().display()
        )));
    }
    let arch = space.teacher();
    tch::manual_seed(seed as i64);
    let vs = VarStore::new(data.device);
    let net = build_network(space, &arch, &vs.root())?;
    use_channels_last(&vs);
    let ckpt = CheckpointPaths::new(run.root(), "teacher");
    let history = train_classifier(&vs, &net, data, config, seed, &ckpt, progress)?;
    let count = count_network(space, &arch)?;
    let report = TeacherReport {
        arch: space.format_arch(&arch),
        params: count.total.params,
        macs: count.total.macs,
        val_accuracy: history.last().map(|h| h.val_accuracy).unwrap_or(0.0),
        config: Some(config.clone()),
        seed,
        train_seconds: history.iter().map(|h| h.train_seconds).sum(),
        history,
        imported_from: None,
    };
    finish(run, &vs, &report)?;
    ckpt.remove();
    Ok(report)
}

/// Imports pretrained teacher weights from `file` (names as in `teacher.safetensors`),
/// measures their accuracy and writes the teacher artifacts.
pub fn import(
    run: &RunDir,
    space: &dyn SearchSpace,
    data: &TrainData,
    file: &Path,
    progress: &dyn Progress,
) -> Result<TeacherReport> {
    let arch = space.teacher();
    let vs = VarStore::new(data.device);
    let net = build_network(space, &arch, &vs.root())?;
    use_channels_last(&vs);
    let tensors = checkpoint::load(file)?;
    checkpoint::copy_into(&vs, &tensors, true, &file.display().to_string())?;
    let val_accuracy = evaluate(&net, data, None, progress)?;
    let count = count_network(space, &arch)?;
    let report = TeacherReport {
        arch: space.format_arch(&arch),
        params: count.total.params,
        macs: count.total.macs,
        val_accuracy,
        config: None,
        seed: 0,
        history: Vec::new(),
        imported_from: Some(file.display().to_string()),
        train_seconds: 0.0,
    };
    finish(run, &vs, &report)?;
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
