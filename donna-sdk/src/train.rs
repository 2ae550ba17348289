//! Training and evaluating classifiers: the loop behind the teacher (and, later, finetuning).
//!
//! A training run is a value ([`TrainConfig`]) plus a checkpoint after every epoch that holds
//! the weights, the optimizer state and the history. Data order, augmentation and dropout are
//! seeded by `(seed, epoch)`, so a run resumed after a crash ends at the same weights as one
//! that never stopped.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Reduction, Tensor};

use crate::artifact;
use crate::checkpoint;
use crate::data::{Augment, Dataset, DatasetInfo, Loader, LoaderConfig, Normalization, Split};
use crate::error::{Result, SdkError};
use crate::optim::{Cosine, Optimizer, OptimizerConfig, OptimizerKind};
use crate::progress::Progress;
use crate::registry;
use crate::run_dir::{RunConfig, RunDir};

/// Everything that determines a supervised training run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training images.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Update rule.
    pub optimizer: OptimizerKind,
    /// Peak learning rate (cosine schedule after warm-up).
    pub lr: f64,
    /// Momentum (SGD) or beta1 (AdamW).
    pub momentum: f64,
    /// Weight decay on weights (not on norms and biases).
    pub weight_decay: f64,
    /// Label smoothing of the cross-entropy.
    pub label_smoothing: f64,
    /// Warm-up length in epochs.
    pub warmup_epochs: f64,
    /// Training augmentation.
    pub augment: Augment,
    /// Use only this many training images per epoch (a random subset each epoch).
    pub train_limit: Option<usize>,
    /// Evaluate on only the first this many validation images.
    pub val_limit: Option<usize>,
}

/// What one epoch did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// Epoch number, from 0.
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Training accuracy (on augmented images).
    pub train_accuracy: f64,
    /// Validation accuracy at the end of the epoch.
    pub val_accuracy: f64,
    /// Wall time of the epoch's training steps.
    pub train_seconds: f64,
    /// Training images per second.
    pub images_per_second: f64,
}

/// Where a training run keeps its resumable state: `<stem>.ckpt.safetensors` (weights,
/// optimizer) and `<stem>.ckpt.json` (config, history).
#[derive(Clone, Debug)]
pub struct CheckpointPaths {
    /// Tensors.
    pub tensors: PathBuf,
    /// Metadata.
    pub meta: PathBuf,
}

impl CheckpointPaths {
    /// The checkpoint of `stem` in `dir` (e.g. `DIR/teacher`).
    pub fn new(dir: &Path, stem: &str) -> Self {
        Self { tensors: dir.join(format!("{stem}.ckpt.safetensors")), meta: dir.join(format!("{stem}.ckpt.json")) }
    }

    /// Removes the checkpoint once the run's final artifacts are written.
    pub fn remove(&self) {
        let _ = artifact::remove(&self.tensors);
        let _ = artifact::remove(&self.meta);
    }
}

#[derive(Serialize, Deserialize)]
struct CheckpointMeta {
    config: TrainConfig,
    seed: u64,
    history: Vec<EpochRecord>,
}

/// The data side of a training run.
pub struct TrainData {
    /// The dataset.
    pub dataset: Arc<dyn Dataset>,
    /// Its normalisation.
    pub normalization: Normalization,
    /// Side of the images fed to the network.
    pub resolution: i64,
    /// Where to compute.
    pub device: Device,
}

/// `DIR/data.json`: the dataset a run uses and its normalisation, fixed at the first stage.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataRecord {
    /// Shape and size of the dataset.
    pub info: DatasetInfo,
    /// Normalisation estimated from the training images.
    pub normalization: Normalization,
}

impl TrainData {
    /// Opens the dataset of `run` at the run's resolution. The normalisation is estimated once
    /// and kept in `DIR/data.json`, so every stage of the run feeds the same inputs.
    pub fn for_run(run: &RunDir, config: &RunConfig, device: Device) -> Result<Self> {
        let dataset: Arc<dyn Dataset> = Arc::from(registry::dataset(&config.data, config.space_config.resolution)?);
        Self::for_run_with(run, config, dataset, device)
    }

    /// As [`TrainData::for_run`], with the run's dataset already opened.
    pub fn for_run_with(run: &RunDir, config: &RunConfig, dataset: Arc<dyn Dataset>, device: Device) -> Result<Self> {
        let path = run.root().join("data.json");
        let normalization = if artifact::usable(&path)? {
            let record: DataRecord = artifact::read_json(&path)?;
            if record.info != *dataset.info() {
                return Err(SdkError::Config(format!(
                    "{}: the dataset `{}` has changed since this run started ({:?} now)",
                    path.display(),
                    config.data,
                    dataset.info()
                )));
            }
            record.normalization
        } else {
            let normalization = Normalization::estimate(dataset.as_ref(), 2048)?;
            artifact::write_json(
                &path,
                &DataRecord { info: dataset.info().clone(), normalization: normalization.clone() },
            )?;
            normalization
        };
        Ok(Self { dataset, normalization, resolution: config.space_config.resolution, device })
    }

    fn loader(
        &self,
        split: Split,
        batch: usize,
        augment: Option<Augment>,
        seed: u64,
        epoch: u64,
        limit: Option<usize>,
    ) -> Loader {
        let train = split == Split::Train;
        Loader::new(
            self.dataset.clone(),
            split,
            LoaderConfig {
                batch_size: batch,
                resolution: self.resolution,
                augment,
                shuffle: train,
                drop_last: train,
                seed,
                epoch,
                limit,
                prefetch: 3,
                device: self.device,
            },
            self.normalization.clone(),
        )
    }
}

/// Top-1 accuracy of `net` on the validation split (first `limit` images if set).
pub fn evaluate(net: &dyn ModuleT, data: &TrainData, limit: Option<usize>, progress: &dyn Progress) -> Result<f64> {
    let loader = data.loader(Split::Val, 256, None, 0, 0, limit);
    progress.start("evaluate", loader.len() as u64);
    let (mut correct, mut total) = (0i64, 0i64);
    for batch in loader {
        let batch = batch?;
        let logits = tch::no_grad(|| net.forward_t(&batch.images, false));
        correct += logits.argmax(-1, false).eq_tensor(&batch.labels).sum(Kind::Int64).int64_value(&[]);
        total += batch.labels.size()[0];
        progress.advance(1, "");
    }
    let acc = if total > 0 { correct as f64 / total as f64 } else { 0.0 };
    progress.finish(&format!("val accuracy {:.2}%", 100.0 * acc));
    Ok(acc)
}

/// Trains `net` (whose variables are in `vs`) under `config`, resuming from `ckpt` when it
/// holds an earlier epoch of the same run. Returns the history of all epochs.
pub fn train_classifier(
    vs: &VarStore,
    net: &dyn ModuleT,
    data: &TrainData,
    config: &TrainConfig,
    seed: u64,
    ckpt: &CheckpointPaths,
    progress: &dyn Progress,
) -> Result<Vec<EpochRecord>> {
    let mut opt = Optimizer::new(
        vs,
        OptimizerConfig { kind: config.optimizer, momentum: config.momentum, weight_decay: config.weight_decay },
    );
    let mut history = resume(vs, &mut opt, config, seed, ckpt)?;
    let train_len = config.train_limit.unwrap_or(usize::MAX).min(data.dataset.info().train_len);
    let steps_per_epoch = (train_len / config.batch_size.max(1)) as u64;
    if steps_per_epoch == 0 {
        return Err(SdkError::Config(format!(
            "{} training images do not fill one batch of {}",
            train_len, config.batch_size
        )));
    }
    let schedule = Cosine {
        base: config.lr,
        warmup: (config.warmup_epochs * steps_per_epoch as f64) as u64,
        total: steps_per_epoch * config.epochs as u64,
    };
    for epoch in history.len()..config.epochs {
        tch::manual_seed((seed ^ 0x5eed).wrapping_add(epoch as u64) as i64);
        let loader =
            data.loader(Split::Train, config.batch_size, Some(config.augment), seed, epoch as u64, config.train_limit);
        progress.start(&format!("epoch {}/{}", epoch + 1, config.epochs), loader.len() as u64);
        let start = Instant::now();
        let (mut loss_sum, mut correct, mut seen) = (0f64, 0i64, 0i64);
        for (i, batch) in loader.enumerate() {
            let batch = batch?;
            let step = epoch as u64 * steps_per_epoch + i as u64;
            opt.zero_grad();
            let logits = net.forward_t(&batch.images, true);
            let loss =
                logits.cross_entropy_loss::<Tensor>(&batch.labels, None, Reduction::Mean, -100, config.label_smoothing);
            loss.backward();
            opt.step(schedule.at(step));
            let l = loss.double_value(&[]);
            if !l.is_finite() {
                return Err(SdkError::Config(format!(
                    "training diverged at epoch {epoch}, step {i} (loss {l}); lower --lr"
                )));
            }
            let n = batch.labels.size()[0];
            loss_sum += l * n as f64;
            seen += n;
            correct += logits.argmax(-1, false).eq_tensor(&batch.labels).sum(Kind::Int64).int64_value(&[]);
            progress.advance(1, &format!("loss {:.3}", loss_sum / seen as f64));
        }
        let train_seconds = start.elapsed().as_secs_f64();
        progress.finish(&format!(
            "epoch {}/{}: loss {:.3}, train accuracy {:.2}%, {:.0} img/s",
            epoch + 1,
            config.epochs,
            loss_sum / seen.max(1) as f64,
            100.0 * correct as f64 / seen.max(1) as f64,
            seen as f64 / train_seconds
        ));
        let val_accuracy = evaluate(net, data, config.val_limit, progress)?;
        history.push(EpochRecord {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy,
            train_seconds,
            images_per_second: seen as f64 / train_seconds,
        });
        save_checkpoint(vs, &opt, config, seed, &history, ckpt)?;
    }
    Ok(history)
}

fn save_checkpoint(
    vs: &VarStore,
    opt: &Optimizer,
    config: &TrainConfig,
    seed: u64,
    history: &[EpochRecord],
    ckpt: &CheckpointPaths,
) -> Result<()> {
    let mut tensors = checkpoint::variables(vs);
    tensors.extend(opt.state());
    // The epoch count inside the tensors guards against a crash between the two writes.
    tensors.push(("meta.epochs".to_owned(), Tensor::from_slice(&[history.len() as i64])));
    checkpoint::save(&ckpt.tensors, &tensors)?;
    artifact::write_json(&ckpt.meta, &CheckpointMeta { config: config.clone(), seed, history: history.to_vec() })
}

fn resume(
    vs: &VarStore,
    opt: &mut Optimizer,
    config: &TrainConfig,
    seed: u64,
    ckpt: &CheckpointPaths,
) -> Result<Vec<EpochRecord>> {
    let (meta_ok, tensors_ok) = (artifact::usable(&ckpt.meta)?, artifact::usable(&ckpt.tensors)?);
    if !meta_ok || !tensors_ok {
        return Ok(Vec::new());
    }
    let meta: CheckpointMeta = artifact::read_json(&ckpt.meta)?;
    if meta.config != *config || meta.seed != seed {
        return Err(SdkError::Config(format!(
            "{} was made with other training settings; delete it (and {}) to start over",
            ckpt.meta.display(),
            ckpt.tensors.display()
        )));
    }
    let tensors = checkpoint::load(&ckpt.tensors)?;
    let source = ckpt.tensors.display().to_string();
    let epochs = tensors.iter().find(|(n, _)| n == "meta.epochs").map(|(_, t)| t.int64_value(&[0]));
    if epochs != Some(meta.history.len() as i64) {
        // A crash between writing the tensors and the metadata: the pair is inconsistent.
        return Err(SdkError::Config(format!(
            "{source} and {} disagree on the epoch; delete both to start over",
            ckpt.meta.display()
        )));
    }
    let weights: Vec<(String, Tensor)> = tensors
        .iter()
        .filter(|(n, _)| !n.starts_with("optim.") && !n.starts_with("meta."))
        .map(|(n, t)| (n.clone(), t.shallow_clone()))
        .collect();
    checkpoint::copy_into(vs, &weights, true, &source)?;
    opt.load_state(&tensors, &source)?;
    Ok(meta.history)
}
