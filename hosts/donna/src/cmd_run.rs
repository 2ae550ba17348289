//! `donna init`, `donna teacher` and `donna run`: the pipeline stages on a run directory.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use donna_sdk::compute::compute_device;
use donna_sdk::registry;
use donna_sdk::teacher::{self, ModelReport};
use donna_sdk::train::TrainData;

use crate::progress_bar::Bars;
use crate::run_args::{OpenedRun, RunArgs, TrainArgs};

#[derive(Args)]
pub struct InitArgs {
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
pub struct TeacherArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    train: TrainArgs,
    /// Import pretrained weights (safetensors, names as in teacher.safetensors) instead of
    /// training; their accuracy is measured and recorded.
    #[arg(long, value_name = "FILE.safetensors")]
    import: Option<PathBuf>,
}

#[derive(Args)]
pub struct TrainModelArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    train: TrainArgs,
    /// What to train: an architecture of the run's space, or `teacher`, `smallest`, `largest`
    /// (fewest / most MACs in every block) or `linear` (a linear classifier on the pixels).
    #[arg(long)]
    arch: String,
    /// Name of the baseline (default: the --arch keyword, or `arch-<hash>`).
    #[arg(long)]
    name: Option<String>,
}

#[derive(Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    teacher: TrainArgs,
    #[command(flatten)]
    distill: crate::cmd_distill::DistillArgs,
    #[command(flatten)]
    predictor: crate::cmd_predictor::PredictorArgs,
    #[command(flatten)]
    search: crate::cmd_search::SearchArgs,
    #[command(flatten)]
    finetune: crate::cmd_search::FinetuneArgs,
}

pub fn init(a: &InitArgs) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    println!("{}", opened.dir.config_path().display());
    Ok(())
}

/// The run's dataset on the compute device.
pub fn open_data(opened: &OpenedRun) -> anyhow::Result<TrainData> {
    let device = compute_device();
    let data = match &opened.dataset {
        Some(ds) => TrainData::for_run_with(&opened.dir, &opened.config, Arc::clone(ds), device)?,
        None => TrainData::for_run(&opened.dir, &opened.config, device)?,
    };
    Ok(data)
}

pub(crate) fn teacher_stage(
    opened: &OpenedRun,
    train: &TrainArgs,
    import: Option<&PathBuf>,
) -> anyhow::Result<ModelReport> {
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let data = open_data(opened)?;
    let bars = Bars::new();
    let report = match import {
        Some(file) => teacher::import(&opened.dir, space.as_ref(), &data, file, &bars)?,
        None => {
            let config = train.apply(&opened.preset.teacher_for(space.as_ref()))?;
            teacher::train(&opened.dir, space.as_ref(), &data, &config, opened.config.seed, &bars)?
        }
    };
    println!(
        "teacher {}: {:.2}% validation accuracy, {} params, {:.2}M MACs, {:.0} s of training -> {}",
        report.arch,
        100.0 * report.val_accuracy,
        report.params,
        report.macs as f64 / 1e6,
        report.train_seconds,
        opened.dir.teacher().display()
    );
    Ok(report)
}

/// `donna train`: a from-scratch baseline with the teacher's schedule.
pub fn train_model(a: &TrainModelArgs) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let (arch, default_name) = match a.arch.as_str() {
        "linear" => (None, "linear".to_owned()),
        keyword @ ("teacher" | "smallest" | "largest") => {
            (Some(crate::cmd_arch::load_arch_in(keyword, space.as_ref())?.1), keyword.to_owned())
        }
        text => {
            let (_, arch) = crate::cmd_arch::load_arch_in(text, space.as_ref())?;
            (Some(arch), format!("arch-{:08x}", donna_sdk::rng::fnv1a(text) as u32))
        }
    };
    let name = a.name.clone().unwrap_or(default_name);
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return crate::usage(format!("--name `{name}` must be letters, digits, - and _"));
    }
    let data = open_data(&opened)?;
    let config = a.train.apply(&opened.preset.teacher_for(space.as_ref()))?;
    let files = teacher::ModelFiles::baseline(&opened.dir, &name);
    let model = match &arch {
        Some(arch) => teacher::Model::Arch(arch),
        None => teacher::Model::Linear,
    };
    let bars = Bars::new();
    let report = teacher::train_model(&files, space.as_ref(), &model, &data, &config, opened.config.seed, &bars)?;
    println!(
        "{name} {}: {:.2}% validation accuracy, {} params, {:.2}M MACs, {:.0} s of training -> {}",
        report.arch,
        100.0 * report.val_accuracy,
        report.params,
        report.macs as f64 / 1e6,
        report.train_seconds,
        files.report().display()
    );
    Ok(())
}

pub fn teacher(a: &TeacherArgs) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    teacher_stage(&opened, &a.train, a.import.as_ref())?;
    Ok(())
}

/// The whole pipeline on one run directory; every stage skips what is already done.
pub fn pipeline(a: &PipelineArgs) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    eprintln!(
        "run {}: space {}, data {}, preset {}, seed {}",
        opened.dir.root().display(),
        opened.config.space,
        opened.config.data,
        opened.config.preset,
        opened.config.seed
    );
    let mut times: Vec<(String, f64)> = Vec::new();
    let mut timed =
        |name: &str, start: std::time::Instant| times.push((name.to_owned(), start.elapsed().as_secs_f64()));
    let t = std::time::Instant::now();
    let teacher_report = teacher_stage(&opened, &a.teacher, None)?;
    timed("teacher", t);
    let t = std::time::Instant::now();
    if crate::cmd_distill::stage(&opened, &a.distill, (0, 1), false)?.is_none() {
        return Ok(());
    }
    timed("distill", t);
    let t = std::time::Instant::now();
    let Some(predictor) = crate::cmd_predictor::stage(&opened, &a.predictor, (0, 1))? else {
        return Ok(());
    };
    timed("predictor", t);
    let t = std::time::Instant::now();
    let front = crate::cmd_search::stage(&opened, &a.search)?;
    timed("search", t);
    let t = std::time::Instant::now();
    let models = crate::cmd_search::finetune_stage(&opened, &front.device, &a.finetune, (0, 1))?;
    timed("finetune", t);
    // The teacher priced like the models, through the run's latency cache.
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let cost = registry::device(&front.device)?;
    let cache = donna_sdk::latency_cache::LatencyCache::open(&opened.dir.root().join("latency-cache.jsonl"))?;
    let query = donna_sdk::CostQuery { batch: front.batch, precision: cost.info().precision };
    let t_lat = cache.latency(cost.as_ref(), space.as_ref(), &[space.teacher()], &query)?[0];
    let report = donna_sdk::report::RunReport {
        config: &opened.config,
        predictor: Some(&predictor),
        front: &front,
        references: vec![donna_sdk::report::Reference {
            name: "teacher".into(),
            report: teacher_report,
            latency_ms: Some(t_lat.ms),
            latency_cv: t_lat.cv,
        }],
        found: models.into_iter().map(|(record, latency_ms)| donna_sdk::report::Found { record, latency_ms }).collect(),
        stage_seconds: times,
    };
    report.write(&opened.dir)?;
    println!("{}", report.verdict().replace("**", ""));
    println!("report -> {}", opened.dir.report().display());
    Ok(())
}
