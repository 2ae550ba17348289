//! `donna plan --run DIR`: every work unit of the run and its state.
//!
//! The units are the ones the stages would run with the same flags: teacher epochs, BKD units
//! (`bkd b<block>/o<option>`), predictor samples, device searches and exported models. A unit is
//! `done` when its artifact exists with the run's settings, `stale` when it exists with other
//! settings (it will be redone), `damaged` when its file differs from what the run's manifest
//! lists (it will be moved aside and redone), `pending` otherwise, or `waiting` when an earlier
//! stage must finish first. Planning only reads: damaged files stay where they are. Shards (`--shard I/N`) take units round-robin in the order listed.

use clap::Args;
use donna_sdk::distill::{self, QualityTable};
use donna_sdk::{accuracy, artifact, registry, teacher};

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
                "{stage:<10} {} units: {} done, {} pending, {} stale, {} waiting, {} damaged",
                of.len(),
                count("done"),
                count("pending"),
                count("stale"),
                count("waiting"),
                count("damaged")
            );
        }
    }
}

/// Whether any of `files` is listed in the run's manifest with other contents.
fn any_damaged(files: &[std::path::PathBuf]) -> anyhow::Result<bool> {
    for f in files {
        if matches!(artifact::integrity(f)?, artifact::Integrity::Damaged(_)) {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn run(a: &PlanArgs) -> anyhow::Result<()> {
    let opened = a.run.open()?;
    let space = registry::space(&opened.config.space, &opened.config.space_config)?;
    let seed = opened.config.seed;
    let mut t = Table { rows: Vec::new(), summary: a.summary };

    // Teacher epochs. Damaged files are reported, not moved aside: planning changes nothing.
    let teacher_config = opened.preset.teacher_for(space.as_ref());
    let root = opened.dir.root();
    let teacher_files = [opened.dir.teacher(), root.join("teacher.json")];
    let teacher_damaged = any_damaged(&teacher_files)?;
    let existing = if teacher_damaged { None } else { teacher::existing(&opened.dir)? };
    let done_epochs = match existing {
        Some(_) => teacher_config.epochs,
        None => {
            let meta = root.join("teacher.ckpt.json");
            if meta.exists() && !any_damaged(&[meta.clone(), root.join("teacher.ckpt.safetensors")])? {
                let v: serde_json::Value = donna_sdk::artifact::read_json(&meta)?;
                v["history"].as_array().map_or(0, Vec::len)
            } else {
                0
            }
        }
    };
    for e in 0..teacher_config.epochs {
        let state = match (e < done_epochs, teacher_damaged) {
            (true, _) => "done",
            (false, true) => "damaged",
            (false, false) => "pending",
        };
        t.unit("teacher", format!("epoch {}", e + 1), state);
    }
    let teacher_done = done_epochs >= teacher_config.epochs;

    // Distillation units.
    let dconfig = a.distill.apply(&opened.preset.distill)?;
    let units = distill::plan(space.as_ref(), &dconfig, seed, a.distill.blocks.as_deref())?;
    let mut all_distilled = true;
    for u in &units {
        let files =
            [distill::unit_weights(&opened.dir, *u), distill::unit_weights(&opened.dir, *u).with_extension("json")];
        let damaged = any_damaged(&files)?;
        let result = if damaged { None } else { distill::unit_result(&opened.dir, *u)? };
        let state = match result {
            _ if damaged => "damaged",
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
        if opened.dir.quality().exists() && all_distilled && !any_damaged(&[opened.dir.quality()])? {
            Some(distill::load_quality(&opened.dir)?)
        } else {
            None
        };
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
            let files = ["weights.safetensors", "arch.json", "model.pt", "model.json"].map(|f| m.join(f));
            let state = if any_damaged(&files)? {
                "damaged"
            } else if m.join("model.json").exists() {
                "done"
            } else {
                "pending"
            };
            t.unit("finetune", id, state);
        }
    }
    t.print();
    Ok(())
}
