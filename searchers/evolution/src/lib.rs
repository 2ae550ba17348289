//! # The `evolution` searcher
//!
//! Aging (regularized) evolution (Real et al. 2019) on a scalarised objective: a queue of
//! `population` architectures; each generation makes `population` children, each a mutation of
//! the best of `sample` architectures drawn from the queue, evaluates them as one batch, appends
//! them and drops as many of the oldest. Age, not fitness, removes architectures, which keeps
//! the search from collapsing on one lucky early one.
//!
//! The score is `Σ weight_k · objective_k` (all objectives minimised) with feasibility first:
//! an architecture within the constraints beats any outside, and of two outside the smaller
//! violation wins. The default weights `1,0` maximise accuracy under a latency budget, which
//! is what `--max-latency` asks for; `--searcher evolution:weights=1,0.5` trades them.
#![deny(missing_docs)]

use std::collections::VecDeque;

use donna_sdk::registry::{BuiltinPlugin, SearcherProvider};
use donna_sdk::searcher::{Archive, Evaluation, Evaluator, GenerationReport, Individual, SearchSettings, Searcher};
use donna_sdk::{Result, SdkError, SearchSpace, Settings, SplitMix64, Value};

/// Aging evolution.
#[derive(Clone, Debug)]
pub struct Evolution {
    /// Weights of the objectives in the score.
    pub weights: Vec<f64>,
    /// Tournament size (`None`: a quarter of the population, at least 2).
    pub sample: Option<usize>,
    /// Per-block mutation probability (`None`: 1 / blocks).
    pub mutation: Option<f64>,
}

impl Default for Evolution {
    fn default() -> Self {
        Self { weights: vec![1.0], sample: None, mutation: None }
    }
}

impl Evolution {
    /// The sort key of an evaluation: violation first, then the weighted sum.
    fn key(&self, e: &Evaluation) -> (f64, f64) {
        let score = e.objectives.iter().enumerate().map(|(k, v)| self.weights.get(k).copied().unwrap_or(0.0) * v).sum();
        (e.violation.max(0.0), score)
    }

    fn better(&self, a: &Evaluation, b: &Evaluation) -> bool {
        let (ka, kb) = (self.key(a), self.key(b));
        ka.0 < kb.0 || (ka.0 == kb.0 && ka.1 < kb.1)
    }
}

impl Searcher for Evolution {
    fn name(&self) -> &str {
        "evolution"
    }

    fn search(
        &self,
        space: &dyn SearchSpace,
        evaluator: &mut dyn Evaluator,
        settings: &SearchSettings,
        progress: &mut dyn FnMut(&GenerationReport),
    ) -> Result<Vec<Individual>> {
        let n = settings.population;
        if n < 2 {
            return Err(SdkError::Config("evolution needs a population of at least 2".into()));
        }
        let sample = self.sample.unwrap_or(n / 4).clamp(2, n);
        let mutation = self.mutation.unwrap_or(1.0 / space.blocks().len().max(1) as f64);
        let mut rng = SplitMix64::derive(settings.seed, "evolution");
        let mut archive = Archive::new(evaluator);
        let initial = archive.sample_new(space, &mut rng, n);
        let mut queue: VecDeque<Individual> = archive.evaluate(evaluator, &initial)?.into();
        progress(&archive.report(0));
        for generation in 1..=settings.generations {
            let children = archive.offspring(n, || {
                let mut best = rng.below(queue.len());
                for _ in 1..sample {
                    let c = rng.below(queue.len());
                    if self.better(&queue[c].evaluation, &queue[best].evaluation) {
                        best = c;
                    }
                }
                space.mutate(&queue[best].genome, mutation, &mut rng)
            });
            for c in archive.evaluate(evaluator, &children)? {
                queue.push_back(c);
                queue.pop_front();
            }
            progress(&archive.report(generation));
        }
        Ok(archive.into_individuals())
    }
}

struct Provider;

impl SearcherProvider for Provider {
    fn name(&self) -> &str {
        "evolution"
    }
    fn summary(&self) -> &str {
        "aging (regularized) evolution on a weighted sum of the objectives, constraints first"
    }
    fn build(&self, settings: &Settings) -> Result<Box<dyn Searcher>> {
        let mut e = Evolution::default();
        if let Some(v) = settings.get("weights") {
            let text = match v {
                Value::Name(s) => s.clone(),
                other => other.token(),
            };
            e.weights = text
                .split([',', ';'])
                .map(|w| w.trim().parse::<f64>().ok().filter(|x| x.is_finite()))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| SdkError::Config(format!("evolution: weights `{text}` are not numbers")))?;
        }
        if settings.get("sample").is_some() {
            let s = settings.int("sample")?;
            if s < 2 {
                return Err(SdkError::Config(format!("evolution: sample {s} must be at least 2")));
            }
            e.sample = Some(s as usize);
        }
        if settings.get("mutation").is_some() {
            let m = settings.float("mutation")?;
            if !(m > 0.0 && m <= 1.0) {
                return Err(SdkError::Config(format!("evolution: mutation {m} must be in (0, 1]")));
            }
            e.mutation = Some(m);
        }
        Ok(Box::new(e))
    }
}

static PROVIDER: Provider = Provider;
inventory::submit! {
    BuiltinPlugin { searchers: &[&PROVIDER], ..BuiltinPlugin::empty("searcher-evolution", env!("CARGO_PKG_VERSION"), "aging (regularized) evolution") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donna_sdk::searcher::GridSpace;
    use donna_sdk::Genome;

    /// Accuracy-like quality that grows with every gene, and a cost with a budget.
    struct Budgeted {
        limit: f64,
    }

    impl Evaluator for Budgeted {
        fn objectives(&self) -> usize {
            2
        }
        fn evaluate(&mut self, genomes: &[Genome]) -> Result<Vec<Evaluation>> {
            Ok(genomes
                .iter()
                .map(|g| {
                    let cost: f64 = g.0.iter().map(|&v| f64::from(v)).sum();
                    let quality = -g.0.iter().map(|&v| f64::from(v).sqrt()).sum::<f64>();
                    Evaluation { objectives: vec![quality, cost], violation: (cost - self.limit).max(0.0) }
                })
                .collect())
        }
    }

    #[test]
    fn evolution_finds_the_best_architecture_within_the_budget() {
        // Budget 10 over 5 genes of 0..7: the best spreads it evenly (2,2,2,2,2): -5·√2.
        let space = GridSpace::new(&[8, 8, 8, 8, 8]);
        let settings = SearchSettings { population: 20, generations: 30, seed: 5 };
        let all = Evolution::default().search(&space, &mut Budgeted { limit: 10.0 }, &settings, &mut |_| {}).unwrap();
        let best = all
            .iter()
            .filter(|i| i.evaluation.violation == 0.0)
            .map(|i| i.evaluation.objectives[0])
            .fold(f64::INFINITY, f64::min);
        assert!(best <= -5.0 * 2f64.sqrt() + 0.2, "best feasible quality {best}");
        let again = Evolution::default().search(&space, &mut Budgeted { limit: 10.0 }, &settings, &mut |_| {}).unwrap();
        assert_eq!(again, all, "the same seed gives the same search");
    }

    #[test]
    fn settings_are_parsed_and_checked() {
        let mut s = Settings::new();
        s.set("weights", "1,0.5");
        assert!(donna_sdk::registry::searcher("evolution", &s).is_ok());
        s.set("weights", "1,x");
        assert!(donna_sdk::registry::searcher("evolution", &s).err().unwrap().to_string().contains("not numbers"));
    }
}
