//! Search algorithms over a space's genomes.
//!
//! A searcher proposes a whole generation at a time and hands it to an [`Evaluator`], so that a
//! device can measure a batch and an evaluator can skip genomes it has already seen.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::arch::Genome;
use crate::error::{Result, SdkError};
use crate::pareto::{dominates, hypervolume_2d};
use crate::space::SearchSpace;

/// Objectives of one genome, all minimised (e.g. `[-accuracy, latency]`), and whether it meets
/// the constraints (e.g. a latency budget).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The objective values.
    pub objectives: Vec<f64>,
    /// Total constraint violation; 0 when feasible.
    pub violation: f64,
}

/// Scores genomes, a generation at a time.
pub trait Evaluator {
    /// Number of objectives each evaluation has.
    fn objectives(&self) -> usize;
    /// Evaluations of `genomes`, in order.
    fn evaluate(&mut self, genomes: &[Genome]) -> Result<Vec<Evaluation>>;
    /// The reference point hypervolume is measured against (two objectives); `None` lets the
    /// search fix one from its initial population.
    fn reference_point(&self) -> Option<Vec<f64>> {
        None
    }
}

/// Budget and seed of a search.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSettings {
    /// Individuals per generation.
    pub population: usize,
    /// Generations after the initial one.
    pub generations: usize,
    /// Seed for every random choice.
    pub seed: u64,
}

/// What a generation achieved, for progress reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationReport {
    /// Generation number (0 = initial population).
    pub generation: usize,
    /// Distinct genomes evaluated so far.
    pub evaluated: usize,
    /// Size of the current non-dominated front.
    pub front_size: usize,
    /// Hypervolume of everything evaluated so far (two objectives only).
    pub hypervolume: Option<f64>,
}

/// One evaluated genome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Individual {
    /// The architecture's option indices.
    pub genome: Genome,
    /// Its scores.
    pub evaluation: Evaluation,
}

/// A search algorithm.
pub trait Searcher: Send + Sync {
    /// Name (`nsga2`, `random`, `evolution`).
    fn name(&self) -> &str;

    /// Runs the search and returns every distinct individual evaluated.
    fn search(
        &self,
        space: &dyn SearchSpace,
        evaluator: &mut dyn Evaluator,
        settings: &SearchSettings,
        progress: &mut dyn FnMut(&GenerationReport),
    ) -> Result<Vec<Individual>>;
}

/// Everything a search has evaluated: each distinct genome is sent to the evaluator once, in
/// batches, and a genome proposed again gets its earlier evaluation back.
pub struct Archive {
    index: HashMap<Genome, usize>,
    all: Vec<Individual>,
    reference: Option<[f64; 2]>,
    /// Indices of the non-dominated individuals, kept up to date as evaluations arrive.
    front: Vec<usize>,
}

impl Archive {
    /// An empty archive for `evaluator` (its reference point, if it has one).
    pub fn new(evaluator: &dyn Evaluator) -> Self {
        let reference = evaluator.reference_point().filter(|r| r.len() == 2).map(|r| [r[0], r[1]]);
        Self { index: HashMap::new(), all: Vec::new(), reference, front: Vec::new() }
    }

    /// Whether `genome` has been evaluated.
    pub fn contains(&self, genome: &Genome) -> bool {
        self.index.contains_key(genome)
    }

    /// Up to `n` distinct genomes drawn uniformly from `space` that were never evaluated (at
    /// most `20 n` draws: a small space runs out).
    pub fn sample_new(&self, space: &dyn SearchSpace, rng: &mut crate::rng::SplitMix64, n: usize) -> Vec<Genome> {
        let mut batch = Vec::with_capacity(n);
        let mut drawn = std::collections::HashSet::new();
        for _ in 0..n * 20 {
            if batch.len() == n {
                break;
            }
            let g = space.sample(rng);
            if !self.contains(&g) && drawn.insert(g.clone()) {
                batch.push(g);
            }
        }
        batch
    }

    /// `n` genomes from `make` (a variation operator), preferring distinct ones never
    /// evaluated; after `50 n` tries anything is taken, so a small space cannot stall a search.
    pub fn offspring(&self, n: usize, mut make: impl FnMut() -> Genome) -> Vec<Genome> {
        let mut out = Vec::with_capacity(n);
        let mut made = std::collections::HashSet::new();
        let mut attempts = 0;
        while out.len() < n {
            let child = make();
            attempts += 1;
            if attempts > 50 * n || (!self.contains(&child) && made.insert(child.clone())) {
                out.push(child);
            }
        }
        out
    }

    /// Evaluates the genomes of `batch` not seen before in one call, and returns the whole
    /// batch's individuals in order.
    pub fn evaluate(&mut self, evaluator: &mut dyn Evaluator, batch: &[Genome]) -> Result<Vec<Individual>> {
        let mut fresh: Vec<Genome> = Vec::new();
        let mut taken = std::collections::HashSet::new();
        for g in batch {
            if !self.index.contains_key(g) && taken.insert(g) {
                fresh.push(g.clone());
            }
        }
        if !fresh.is_empty() {
            let evaluations = evaluator.evaluate(&fresh)?;
            if evaluations.len() != fresh.len() {
                return Err(SdkError::Config(format!(
                    "the evaluator returned {} evaluations for {} architectures",
                    evaluations.len(),
                    fresh.len()
                )));
            }
            for (genome, evaluation) in fresh.into_iter().zip(evaluations) {
                let i = self.all.len();
                if !self.front.iter().any(|&f| dominates(&self.all[f].evaluation, &evaluation)) {
                    self.front.retain(|&f| !dominates(&evaluation, &self.all[f].evaluation));
                    self.front.push(i);
                }
                self.index.insert(genome.clone(), i);
                self.all.push(Individual { genome, evaluation });
            }
        }
        if self.reference.is_none() {
            self.reference = nadir(&self.all);
        }
        Ok(batch.iter().map(|g| self.all[self.index[g]].clone()).collect())
    }

    /// The progress report after `generation`.
    pub fn report(&self, generation: usize) -> GenerationReport {
        let front: Vec<Evaluation> = self.front.iter().map(|&i| self.all[i].evaluation.clone()).collect();
        GenerationReport {
            generation,
            evaluated: self.all.len(),
            front_size: front.len(),
            hypervolume: self.reference.map(|r| hypervolume_2d(&front, r)),
        }
    }

    /// Every distinct individual, in evaluation order.
    pub fn into_individuals(self) -> Vec<Individual> {
        self.all
    }
}

/// A reference point for two objectives: the worst feasible value of each, plus a tenth of the
/// range, so the initial population's extremes still count.
fn nadir(all: &[Individual]) -> Option<[f64; 2]> {
    let feasible: Vec<&Evaluation> =
        all.iter().map(|i| &i.evaluation).filter(|e| e.violation <= 0.0 && e.objectives.len() == 2).collect();
    if feasible.is_empty() || all.iter().any(|i| i.evaluation.objectives.len() != 2) {
        return None;
    }
    let mut r = [0.0; 2];
    for (k, slot) in r.iter_mut().enumerate() {
        let lo = feasible.iter().map(|e| e.objectives[k]).fold(f64::INFINITY, f64::min);
        let hi = feasible.iter().map(|e| e.objectives[k]).fold(f64::NEG_INFINITY, f64::max);
        *slot = hi + 0.1 * (hi - lo).max(hi.abs() * 1e-3).max(1e-9);
    }
    Some(r)
}

/// A space of plain integer genes (`blocks` genes with `options[b]` values each) and no
/// layers: for testing and benchmarking search algorithms on synthetic problems.
pub struct GridSpace {
    config: crate::space::SpaceConfig,
    blocks: Vec<crate::space::BlockSpec>,
}

impl GridSpace {
    /// A grid with `options[b]` values in gene `b`.
    pub fn new(options: &[usize]) -> Self {
        use crate::space::{BlockSpec, Dimension};
        let shape = crate::layer::FeatureShape::new(1, 1, 1);
        let blocks = options
            .iter()
            .map(|&n| BlockSpec {
                input: shape,
                output: shape,
                stride: 1,
                dims: vec![Dimension::new("v", "value", (0..n as i64).collect::<Vec<_>>())],
                options: (0..n as i64)
                    .map(|v| {
                        let mut s = crate::value::Settings::new();
                        s.set("v", v);
                        s
                    })
                    .collect(),
                rules: Vec::new(),
            })
            .collect();
        Self { config: crate::space::SpaceConfig::default(), blocks }
    }
}

impl SearchSpace for GridSpace {
    fn name(&self) -> &str {
        "grid"
    }
    fn config(&self) -> &crate::space::SpaceConfig {
        &self.config
    }
    fn blocks(&self) -> &[crate::space::BlockSpec] {
        &self.blocks
    }
    fn teacher(&self) -> crate::arch::Architecture {
        self.decode(&Genome(vec![0; self.blocks.len()]))
    }
    fn stem_layers(&self) -> Vec<crate::layer::LayerSpec> {
        Vec::new()
    }
    fn block_layers(&self, _: usize, _: &crate::arch::BlockOption) -> Result<Vec<crate::layer::LayerSpec>> {
        Err(SdkError::Config("the grid space has no layers; it only tests search algorithms".into()))
    }
    fn head_layers(&self) -> Vec<crate::layer::LayerSpec> {
        Vec::new()
    }
}

/// ZDT1 (Zitzler, Deb, Thiele 2000) on a grid: gene `i` takes `steps + 1` values in [0, 1].
/// Its Pareto front is `f2 = 1 - sqrt(f1)`, reached when every gene but the first is 0.
pub struct Zdt1 {
    /// Values per gene minus one.
    pub steps: usize,
}

impl Zdt1 {
    /// The grid space of this problem with `genes` genes.
    pub fn space(&self, genes: usize) -> GridSpace {
        GridSpace::new(&vec![self.steps + 1; genes])
    }

    /// The objectives of a genome.
    pub fn objectives(&self, g: &Genome) -> Vec<f64> {
        let x: Vec<f64> = g.0.iter().map(|&v| f64::from(v) / self.steps as f64).collect();
        let f1 = x[0];
        let g = 1.0 + 9.0 * x[1..].iter().sum::<f64>() / (x.len() - 1).max(1) as f64;
        vec![f1, g * (1.0 - (f1 / g).sqrt())]
    }

    /// The hypervolume of the true front on this grid for `reference`.
    pub fn optimal_hypervolume(&self, reference: [f64; 2]) -> f64 {
        let front: Vec<Evaluation> = (0..=self.steps)
            .map(|k| {
                let f1 = k as f64 / self.steps as f64;
                Evaluation { objectives: vec![f1, 1.0 - f1.sqrt()], violation: 0.0 }
            })
            .collect();
        hypervolume_2d(&front, reference)
    }
}

impl Evaluator for Zdt1 {
    fn objectives(&self) -> usize {
        2
    }
    fn evaluate(&mut self, genomes: &[Genome]) -> Result<Vec<Evaluation>> {
        Ok(genomes.iter().map(|g| Evaluation { objectives: self.objectives(g), violation: 0.0 }).collect())
    }
    fn reference_point(&self) -> Option<Vec<f64>> {
        Some(vec![1.1, 1.1])
    }
}
