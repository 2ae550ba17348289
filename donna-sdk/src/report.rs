//! `DIR/report.md` and `DIR/report.html`: what a pipeline run found, next to the teacher.
//!
//! The verdict line answers the question a user runs DONNA for: is there a found model that is
//! faster than the teacher on the device (measured where the device measures) at no more than
//! one point lower accuracy? It says no when there is none.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::accuracy::PredictorFile;
use crate::artifact;
use crate::error::Result;
use crate::export::ModelRecord;
use crate::plot::Series;
use crate::run_dir::{RunConfig, RunDir};
use crate::search::{pareto_plot, search_dir, FrontEntry, ParetoFile};
use crate::teacher::ModelReport;

/// A reference network in the table (the teacher, baselines).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reference {
    /// Name (`teacher`).
    pub name: String,
    /// Its report.
    pub report: ModelReport,
    /// Latency on the device, ms.
    pub latency_ms: Option<f64>,
    /// Spread of the latency.
    pub latency_cv: Option<f64>,
}

/// A found, finetuned model in the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Found {
    /// Its record.
    pub record: ModelRecord,
    /// Latency on the device, ms.
    pub latency_ms: Option<f64>,
}

/// Everything the report shows.
pub struct RunReport<'a> {
    /// The run's settings.
    pub config: &'a RunConfig,
    /// The predictor.
    pub predictor: Option<&'a PredictorFile>,
    /// The device's front.
    pub front: &'a ParetoFile,
    /// The teacher and other references.
    pub references: Vec<Reference>,
    /// The finetuned models.
    pub found: Vec<Found>,
    /// Wall time of each stage this invocation ran (name, seconds).
    pub stage_seconds: Vec<(String, f64)>,
}

fn ms(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.3}"))
}

impl RunReport<'_> {
    /// The one-line answer.
    pub fn verdict(&self) -> String {
        let Some(teacher) = self.references.iter().find(|r| r.name == "teacher") else {
            return "No teacher in this run to compare with.".into();
        };
        let (Some(t_ms), t_acc) = (teacher.latency_ms, 100.0 * teacher.report.val_accuracy) else {
            return "The teacher's latency on this device is unknown, so no comparison is made.".into();
        };
        let wins: Vec<&Found> = self
            .found
            .iter()
            .filter(|f| f.latency_ms.is_some_and(|l| l < t_ms) && 100.0 * f.record.accuracy >= t_acc - 1.0)
            .collect();
        match wins.iter().min_by(|a, b| a.latency_ms.unwrap_or(f64::MAX).total_cmp(&b.latency_ms.unwrap_or(f64::MAX))) {
            Some(f) => format!(
                "**Yes**: `{}` runs in {:.3} ms against the teacher's {:.3} ms ({:.2}x faster) at {:.2}% against \
                 {:.2}% accuracy.",
                f.record.id,
                f.latency_ms.unwrap_or(f64::NAN),
                t_ms,
                t_ms / f.latency_ms.unwrap_or(f64::NAN),
                100.0 * f.record.accuracy,
                t_acc
            ),
            None => {
                let best = self.found.iter().max_by(|a, b| a.record.accuracy.total_cmp(&b.record.accuracy));
                format!(
                    "**No**: none of the {} finetuned models is faster than the teacher ({:.3} ms, {:.2}%) at no \
                     more than 1 point lower accuracy{}.",
                    self.found.len(),
                    t_ms,
                    t_acc,
                    best.map_or(String::new(), |b| format!(
                        "; the most accurate reaches {:.2}% at {} ms",
                        100.0 * b.record.accuracy,
                        ms(b.latency_ms)
                    ))
                )
            }
        }
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let (c, f) = (self.config, self.front);
        let mut s = String::new();
        let _ = writeln!(s, "# donna run: {} on {}\n", c.space, f.device);
        let _ = writeln!(
            s,
            "Space `{}` at {} px, width {}, {} classes; data `{}`; preset `{}`; seed {}.\n",
            c.space,
            c.space_config.resolution,
            c.space_config.width_mult,
            c.space_config.num_classes,
            c.data,
            c.preset,
            c.seed
        );
        let _ = writeln!(s, "{}\n", self.verdict());
        let _ = writeln!(s, "## Models\n");
        let _ = writeln!(
            s,
            "Latency on `{}` ({}, {}, batch {}); accuracy on the validation split.\n",
            f.device, f.runtime, f.latency_source, f.batch
        );
        let _ = writeln!(s, "| model | architecture | accuracy | predicted | latency (ms) | params | MMACs |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for r in &self.references {
            let spread = r.latency_cv.map_or(String::new(), |cv| format!(" ± {:.1}%", 100.0 * cv));
            let _ = writeln!(
                s,
                "| {} | `{}` | {:.2}% | — | {}{spread} | {} | {:.2} |",
                r.name,
                r.report.arch,
                100.0 * r.report.val_accuracy,
                ms(r.latency_ms),
                r.report.params,
                r.report.macs as f64 / 1e6
            );
        }
        for m in &self.found {
            let r = &m.record;
            let _ = writeln!(
                s,
                "| {} | `{}` | {:.2}% (stitched {:.2}%) | {} | {} | {} | {:.2} |",
                r.id,
                r.arch,
                100.0 * r.accuracy,
                100.0 * r.stitched_accuracy,
                r.predicted_accuracy.map_or("—".into(), |p| format!("{p:.2}%")),
                ms(m.latency_ms),
                r.params,
                r.macs as f64 / 1e6
            );
        }
        let _ = writeln!(
            s,
            "\nThe teacher was trained from scratch with the preset's schedule; found models are \
             stitched from their blocks' distilled weights and finetuned for {} steps with KD.\n",
            self.found.first().map_or(0, |m| m.record.finetune.steps)
        );
        let _ = writeln!(s, "## Pareto front\n\n![Pareto front](report.svg)\n");
        let _ = writeln!(
            s,
            "{} searched {} architectures ({} generations of {}){}; {} on the front:\n",
            f.searcher,
            f.evaluated,
            f.settings.generations + 1,
            f.settings.population,
            f.max_latency.map_or(String::new(), |m| format!(" under {m} ms")),
            f.front.len()
        );
        let _ = writeln!(s, "| latency (ms) | predicted accuracy | MMACs | architecture |");
        let _ = writeln!(s, "|---|---|---|---|");
        for e in &f.front {
            let _ = writeln!(
                s,
                "| {:.3} | {:.2}% | {:.2} | `{}` |",
                e.latency_ms,
                e.predicted_accuracy,
                e.macs as f64 / 1e6,
                e.arch
            );
        }
        if let Some(p) = self.predictor {
            let chosen = p.scores.iter().find(|x| x.name == p.chosen);
            let _ = writeln!(
                s,
                "\n## Predictor\n\n`{}` from per-block NSR, fitted on {} architectures: {} Kendall tau {:.3}, \
                 held-out tau {} on {} architectures never fitted on. Details: \
                 [predictor-report.md](predictor-report.md).",
                p.chosen,
                p.fit_ids.len(),
                if p.folds == 0 { "leave-one-out".to_owned() } else { format!("{}-fold", p.folds) },
                chosen.map_or(f64::NAN, |x| x.cv.kendall_tau),
                chosen.and_then(|x| x.holdout).map_or("—".into(), |h| format!("{:.3}", h.kendall_tau)),
                p.holdout_ids.len()
            );
        }
        if !self.stage_seconds.is_empty() {
            let _ = writeln!(s, "\n## Stage times (this invocation)\n");
            let _ = writeln!(s, "| stage | seconds |\n|---|---|");
            for (name, secs) in &self.stage_seconds {
                let _ = writeln!(s, "| {name} | {secs:.1} |");
            }
        }
        s
    }

    /// A self-contained HTML page: the Markdown's tables with the plot inline.
    pub fn html(&self, svg: &str) -> String {
        let md = self.markdown();
        let mut body = String::new();
        let mut in_table = false;
        for line in md.lines() {
            let esc = line.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
            if line.starts_with('|') {
                if line.starts_with("|---") {
                    continue;
                }
                if !in_table {
                    body.push_str("<table>\n");
                    in_table = true;
                }
                let cells: Vec<&str> = esc.trim_matches('|').split(" | ").map(str::trim).collect();
                let _ = writeln!(body, "<tr><td>{}</td></tr>", cells.join("</td><td>"));
                continue;
            }
            if in_table {
                body.push_str("</table>\n");
                in_table = false;
            }
            if let Some(h) = esc.strip_prefix("## ") {
                let _ = writeln!(body, "<h2>{h}</h2>");
            } else if let Some(h) = esc.strip_prefix("# ") {
                let _ = writeln!(body, "<h1>{h}</h1>");
            } else if line.starts_with("![") {
                body.push_str(svg);
            } else if !line.trim().is_empty() {
                let _ = writeln!(body, "<p>{}</p>", esc.replace("**", "").replace('`', ""));
            }
        }
        if in_table {
            body.push_str("</table>\n");
        }
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>donna report</title><style>\
             body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}\
             table{{border-collapse:collapse}}td{{border:1px solid #ccc;padding:2px 6px;font-size:13px}}\
             </style></head><body>\n{body}</body></html>\n"
        )
    }

    /// Writes `report.md`, `report.html` and `report.svg` into the run.
    pub fn write(&self, run: &RunDir) -> Result<()> {
        let evaluated: Vec<FrontEntry> = {
            let path = search_dir(run, &self.front.device).join("evaluated.json");
            if path.exists() {
                artifact::read_json(&path)?
            } else {
                Vec::new()
            }
        };
        let found = Series::dots(
            "finetuned (measured acc.)",
            "darkgreen",
            self.found.iter().filter_map(|m| Some((m.latency_ms?, 100.0 * m.record.accuracy))).collect(),
        );
        let mut plot = pareto_plot(self.front, &evaluated, Some(found));
        if let Some(t) = self.references.iter().find(|r| r.name == "teacher") {
            if let Some(l) = t.latency_ms {
                plot.series.push(Series::dots("teacher", "black", vec![(l, 100.0 * t.report.val_accuracy)]));
            }
        }
        plot.y_label = "accuracy (%)".into();
        let svg = plot.to_svg();
        artifact::write_atomic(&run.root().join("report.svg"), svg.as_bytes())?;
        artifact::write_atomic(&run.root().join("report.html"), self.html(&svg).as_bytes())?;
        artifact::write_atomic(&run.report(), self.markdown().as_bytes())
    }
}
