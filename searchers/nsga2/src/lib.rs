//! # The `nsga2` searcher
//!
//! NSGA-II (Deb, Pratap, Agarwal, Meyarivan 2002), the search algorithm of DONNA:
//! - a population of `population` distinct architectures;
//! - each generation, `population` offspring from binary tournaments on (front rank, crowding
//!   distance), block-wise uniform crossover (probability `crossover`, default 0.9) and
//!   block-wise mutation (each block re-drawn with probability `mutation`, default 1/blocks,
//!   at least one block changed);
//! - offspring never evaluated before are preferred (a bounded number of retries), and the
//!   whole generation goes to the evaluator as one batch, so a device measures a batch;
//! - survivors: parents and offspring sorted into non-dominated fronts with constrained
//!   domination (a feasible architecture beats an infeasible one; of two infeasible ones the
//!   smaller violation wins, e.g. a latency budget), the last front cut by crowding distance.
//!
//! Settings (`--searcher nsga2:crossover=0.9,mutation=0.2`) are optional.
#![deny(missing_docs)]

use donna_sdk::pareto::{crowding, fronts};
use donna_sdk::registry::{BuiltinPlugin, SearcherProvider};
use donna_sdk::searcher::{Archive, Evaluation, Evaluator, GenerationReport, Individual, SearchSettings, Searcher};
use donna_sdk::{Genome, Result, SdkError, SearchSpace, Settings, SplitMix64};
use std::collections::HashSet;

/// NSGA-II.
#[derive(Clone, Debug)]
pub struct Nsga2 {
    /// Probability that an offspring is a crossover of two parents (else a copy of one).
    pub crossover: f64,
    /// Per-block mutation probability (`None`: 1 / blocks).
    pub mutation: Option<f64>,
}

impl Default for Nsga2 {
    fn default() -> Self {
        Self { crossover: 0.9, mutation: None }
    }
}

/// Rank and crowding of each population member: lower rank, then larger crowding, is better.
fn rank_and_crowd(pop: &[Individual]) -> (Vec<usize>, Vec<f64>) {
    let evals: Vec<Evaluation> = pop.iter().map(|i| i.evaluation.clone()).collect();
    let mut rank = vec![0; pop.len()];
    let mut crowd = vec![0.0; pop.len()];
    for (r, front) in fronts(&evals).iter().enumerate() {
        for (&i, c) in front.iter().zip(crowding(&evals, front)) {
            rank[i] = r;
            crowd[i] = c;
        }
    }
    (rank, crowd)
}

/// The best `n` of `pool` by front rank and crowding distance.
fn survivors(pool: Vec<Individual>, n: usize) -> Vec<Individual> {
    let evals: Vec<Evaluation> = pool.iter().map(|i| i.evaluation.clone()).collect();
    let mut keep = Vec::with_capacity(n);
    for front in fronts(&evals) {
        if keep.len() + front.len() <= n {
            keep.extend(front);
            continue;
        }
        let c = crowding(&evals, &front);
        let mut order: Vec<usize> = (0..front.len()).collect();
        // Largest crowding first; ties broken by position so the result is deterministic.
        order.sort_by(|&a, &b| c[b].total_cmp(&c[a]).then(a.cmp(&b)));
        keep.extend(order.into_iter().take(n - keep.len()).map(|k| front[k]));
        break;
    }
    keep.sort_unstable();
    keep.into_iter().map(|i| pool[i].clone()).collect()
}

impl Searcher for Nsga2 {
    fn name(&self) -> &str {
        "nsga2"
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
            return Err(SdkError::Config("NSGA-II needs a population of at least 2".into()));
        }
        let blocks = space.blocks().len().max(1);
        let mutation = self.mutation.unwrap_or(1.0 / blocks as f64);
        let mut rng = SplitMix64::derive(settings.seed, "nsga2");
        let mut archive = Archive::new(evaluator);
        let initial = archive.sample_new(space, &mut rng, n);
        let mut pop = archive.evaluate(evaluator, &initial)?;
        progress(&archive.report(0));
        for generation in 1..=settings.generations {
            let (rank, crowd) = rank_and_crowd(&pop);
            let tournament = |rng: &mut SplitMix64| {
                let (a, b) = (rng.below(pop.len()), rng.below(pop.len()));
                let better = rank[a] < rank[b] || (rank[a] == rank[b] && crowd[a] > crowd[b]);
                if better || (rank[a] == rank[b] && crowd[a] == crowd[b] && a < b) {
                    a
                } else {
                    b
                }
            };
            let offspring = archive.offspring(n, || {
                let p1 = &pop[tournament(&mut rng)].genome;
                let p2 = &pop[tournament(&mut rng)].genome;
                let child = if rng.unit() < self.crossover { space.crossover(p1, p2, &mut rng) } else { p1.clone() };
                space.mutate(&child, mutation, &mut rng)
            });
            let children = archive.evaluate(evaluator, &offspring)?;
            let mut in_pool: HashSet<Genome> = pop.iter().map(|p| p.genome.clone()).collect();
            let mut pool = pop;
            for c in children {
                if in_pool.insert(c.genome.clone()) {
                    pool.push(c);
                }
            }
            pop = survivors(pool, n);
            progress(&archive.report(generation));
        }
        Ok(archive.into_individuals())
    }
}

struct Provider;

impl SearcherProvider for Provider {
    fn name(&self) -> &str {
        "nsga2"
    }
    fn summary(&self) -> &str {
        "NSGA-II: non-dominated sorting, crowding, block-wise crossover and mutation, constrained domination"
    }
    fn build(&self, settings: &Settings) -> Result<Box<dyn Searcher>> {
        let crossover = settings.float_or("crossover", 0.9)?;
        if !(0.0..=1.0).contains(&crossover) {
            return Err(SdkError::Config(format!("nsga2: crossover {crossover} must be in [0, 1]")));
        }
        let mutation = match settings.get("mutation") {
            Some(_) => {
                let m = settings.float("mutation")?;
                if !(m > 0.0 && m <= 1.0) {
                    return Err(SdkError::Config(format!("nsga2: mutation {m} must be in (0, 1]")));
                }
                Some(m)
            }
            None => None,
        };
        Ok(Box::new(Nsga2 { crossover, mutation }))
    }
}

static PROVIDER: Provider = Provider;
inventory::submit! {
    BuiltinPlugin { searchers: &[&PROVIDER], ..BuiltinPlugin::empty("searcher-nsga2", env!("CARGO_PKG_VERSION"), "NSGA-II multi-objective evolutionary search") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use donna_sdk::searcher::Zdt1;

    #[test]
    fn nsga2_reaches_the_zdt1_front() {
        // 10 genes of 21 values; the optimum is every gene after the first at 0.
        let mut problem = Zdt1 { steps: 20 };
        let space = problem.space(10);
        let settings = SearchSettings { population: 40, generations: 150, seed: 3 };
        let mut reports = Vec::new();
        let all = Nsga2::default().search(&space, &mut problem, &settings, &mut |r| reports.push(r.clone())).unwrap();
        let best = problem.optimal_hypervolume([1.1, 1.1]);
        let got = reports.last().unwrap().hypervolume.unwrap();
        assert!(got > 0.97 * best, "hypervolume {got:.4} vs optimum {best:.4}");
        let first = reports[0].hypervolume.unwrap();
        assert!(first < 0.8 * best, "the random start ({first:.4}) should be far from the optimum");
        assert!(reports.windows(2).all(|w| w[1].hypervolume >= w[0].hypervolume), "an archive never loses area");
        // Each genome evaluated once; the same seed gives the same search.
        let mut distinct: Vec<_> = all.iter().map(|i| i.genome.clone()).collect();
        distinct.sort_by(|a, b| a.0.cmp(&b.0));
        distinct.dedup();
        assert_eq!(distinct.len(), all.len());
        let again = Nsga2::default().search(&space, &mut problem, &settings, &mut |_| {}).unwrap();
        assert_eq!(again, all);
    }

    /// Counts batches and keeps a budget on the first objective.
    struct Budgeted {
        calls: usize,
        limit: f64,
    }

    impl Evaluator for Budgeted {
        fn objectives(&self) -> usize {
            2
        }
        fn evaluate(&mut self, genomes: &[Genome]) -> Result<Vec<Evaluation>> {
            self.calls += 1;
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
    fn a_budget_keeps_the_final_population_feasible() {
        let space = donna_sdk::searcher::GridSpace::new(&[8, 8, 8, 8, 8]);
        let mut eval = Budgeted { calls: 0, limit: 10.0 };
        let settings = SearchSettings { population: 20, generations: 15, seed: 1 };
        let all = Nsga2::default().search(&space, &mut eval, &settings, &mut |_| {}).unwrap();
        assert_eq!(eval.calls, 16, "one evaluator call per generation");
        let evals: Vec<Evaluation> = all.iter().map(|i| i.evaluation.clone()).collect();
        let front = donna_sdk::pareto::non_dominated(&evals);
        assert!(front.iter().all(|&i| evals[i].violation == 0.0), "the front lies within the budget");
        // The best feasible quality uses the whole budget (spread over blocks: sqrt is concave).
        let best = front.iter().map(|&i| evals[i].objectives[0]).fold(f64::INFINITY, f64::min);
        assert!(best <= -6.0, "best quality {best}");
        assert!(donna_sdk::registry::searcher("nsga2", &Settings::new()).is_ok());
        let mut bad = Settings::new();
        bad.set("crossover", 2.0);
        assert!(donna_sdk::registry::searcher("nsga2", &bad).is_err());
    }
}
