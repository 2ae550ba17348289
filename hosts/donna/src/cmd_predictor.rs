//! `donna predictor` (sample, finetune, fit and judge the accuracy predictor) and
//! `donna predict` (predicted accuracy of architectures).

use clap::Args;
use donna_sdk::accuracy::{self, AccuracyModel, Finetuner, PredictorConfig, PredictorFile, SampleSet};
use donna_sdk::{distill, registry, teacher};
use tch::nn::VarStore;

use crate::cmd_distill::parse_shard;
use crate::cmd_run::open_data;
use crate::progress_bar::Bars;
use crate::run_args::{OpenedRun, RunArgs};
use crate::usage;

#[derive(Args, Clone, Debug, Default)]
pub struct PredictorArgs {
    /// Architectures to fit the predictor on [quick: 14, full: 30].
    #[arg(long)]
    pub archs: Option<usize>,
    /// Architectures held out to judge it (never fitted on) [quick: 6, full: 10].
    #[arg(long)]
    pub holdout: Option<usize>,
    /// Finetune steps per architecture [quick: 100, full: 600].
    #[arg(long)]
    pub finetune_steps: Option<usize>,
    /// Finetune length in passes over the training images (instead of --finetune-steps).
    #[arg(long, conflicts_with = "finetune_steps")]
    pub finetune_epochs: Option<f64>,
    /// Images per finetune step.
    #[arg(long)]
    pub finetune_batch_size: Option<usize>,
    /// Peak finetune learning rate (SGD, Nesterov momentum).
    #[arg(long)]
    pub finetune_lr: Option<f64>,
    /// Distillation temperature of the finetune.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Weight of the distillation term (cross-entropy gets 1 - this).
    #[arg(long)]
    pub kd_weight: Option<f64>,
    /// Validation images each finetuned architecture is measured on.
    #[arg(long)]
    pub finetune_val_images: Option<usize>,
    /// Cross-validation folds [default: leave-one-out].
    #[arg(long)]
    pub folds: Option<usize>,
}

impl PredictorArgs {
    /// `base` with the flags applied and checked; `--finetune-epochs` becomes steps when the
    /// number of training images is known.
    pub fn apply(&self, base: &PredictorConfig, train_images: Option<usize>) -> anyhow::Result<PredictorConfig> {
        let mut c = base.clone();
        c.fit = self.archs.unwrap_or(c.fit);
        c.holdout = self.holdout.unwrap_or(c.holdout);
        let f = &mut c.finetune;
        f.batch_size = self.finetune_batch_size.unwrap_or(f.batch_size);
        f.steps = self.finetune_steps.unwrap_or(f.steps);
        if let Some(e) = self.finetune_epochs {
            if !(e > 0.0 && e <= 1000.0) {
                return usage(format!("--finetune-epochs {e} out of range (0, 1000]"));
            }
            if let Some(n) = train_images {
                f.steps = ((e * n as f64 / f.batch_size.max(1) as f64).ceil() as usize).max(1);
            }
        }
        f.lr = self.finetune_lr.unwrap_or(f.lr);
        f.temperature = self.temperature.unwrap_or(f.temperature);
        f.kd_weight = self.kd_weight.unwrap_or(f.kd_weight);
        if let Some(v) = self.finetune_val_images {
            f.val_images = Some(v);
        }
        c.folds = self.folds.or(c.folds);
        if c.fit < 4 {
            return usage(format!("--archs {}: fitting needs at least 4 architectures", c.fit));
        }
        if c.folds.is_some_and(|k| k < 2) {
            return usage("--folds must be at least 2");
        }
        if f.val_images == Some(0) {
            return usage("--finetune-val-images must be at least 1");
        }
        if f.lr.is_nan() || f.lr >= 10.0 {
            return usage(format!("--finetune-lr {} out of range (0, 10)", f.lr));
        }
        f.validate()?;
        Ok(c)
    }
}

#[derive(Args)]
pub struct PredictorCommand {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    predictor: PredictorArgs,
    /// Finetune shard I of N (0-based); shards can run as separate processes, and the fit
    /// happens in whichever finishes the last sample.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
}

/// Runs (this shard of) the predictor stage; returns the fitted file when every sample is done.
pub fn stage(opened: &OpenedRun, args: &PredictorArgs, shard: (usize, usize)) -> anyhow::Result<Option<PredictorFile>> {
    args.apply(&opened.preset.predictor, None)?;
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let quality = distill::load_quality(&opened.dir)?;
    let data = open_data(opened)?;
    let config = args.apply(&opened.preset.predictor, Some(data.dataset.info().train_len))?;
    let seed = opened.config.seed;
    let samples = accuracy::plan_samples(space.as_ref(), &quality, config.fit, config.holdout, seed)?;
    let mine: Vec<_> =
        samples.iter().enumerate().filter(|(i, _)| i % shard.1 == shard.0).map(|(_, s)| s.clone()).collect();
    let pending = mine.len() - accuracy::load_results(&opened.dir, &mine, &config.finetune, seed)?.len();
    if pending > 0 {
        let vs = VarStore::new(data.device);
        let teacher_net = teacher::load(&opened.dir, space.as_ref(), &vs)?;
        let bars = Bars::new();
        let finetuner = Finetuner {
            run: &opened.dir,
            space: space.as_ref(),
            quality: &quality,
            teacher: &teacher_net,
            data: &data,
            config: &config.finetune,
            seed,
        };
        finetuner.run(&mine, &bars)?;
    }
    let results = accuracy::load_results(&opened.dir, &samples, &config.finetune, seed)?;
    if results.len() < samples.len() {
        println!(
            "{} of {} architectures are not finetuned yet (other shards?); re-run `donna predictor --run {}` to fit",
            samples.len() - results.len(),
            samples.len(),
            opened.dir.root().display()
        );
        return Ok(None);
    }
    let ordered: Vec<_> = samples.iter().map(|s| results[&s.id].clone()).collect();
    let file = accuracy::fit(&opened.dir, space.as_ref(), &ordered, config.folds)?;
    let cv = if file.folds == 0 { "leave-one-out".to_owned() } else { format!("{}-fold", file.folds) };
    for s in &file.scores {
        let held = s.holdout.map_or("—".to_owned(), |h| format!("{:.3}", h.kendall_tau));
        eprintln!("{:<26} {cv} tau {:.3}  held-out tau {held}", s.name, s.cv.kendall_tau);
    }
    let chosen = file.scores.iter().find(|s| s.name == file.chosen).expect("chosen is scored");
    let held = chosen.holdout.map_or("—".to_owned(), |h| format!("{:.3}", h.kendall_tau));
    let accs: Vec<f64> = ordered.iter().filter(|r| r.set == SampleSet::Fit).map(|r| 100.0 * r.accuracy).collect();
    println!(
        "predictor {}: {cv} Kendall tau {:.3}, held-out tau {held} ({} fitted, {} held out, accuracies {:.1}-{:.1}%) -> {}",
        file.chosen,
        chosen.cv.kendall_tau,
        file.fit_ids.len(),
        file.holdout_ids.len(),
        accs.iter().copied().fold(f64::INFINITY, f64::min),
        accs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        accuracy::report_path(&opened.dir).display()
    );
    Ok(Some(file))
}

pub fn run(a: &PredictorCommand) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    let shard = match &a.shard {
        Some(s) => parse_shard(s)?,
        None => (0, 1),
    };
    stage(&opened, &a.predictor, shard)?;
    Ok(())
}

#[derive(Args)]
pub struct PredictArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Architectures (text form, a JSON file, or teacher/smallest/largest).
    #[arg(required = true)]
    archs: Vec<String>,
}

pub fn predict(a: &PredictArgs) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let model = AccuracyModel::load(&opened.dir, space.as_ref())?;
    for text in &a.archs {
        let (_, arch) = crate::cmd_arch::load_arch_in(text, space.as_ref())?;
        let p = model.predict(space.as_ref(), &arch)?;
        println!(
            "{:.2}% ± {:.2}  {} ({} predictor)",
            p,
            model.file.residual_rmse,
            space.format_arch(&arch),
            model.file.chosen
        );
    }
    Ok(())
}
