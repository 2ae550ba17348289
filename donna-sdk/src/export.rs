//! Finetuning the models a search found and exporting them.
//!
//! Each model is stitched from its blocks' BKD weights and the teacher's stem and head,
//! finetuned with KD ([`crate::finetune`]), evaluated, and written to `DIR/models/<id>/`:
//! - `weights.safetensors`: the weights, named as in the network (`blocks.2.0.expand.weight`);
//! - `arch.json`: the architecture, the space and its configuration, the input normalisation;
//! - `model.pt`: TorchScript, traced in evaluation mode with the normalisation built in, so
//!   `torch.jit.load("model.pt")(x)` takes images in `[0, 1]` (`N x C x H x W`) and returns
//!   logits;
//! - `model.json`: what was measured (accuracy before and after finetuning, predicted
//!   accuracy, latency, params, MACs). Written last: a model with `model.json` is complete.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::nn::{ModuleT, VarStore};
use tch::{CModule, Device, Kind, Tensor};

use crate::arch::Architecture;
use crate::artifact;
use crate::checkpoint;
use crate::data::Normalization;
use crate::distill;
use crate::error::{Result, SdkError};
use crate::finetune::{self, FinetuneConfig, KdStream};
use crate::network::{count_network, Network};
use crate::progress::{Progress, Silent};
use crate::rng::SplitMix64;
use crate::run_dir::RunDir;
use crate::space::{SearchSpace, SpaceConfig};
use crate::train::{self, TrainData};

/// `arch.json` of an exported model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchFile {
    /// The architecture in text form.
    pub text: String,
    /// The architecture.
    pub arch: Architecture,
    /// The space's configuration (resolution, width, classes, channels).
    pub space_config: SpaceConfig,
    /// The input normalisation `model.pt` applies (the safetensors weights expect normalised
    /// inputs).
    pub normalization: Normalization,
}

/// `model.json` of an exported model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Model id (the folder name).
    pub id: String,
    /// The architecture in text form.
    pub arch: String,
    /// Accuracy the predictor gave, in percent.
    pub predicted_accuracy: Option<f64>,
    /// Validation accuracy after finetuning (0-1).
    pub accuracy: f64,
    /// Validation accuracy of the stitched network before finetuning (0-1).
    pub stitched_accuracy: f64,
    /// Validation images measured on.
    pub val_images: Option<usize>,
    /// Parameters.
    pub params: u64,
    /// MACs per image.
    pub macs: u64,
    /// Finetune settings.
    pub finetune: FinetuneConfig,
    /// Seconds of finetuning.
    pub seconds: f64,
    /// Run seed.
    pub seed: u64,
}

/// The paths of model `id`.
pub struct ModelDir(PathBuf);

impl ModelDir {
    /// `DIR/models/<id>/`.
    pub fn new(run: &RunDir, id: &str) -> Self {
        Self(run.model_dir(id))
    }
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
    /// `weights.safetensors`.
    pub fn weights(&self) -> PathBuf {
        self.0.join("weights.safetensors")
    }
    /// `arch.json`.
    pub fn arch(&self) -> PathBuf {
        self.0.join("arch.json")
    }
    /// `model.pt`.
    pub fn torchscript(&self) -> PathBuf {
        self.0.join("model.pt")
    }
    /// `model.json`.
    pub fn record(&self) -> PathBuf {
        self.0.join("model.json")
    }
    /// The record, when the model is complete and every file of it is intact.
    pub fn existing(&self) -> Result<Option<ModelRecord>> {
        let p = self.record();
        // Each file is checked (and a damaged one moved aside), so one bad file redoes the model.
        let mut complete = true;
        for file in [self.weights(), self.arch(), self.torchscript(), p.clone()] {
            complete &= artifact::usable(&file)?;
        }
        if complete {
            return Ok(Some(artifact::read_json(&p)?));
        }
        Ok(None)
    }
}

/// A stable id for an architecture: `<space>-<8 hex digits of its text's hash>`.
pub fn model_id(space: &str, arch_text: &str) -> String {
    let h = crate::rng::fnv1a(arch_text);
    format!("{space}-{:08x}", h as u32)
}

/// Traces `net` (variables in `vs`, which are frozen: a trace holds weights as constants; in
/// evaluation mode, normalisation built in) into TorchScript at `path`.
pub fn export_torchscript(
    vs: &mut VarStore,
    net: &Network,
    space: &dyn SearchSpace,
    norm: &Normalization,
    path: &Path,
) -> Result<()> {
    vs.freeze();
    let c = space.config();
    let device = Device::Cpu;
    let example = Tensor::rand([1, c.in_channels, c.resolution, c.resolution], (Kind::Float, device));
    let mean = Tensor::from_slice(&norm.mean).to_kind(Kind::Float).view([1, -1, 1, 1]);
    let std = Tensor::from_slice(&norm.std).to_kind(Kind::Float).view([1, -1, 1, 1]);
    let module = tch::no_grad(|| {
        CModule::create_by_tracing("DonnaModel", "forward", &[example], &mut |inputs| {
            vec![net.forward_t(&((&inputs[0] - &mean) / &std), false)]
        })
    })
    .map_err(|e| SdkError::Config(format!("tracing the model for TorchScript failed: {e}")))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| SdkError::Io { path: dir.display().to_string(), source: e })?;
    let tmp = dir.join(format!(".model.pt.tmp-{}", std::process::id()));
    if let Err(e) = module.save(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(SdkError::Config(format!("writing {}: {e}", tmp.display())));
    }
    crate::artifact::commit(&tmp, path)
}

/// What finetuning a found model needs.
pub struct Exporter<'a> {
    /// The run.
    pub run: &'a RunDir,
    /// The run's space.
    pub space: &'a dyn SearchSpace,
    /// The data.
    pub data: &'a TrainData,
    /// Finetune settings.
    pub config: &'a FinetuneConfig,
    /// Run seed.
    pub seed: u64,
}

impl Exporter<'_> {
    /// Finetunes `arch` on `stream` and exports it as model `id`; returns the existing record
    /// when the model was already exported with the same settings.
    pub fn finetune_and_export(
        &self,
        id: &str,
        arch: &Architecture,
        predicted_accuracy: Option<f64>,
        stream: &KdStream,
        progress: &dyn Progress,
    ) -> Result<ModelRecord> {
        let dir = ModelDir::new(self.run, id);
        let text = self.space.format_arch(arch);
        if let Some(r) = dir.existing()? {
            if r.arch == text && r.finetune == *self.config && r.seed == self.seed {
                return Ok(r);
            }
        }
        let mut vs = VarStore::new(self.data.device);
        let net = distill::stitch(self.run, self.space, arch, &vs)?;
        let val = self.config.val_images;
        let stitched_accuracy = train::evaluate(&net, self.data, val, &Silent)?;
        let seed = SplitMix64::derive(self.seed, id).next_u64();
        let outcome = finetune::finetune(&vs, &net, stream, self.config, seed, id, progress)?;
        let accuracy = train::evaluate(&net, self.data, val, &Silent)?;
        let counts = count_network(self.space, arch)?;
        let record = ModelRecord {
            id: id.to_owned(),
            arch: text.clone(),
            predicted_accuracy,
            accuracy,
            stitched_accuracy,
            val_images: val,
            params: counts.total.params,
            macs: counts.total.macs,
            finetune: self.config.clone(),
            seconds: outcome.seconds,
            seed: self.seed,
        };
        checkpoint::save(&dir.weights(), &checkpoint::variables(&vs))?;
        let norm = &self.data.normalization;
        artifact::write_json(
            &dir.arch(),
            &ArchFile {
                text,
                arch: arch.clone(),
                space_config: self.space.config().clone(),
                normalization: norm.clone(),
            },
        )?;
        if self.data.device != Device::Cpu {
            // Trace on the CPU so the file loads anywhere.
            let mut cpu = VarStore::new(Device::Cpu);
            let cpu_net = crate::network::build_network(self.space, arch, &cpu.root())?;
            checkpoint::copy_into(&cpu, &checkpoint::variables(&vs), true, id)?;
            export_torchscript(&mut cpu, &cpu_net, self.space, norm, &dir.torchscript())?;
        } else {
            export_torchscript(&mut vs, &net, self.space, norm, &dir.torchscript())?;
        }
        artifact::write_json(&dir.record(), &record)?;
        progress.finish(&format!(
            "{id}: {:.2}% (stitched {:.2}%{}) -> {}",
            100.0 * accuracy,
            100.0 * stitched_accuracy,
            predicted_accuracy.map_or(String::new(), |p| format!(", predicted {p:.2}%")),
            dir.path().display()
        ));
        Ok(record)
    }
}
