//! The whole pipeline through the command line on a tiny configuration: teacher, distillation,
//! predictor, search, finetune and export, the report, re-runs that skip finished stages, and
//! the TorchScript export loaded back through libtorch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use donna_datasets as _;
use donna_layers as _;
use donna_space_mobilenet as _;

use donna_sdk::export::{ArchFile, ModelRecord};
use donna_sdk::search::ParetoFile;
use donna_sdk::{artifact, checkpoint, registry};
use tch::nn::{ModuleT, VarStore};
use tch::{CModule, Device, Kind, Tensor};

fn donna(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_donna")).args(args).output().expect("donna runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("donna-pipeline-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The flags of a run small enough for a test: 16 px, 2 options per block, a few steps each.
fn tiny(run: &Path) -> Vec<String> {
    let flags = "--data synthetic:size=16,train=96,val=48 --resolution 16 --epochs 1 --batch-size 32 \
                 --steps 3 --max-options 2 --distill-batch-size 32 --val-images 48 \
                 --archs 5 --holdout 3 --finetune-steps 3 --finetune-batch-size 16 --finetune-val-images 48 \
                 --device v100 --population 6 --generations 2 --top 1 --final-steps 3 --final-batch-size 16";
    let mut v = vec!["run".to_owned(), "--run".to_owned(), run.display().to_string()];
    v.extend(flags.split_whitespace().map(str::to_owned));
    v
}

fn models(run: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(run.join("models")).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    v.sort();
    v
}

#[test]
fn the_pipeline_runs_end_to_end_reruns_skip_and_the_export_loads_in_libtorch() {
    let dir = temp_dir("e2e");
    let run = dir.join("run");
    let args = tiny(&run);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = donna(&args);
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("quality table: 12 units"), "{out}");
    assert!(out.contains("predictor ") && out.contains("held-out tau"), "{out}");

    // Every artifact of every stage is there.
    for f in [
        "predictor.json",
        "predictor-report.md",
        "predictor.svg",
        "predictor/samples.jsonl",
        "search/v100/pareto.json",
        "search/v100/pareto.svg",
        "search/v100/history.json",
        "report.md",
        "report.html",
        "report.svg",
    ] {
        assert!(run.join(f).exists(), "{f} missing; {out}");
    }
    let samples = std::fs::read_to_string(run.join("predictor/samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 8, "5 fitted + 3 held out");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("**Yes**") || report.contains("**No**"), "{report}");
    assert!(report.contains("| teacher |"), "{report}");
    let front: ParetoFile = artifact::read_json(&run.join("search/v100/pareto.json")).unwrap();
    assert!(!front.front.is_empty() && front.evaluated <= 18);
    assert!(front.front.windows(2).all(|w| w[0].latency_ms <= w[1].latency_ms), "front sorted by latency");
    assert!(
        front.front.windows(2).all(|w| w[0].predicted_accuracy <= w[1].predicted_accuracy),
        "along a front, slower is never less accurate"
    );

    // The plan with the same flags finds every unit done.
    let plan = "--steps 3 --max-options 2 --distill-batch-size 32 --val-images 48 --archs 5 --holdout 3 \
                --finetune-steps 3 --finetune-batch-size 16 --finetune-val-images 48 --summary";
    let mut plan_args = vec!["plan", "--run", run.to_str().unwrap()];
    plan_args.extend(plan.split_whitespace());
    let p = donna(&plan_args);
    assert!(p.status.success(), "{}", text(&p));
    for line in ["distill    12 units: 12 done", "predictor  9 units: 9 done", "finetune   1 units: 1 done"] {
        assert!(text(&p).contains(line), "`{line}` missing from the plan:\n{}", text(&p));
    }

    // A re-run redoes nothing: the same predictor, front and models, byte for byte.
    let model_dirs = models(&run);
    assert_eq!(model_dirs.len(), 1);
    let before: Vec<Vec<u8>> = ["predictor.json", "predictor/samples.jsonl"]
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .chain([std::fs::read(model_dirs[0].join("model.json")).unwrap()])
        .collect();
    let again = donna(&args);
    assert!(again.status.success(), "{}", text(&again));
    let after: Vec<Vec<u8>> = ["predictor.json", "predictor/samples.jsonl"]
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .chain([std::fs::read(model_dirs[0].join("model.json")).unwrap()])
        .collect();
    assert_eq!(before, after, "a finished run is not redone");

    // The TorchScript export computes what the network built from the exported weights does.
    let m = &model_dirs[0];
    let arch_file: ArchFile = artifact::read_json(&m.join("arch.json")).unwrap();
    let record: ModelRecord = artifact::read_json(&m.join("model.json")).unwrap();
    assert_eq!(record.arch, arch_file.text);
    let space = registry::space("mobilenet", &arch_file.space_config).unwrap();
    let vs = VarStore::new(Device::Cpu);
    let net = donna_sdk::network::build_network(space.as_ref(), &arch_file.arch, &vs.root()).unwrap();
    let weights = checkpoint::load(&m.join("weights.safetensors")).unwrap();
    checkpoint::copy_into(&vs, &weights, true, "exported weights").unwrap();
    let x = Tensor::rand([3, 3, 16, 16], (Kind::Float, Device::Cpu));
    let norm = &arch_file.normalization;
    let mean = Tensor::from_slice(&norm.mean).to_kind(Kind::Float).view([1, -1, 1, 1]);
    let std = Tensor::from_slice(&norm.std).to_kind(Kind::Float).view([1, -1, 1, 1]);
    let native = tch::no_grad(|| net.forward_t(&((&x - &mean) / &std), false));
    let script = CModule::load(m.join("model.pt")).unwrap();
    let traced = tch::no_grad(|| script.forward_ts(&[&x]).unwrap());
    assert_eq!(traced.size(), vec![3, 10]);
    let diff = (&traced - &native).abs().max().double_value(&[]);
    assert!(diff < 1e-4, "TorchScript and native outputs differ by {diff}");

    // `donna predict` gives the same prediction the front recorded.
    let arch = &front.front[0].arch;
    let p = donna(&["predict", "--run", run.to_str().unwrap(), arch]);
    assert!(p.status.success(), "{}", text(&p));
    let printed: f64 = text(&p).split('%').next().unwrap().trim().parse().unwrap();
    assert!(
        (printed - front.front[0].predicted_accuracy).abs() < 0.01,
        "{} vs {printed}",
        front.front[0].predicted_accuracy
    );

    // Another searcher and a latency budget on the same predictor.
    let budget = front.front[0].latency_ms * 1.5;
    let s = donna(&[
        "search",
        "--run",
        run.to_str().unwrap(),
        "--device",
        "s20",
        "--searcher",
        "evolution:sample=3",
        "--population",
        "6",
        "--generations",
        "2",
        "--max-latency",
        &budget.to_string(),
    ]);
    assert!(s.status.success(), "{}", text(&s));
    let s20: ParetoFile = artifact::read_json(&run.join("search/s20/pareto.json")).unwrap();
    assert_eq!(s20.searcher, "evolution");
    assert!(s20.front.iter().filter(|e| e.feasible).all(|e| e.latency_ms <= budget));

    // Compression: the run's teacher becomes the teacher of a space of smaller options.
    let budget = front.front[0].latency_ms * 1.2;
    let out = dir.join("compressed");
    let flags = format!(
        "compress --model {} --out {} --device v100 --max-latency {budget} --steps 2 --max-options 3 \
         --distill-batch-size 32 --val-images 48 --archs 4 --holdout 2 --finetune-steps 2 \
         --finetune-batch-size 16 --finetune-val-images 48 --population 6 --generations 1 \
         --final-steps 2 --final-batch-size 16",
        run.display(),
        out.display()
    );
    let c = donna(&flags.split_whitespace().collect::<Vec<_>>());
    assert!(c.status.success(), "{}", text(&c));
    let table = std::fs::read_to_string(out.join("compress.md")).unwrap();
    assert!(table.contains("| before |") && table.contains("| after | `mobilenet:"), "{table}");
    let config: donna_sdk::RunConfig = artifact::read_json(&out.join("run.json")).unwrap();
    assert!(config.space.starts_with("compress:mobilenet:"), "{}", config.space);
    let after: ParetoFile = artifact::read_json(&out.join("search/v100/pareto.json")).unwrap();
    assert!(after.front.iter().any(|e| e.feasible && e.latency_ms <= budget));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predictor_and_search_refuse_what_is_missing_or_wrong() {
    let dir = temp_dir("refusals");
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let init = donna(&["init", "--run", r, "--data", "synthetic:size=16,train=64,val=32", "--resolution", "16"]);
    assert!(init.status.success(), "{}", text(&init));
    let o = donna(&["predictor", "--run", r]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no quality table yet"), "{}", text(&o));
    let o = donna(&["search", "--run", r]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no predictor yet"), "{}", text(&o));
    let o = donna(&["predictor", "--run", r, "--archs", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = donna(&["predictor", "--run", r, "--kd-weight", "1.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    std::fs::write(run.join("predictor.json"), b"{\"space\": \"mobilenet\"").unwrap();
    let o = donna(&["predict", "--run", r, "mobilenet:teacher"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("predictor.json"), "{}", text(&o));
    assert!(!text(&o).contains("panicked"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
