//! Training on a tiny configuration: an interrupted teacher run resumes to exactly the weights
//! of an uninterrupted one, and the stage's artifacts are what later stages read.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use donna_datasets as _;
use donna_layers as _;
use donna_space_mobilenet as _;

use donna_sdk::checkpoint;
use donna_sdk::preset::preset;
use donna_sdk::progress::{Progress, Silent};
use donna_sdk::teacher;
use donna_sdk::train::{TrainConfig, TrainData};
use donna_sdk::{registry, RunConfig, RunDir, SpaceConfig};
use tch::Device;

/// libtorch's random generator (weight init, dropout) is global to the process: tests that
/// train must not interleave, or their streams mix.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn temp_run(name: &str) -> RunDir {
    let dir = std::env::temp_dir().join(format!("donna-teacher-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    RunDir::new(dir)
}

fn tiny() -> (RunConfig, TrainConfig) {
    let run = RunConfig {
        space: "mobilenet".into(),
        space_config: SpaceConfig { resolution: 16, width_mult: 0.25, num_classes: 10, in_channels: 3 },
        data: "synthetic:size=16,train=96,val=40".into(),
        preset: "quick".into(),
        seed: 5,
    };
    let train = TrainConfig {
        epochs: 3,
        batch_size: 32,
        train_limit: None,
        val_limit: None,
        ..preset("quick").unwrap().teacher
    };
    (run, train)
}

/// Panics when the given epoch starts, like a process killed at that point.
struct KillAtEpoch {
    phase: String,
    armed: AtomicBool,
}

impl Progress for KillAtEpoch {
    fn start(&self, phase: &str, _: u64) {
        if phase == self.phase && self.armed.swap(false, Ordering::SeqCst) {
            panic!("simulated crash at {phase}");
        }
    }
    fn advance(&self, _: u64, _: &str) {}
    fn finish(&self, _: &str) {}
}

fn train(run: &RunDir, progress: &dyn Progress) -> teacher::ModelReport {
    let (cfg, train) = tiny();
    run.create(&cfg).unwrap();
    let space = registry::space(&cfg.space, &cfg.space_config).unwrap();
    let data = TrainData::for_run(run, &cfg, Device::Cpu).unwrap();
    teacher::train(run, space.as_ref(), &data, &train, cfg.seed, progress).unwrap()
}

fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut w: Vec<(String, Vec<f32>)> = checkpoint::load(path)
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, Vec::<f32>::try_from(t.to_kind(tch::Kind::Float).flatten(0, -1)).unwrap()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

#[test]
fn an_interrupted_teacher_resumes_to_the_weights_of_an_uninterrupted_run() {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let straight = temp_run("straight");
    let report = train(&straight, &Silent);
    assert_eq!(report.history.len(), 3);

    let crashed = temp_run("crashed");
    let kill = KillAtEpoch { phase: "epoch 3/3".into(), armed: AtomicBool::new(true) };
    let outcome = catch_unwind(AssertUnwindSafe(|| train(&crashed, &kill)));
    assert!(outcome.is_err(), "the simulated crash happened");
    assert!(!crashed.teacher().exists(), "no teacher artifact after a crash");
    assert!(crashed.root().join("teacher.ckpt.json").exists(), "the finished epochs were kept");

    let resumed = train(&crashed, &Silent);
    assert_eq!(resumed.history.len(), 3);
    let scores = |h: &[donna_sdk::train::EpochRecord]| -> Vec<(f64, f64, f64)> {
        h.iter().map(|e| (e.train_loss, e.train_accuracy, e.val_accuracy)).collect()
    };
    assert_eq!(scores(&resumed.history), scores(&report.history));
    let (a, b) = (weights(&crashed.teacher()), weights(&straight.teacher()));
    assert_eq!(a.len(), b.len());
    let differing: Vec<&String> = a.iter().zip(&b).filter(|(x, y)| x != y).map(|(x, _)| &x.0).collect();
    assert!(differing.is_empty(), "resumed weights differ in {differing:?}");
    assert!(!crashed.root().join("teacher.ckpt.json").exists(), "the checkpoint is removed when done");

    // A finished stage is skipped: same report, nothing retrained.
    let again = train(&straight, &Silent);
    assert_eq!(again, report);
    for run in [straight, crashed] {
        std::fs::remove_dir_all(run.root()).unwrap();
    }
}

#[test]
fn the_teacher_learns_and_imports_back_with_the_same_accuracy() {
    let _rng = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let run = temp_run("import");
    let report = train(&run, &Silent);
    assert!(report.history.last().unwrap().train_loss < report.history[0].train_loss, "{:?}", report.history);

    let (cfg, _) = tiny();
    let other = temp_run("import-into");
    other.create(&cfg).unwrap();
    let space = registry::space(&cfg.space, &cfg.space_config).unwrap();
    let data = TrainData::for_run(&other, &cfg, Device::Cpu).unwrap();
    let imported = teacher::import(&other, space.as_ref(), &data, &run.teacher(), &Silent).unwrap();
    assert_eq!(imported.val_accuracy, report.val_accuracy);

    let corrupt = other.root().join("corrupt.safetensors");
    std::fs::write(&corrupt, b"not a checkpoint").unwrap();
    let err = teacher::import(&other, space.as_ref(), &data, &corrupt, &Silent).unwrap_err().to_string();
    assert!(err.contains("corrupt.safetensors") && err.contains("not a valid safetensors"), "{err}");
    for r in [run, other] {
        std::fs::remove_dir_all(r.root()).unwrap();
    }
}
