//! `donna distill`: blockwise knowledge distillation into `DIR/quality.json`.

use clap::Args;
use donna_sdk::distill::{self, DistillConfig, QualityTable};
use donna_sdk::registry;
use donna_sdk::teacher;
use tch::nn::VarStore;

use crate::cmd_run::open_data;
use crate::progress_bar::Bars;
use crate::run_args::{OpenedRun, RunArgs};
use crate::usage;

#[derive(Args, Clone, Debug, Default)]
pub struct DistillArgs {
    /// Only these blocks (comma-separated indices).
    #[arg(long, value_delimiter = ',')]
    pub blocks: Option<Vec<usize>>,
    /// Options per block (a seeded sample including the teacher's) [quick: 8, full: all].
    #[arg(long)]
    pub max_options: Option<usize>,
    /// Training steps per option.
    #[arg(long, conflicts_with = "distill_epochs")]
    pub steps: Option<usize>,
    /// Training length per option in passes over the training images (instead of --steps).
    #[arg(long)]
    pub distill_epochs: Option<f64>,
    /// Images per step.
    #[arg(long)]
    pub distill_batch_size: Option<usize>,
    /// Peak learning rate (AdamW).
    #[arg(long)]
    pub distill_lr: Option<f64>,
    /// Options trained together on one teacher pass.
    #[arg(long)]
    pub options_per_pass: Option<usize>,
    /// Held-out images the NSR is measured on.
    #[arg(long)]
    pub val_images: Option<usize>,
}

impl DistillArgs {
    pub fn apply(&self, base: &DistillConfig) -> anyhow::Result<DistillConfig> {
        let mut c = base.clone();
        c.steps = self.steps.unwrap_or(c.steps);
        c.batch_size = self.distill_batch_size.unwrap_or(c.batch_size);
        c.lr = self.distill_lr.unwrap_or(c.lr);
        c.options_per_pass = self.options_per_pass.unwrap_or(c.options_per_pass);
        c.val_images = self.val_images.unwrap_or(c.val_images);
        if let Some(m) = self.max_options {
            c.max_options = Some(m);
        }
        if c.steps == 0 || c.batch_size == 0 || c.options_per_pass == 0 || c.val_images == 0 || c.max_options == Some(0)
        {
            return usage(
                "--steps, --distill-batch-size, --options-per-pass, --val-images and --max-options must be at least 1",
            );
        }
        if !(c.lr > 0.0 && c.lr < 1.0) {
            return usage(format!("--distill-lr {} out of range (0, 1)", c.lr));
        }
        Ok(c)
    }
}

#[derive(Args)]
pub struct DistillCommand {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    distill: DistillArgs,
    /// Do shard I of N (0-based), e.g. `--shard 2/8`; shards can run as separate processes.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Only merge the finished units of all shards into quality.json.
    #[arg(long)]
    merge: bool,
}

pub fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let parsed = s.split_once('/').and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
    match parsed {
        Some((i, n)) if n > 0 && i < n => Ok((i, n)),
        _ => usage(format!("--shard {s}: expected I/N with 0 <= I < N")),
    }
}

/// Runs (this shard of) the distillation stage; returns the table when every unit is done.
pub fn stage(
    opened: &OpenedRun,
    args: &DistillArgs,
    shard: (usize, usize),
    merge_only: bool,
) -> anyhow::Result<Option<QualityTable>> {
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let mut config = args.apply(&opened.preset.distill)?;
    let seed = opened.config.seed;
    let data = if merge_only && args.distill_epochs.is_none() { None } else { Some(open_data(opened)?) };
    if let (Some(epochs), Some(data)) = (args.distill_epochs, &data) {
        if !(epochs > 0.0 && epochs <= 1000.0) {
            return usage(format!("--distill-epochs {epochs} out of range (0, 1000]"));
        }
        let train = data.dataset.info().train_len as f64;
        config.steps = ((epochs * train / config.batch_size as f64).ceil() as usize).max(1);
    }
    let units = distill::plan(space.as_ref(), &config, seed, args.blocks.as_deref())?;
    if let (false, Some(data)) = (merge_only, data) {
        let mine = distill::shard(&units, shard.0, shard.1);
        let vs = VarStore::new(data.device);
        let teacher_net = teacher::load(&opened.dir, space.as_ref(), &vs)?;
        let bars = Bars::new();
        let distiller = distill::Distiller {
            run: &opened.dir,
            space: space.as_ref(),
            teacher: &teacher_net,
            data: &data,
            config: &config,
            seed,
        };
        distiller.distill(&mine, &bars)?;
    }
    match distill::merge(&opened.dir, space.as_ref(), &config, seed, &units)? {
        Ok(table) => {
            for (b, opts) in table.measured.iter().enumerate().filter(|(_, o)| !o.is_empty()) {
                let of_block: Vec<_> = table.units.iter().filter(|u| u.block == b).collect();
                let best = of_block.iter().min_by(|x, y| x.nsr.total_cmp(&y.nsr)).expect("measured");
                let worst = of_block.iter().max_by(|x, y| x.nsr.total_cmp(&y.nsr)).expect("measured");
                eprintln!(
                    "b{b}: {} options, NSR {:.4} ({}) .. {:.4} ({})",
                    opts.len(),
                    best.nsr,
                    best.option_text,
                    worst.nsr,
                    worst.option_text
                );
            }
            println!("quality table: {} units -> {}", table.units.len(), opened.dir.quality().display());
            Ok(Some(table))
        }
        Err(missing) => {
            println!(
                "{missing} of {} units are not done yet (other shards?); `donna distill --run {} --merge` collects them",
                units.len(),
                opened.dir.root().display()
            );
            Ok(None)
        }
    }
}

pub fn run(a: &DistillCommand) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    let shard = match &a.shard {
        Some(s) => parse_shard(s)?,
        None => (0, 1),
    };
    stage(&opened, &a.distill, shard, a.merge)?;
    Ok(())
}
