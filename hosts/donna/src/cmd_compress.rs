//! `donna compress --model M --device D --max-latency MS`: hardware-aware compression.
//!
//! The model (a run's teacher, or a model exported by `donna finetune`) becomes the teacher of a
//! new run whose space is `compress:<its architecture>`: every block offers the options no
//! larger than the model's own (see `donna_sdk::compress`). Its weights are imported, the
//! smaller options distilled against it, a predictor fitted, the device searched under the
//! budget, and the most accurate architecture within it finetuned from its distilled blocks.
//! The result is a before/after table in `OUT/compress.md`.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use donna_sdk::export::ArchFile;
use donna_sdk::latency_cache::LatencyCache;
use donna_sdk::{artifact, registry, teacher, CostQuery, RunConfig, RunDir};

use crate::progress_bar::Bars;
use crate::run_args::RunArgs;
use crate::usage;

#[derive(Args)]
pub struct CompressArgs {
    /// The model: a run directory (its teacher) or an exported model directory
    /// (`RUN/models/<id>`, with arch.json and weights.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// Run directory of the compression [default: MODEL/compress-<device>].
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    search: crate::cmd_search::SearchArgs,
    #[command(flatten)]
    distill: crate::cmd_distill::DistillArgs,
    #[command(flatten)]
    predictor: crate::cmd_predictor::PredictorArgs,
    #[command(flatten)]
    finetune: crate::cmd_search::FinetuneArgs,
}

/// The model to compress: its architecture text, weights, and the run it came from.
struct Source {
    arch: String,
    weights: PathBuf,
    run: RunDir,
    config: RunConfig,
}

fn source(model: &Path) -> anyhow::Result<Source> {
    if model.join("arch.json").exists() {
        let arch: ArchFile = artifact::read_json(&model.join("arch.json"))?;
        // RUN/models/<id> -> RUN
        let run_root = model.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
        let run = RunDir::new(run_root);
        let config = run.config()?;
        return Ok(Source { arch: arch.text, weights: model.join("weights.safetensors"), run, config });
    }
    let run = RunDir::new(model);
    if !run.config_path().exists() {
        return usage(format!(
            "{}: neither a model directory (arch.json) nor a run directory (run.json)",
            model.display()
        ));
    }
    let config = run.config()?;
    let space = registry::space(&config.space, &config.space_config)?;
    if !run.teacher().exists() {
        return usage(format!("{}: the run has no trained teacher to compress", model.display()));
    }
    Ok(Source { arch: space.format_arch(&space.teacher()), weights: run.teacher(), run, config })
}

pub fn run(a: &CompressArgs) -> anyhow::Result<()> {
    let Some(budget) = a.search.max_latency else {
        return usage("give the latency budget: --max-latency MS");
    };
    let src = source(&a.model)?;
    if src.config.space.starts_with(donna_sdk::compress::PREFIX) {
        return usage("this model comes from a compression run; compress the model of the original run instead");
    }
    let device = a.search.device.clone().unwrap_or_else(|| crate::cmd_search::DEFAULT_DEVICE.to_owned());
    let out = a.out.clone().unwrap_or_else(|| {
        a.model.join(format!("compress-{}", device.replace(|c: char| !c.is_ascii_alphanumeric(), "_")))
    });
    let run_args = RunArgs {
        run: out.clone(),
        space: Some(format!("{}{}", donna_sdk::compress::PREFIX, src.arch)),
        data: Some(src.config.data.clone()),
        preset: Some(src.config.preset.clone()),
        seed: Some(src.config.seed),
        resolution: Some(src.config.space_config.resolution),
        width_mult: Some(src.config.space_config.width_mult),
    };
    let opened = run_args.open()?;
    // The model's weights expect the source run's normalisation.
    let data_json = src.run.root().join("data.json");
    if data_json.exists() && !opened.dir.root().join("data.json").exists() {
        std::fs::copy(&data_json, opened.dir.root().join("data.json"))?;
    }
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let sizes: Vec<String> = space.blocks().iter().map(|b| b.options.len().to_string()).collect();
    eprintln!("compress {}: options per block {} -> {}", src.arch, sizes.join(", "), out.display());
    let before = match teacher::existing(&opened.dir)? {
        Some(r) => r,
        None => {
            let data = crate::cmd_run::open_data(&opened)?;
            teacher::import(&opened.dir, space.as_ref(), &data, &src.weights, &Bars::new())?
        }
    };
    if crate::cmd_distill::stage(&opened, &a.distill, (0, 1), false)?.is_none()
        || crate::cmd_predictor::stage(&opened, &a.predictor, (0, 1))?.is_none()
    {
        return Ok(());
    }
    let search = crate::cmd_search::SearchArgs { device: Some(device.clone()), ..a.search.clone() };
    let front = crate::cmd_search::stage(&opened, &search)?;
    let mut finetune = a.finetune.clone();
    finetune.top = Some(1);
    let models = if front.front.iter().any(|e| e.feasible) {
        crate::cmd_search::finetune_stage(&opened, &front.device, &finetune, (0, 1))?
    } else {
        Vec::new()
    };
    let cost = registry::device(&device)?;
    let cache = LatencyCache::open(&opened.dir.root().join("latency-cache.jsonl"))?;
    let query = CostQuery { batch: front.batch, precision: cost.info().precision };
    let before_ms = cache.latency(cost.as_ref(), space.as_ref(), &[space.teacher()], &query)?[0].ms;
    let mut md = String::new();
    let _ = writeln!(md, "# Compression of `{}` on {device} under {budget} ms\n", src.arch);
    let _ = writeln!(md, "| | architecture | accuracy | latency (ms) | params | MMACs |\n|---|---|---|---|---|---|");
    let _ = writeln!(
        md,
        "| before | `{}` | {:.2}% | {before_ms:.3} | {} | {:.2} |",
        before.arch,
        100.0 * before.val_accuracy,
        before.params,
        before.macs as f64 / 1e6
    );
    match models.first() {
        Some((m, lat)) => {
            let _ = writeln!(
                md,
                "| after | `{}` | {:.2}% (predicted {}) | {} | {} | {:.2} |",
                m.arch,
                100.0 * m.accuracy,
                m.predicted_accuracy.map_or("—".into(), |p| format!("{p:.2}%")),
                lat.map_or("—".into(), |l| format!("{l:.3}")),
                m.params,
                m.macs as f64 / 1e6
            );
        }
        None => {
            let _ = writeln!(md, "| after | no architecture within {budget} ms | | | | |");
        }
    }
    artifact::write_atomic(&opened.dir.root().join("compress.md"), md.as_bytes())?;
    print!("{md}");
    println!("-> {}", opened.dir.root().join("compress.md").display());
    Ok(())
}
