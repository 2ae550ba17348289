//! The accuracy predictor stage: sample architectures, finetune them, fit and judge predictors.
//!
//! 1. [`plan_samples`] draws a *fit* set and a disjoint *held-out* set of architectures from the
//!    distilled options, stratified over the sum of block NSRs so both span the quality range
//!    (a uniform sample crowds the middle).
//! 2. [`Finetuner::run`] stitches each one from its blocks' BKD weights and the teacher's stem
//!    and head, finetunes it with KD on a shared batch stream and measures its validation
//!    accuracy. Each sample is a work unit: results are appended to
//!    `DIR/predictor/samples.jsonl` as they finish, a re-run skips what is there, and
//!    `--shard I/N` splits the units between processes.
//! 3. [`fit`] cross-validates every built-in predictor on the fit set (leave-one-out by
//!    default), picks the best by Kendall tau, scores it and ranking baselines on the held-out
//!    set, and writes `DIR/predictor.json`, `DIR/predictor-report.md` and
//!    `DIR/predictor.svg`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;

use crate::arch::Architecture;
use crate::artifact;
use crate::distill::{self, QualityTable};
use crate::error::{Result, SdkError};
use crate::finetune::{self, FinetuneConfig, KdStream};
use crate::network::{count_network, Network};
use crate::plot::{Plot, Series};
use crate::predictor::{self, Predictor, PREDICTORS};
use crate::progress::Progress;
use crate::rng::SplitMix64;
use crate::run_dir::RunDir;
use crate::space::SearchSpace;
use crate::stats::{kendall_tau, Agreement};
use crate::subspace::Restricted;
use crate::train::{self, TrainData};

/// Which set a sample belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSet {
    /// Used to fit (and cross-validate) the predictors.
    Fit,
    /// Never used to fit: the honest test.
    Holdout,
}

/// One planned architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `fit-07`, `holdout-02`.
    pub id: String,
    /// Its set.
    pub set: SampleSet,
    /// The architecture in text form.
    pub arch: String,
}

/// A finetuned sample: one line of `DIR/predictor/samples.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SampleResult {
    /// The sample's id.
    pub id: String,
    /// Its set.
    pub set: SampleSet,
    /// The architecture in text form.
    pub arch: String,
    /// Held-out NSR of each block's option: the predictor's features.
    pub features: Vec<f64>,
    /// Parameters.
    pub params: u64,
    /// MACs per image.
    pub macs: u64,
    /// Validation accuracy after finetuning (0-1).
    pub accuracy: f64,
    /// Validation accuracy of the stitched network before finetuning (0-1).
    pub stitched_accuracy: f64,
    /// Mean loss over the first and the last tenth of the finetune.
    pub loss: [f64; 2],
    /// Wall time of the finetune.
    pub seconds: f64,
    /// Run seed.
    pub seed: u64,
    /// Finetune settings.
    pub config: FinetuneConfig,
}

/// The predictor stage's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorConfig {
    /// Architectures the predictors are fitted on.
    pub fit: usize,
    /// Architectures held out to judge them.
    pub holdout: usize,
    /// How each is finetuned.
    pub finetune: FinetuneConfig,
    /// Cross-validation folds (`None`: leave-one-out).
    pub folds: Option<usize>,
}

/// `DIR/predictor/samples.jsonl`.
pub fn samples_path(run: &RunDir) -> PathBuf {
    run.root().join("predictor").join("samples.jsonl")
}

/// `DIR/predictor-report.md`.
pub fn report_path(run: &RunDir) -> PathBuf {
    run.root().join("predictor-report.md")
}

/// The space restricted to the options that have an NSR in `quality`.
pub fn distilled_space<'a>(space: &'a dyn SearchSpace, quality: &QualityTable) -> Result<Restricted<'a>> {
    if quality.space != space.name() {
        return Err(SdkError::Config(format!(
            "the quality table is for space `{}`, the run's space is `{}`",
            quality.space,
            space.name()
        )));
    }
    Restricted::new(space, &quality.measured)
}

/// The predictor's features of `arch`: the NSR of each block's option.
pub fn features(space: &dyn SearchSpace, quality: &QualityTable, arch: &Architecture) -> Result<Vec<f64>> {
    let genome = space.validate(arch)?;
    (0..space.blocks().len())
        .map(|b| {
            quality.nsr(b, genome.option(b)).ok_or_else(|| {
                SdkError::Arch(format!(
                    "block {b}: option {} was not distilled, so its accuracy cannot be predicted",
                    space.blocks()[b].format_option(&arch.blocks[b])
                ))
            })
        })
        .collect()
}

/// `fit` and `holdout` distinct architectures from the distilled options, each set stratified
/// over the NSR sum; the same for the same seed and quality table.
pub fn plan_samples(
    space: &dyn SearchSpace,
    quality: &QualityTable,
    fit: usize,
    holdout: usize,
    seed: u64,
) -> Result<Vec<Sample>> {
    let sub = distilled_space(space, quality)?;
    let wanted = fit + holdout;
    // A pool of distinct candidates, sorted by NSR sum.
    let pool_size = (40 * wanted).max(400);
    let mut rng = SplitMix64::derive(seed, "predictor-pool");
    let mut seen = std::collections::HashSet::new();
    let mut pool = Vec::new();
    for _ in 0..pool_size * 4 {
        if pool.len() >= pool_size {
            break;
        }
        let genome = sub.sample(&mut rng);
        if seen.insert(genome.clone()) {
            let arch = sub.decode(&genome);
            let sum: f64 = features(space, quality, &arch)?.iter().sum();
            pool.push((sum, space.format_arch(&arch)));
        }
    }
    if pool.len() < wanted {
        return Err(SdkError::Config(format!(
            "the distilled options give only {} distinct architectures; {wanted} are needed ({fit} to fit, \
             {holdout} held out): distil more options or ask for fewer",
            pool.len()
        )));
    }
    pool.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut taken = vec![false; pool.len()];
    let mut out = Vec::new();
    for (set, count, stream) in
        [(SampleSet::Fit, fit, "predictor-fit"), (SampleSet::Holdout, holdout, "predictor-holdout")]
    {
        let mut rng = SplitMix64::derive(seed, stream);
        for k in 0..count {
            let (lo, hi) = (k * pool.len() / count, (k + 1) * pool.len() / count);
            let free: Vec<usize> = (lo..hi).filter(|&i| !taken[i]).collect();
            // A stratum emptied by the other set borrows the nearest free candidate.
            let i = if free.is_empty() {
                (0..pool.len()).filter(|&i| !taken[i]).min_by_key(|&i| i.abs_diff(lo)).unwrap_or(lo)
            } else {
                free[rng.below(free.len())]
            };
            taken[i] = true;
            let prefix = if set == SampleSet::Fit { "fit" } else { "holdout" };
            out.push(Sample { id: format!("{prefix}-{k:02}"), set, arch: pool[i].1.clone() });
        }
    }
    Ok(out)
}

/// The finished results in `DIR/predictor/samples.jsonl` that match `samples` (same id,
/// architecture, seed and settings), the last line winning.
pub fn load_results(
    run: &RunDir,
    samples: &[Sample],
    config: &FinetuneConfig,
    seed: u64,
) -> Result<BTreeMap<String, SampleResult>> {
    let (lines, _) = artifact::read_json_lines::<SampleResult>(&samples_path(run))?;
    let mut out = BTreeMap::new();
    for r in lines {
        let matches = samples.iter().any(|s| s.id == r.id && s.arch == r.arch && s.set == r.set);
        if matches && r.seed == seed && r.config == *config {
            out.insert(r.id.clone(), r);
        }
    }
    Ok(out)
}

/// What finetuning the samples needs.
pub struct Finetuner<'a> {
    /// The run.
    pub run: &'a RunDir,
    /// The run's space.
    pub space: &'a dyn SearchSpace,
    /// The distilled qualities.
    pub quality: &'a QualityTable,
    /// The trained teacher.
    pub teacher: &'a Network,
    /// The data.
    pub data: &'a TrainData,
    /// Finetune settings.
    pub config: &'a FinetuneConfig,
    /// Run seed.
    pub seed: u64,
}

impl Finetuner<'_> {
    /// Finetunes the `samples` that have no result yet, appending each result as it finishes;
    /// returns the number finetuned now.
    pub fn run(&self, samples: &[Sample], progress: &dyn Progress) -> Result<usize> {
        let done = load_results(self.run, samples, self.config, self.seed)?;
        let pending: Vec<&Sample> = samples.iter().filter(|s| !done.contains_key(&s.id)).collect();
        if pending.is_empty() {
            return Ok(0);
        }
        let stream =
            KdStream::new(self.teacher, self.data, self.config.steps, self.config.batch_size, self.seed, progress)?;
        for (i, s) in pending.iter().enumerate() {
            let phase = format!("{} ({}/{})", s.id, i + 1, pending.len());
            let result = self.one(s, &stream, &phase, progress)?;
            artifact::append_json_line(&samples_path(self.run), &result)?;
        }
        Ok(pending.len())
    }

    fn one(&self, s: &Sample, stream: &KdStream, phase: &str, progress: &dyn Progress) -> Result<SampleResult> {
        let (space, data) = (self.space, self.data);
        let arch = space.parse_arch(&s.arch)?;
        let feats = features(space, self.quality, &arch)?;
        let counts = count_network(space, &arch)?;
        let vs = VarStore::new(data.device);
        let net = distill::stitch(self.run, space, &arch, &vs)?;
        let val = self.config.val_images;
        let stitched_accuracy = train::evaluate(&net, data, val, &crate::progress::Silent)?;
        let seed = SplitMix64::derive(self.seed, &s.id).next_u64();
        let outcome = finetune::finetune(&vs, &net, stream, self.config, seed, phase, progress)?;
        let accuracy = train::evaluate(&net, data, val, &crate::progress::Silent)?;
        progress.finish(&format!(
            "{}: {:.2}% (stitched {:.2}%), NSR sum {:.3}, {:.1} s",
            s.id,
            100.0 * accuracy,
            100.0 * stitched_accuracy,
            feats.iter().sum::<f64>(),
            outcome.seconds
        ));
        Ok(SampleResult {
            id: s.id.clone(),
            set: s.set,
            arch: s.arch.clone(),
            features: feats,
            params: counts.total.params,
            macs: counts.total.macs,
            accuracy,
            stitched_accuracy,
            loss: [outcome.first_loss, outcome.last_loss],
            seconds: outcome.seconds,
            seed: self.seed,
            config: self.config.clone(),
        })
    }
}

/// How one predictor (or a ranking baseline) did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PredictorScore {
    /// Predictor or baseline name.
    pub name: String,
    /// Out-of-fold agreement on the fit set (baselines: plain agreement).
    pub cv: Agreement,
    /// Agreement on the held-out set of the model fitted on the whole fit set.
    pub holdout: Option<Agreement>,
}

/// `DIR/predictor.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PredictorFile {
    /// Space name.
    pub space: String,
    /// Run seed.
    pub seed: u64,
    /// What the features are.
    pub features: String,
    /// What the target is.
    pub target: String,
    /// The predictor chosen by cross-validation.
    pub chosen: String,
    /// Its fitted state (fitted on the fit set only).
    pub model: serde_json::Value,
    /// Root mean square of its out-of-fold residuals: the uncertainty of a prediction, in
    /// accuracy points.
    pub residual_rmse: f64,
    /// Cross-validation folds (0 = leave-one-out).
    pub folds: usize,
    /// Every predictor's and baseline's scores.
    pub scores: Vec<PredictorScore>,
    /// Ids of the samples it was fitted on.
    pub fit_ids: Vec<String>,
    /// Ids of the held-out samples.
    pub holdout_ids: Vec<String>,
}

/// A loaded predictor with what it needs to score architectures.
pub struct AccuracyModel {
    /// The file it came from.
    pub file: PredictorFile,
    /// The fitted predictor.
    pub predictor: Box<dyn Predictor>,
    /// The NSRs.
    pub quality: QualityTable,
}

impl AccuracyModel {
    /// Loads `DIR/predictor.json` and `DIR/quality.json`.
    pub fn load(run: &RunDir, space: &dyn SearchSpace) -> Result<Self> {
        let path = run.predictor();
        if !path.exists() {
            return Err(SdkError::Config(format!(
                "{}: no predictor yet; run `donna predictor --run {}` first",
                path.display(),
                run.root().display()
            )));
        }
        let file: PredictorFile = artifact::read_json(&path)?;
        if file.space != space.name() {
            return Err(SdkError::Config(format!(
                "{}: predictor for space `{}`, the run's space is `{}`",
                path.display(),
                file.space,
                space.name()
            )));
        }
        let predictor =
            predictor::from_json(&file.model).map_err(|e| SdkError::Config(format!("{}: {e}", path.display())))?;
        let quality = distill::load_quality(run)?;
        Ok(Self { file, predictor, quality })
    }

    /// Predicted accuracy of `arch` in percent.
    pub fn predict(&self, space: &dyn SearchSpace, arch: &Architecture) -> Result<f64> {
        self.predictor.predict(&features(space, &self.quality, arch)?)
    }
}

/// Fits every predictor on the fit results, judges them, writes `predictor.json`, the report
/// and the plot, and returns the file.
pub fn fit(
    run: &RunDir,
    space: &dyn SearchSpace,
    results: &[SampleResult],
    folds: Option<usize>,
) -> Result<PredictorFile> {
    let seed = results.first().map(|r| r.seed).unwrap_or(0);
    let (fit, held): (Vec<&SampleResult>, Vec<&SampleResult>) = results.iter().partition(|r| r.set == SampleSet::Fit);
    if fit.len() < 4 {
        return Err(SdkError::Config(format!(
            "fitting a predictor needs at least 4 finetuned architectures, got {}",
            fit.len()
        )));
    }
    let x: Vec<Vec<f64>> = fit.iter().map(|r| r.features.clone()).collect();
    let y: Vec<f64> = fit.iter().map(|r| 100.0 * r.accuracy).collect();
    let hx: Vec<Vec<f64>> = held.iter().map(|r| r.features.clone()).collect();
    let hy: Vec<f64> = held.iter().map(|r| 100.0 * r.accuracy).collect();
    let k = folds.unwrap_or(fit.len()).min(fit.len());
    let mut scores = Vec::new();
    let mut oof = BTreeMap::new();
    let mut held_pred = BTreeMap::new();
    for name in PREDICTORS {
        let cv = predictor::cross_validate(name, &x, &y, k)?;
        let mut p = predictor::new_predictor(name)?;
        p.fit(&x, &y)?;
        let h: Vec<f64> = hx.iter().map(|f| p.predict(f)).collect::<Result<_>>()?;
        scores.push(PredictorScore {
            name: name.to_owned(),
            cv: Agreement::of(&cv, &y),
            holdout: (!held.is_empty()).then(|| Agreement::of(&h, &hy)),
        });
        oof.insert(name, cv);
        held_pred.insert(name, h);
    }
    // Ranking baselines: a lower NSR sum, more MACs, more parameters mean more accurate.
    type Key = fn(&SampleResult) -> f64;
    let baselines: [(&str, Key); 3] = [
        ("baseline: -(sum of NSR)", |r| -r.features.iter().sum::<f64>()),
        ("baseline: MACs", |r| r.macs as f64),
        ("baseline: params", |r| r.params as f64),
    ];
    for (name, key) in baselines {
        let fx: Vec<f64> = fit.iter().map(|r| key(r)).collect();
        let hxk: Vec<f64> = held.iter().map(|r| key(r)).collect();
        let rank_only = |v: &[f64], t: &[f64]| Agreement { mse: None, ..Agreement::of(v, t) };
        scores.push(PredictorScore {
            name: name.to_owned(),
            cv: rank_only(&fx, &y),
            holdout: (!held.is_empty()).then(|| rank_only(&hxk, &hy)),
        });
    }
    // The best predictor by out-of-fold Kendall tau, then by MSE.
    let chosen = scores
        .iter()
        .filter(|s| PREDICTORS.contains(&s.name.as_str()))
        .max_by(|a, b| {
            let (ma, mb) = (a.cv.mse.unwrap_or(f64::INFINITY), b.cv.mse.unwrap_or(f64::INFINITY));
            a.cv.kendall_tau.total_cmp(&b.cv.kendall_tau).then(mb.total_cmp(&ma))
        })
        .map(|s| s.name.clone())
        .unwrap_or_else(|| "linear".into());
    let mut p = predictor::new_predictor(&chosen)?;
    p.fit(&x, &y)?;
    let residual_rmse = scores.iter().find(|s| s.name == chosen).and_then(|s| s.cv.mse).map_or(0.0, f64::sqrt);
    let file = PredictorFile {
        space: space.name().to_owned(),
        seed,
        features: "held-out NSR of each block's option (quality.json)".into(),
        target: "validation accuracy in percent after KD finetuning".into(),
        chosen: chosen.clone(),
        model: p.to_json(),
        residual_rmse,
        folds: if k == fit.len() { 0 } else { k },
        scores,
        fit_ids: fit.iter().map(|r| r.id.clone()).collect(),
        holdout_ids: held.iter().map(|r| r.id.clone()).collect(),
    };
    let plot = Plot {
        title: format!("{} predictor: predicted vs measured accuracy", chosen),
        x_label: "measured accuracy (%)".into(),
        y_label: "predicted accuracy (%)".into(),
        series: vec![
            Series::dots(
                "fit (out-of-fold)",
                "steelblue",
                y.iter().copied().zip(oof[chosen.as_str()].iter().copied()).collect(),
            ),
            Series::dots(
                "held out",
                "crimson",
                hy.iter().copied().zip(held_pred[chosen.as_str()].iter().copied()).collect(),
            ),
        ],
        diagonal: true,
    };
    artifact::write_atomic(&run.root().join("predictor.svg"), plot.to_svg().as_bytes())?;
    let report = report(&file, results, &oof[chosen.as_str()], &held_pred[chosen.as_str()]);
    artifact::write_atomic(&report_path(run), report.as_bytes())?;
    artifact::write_json(&run.predictor(), &file)?;
    Ok(file)
}

fn fmt_agreement(a: Option<&Agreement>) -> String {
    match a {
        Some(a) => format!(
            "{:.3} | {:.3} | {} | {}",
            a.kendall_tau,
            a.spearman,
            a.mse.map_or("—".into(), |m| format!("{m:.3}")),
            a.n
        ),
        None => "— | — | — | 0".into(),
    }
}

fn report(file: &PredictorFile, results: &[SampleResult], oof: &[f64], held: &[f64]) -> String {
    let mut s = String::new();
    let cv = if file.folds == 0 { "leave-one-out".to_owned() } else { format!("{}-fold", file.folds) };
    let _ = writeln!(s, "# Accuracy predictor: {}\n", file.space);
    let _ = writeln!(
        s,
        "Features: {}. Target: {}. {} architectures fitted, {} held out (never used to fit). \
         Chosen by {cv} Kendall tau: **{}** (prediction uncertainty ±{:.2} points, the RMS of its \
         out-of-fold residuals).\n",
        file.features,
        file.target,
        file.fit_ids.len(),
        file.holdout_ids.len(),
        file.chosen,
        file.residual_rmse
    );
    let _ =
        writeln!(s, "| predictor | {cv} tau | Spearman | MSE (pt²) | n | held-out tau | Spearman | MSE (pt²) | n |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for sc in &file.scores {
        let _ =
            writeln!(s, "| {} | {} | {} |", sc.name, fmt_agreement(Some(&sc.cv)), fmt_agreement(sc.holdout.as_ref()));
    }
    let _ = writeln!(
        s,
        "\nBaselines rank by one number and have no MSE; for them the first columns are plain \
         (not cross-validated) agreement on the fit set.\n\n![predicted vs measured](predictor.svg)\n"
    );
    let _ = writeln!(s, "## Samples\n");
    let _ = writeln!(s, "| id | architecture | NSR sum | MMACs | stitched | finetuned | predicted | seconds |");
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    let (mut fi, mut hi) = (0, 0);
    for r in results {
        let pred = match r.set {
            SampleSet::Fit => {
                fi += 1;
                oof.get(fi - 1)
            }
            SampleSet::Holdout => {
                hi += 1;
                held.get(hi - 1)
            }
        };
        let _ = writeln!(
            s,
            "| {} | `{}` | {:.3} | {:.2} | {:.2}% | {:.2}% | {} | {:.1} |",
            r.id,
            r.arch,
            r.features.iter().sum::<f64>(),
            r.macs as f64 / 1e6,
            100.0 * r.stitched_accuracy,
            100.0 * r.accuracy,
            pred.map_or("—".into(), |p| format!("{p:.2}%")),
            r.seconds
        );
    }
    let accs: Vec<f64> = results.iter().map(|r| 100.0 * r.accuracy).collect();
    let nsr: Vec<f64> = results.iter().map(|r| -r.features.iter().sum::<f64>()).collect();
    let (lo, hi) = accs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let _ = writeln!(
        s,
        "\nAccuracies span {lo:.2}-{hi:.2}%; over all {} samples, Kendall tau of -(NSR sum) with \
         accuracy is {:.3}. Predicted column: out-of-fold for fit samples, the final model for \
         held-out ones.",
        results.len(),
        kendall_tau(&nsr, &accs)
    );
    s
}
