//! `donna explore --spaces A,B,... --device D`: compare search spaces by the Pareto fronts
//! their predictors give on one device.
//!
//! Each space gets its own run directory under `--root` (`ROOT/<space>`) and goes through
//! teacher, distillation, predictor and search there (each stage resumable as in `donna run`);
//! then every front goes into one plot and one table: the hypervolume of each front against a
//! common reference point, and the best predicted accuracy under a few latency budgets.

use std::fmt::Write;
use std::path::PathBuf;

use clap::Args;
use donna_sdk::artifact;
use donna_sdk::pareto::hypervolume_2d;
use donna_sdk::plot::{Plot, Series};
use donna_sdk::search::ParetoFile;
use donna_sdk::searcher::Evaluation;

use crate::run_args::{RunArgs, TrainArgs};
use crate::usage;

#[derive(Args)]
pub struct ExploreArgs {
    /// Spaces to compare (comma-separated names or file:PATH).
    #[arg(long, value_delimiter = ',', required = true)]
    spaces: Vec<String>,
    /// Folder holding one run directory per space, and the comparison.
    #[arg(long, default_value = "runs/explore")]
    root: PathBuf,
    /// Dataset [default: synthetic].
    #[arg(long)]
    data: Option<String>,
    /// Preset [default: quick].
    #[arg(long)]
    preset: Option<String>,
    /// Seed [default: 0].
    #[arg(long)]
    seed: Option<u64>,
    /// Input resolution [default: the preset's].
    #[arg(long)]
    resolution: Option<i64>,
    /// Width multiplier [default: the preset's].
    #[arg(long)]
    width_mult: Option<f64>,
    /// Latency budgets (ms) for the table [default: quartiles of the fronts' latency range].
    #[arg(long, value_delimiter = ',')]
    budgets: Vec<f64>,
    #[command(flatten)]
    teacher: TrainArgs,
    #[command(flatten)]
    distill: crate::cmd_distill::DistillArgs,
    #[command(flatten)]
    predictor: crate::cmd_predictor::PredictorArgs,
    #[command(flatten)]
    search: crate::cmd_search::SearchArgs,
}

const COLORS: [&str; 6] = ["crimson", "steelblue", "darkgreen", "darkorange", "purple", "black"];

/// The folder name of a space (`file:x/y.toml` -> `file_x_y.toml`).
fn folder(space: &str) -> String {
    space.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

pub fn run(a: &ExploreArgs) -> anyhow::Result<()> {
    if a.budgets.iter().any(|b| !(*b > 0.0 && b.is_finite())) {
        return usage("--budgets must be positive numbers of ms");
    }
    let mut fronts: Vec<(String, ParetoFile, f64)> = Vec::new();
    for space in &a.spaces {
        let run_args = RunArgs {
            run: a.root.join(folder(space)),
            space: Some(space.clone()),
            data: a.data.clone(),
            preset: a.preset.clone(),
            seed: a.seed,
            resolution: a.resolution,
            width_mult: a.width_mult,
        };
        let opened = run_args.open()?;
        eprintln!("explore: space {space} in {}", opened.dir.root().display());
        let start = std::time::Instant::now();
        crate::cmd_run::teacher_stage(&opened, &a.teacher, None)?;
        if crate::cmd_distill::stage(&opened, &a.distill, (0, 1), false)?.is_none() {
            return Ok(());
        }
        if crate::cmd_predictor::stage(&opened, &a.predictor, (0, 1))?.is_none() {
            return Ok(());
        }
        let front = crate::cmd_search::stage(&opened, &a.search)?;
        fronts.push((space.clone(), front, start.elapsed().as_secs_f64()));
    }
    let device = fronts[0].1.device.clone();
    // A common reference: the slowest and least accurate point of any front, a little beyond.
    let all = fronts.iter().flat_map(|f| f.1.front.iter());
    let (mut worst_acc, mut worst_lat) = (f64::INFINITY, 0.0f64);
    let (mut lo_lat, mut hi_lat) = (f64::INFINITY, 0.0f64);
    for e in all {
        worst_acc = worst_acc.min(e.predicted_accuracy);
        worst_lat = worst_lat.max(e.latency_ms);
        lo_lat = lo_lat.min(e.latency_ms);
        hi_lat = hi_lat.max(e.latency_ms);
    }
    let reference = [-(worst_acc - 1.0), worst_lat * 1.05];
    let budgets: Vec<f64> = if a.budgets.is_empty() {
        (1..=4).map(|q| lo_lat + (hi_lat - lo_lat) * q as f64 / 4.0).collect()
    } else {
        a.budgets.clone()
    };
    let mut md = String::new();
    let _ = writeln!(md, "# Search spaces compared on {device}\n");
    let _ = writeln!(
        md,
        "Each space: its own teacher, distillation, predictor and search (runs in `{}`). Accuracy is \
         each space's own predictor, so compare spaces trained on the same data and preset. \
         Hypervolume against the common reference ({:.2}% accuracy, {:.3} ms).\n",
        a.root.display(),
        -reference[0],
        reference[1]
    );
    let mut header = "| space | front | hypervolume |".to_owned();
    let mut rule = "|---|---|---|".to_owned();
    for b in &budgets {
        let _ = write!(header, " best ≤ {b:.3} ms |");
        rule.push_str("---|");
    }
    let _ = writeln!(md, "{header}\n{rule}");
    let mut series = Vec::new();
    for (i, (space, f, secs)) in fronts.iter().enumerate() {
        let evals: Vec<Evaluation> = f
            .front
            .iter()
            .map(|e| Evaluation { objectives: vec![-e.predicted_accuracy, e.latency_ms], violation: 0.0 })
            .collect();
        let hv = hypervolume_2d(&evals, reference);
        eprintln!("explore: {space} took {secs:.0} s in this invocation");
        let mut row = format!("| {space} | {} | {hv:.3} |", f.front.len());
        for b in &budgets {
            let best =
                f.front.iter().filter(|e| e.latency_ms <= *b).map(|e| e.predicted_accuracy).fold(f64::NAN, f64::max);
            let _ = write!(row, " {} |", if best.is_nan() { "—".to_owned() } else { format!("{best:.2}%") });
        }
        let _ = writeln!(md, "{row}");
        series.push(Series::line(
            space,
            COLORS[i % COLORS.len()],
            f.front.iter().map(|e| (e.latency_ms, e.predicted_accuracy)).collect(),
        ));
    }
    let _ = writeln!(md, "\n![fronts](explore-{}.svg)", folder(&device));
    let plot = Plot {
        title: format!("Pareto fronts on {device}"),
        x_label: format!("latency (ms, batch {})", fronts[0].1.batch),
        y_label: "predicted accuracy (%)".into(),
        series,
        diagonal: false,
    };
    artifact::write_atomic(&a.root.join(format!("explore-{}.svg", folder(&device))), plot.to_svg().as_bytes())?;
    let md_path = a.root.join(format!("explore-{}.md", folder(&device)));
    artifact::write_atomic(&md_path, md.as_bytes())?;
    print!("{md}");
    println!("-> {}", md_path.display());
    Ok(())
}
