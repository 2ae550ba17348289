//! Blockwise distillation on a tiny configuration: shards and option grouping do not change
//! the table, an interrupted run resumes to the same table, NSR falls while training, and a
//! stitched network carries exactly the distilled weights.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use donna_datasets as _;
use donna_layers as _;
use donna_space_mobilenet as _;

use donna_sdk::checkpoint;
use donna_sdk::distill::{self, DistillConfig, QualityTable, Unit};
use donna_sdk::preset::preset;
use donna_sdk::progress::{Progress, Silent};
use donna_sdk::teacher;
use donna_sdk::train::{TrainConfig, TrainData};
use donna_sdk::{registry, Architecture, RunConfig, RunDir, SearchSpace, SpaceConfig};
use tch::nn::VarStore;
use tch::Device;

fn run_config() -> RunConfig {
    RunConfig {
        space: "mobilenet".into(),
        space_config: SpaceConfig { resolution: 16, width_mult: 0.25, num_classes: 10, in_channels: 3 },
        data: "synthetic:size=16,train=128,val=64".into(),
        preset: "quick".into(),
        seed: 3,
    }
}

fn config(options_per_pass: usize) -> DistillConfig {
    DistillConfig {
        steps: 30,
        batch_size: 32,
        lr: 1e-2,
        val_images: 64,
        options_per_pass,
        max_options: Some(3),
        ..preset("quick").unwrap().distill
    }
}

fn new_run(name: &str) -> RunDir {
    let dir = std::env::temp_dir().join(format!("donna-distill-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let run = RunDir::new(dir);
    run.create(&run_config()).unwrap();
    run
}

struct Fixture {
    space: Box<dyn SearchSpace>,
    data: TrainData,
    teacher_run: RunDir,
}

fn fixture() -> Fixture {
    let cfg = run_config();
    let space = registry::space(&cfg.space, &cfg.space_config).unwrap();
    let teacher_run = new_run("teacher");
    let data = TrainData::for_run(&teacher_run, &cfg, Device::Cpu).unwrap();
    let train = TrainConfig {
        epochs: 1,
        batch_size: 32,
        train_limit: None,
        val_limit: None,
        ..preset("quick").unwrap().teacher
    };
    teacher::train(&teacher_run, space.as_ref(), &data, &train, cfg.seed, &Silent).unwrap();
    Fixture { space, data, teacher_run }
}

impl Fixture {
    /// A run sharing the teacher (the same files a cluster's shared directory would hold).
    fn run(&self, name: &str) -> RunDir {
        let run = new_run(name);
        for f in ["teacher.safetensors", "teacher.json", "data.json"] {
            std::fs::copy(self.teacher_run.root().join(f), run.root().join(f)).unwrap();
        }
        run
    }

    fn distill(&self, run: &RunDir, cfg: &DistillConfig, units: &[Unit], progress: &dyn Progress) {
        let vs = VarStore::new(Device::Cpu);
        let t = teacher::load(run, self.space.as_ref(), &vs).unwrap();
        let distiller = distill::Distiller {
            run,
            space: self.space.as_ref(),
            teacher: &t,
            data: &self.data,
            config: cfg,
            seed: run_config().seed,
        };
        distiller.distill(units, progress).unwrap();
    }

    fn table(&self, run: &RunDir, cfg: &DistillConfig, units: &[Unit]) -> QualityTable {
        distill::merge(run, self.space.as_ref(), cfg, run_config().seed, units).unwrap().expect("all units done")
    }
}

/// Panics when the `n`-th phase starts, like a process killed there.
struct KillAtPhase {
    n: usize,
    seen: AtomicUsize,
}

impl Progress for KillAtPhase {
    fn start(&self, phase: &str, _: u64) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            panic!("simulated crash at {phase}");
        }
    }
    fn advance(&self, _: u64, _: &str) {}
    fn finish(&self, _: &str) {}
}

fn scores(t: &QualityTable) -> Vec<(usize, usize, f64, f64)> {
    t.units.iter().map(|u| (u.block, u.option, u.nsr, u.train_nsr)).collect()
}

#[test]
fn distillation_is_independent_of_shards_grouping_and_interruption_and_stitches_exactly() {
    let f = fixture();
    let seed = run_config().seed;
    let units = distill::plan(f.space.as_ref(), &config(2), seed, None).unwrap();
    assert_eq!(units.len(), 6 * 3, "three options in each of six blocks");
    let teacher_genome = f.space.validate(&f.space.teacher()).unwrap();
    for b in 0..6 {
        assert!(
            units.contains(&Unit { block: b, option: teacher_genome.option(b) }),
            "the teacher's option is always measured"
        );
    }

    // One process, two options per teacher pass.
    let whole = f.run("whole");
    f.distill(&whole, &config(2), &units, &Silent);
    let reference = f.table(&whole, &config(2), &units);

    // Two shards, three options per pass: the same table.
    let sharded = f.run("sharded");
    for i in 0..2 {
        f.distill(&sharded, &config(3), &distill::shard(&units, i, 2), &Silent);
        if i == 0 {
            let missing = distill::merge(&sharded, f.space.as_ref(), &config(3), seed, &units).unwrap().unwrap_err();
            assert_eq!(missing, 9, "half the units are left for the other shard");
        }
    }
    assert_eq!(scores(&f.table(&sharded, &config(3), &units)), scores(&reference));

    // Killed at the start of the third group: the first two groups are kept, the rest redone.
    let crashed = f.run("crashed");
    let kill = KillAtPhase { n: 3, seen: AtomicUsize::new(0) };
    assert!(catch_unwind(AssertUnwindSafe(|| f.distill(&crashed, &config(2), &units, &kill))).is_err());
    let kept = units.iter().filter(|u| distill::unit_result(&crashed, **u).unwrap().is_some()).count();
    assert_eq!(kept, 3, "the two groups of block 0 finished; only the group in flight is lost");
    f.distill(&crashed, &config(2), &units, &Silent);
    assert_eq!(scores(&f.table(&crashed, &config(2), &units)), scores(&reference));

    // Training lowers the NSR of every option.
    for u in &reference.units {
        assert!(
            u.train_nsr < u.first_train_nsr,
            "b{} {}: {} -> {}",
            u.block,
            u.option_text,
            u.first_train_nsr,
            u.train_nsr
        );
        assert!(u.nsr.is_finite() && u.nsr > 0.0);
    }

    // A network stitched from distilled options carries exactly their weights, and the
    // teacher's stem and head.
    let genome =
        donna_sdk::Genome((0..6).map(|b| units.iter().rfind(|u| u.block == b).unwrap().option as u32).collect());
    let arch: Architecture = f.space.decode(&genome);
    let vs = VarStore::new(Device::Cpu);
    distill::stitch(&whole, f.space.as_ref(), &arch, &vs).unwrap();
    let vars = vs.variables();
    for b in 0..6 {
        let u = Unit { block: b, option: genome.option(b) };
        for (name, t) in checkpoint::load(&distill::unit_weights(&whole, u)).unwrap() {
            assert!(vars[&name].equal(&t), "{name}");
        }
    }
    for (name, t) in checkpoint::load(&whole.teacher()).unwrap() {
        if !name.starts_with("blocks.") {
            assert!(vars[&name].equal(&t), "{name}");
        }
    }
    let mut other = arch.clone();
    let spare =
        (0..f.space.blocks()[0].options.len()).find(|o| !units.contains(&Unit { block: 0, option: *o })).unwrap();
    other.blocks[0] = f.space.blocks()[0].options[spare].clone();
    let err = distill::stitch(&whole, f.space.as_ref(), &other, &VarStore::new(Device::Cpu)).unwrap_err().to_string();
    assert!(err.contains("was not distilled"), "{err}");

    for run in [whole, sharded, crashed, f.teacher_run] {
        std::fs::remove_dir_all(run.root()).unwrap();
    }
}
