//! Flags that open a run directory: the first command creates `run.json` from them and the
//! preset; later commands read it, and any flag they repeat must agree with it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use donna_sdk::data::Dataset;
use donna_sdk::optim::OptimizerKind;
use donna_sdk::preset::{preset, Preset};
use donna_sdk::train::TrainConfig;
use donna_sdk::{registry, RunConfig, RunDir, SpaceConfig};

use crate::usage;

#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Run directory (created if new).
    #[arg(long)]
    pub run: PathBuf,
    /// Search space [new runs: mobilenet].
    #[arg(long, short = 's')]
    pub space: Option<String>,
    /// Dataset: synthetic[:...], cifar10:PATH, cifar100:PATH, mnist:PATH, fashion-mnist:PATH,
    /// imagefolder:PATH [new runs: synthetic].
    #[arg(long)]
    pub data: Option<String>,
    /// Preset: quick or full [new runs: quick].
    #[arg(long)]
    pub preset: Option<String>,
    /// Seed of every random choice in the run [new runs: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Input resolution [new runs: the preset's].
    #[arg(long)]
    pub resolution: Option<i64>,
    /// Width multiplier of the space [new runs: the preset's].
    #[arg(long)]
    pub width_mult: Option<f64>,
}

/// An opened run.
pub struct OpenedRun {
    pub dir: RunDir,
    pub config: RunConfig,
    pub preset: Preset,
    /// The dataset, when opening the run already had to open it.
    pub dataset: Option<Arc<dyn Dataset>>,
}

impl RunArgs {
    pub fn open(&self) -> anyhow::Result<OpenedRun> {
        let dir = RunDir::new(&self.run);
        if dir.config_path().exists() {
            let config = dir.config()?;
            let check = |flag: &str, given: Option<String>, have: String| -> anyhow::Result<()> {
                match given {
                    Some(g) if g != have => {
                        usage(format!("--{flag} {g} disagrees with {} ({have})", dir.config_path().display()))
                    }
                    _ => Ok(()),
                }
            };
            check("space", self.space.clone(), config.space.clone())?;
            check("data", self.data.clone(), config.data.clone())?;
            check("preset", self.preset.clone(), config.preset.clone())?;
            check("seed", self.seed.map(|s| s.to_string()), config.seed.to_string())?;
            check("resolution", self.resolution.map(|s| s.to_string()), config.space_config.resolution.to_string())?;
            check("width-mult", self.width_mult.map(|s| s.to_string()), config.space_config.width_mult.to_string())?;
            let preset = preset(&config.preset)?;
            registry::space(&config.space, &config.space_config)?;
            return Ok(OpenedRun { dir, config, preset, dataset: None });
        }
        let preset = preset(self.preset.as_deref().unwrap_or("quick"))?;
        let space = self.space.clone().unwrap_or_else(|| "mobilenet".to_owned());
        let data = self.data.clone().unwrap_or_else(|| "synthetic".to_owned());
        let resolution = self.resolution.unwrap_or(preset.resolution);
        registry::space(&space, &SpaceConfig { resolution, ..SpaceConfig::default() })?;
        let dataset: Arc<dyn Dataset> = Arc::from(registry::dataset(&data, resolution)?);
        let info = dataset.info();
        let config = RunConfig {
            space,
            space_config: SpaceConfig {
                resolution,
                width_mult: self.width_mult.unwrap_or(preset.width_mult),
                num_classes: info.classes,
                in_channels: info.channels,
            },
            data,
            preset: preset.name.clone(),
            seed: self.seed.unwrap_or(0),
        };
        // Fail now, not stages later, on a space that cannot be built for this data.
        registry::space(&config.space, &config.space_config)?;
        dir.create(&config)?;
        Ok(OpenedRun { dir, config, preset, dataset: Some(dataset) })
    }
}

/// Overrides of a training schedule; unset flags keep the preset's values.
#[derive(Args, Clone, Debug, Default)]
pub struct TrainArgs {
    /// Epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Batch size.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Optimizer: sgd or adamw.
    #[arg(long)]
    pub optimizer: Option<OptimizerKind>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Momentum (SGD) or beta1 (AdamW).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Label smoothing.
    #[arg(long)]
    pub label_smoothing: Option<f64>,
    /// Warm-up epochs.
    #[arg(long)]
    pub warmup_epochs: Option<f64>,
    /// Training images per epoch (a random subset each epoch).
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Validation images used for evaluation.
    #[arg(long)]
    pub val_limit: Option<usize>,
}

impl TrainArgs {
    /// `base` with the given flags applied, checked for sense.
    pub fn apply(&self, base: &TrainConfig) -> anyhow::Result<TrainConfig> {
        let mut c = base.clone();
        c.epochs = self.epochs.unwrap_or(c.epochs);
        c.batch_size = self.batch_size.unwrap_or(c.batch_size);
        c.optimizer = self.optimizer.unwrap_or(c.optimizer);
        c.lr = self.lr.unwrap_or(c.lr);
        c.momentum = self.momentum.unwrap_or(c.momentum);
        c.weight_decay = self.weight_decay.unwrap_or(c.weight_decay);
        c.label_smoothing = self.label_smoothing.unwrap_or(c.label_smoothing);
        c.warmup_epochs = self.warmup_epochs.unwrap_or(c.warmup_epochs);
        c.train_limit = self.train_limit.or(c.train_limit);
        c.val_limit = self.val_limit.or(c.val_limit);
        if c.epochs == 0 || c.batch_size == 0 {
            return usage("--epochs and --batch-size must be at least 1");
        }
        if !(c.lr > 0.0 && c.lr < 10.0) {
            return usage(format!("--lr {} out of range (0, 10)", c.lr));
        }
        if !(0.0..1.0).contains(&c.momentum) || !(0.0..1.0).contains(&c.label_smoothing) {
            return usage("--momentum and --label-smoothing must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&c.weight_decay) || c.warmup_epochs < 0.0 {
            return usage("--weight-decay must be in [0, 1) and --warmup-epochs non-negative");
        }
        Ok(c)
    }
}
