//! The search stage: a Pareto front of predicted accuracy against latency for one device.
//!
//! The evaluator scores a whole generation at once: accuracy from the run's predictor (over
//! the distilled options only, see [`crate::subspace`]), latency from the device's cost model
//! through the run's latency cache, so no architecture is priced twice, even across searches.
//! Objectives are `[-accuracy, latency]`; a latency budget makes slower architectures
//! infeasible (violation = relative excess), which every searcher handles by constrained
//! domination.
//!
//! Artifacts in `DIR/search/<device>/`: `pareto.json` (the front), `evaluated.json` (every
//! architecture scored, with its generation), `history.json` (front size and hypervolume per
//! generation) and `pareto.svg` (every point and the front).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::accuracy::AccuracyModel;
use crate::arch::Genome;
use crate::artifact;
use crate::cost::{CostModel, CostQuery, LatencyMethod};
use crate::error::{Result, SdkError};
use crate::latency_cache::LatencyCache;
use crate::network::count_network;
use crate::pareto::non_dominated;
use crate::plot::{Plot, Series};
use crate::run_dir::RunDir;
use crate::searcher::{Evaluation, Evaluator, GenerationReport, SearchSettings, Searcher};
use crate::space::SearchSpace;
use crate::subspace::Restricted;

/// Scores genomes of the distilled sub-space on predicted accuracy and device latency.
pub struct DonnaEvaluator<'a> {
    /// The distilled sub-space the genomes index.
    pub space: &'a Restricted<'a>,
    /// The accuracy predictor.
    pub accuracy: &'a AccuracyModel,
    /// The device.
    pub cost: &'a dyn CostModel,
    /// Where latencies are kept between runs.
    pub cache: &'a LatencyCache,
    /// Batch size and precision priced.
    pub query: CostQuery,
    /// Latency budget in ms.
    pub max_latency: Option<f64>,
    /// Called after each batch with the number of architectures priced so far.
    pub on_batch: Option<&'a mut dyn FnMut(usize)>,
    priced: usize,
}

impl<'a> DonnaEvaluator<'a> {
    /// An evaluator for `space` (a distilled sub-space) on `cost`.
    pub fn new(
        space: &'a Restricted<'a>,
        accuracy: &'a AccuracyModel,
        cost: &'a dyn CostModel,
        cache: &'a LatencyCache,
        query: CostQuery,
        max_latency: Option<f64>,
    ) -> Self {
        Self { space, accuracy, cost, cache, query, max_latency, on_batch: None, priced: 0 }
    }
}

impl Evaluator for DonnaEvaluator<'_> {
    fn objectives(&self) -> usize {
        2
    }

    fn evaluate(&mut self, genomes: &[Genome]) -> Result<Vec<Evaluation>> {
        let archs: Vec<_> = genomes.iter().map(|g| self.space.decode(g)).collect();
        let latencies = self.cache.latency(self.cost, self.space, &archs, &self.query)?;
        self.priced += archs.len();
        if let Some(f) = self.on_batch.as_mut() {
            f(self.priced);
        }
        archs
            .iter()
            .zip(latencies)
            .map(|(arch, lat)| {
                let acc = self.accuracy.predict(self.space.inner(), arch)?;
                let violation = self.max_latency.map_or(0.0, |m| ((lat.ms - m) / m).max(0.0));
                Ok(Evaluation { objectives: vec![-acc, lat.ms], violation })
            })
            .collect()
    }
}

/// One architecture on a front.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontEntry {
    /// The architecture in text form.
    pub arch: String,
    /// Predicted accuracy in percent.
    pub predicted_accuracy: f64,
    /// Latency in ms.
    pub latency_ms: f64,
    /// Coefficient of variation of the latency, when measured.
    pub latency_cv: Option<f64>,
    /// Parameters.
    pub params: u64,
    /// MACs per image.
    pub macs: u64,
    /// Within the latency budget.
    pub feasible: bool,
}

/// `DIR/search/<device>/pareto.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ParetoFile {
    /// Space name.
    pub space: String,
    /// Device spec as given (`cpu:threads=2`).
    pub device: String,
    /// Runtime and version the latencies come from.
    pub runtime: String,
    /// How the latencies were obtained.
    pub latency_source: LatencyMethod,
    /// Batch size priced.
    pub batch: i64,
    /// The searcher.
    pub searcher: String,
    /// Search settings.
    pub settings: SearchSettings,
    /// Latency budget in ms.
    pub max_latency: Option<f64>,
    /// The predictor used.
    pub predictor: String,
    /// Architectures evaluated.
    pub evaluated: usize,
    /// The front, fastest first.
    pub front: Vec<FrontEntry>,
}

/// The folder of a device's search.
pub fn search_dir(run: &RunDir, device: &str) -> PathBuf {
    run.pareto(device).parent().map(PathBuf::from).unwrap_or_else(|| run.root().join("search"))
}

/// What to search.
pub struct SearchJob<'a> {
    /// The run.
    pub run: &'a RunDir,
    /// The full space of the run.
    pub space: &'a dyn SearchSpace,
    /// The accuracy predictor and its qualities.
    pub accuracy: &'a AccuracyModel,
    /// The device spec as given.
    pub device: &'a str,
    /// Its cost model.
    pub cost: &'a dyn CostModel,
    /// Batch and precision.
    pub query: CostQuery,
    /// The algorithm.
    pub searcher: &'a dyn Searcher,
    /// Population, generations, seed.
    pub settings: SearchSettings,
    /// Latency budget in ms.
    pub max_latency: Option<f64>,
}

impl SearchJob<'_> {
    /// Runs the search, writes the artifacts and returns the front file.
    pub fn run(&self, progress: &mut dyn FnMut(&GenerationReport)) -> Result<ParetoFile> {
        let sub = crate::accuracy::distilled_space(self.space, &self.accuracy.quality)?;
        let cache = LatencyCache::open(&self.run.root().join("latency-cache.jsonl"))?;
        let mut evaluator = DonnaEvaluator::new(&sub, self.accuracy, self.cost, &cache, self.query, self.max_latency);
        let mut history = Vec::new();
        let all = self.searcher.search(&sub, &mut evaluator, &self.settings, &mut |r| {
            history.push(r.clone());
            progress(r);
        })?;
        if all.is_empty() {
            return Err(SdkError::Config("the search evaluated no architecture".into()));
        }
        let info = self.cost.info();
        let evals: Vec<Evaluation> = all.iter().map(|i| i.evaluation.clone()).collect();
        let archs: Vec<_> = all.iter().map(|i| sub.decode(&i.genome)).collect();
        let latencies = cache.latency(self.cost, &sub, &archs, &self.query)?;
        let entry = |i: usize| -> Result<FrontEntry> {
            let counts = count_network(self.space, &archs[i])?;
            Ok(FrontEntry {
                arch: self.space.format_arch(&archs[i]),
                predicted_accuracy: -evals[i].objectives[0],
                latency_ms: latencies[i].ms,
                latency_cv: latencies[i].cv,
                params: counts.total.params,
                macs: counts.total.macs,
                feasible: evals[i].violation <= 0.0,
            })
        };
        let mut front: Vec<FrontEntry> = non_dominated(&evals).into_iter().map(entry).collect::<Result<_>>()?;
        front.sort_by(|a, b| a.latency_ms.total_cmp(&b.latency_ms).then(a.arch.cmp(&b.arch)));
        front.dedup_by(|a, b| a.arch == b.arch);
        let everything: Vec<FrontEntry> = (0..all.len()).map(entry).collect::<Result<_>>()?;
        let file = ParetoFile {
            space: self.space.name().to_owned(),
            device: self.device.to_owned(),
            runtime: format!("{} {}", info.runtime, info.runtime_version),
            latency_source: info.method,
            batch: self.query.batch,
            searcher: self.searcher.name().to_owned(),
            settings: self.settings.clone(),
            max_latency: self.max_latency,
            predictor: self.accuracy.file.chosen.clone(),
            evaluated: all.len(),
            front,
        };
        let dir = search_dir(self.run, self.device);
        artifact::write_json(&dir.join("evaluated.json"), &everything)?;
        artifact::write_json(&dir.join("history.json"), &history)?;
        artifact::write_atomic(&dir.join("pareto.svg"), pareto_plot(&file, &everything, None).to_svg().as_bytes())?;
        artifact::write_json(&self.run.pareto(self.device), &file)?;
        Ok(file)
    }
}

/// The plot of every evaluated point and the front (and, when given, finetuned models).
pub fn pareto_plot(file: &ParetoFile, everything: &[FrontEntry], extra: Option<Series>) -> Plot {
    let mut series = vec![
        Series::dots("evaluated", "#9bb7d4", everything.iter().map(|e| (e.latency_ms, e.predicted_accuracy)).collect()),
        Series::line(
            "Pareto front",
            "crimson",
            file.front.iter().map(|e| (e.latency_ms, e.predicted_accuracy)).collect(),
        ),
    ];
    series.extend(extra);
    Plot {
        title: format!("{} on {} ({}, {} evaluated)", file.space, file.device, file.searcher, file.evaluated),
        x_label: format!("latency (ms, batch {}, {})", file.batch, file.latency_source),
        y_label: "predicted accuracy (%)".into(),
        series,
        diagonal: false,
    }
}

/// Loads `DIR/search/<device>/pareto.json`.
pub fn load_front(run: &RunDir, device: &str) -> Result<ParetoFile> {
    let path = run.pareto(device);
    if !path.exists() {
        return Err(SdkError::Config(format!(
            "{}: no search for device `{device}` yet; run `donna search --run {} --device {device}` first",
            path.display(),
            run.root().display()
        )));
    }
    artifact::read_json(&path)
}
