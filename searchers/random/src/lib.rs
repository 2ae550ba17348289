//! # The `random` searcher
//!
//! Uniform random search: each generation is `population` architectures drawn uniformly from
//! the space, never one evaluated before, handed to the evaluator as one batch. It is the
//! baseline a search algorithm has to beat on the same budget, and with the same interface
//! (seeded, deduplicated, one batch per generation) as the evolutionary searchers.
#![deny(missing_docs)]

use donna_sdk::registry::{BuiltinPlugin, SearcherProvider};
use donna_sdk::searcher::{Archive, Evaluator, GenerationReport, Individual, SearchSettings, Searcher};
use donna_sdk::{Result, SdkError, SearchSpace, Settings, SplitMix64};

/// Uniform random search.
pub struct RandomSearch;

impl Searcher for RandomSearch {
    fn name(&self) -> &str {
        "random"
    }

    fn search(
        &self,
        space: &dyn SearchSpace,
        evaluator: &mut dyn Evaluator,
        settings: &SearchSettings,
        progress: &mut dyn FnMut(&GenerationReport),
    ) -> Result<Vec<Individual>> {
        if settings.population == 0 {
            return Err(SdkError::Config("random search needs a population of at least 1".into()));
        }
        let mut rng = SplitMix64::derive(settings.seed, "random-search");
        let mut archive = Archive::new(evaluator);
        for generation in 0..=settings.generations {
            let batch = archive.sample_new(space, &mut rng, settings.population);
            if batch.is_empty() {
                break;
            }
            archive.evaluate(evaluator, &batch)?;
            progress(&archive.report(generation));
        }
        Ok(archive.into_individuals())
    }
}

struct Provider;

impl SearcherProvider for Provider {
    fn name(&self) -> &str {
        "random"
    }
    fn summary(&self) -> &str {
        "uniform random sampling without repeats, one batch per generation (the baseline)"
    }
    fn build(&self, _settings: &Settings) -> Result<Box<dyn Searcher>> {
        Ok(Box::new(RandomSearch))
    }
}

static PROVIDER: Provider = Provider;
inventory::submit! {
    BuiltinPlugin { searchers: &[&PROVIDER], ..BuiltinPlugin::empty("searcher-random", env!("CARGO_PKG_VERSION"), "uniform random search") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donna_layers as _;
    use donna_sdk::searcher::Evaluation;
    use donna_sdk::{Genome, SpaceConfig};
    use donna_space_mobilenet as _;
    use std::collections::HashSet;

    /// Two objectives from the genome alone: the sum of option indices and its negation plus
    /// the first block's index, so the front is not everything.
    struct Toy {
        calls: usize,
    }

    impl Evaluator for Toy {
        fn objectives(&self) -> usize {
            2
        }
        fn evaluate(&mut self, genomes: &[Genome]) -> Result<Vec<Evaluation>> {
            self.calls += 1;
            Ok(genomes
                .iter()
                .map(|g| {
                    let s: f64 = g.0.iter().map(|&x| f64::from(x)).sum();
                    Evaluation { objectives: vec![s, -s + f64::from(g.0[0])], violation: 0.0 }
                })
                .collect())
        }
    }

    #[test]
    fn generations_are_seeded_batches_of_new_architectures() {
        let space = donna_sdk::registry::space("mobilenet", &SpaceConfig::default()).unwrap();
        let settings = SearchSettings { population: 10, generations: 4, seed: 7 };
        let run = || {
            let mut eval = Toy { calls: 0 };
            let mut reports = Vec::new();
            let all =
                RandomSearch.search(space.as_ref(), &mut eval, &settings, &mut |r| reports.push(r.clone())).unwrap();
            (all, reports, eval.calls)
        };
        let (all, reports, calls) = run();
        assert_eq!(calls, 5, "one evaluator call per generation");
        assert_eq!(all.len(), 50);
        let distinct: HashSet<_> = all.iter().map(|i| i.genome.clone()).collect();
        assert_eq!(distinct.len(), 50, "no architecture is evaluated twice");
        assert_eq!(reports.last().unwrap().evaluated, 50);
        assert!(reports.iter().all(|r| r.front_size >= 1 && r.front_size <= r.evaluated));
        assert_eq!(run().0, all, "the same seed gives the same search");
        let registered = donna_sdk::registry::searcher("random", &Settings::new()).unwrap();
        assert_eq!(registered.name(), "random");
    }
}
