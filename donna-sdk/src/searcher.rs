//! Search algorithms over a space's genomes.
//!
//! A searcher proposes a whole generation at a time and hands it to an [`Evaluator`], so that a
//! device can measure a batch and an evaluator can skip genomes it has already seen.

use serde::{Deserialize, Serialize};

use crate::arch::Genome;
use crate::error::Result;
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
