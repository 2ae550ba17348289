//! `donna plan --run DIR`: every work unit of the run and its state.
//!
//! The units are the ones the stages would run with the same flags: teacher epochs, BKD units
//! (`bkd b<block>/o<option>`), predictor samples, device searches and exported models. A unit is
//! `done` when its artifact exists with the run's settings, `stale` when it exists with other
//! settings (it will be redone), `pending` otherwise, or `waiting` when an earlier stage must
//! finish first. Shards (`--shard I/N`) take units round-robin in the order listed.

use clap::Args;
use donna_sdk::accuracy;
use donna_sdk::distill::{self, QualityTable};
use donna_sdk::{registry, teacher};

use crate::run_args::RunArgs;

#[derive(Args)]
pub struct PlanArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    distill: crate::cmd_distill::DistillArgs,
    #[command(flatten)]
    predictor: crate::cmd_predictor::PredictorArgs,
    /// Print only the per-stage summary.
    #[arg(long)]
    summary: bool,
}

struct Table {
    rows: Vec<(String, String, String)>,
    summary: bool,
}

impl Table {
    fn unit(&mut self, stage: &str, unit: String, state: &str) {
        self.rows.push((stage.to_owned(), unit, state.to_owned()));
    }

    fn print(&self) {
        let mut stages: Vec<&str> = Vec::new();
        for (s, _, _) in &self.rows {
            if !stages.contains(&s.as_str()) {
                stages.push(s);
            }
        }
        if !self.summary {
            for (stage, unit, state) in &self.rows {
                println!("{stage:<10} {unit:<28} {state}");
            }
            println!();
        }
        for stage in stages {
            let of: Vec<&String> = self.rows.iter().filter(|r| r.0 == stage).map(|r| &r.2).collect();
            let count = |s: &str| of.iter().filter(|x| x.as_str() == s).count();
            println!(
                "{stage:<10} {} units: {} done, {} pending, {} stale, {} waiting",
                of.len(),
                count("done"),
                count("pending"),
                count("stale"),
                count("waiting")
            );
        }
    }
}

pub fn run(a: &PlanArgs) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let seed = opened.config.seed;
    let mut t = Table { rows: Vec::new(), summary: a.summary };

    // Teacher epochs.
    let teacher_config = opened.preset.teacher_for(space.as_ref());
    let done_epochs = match teacher::existing(&opened.dir)? {
        Some(_) => teacher_config.epochs,
        None => {
            let meta = opened.dir.root().join("teacher.ckpt.json");
            if meta.exists() {
                let v: serde_json::Value = donna_sdk::artifact::read_json(&meta)?;
                v["history"].as_array().map_or(0, Vec::len)
            } else {
                0
            }
        }
    };
    for e in 0..teacher_config.epochs {
        t.unit("teacher", format!("epoch {}", e + 1), if e < done_epochs { "done" } else { "pending" });
    }
    let teacher_done = done_epochs >= teacher_config.epochs;

    // Distillation units.
    let dconfig = a.distill.apply(&opened.preset.distill)?;
    let units = distill::plan(space.as_ref(), &dconfig, seed, a.distill.blocks.as_deref())?;
    let mut all_distilled = true;
    for u in &units {
        let state = match distill::unit_result(&opened.dir, *u)? {
            Some(r) if distill::reusable(&r, &dconfig, seed) => "done",
            Some(_) => "stale",
            None if teacher_done => "pending",
            None => "waiting",
        };
        all_distilled &= state == "done";
        t.unit("distill", format!("bkd b{}/o{}", u.block, u.option), state);
    }

    // Predictor samples: planned from the quality table, so they wait for it.
    let pconfig = a.predictor.apply(&opened.preset.predictor, None)?;
    let quality: Option<QualityTable> =
        if opened.dir.quality().exists() && all_distilled { Some(distill::load_quality(&opened.dir)?) } else { None };
    match quality {
        Some(q) => {
            let samples = accuracy::plan_samples(space.as_ref(), &q, pconfig.fit, pconfig.holdout, seed)?;
            let done = accuracy::load_results(&opened.dir, &samples, &pconfig.finetune, seed)?;
            for s in &samples {
                t.unit("predictor", s.id.clone(), if done.contains_key(&s.id) { "done" } else { "pending" });
            }
            t.unit("predictor", "fit".into(), if opened.dir.predictor().exists() { "done" } else { "pending" });
        }
        None => {
            for i in 0..pconfig.fit + pconfig.holdout {
                t.unit("predictor", format!("sample {i}"), "waiting");
            }
        }
    }

    // Searches and models that exist.
    let search_root = opened.dir.root().join("search");
    if let Ok(entries) = std::fs::read_dir(&search_root) {
        let mut devices: Vec<String> =
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        devices.sort();
        for d in devices {
            let done = search_root.join(&d).join("pareto.json").exists();
            t.unit("search", d, if done { "done" } else { "pending" });
        }
    }
    if let Ok(entries) = std::fs::read_dir(opened.dir.root().join("models")) {
        let mut models: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        models.sort();
        for m in models {
            let id = m.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            t.unit("finetune", id, if m.join("model.json").exists() { "done" } else { "pending" });
        }
    }
    t.print();
    Ok(())
}
