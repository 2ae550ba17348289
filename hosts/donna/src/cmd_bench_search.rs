//! `donna bench search`: the searchers on a DONNA-shaped problem, and (with `--pymoo`)
//! pymoo's NSGA-II on the same problem, timed and scored by the same hypervolume.
//!
//! The problem: `blocks` blocks of `options` choices; accuracy is a linear predictor on
//! per-block NSR (`base - Σ w_b · nsr[b][o]`), latency a per-block table plus an overhead (an
//! analytical or lookup-table cost model). Capacity drives both, so accuracy and latency
//! conflict as they do in a real space. Tables are seeded.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use donna_sdk::pareto::hypervolume_2d;
use donna_sdk::searcher::{Evaluation, Evaluator, GridSpace, SearchSettings};
use donna_sdk::{registry, Genome, Settings, SplitMix64};
use serde::{Deserialize, Serialize};

#[derive(Args)]
pub struct SearchBenchArgs {
    /// Searchable blocks.
    #[arg(long, default_value_t = 5)]
    blocks: usize,
    /// Options per block.
    #[arg(long, default_value_t = 384)]
    options: usize,
    /// Population.
    #[arg(long, default_value_t = 100)]
    population: usize,
    /// Generations after the first.
    #[arg(long, default_value_t = 200)]
    generations: usize,
    /// Seed of the tables and the searches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Searchers to run (comma-separated).
    #[arg(long, default_value = "nsga2,evolution,random", value_delimiter = ',')]
    searchers: Vec<String>,
    /// A Python with pymoo: run its NSGA-II on the same problem (benches/search_pymoo.py).
    #[arg(long, value_name = "PYTHON")]
    pymoo: Option<PathBuf>,
}

/// The problem, as written for the Python side.
#[derive(Serialize, Deserialize)]
struct Problem {
    nsr: Vec<Vec<f64>>,
    lat: Vec<Vec<f64>>,
    weights: Vec<f64>,
    base: f64,
    overhead: f64,
    population: usize,
    generations: usize,
    seed: u64,
}

impl Problem {
    fn new(a: &SearchBenchArgs) -> Self {
        let mut rng = SplitMix64::derive(a.seed, "bench-search");
        let (mut nsr, mut lat) = (Vec::new(), Vec::new());
        for _ in 0..a.blocks {
            let (mut n, mut l) = (Vec::new(), Vec::new());
            for _ in 0..a.options {
                let capacity = rng.unit();
                n.push(1.2 - 0.8 * capacity + 0.15 * rng.unit());
                l.push(0.1 + 0.5 * capacity.powf(1.5) + 0.08 * rng.unit());
            }
            nsr.push(n);
            lat.push(l);
        }
        let weights = (0..a.blocks).map(|b| 2.0 + (b % 4) as f64).collect();
        Self {
            nsr,
            lat,
            weights,
            base: 80.0,
            overhead: 0.3,
            population: a.population,
            generations: a.generations,
            seed: a.seed,
        }
    }

    fn objectives(&self, g: &[u32]) -> [f64; 2] {
        let mut acc = self.base;
        let mut latency = self.overhead;
        for (b, &o) in g.iter().enumerate() {
            acc -= self.weights[b] * self.nsr[b][o as usize];
            latency += self.lat[b][o as usize];
        }
        [-acc, latency]
    }

    /// The worst value of each objective, a little beyond: every point counts.
    fn reference(&self) -> [f64; 2] {
        let worst =
            |t: &Vec<Vec<f64>>| t.iter().map(|r| r.iter().copied().fold(f64::MIN, f64::max)).collect::<Vec<_>>();
        let acc = self.base - worst(&self.nsr).iter().zip(&self.weights).map(|(n, w)| n * w).sum::<f64>();
        let lat = self.overhead + worst(&self.lat).iter().sum::<f64>();
        [-acc + 0.01, lat + 0.01]
    }
}

impl Evaluator for Problem {
    fn objectives(&self) -> usize {
        2
    }
    fn evaluate(&mut self, genomes: &[Genome]) -> donna_sdk::Result<Vec<Evaluation>> {
        Ok(genomes.iter().map(|g| Evaluation { objectives: self.objectives(&g.0).to_vec(), violation: 0.0 }).collect())
    }
    fn reference_point(&self) -> Option<Vec<f64>> {
        Some(self.reference().to_vec())
    }
}

pub fn run(a: &SearchBenchArgs) -> anyhow::Result<()> {
    if a.blocks == 0 || a.options < 2 || a.population < 2 {
        return crate::usage("--blocks must be at least 1, --options and --population at least 2");
    }
    let mut problem = Problem::new(a);
    let space = GridSpace::new(&vec![a.options; a.blocks]);
    let reference = problem.reference();
    println!(
        "problem: {} blocks x {} options, population {}, {} generations, seed {}; hypervolume reference ({:.3}, {:.3})",
        a.blocks, a.options, a.population, a.generations, a.seed, reference[0], reference[1]
    );
    println!("{:<16} {:>10} {:>10} {:>12}", "searcher", "seconds", "evaluated", "hypervolume");
    let mut nsga2_seconds = None;
    let mut nsga2_hv = None;
    for name in &a.searchers {
        let searcher = registry::searcher(name, &Settings::new())?;
        let settings = SearchSettings { population: a.population, generations: a.generations, seed: a.seed };
        let start = Instant::now();
        let all = searcher.search(&space, &mut problem, &settings, &mut |_| {})?;
        let seconds = start.elapsed().as_secs_f64();
        let evals: Vec<Evaluation> = all.iter().map(|i| i.evaluation.clone()).collect();
        let hv = hypervolume_2d(&evals, reference);
        println!("{:<16} {:>10.3} {:>10} {:>12.4}", format!("donna {name}"), seconds, all.len(), hv);
        if name == "nsga2" {
            nsga2_seconds = Some(seconds);
            nsga2_hv = Some(hv);
        }
    }
    if let Some(python) = &a.pymoo {
        let dir = std::env::temp_dir().join(format!("donna-bench-search-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (spec, out) = (dir.join("problem.json"), dir.join("pymoo.json"));
        donna_sdk::artifact::write_json(&spec, &problem)?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../benches/search_pymoo.py");
        let status = std::process::Command::new(python).arg(script).arg(&spec).arg(&out).status()?;
        if !status.success() {
            anyhow::bail!("{} {script} failed ({status}); is pymoo installed in that Python?", python.display());
        }
        #[derive(Deserialize)]
        struct PymooResult {
            seconds: f64,
            points: Vec<[f64; 2]>,
        }
        let r: PymooResult = donna_sdk::artifact::read_json(&out)?;
        let evals: Vec<Evaluation> =
            r.points.iter().map(|p| Evaluation { objectives: p.to_vec(), violation: 0.0 }).collect();
        let hv = hypervolume_2d(&evals, reference);
        println!("{:<16} {:>10.3} {:>10} {:>12.4}", "pymoo NSGA2", r.seconds, r.points.len(), hv);
        if let (Some(s), Some(h)) = (nsga2_seconds, nsga2_hv) {
            println!(
                "donna nsga2 is {:.1}x faster than pymoo's NSGA-II, hypervolume {:+.2}% relative",
                r.seconds / s,
                100.0 * (h / hv - 1.0)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
