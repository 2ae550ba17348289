//! `donna search` (a Pareto front per device) and `donna finetune` (finetune and export the
//! models found).

use clap::Args;
use donna_sdk::accuracy::AccuracyModel;
use donna_sdk::cost::CostQuery;
use donna_sdk::export::{model_id, Exporter, ModelRecord};
use donna_sdk::finetune::{FinetuneConfig, KdStream};
use donna_sdk::search::{self, ParetoFile, SearchJob};
use donna_sdk::searcher::SearchSettings;
use donna_sdk::{registry, teacher, Settings, Value};
use tch::nn::VarStore;

use crate::cmd_run::open_data;
use crate::progress_bar::Bars;
use crate::run_args::{OpenedRun, RunArgs};
use crate::usage;

#[derive(Args, Clone, Debug, Default)]
pub struct SearchArgs {
    /// Hardware target (see `donna devices`), e.g. cpu:threads=2, v100, s20, agent:HOST:PORT.
    #[arg(long, short = 'd')]
    pub device: Option<String>,
    /// Search algorithm, `NAME[:KEY=VALUE,...]` (see `donna searchers`) [default: nsga2].
    #[arg(long)]
    pub searcher: Option<String>,
    /// Architectures per generation [quick: 24, full: 100].
    #[arg(long)]
    pub population: Option<usize>,
    /// Generations after the first [quick: 8, full: 50].
    #[arg(long)]
    pub generations: Option<usize>,
    /// Latency budget in ms: slower architectures are infeasible.
    #[arg(long, value_name = "MS")]
    pub max_latency: Option<f64>,
    /// Batch size the latency is priced at.
    #[arg(long, default_value_t = 1)]
    pub latency_batch: i64,
}

/// Parses `NAME[:KEY=VALUE,...]` into a name and settings (numbers become numbers).
pub fn parse_spec(spec: &str) -> anyhow::Result<(String, Settings)> {
    let (name, rest) = spec.split_once(':').unwrap_or((spec, ""));
    let mut settings = Settings::new();
    for part in rest.split(',').filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return usage(format!("`{part}` in `{spec}` is not KEY=VALUE"));
        };
        let value = if let Ok(i) = v.parse::<i64>() {
            Value::Int(i)
        } else if let Ok(x) = v.parse::<f64>() {
            Value::Float(x)
        } else {
            Value::Name(v.to_owned())
        };
        settings.set(k, value);
    }
    Ok((name.to_owned(), settings))
}

/// The device searched when none is given.
pub const DEFAULT_DEVICE: &str = "cpu";

/// Runs the search stage for one device.
pub fn stage(opened: &OpenedRun, a: &SearchArgs) -> anyhow::Result<ParetoFile> {
    // Flags first, artifacts second: a typo is reported before a missing stage.
    let device_spec = a.device.clone().unwrap_or_else(|| DEFAULT_DEVICE.to_owned());
    let cost = registry::device(&device_spec)?;
    let preset = &opened.preset.search;
    let (searcher_name, searcher_settings) = parse_spec(a.searcher.as_deref().unwrap_or(&preset.searcher))?;
    let searcher = registry::searcher(&searcher_name, &searcher_settings)?;
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let model = AccuracyModel::load(&opened.dir, space.as_ref())?;
    let settings = SearchSettings {
        population: a.population.unwrap_or(preset.population),
        generations: a.generations.unwrap_or(preset.generations),
        seed: opened.config.seed,
    };
    if settings.population < 2 || settings.population > 100_000 || settings.generations > 100_000 {
        return usage("--population must be in 2..=100000 and --generations at most 100000");
    }
    if let Some(m) = a.max_latency {
        if !(m > 0.0 && m.is_finite()) {
            return usage(format!("--max-latency {m} must be a positive number of ms"));
        }
    }
    if !(1..=65_536).contains(&a.latency_batch) {
        return usage(format!("--latency-batch {} out of range 1..=65536", a.latency_batch));
    }
    let info = cost.info();
    let job = SearchJob {
        run: &opened.dir,
        space: space.as_ref(),
        accuracy: &model,
        device: &device_spec,
        cost: cost.as_ref(),
        query: CostQuery { batch: a.latency_batch, precision: info.precision },
        searcher: searcher.as_ref(),
        settings: settings.clone(),
        max_latency: a.max_latency,
    };
    let bars = Bars::new();
    let phase = format!("search {} on {device_spec}", searcher.name());
    donna_sdk::progress::Progress::start(&bars, &phase, settings.generations as u64 + 1);
    let file = job.run(&mut |r| {
        let hv = r.hypervolume.map_or(String::new(), |h| format!(", hypervolume {h:.4}"));
        donna_sdk::progress::Progress::advance(
            &bars,
            1,
            &format!("gen {}: {} evaluated, front {}{hv}", r.generation, r.evaluated, r.front_size),
        );
    })?;
    donna_sdk::progress::Progress::finish(
        &bars,
        &format!("{phase}: {} evaluated, {} on the front", file.evaluated, file.front.len()),
    );
    println!("Pareto front on {} ({}, {}):", file.device, file.runtime, file.latency_source);
    for e in &file.front {
        println!(
            "{:>9.3} ms  {:>6.2}%  {:>6.2}M MACs  {}",
            e.latency_ms,
            e.predicted_accuracy,
            e.macs as f64 / 1e6,
            e.arch
        );
    }
    println!("-> {}", opened.dir.pareto(&device_spec).display());
    Ok(file)
}

#[derive(Args)]
pub struct SearchCommand {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    search: SearchArgs,
}

pub fn run_search(a: &SearchCommand) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    stage(&opened, &a.search)?;
    Ok(())
}

#[derive(Args, Clone, Debug, Default)]
pub struct FinetuneArgs {
    /// Models of the device's front to finetune, spread over its latency range [quick: 2, full: 4].
    #[arg(long)]
    pub top: Option<usize>,
    /// Finetune this architecture instead of front members (repeatable).
    #[arg(long = "arch", value_name = "ARCH")]
    pub finetune_archs: Vec<String>,
    /// Finetune steps per model [quick: 200, full: 4000].
    #[arg(long)]
    pub final_steps: Option<usize>,
    /// Images per step of the final finetune.
    #[arg(long)]
    pub final_batch_size: Option<usize>,
    /// Peak learning rate of the final finetune.
    #[arg(long)]
    pub final_lr: Option<f64>,
}

/// `count` members of `front` (sorted by latency) spread evenly over it, always including the
/// most accurate.
pub fn spread(front_len: usize, count: usize) -> Vec<usize> {
    if count == 0 || front_len == 0 {
        return Vec::new();
    }
    if count >= front_len {
        return (0..front_len).collect();
    }
    if count == 1 {
        return vec![front_len - 1];
    }
    let mut v: Vec<usize> = (0..count).map(|i| (front_len - 1) - i * (front_len - 1) / (count - 1)).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Finetunes and exports the chosen models; returns their records with their front entries'
/// latencies where known.
/// Finetunes and exports the chosen models (shard `I/N`: the chosen models `i` with
/// `i mod N = I`); returns this shard's records.
pub fn finetune_stage(
    opened: &OpenedRun,
    device: &str,
    a: &FinetuneArgs,
    shard: (usize, usize),
) -> anyhow::Result<Vec<(ModelRecord, Option<f64>)>> {
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let mut config: FinetuneConfig = opened.preset.final_finetune.clone();
    config.steps = a.final_steps.unwrap_or(config.steps);
    config.lr = a.final_lr.unwrap_or(config.lr);
    config.batch_size = a.final_batch_size.unwrap_or(config.batch_size);
    if config.lr.is_nan() || config.lr >= 10.0 {
        return usage(format!("--final-lr {} out of range (0, 10)", config.lr));
    }
    config.validate()?;
    let mut chosen: Vec<(String, donna_sdk::Architecture, Option<f64>, Option<f64>)> = Vec::new();
    if a.finetune_archs.is_empty() {
        let front = search::load_front(&opened.dir, device)?;
        let feasible: Vec<_> = front.front.iter().filter(|e| e.feasible).collect();
        for i in spread(feasible.len(), a.top.unwrap_or(opened.preset.search.top)) {
            let e = feasible[i];
            let arch = space.parse_arch(&e.arch)?;
            chosen.push((model_id(space.name(), &e.arch), arch, Some(e.predicted_accuracy), Some(e.latency_ms)));
        }
    } else {
        let model = AccuracyModel::load(&opened.dir, space.as_ref()).ok();
        for text in &a.finetune_archs {
            let (_, arch) = crate::cmd_arch::load_arch_in(text, space.as_ref())?;
            let predicted = model.as_ref().map(|m| m.predict(space.as_ref(), &arch)).transpose()?;
            chosen.push((model_id(space.name(), &space.format_arch(&arch)), arch, predicted, None));
        }
    }
    if chosen.is_empty() {
        return usage("nothing to finetune: the front has no feasible architecture");
    }
    // Each model is its own unit (its seed comes from its id), so shards give the models one
    // process would.
    let chosen: Vec<_> =
        chosen.into_iter().enumerate().filter(|(i, _)| i % shard.1 == shard.0).map(|(_, c)| c).collect();
    let data = open_data(opened)?;
    let exporter =
        Exporter { run: &opened.dir, space: space.as_ref(), data: &data, config: &config, seed: opened.config.seed };
    let bars = Bars::new();
    let mut stream: Option<KdStream> = None;
    let mut out = Vec::new();
    for (id, arch, predicted, latency) in &chosen {
        let done = donna_sdk::export::ModelDir::new(&opened.dir, id).existing()?;
        let reusable = done.as_ref().is_some_and(|r| r.finetune == config && r.seed == opened.config.seed);
        if stream.is_none() && !reusable {
            let vs = VarStore::new(data.device);
            let teacher_net = teacher::load(&opened.dir, space.as_ref(), &vs)?;
            stream =
                Some(KdStream::new(&teacher_net, &data, config.steps, config.batch_size, opened.config.seed, &bars)?);
        }
        let record = match (reusable, done, &stream) {
            (true, Some(r), _) => r,
            (_, _, Some(s)) => exporter.finetune_and_export(id, arch, *predicted, s, &bars)?,
            _ => unreachable!("a stream exists whenever a model is not reusable"),
        };
        println!(
            "{}: {:.2}% measured{} -> {}",
            record.id,
            100.0 * record.accuracy,
            predicted.map_or(String::new(), |p| format!(", {p:.2}% predicted")),
            opened.dir.model_dir(id).display()
        );
        out.push((record, *latency));
    }
    Ok(out)
}

#[derive(Args)]
pub struct FinetuneCommand {
    #[command(flatten)]
    run: RunArgs,
    /// The device whose front the models come from.
    #[arg(long, short = 'd', default_value = DEFAULT_DEVICE)]
    device: String,
    #[command(flatten)]
    finetune: FinetuneArgs,
    /// Do shard I of N (0-based) of the chosen models, e.g. `--shard 1/4`; shards can run as
    /// separate processes.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
}

pub fn run_finetune(a: &FinetuneCommand) -> anyhow::Result<()> {
    let shard = match &a.shard {
        Some(s) => crate::cmd_distill::parse_shard(s)?,
        None => (0, 1),
    };
    let opened = a.run.open()?;
    finetune_stage(&opened, &a.device, &a.finetune, shard)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_covers_the_front_and_keeps_the_most_accurate() {
        assert_eq!(spread(10, 1), vec![9]);
        assert_eq!(spread(10, 2), vec![0, 9]);
        assert_eq!(spread(10, 3), vec![0, 5, 9]);
        assert_eq!(spread(3, 5), vec![0, 1, 2]);
        assert!(spread(0, 2).is_empty());
    }

    #[test]
    fn specs_parse_numbers_and_names() {
        let (name, s) = parse_spec("evolution:weights=1;0.5,sample=4").unwrap();
        assert_eq!(name, "evolution");
        assert_eq!(s.int("sample").unwrap(), 4);
        assert!(parse_spec("nsga2:oops").is_err());
    }
}
