//! Bad input from the command line: every case gets a clear one-line error naming the problem,
//! a non-zero exit code and no panic, and leaves nothing that looks finished.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn donna(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_donna")).env("GOMP_SPINCOUNT", "10000").args(args).output().expect("donna runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("donna-bad-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `args` and checks: exit code `code` (any non-zero when `None`), `needle` in the
/// message, no panic or backtrace.
fn refused(args: &[&str], code: Option<i32>, needle: &str) {
    let o = donna(args);
    let t = text(&o);
    match code {
        Some(c) => assert_eq!(o.status.code(), Some(c), "{args:?}: {t}"),
        None => assert!(!o.status.success(), "{args:?} succeeded: {t}"),
    }
    assert!(t.contains(needle), "{args:?}: `{needle}` not in: {t}");
    assert!(!t.contains("panicked") && !t.contains("stack backtrace"), "{args:?} panicked: {t}");
}

fn tiny_run(dir: &Path) -> String {
    let run = dir.join("run");
    let r = run.to_str().unwrap().to_owned();
    let o = donna(&[
        "teacher",
        "--run",
        &r,
        "--data",
        "synthetic:size=16,train=64,val=32",
        "--resolution",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "32",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let o = donna(&[
        "distill",
        "--run",
        &r,
        "--steps",
        "2",
        "--max-options",
        "2",
        "--distill-batch-size",
        "32",
        "--val-images",
        "32",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    r
}

#[test]
fn malformed_names_flags_and_paths_are_refused() {
    let dir = temp_dir("flags");
    let r = dir.join("run");
    let r = r.to_str().unwrap();
    refused(&["arch", "show", "mobilenet:k3-e6"], Some(2), "6 blocks");
    refused(
        &[
            "arch",
            "show",
            "mobilenet:k9-e6-d2-se0-w1/k3-e6-d3-se0-w1/k3-e6-d4-se0-w1/k3-e6-d3-se0-w1/k3-e6-d3-se0-w1/k3-e6-d1-se0",
        ],
        Some(2),
        "kernel 9",
    );
    refused(&["arch", "show", "nospace:k3"], Some(2), "nospace");
    refused(&["init", "--run", r, "--space", "resnet"], Some(2), "resnet");
    refused(&["init", "--run", r, "--data", "cifar10:/does/not/exist"], Some(2), "/does/not/exist");
    refused(&["init", "--run", r, "--data", "parquet:/tmp/x"], Some(2), "parquet");
    refused(&["init", "--run", r, "--preset", "huge"], Some(2), "huge");
    refused(&["search", "--run", r, "--device", "tpu"], Some(2), "tpu");
    refused(&["cost", "--device", "quantum", "mobilenet:teacher"], Some(2), "quantum");
    refused(&["bench", "search", "--options", "1"], Some(2), "--options");
    refused(&["search", "--run", r, "--searcher", "nsga2:oops"], Some(2), "oops");
    refused(&["search", "--run", r, "--searcher", "annealing"], Some(2), "annealing");
    refused(&["predictor", "--run", r, "--folds", "1"], Some(2), "--folds");
    refused(&["distill", "--run", r, "--shard", "3/2"], Some(2), "--shard 3/2");
    // A file that is not a dataset in the claimed format.
    let fake = dir.join("fake-cifar");
    std::fs::create_dir_all(&fake).unwrap();
    std::fs::write(fake.join("data_batch_1.bin"), b"not cifar").unwrap();
    refused(
        &["init", "--run", &format!("{r}-2"), "--data", &format!("cifar10:{}", fake.display())],
        Some(2),
        "fake-cifar",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_or_mismatched_artifacts_are_reported_with_their_path() {
    let dir = temp_dir("artifacts");
    let r = tiny_run(&dir);
    let run = Path::new(&r);

    // A truncated teacher checkpoint.
    let teacher = std::fs::read(run.join("teacher.safetensors")).unwrap();
    std::fs::write(run.join("teacher.safetensors"), &teacher[..teacher.len() / 2]).unwrap();
    refused(
        &["predictor", "--run", &r, "--archs", "4", "--holdout", "2", "--finetune-steps", "1"],
        None,
        "teacher.safetensors",
    );
    std::fs::write(run.join("teacher.safetensors"), &teacher).unwrap();

    // Weights of another architecture imported as the teacher: wrong shapes.
    let other = dir.join("other.safetensors");
    let bkd = run.join("bkd/b0");
    let first = std::fs::read_dir(&bkd)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .unwrap();
    std::fs::copy(&first, &other).unwrap();
    refused(
        &[
            "teacher",
            "--run",
            &format!("{r}-import"),
            "--data",
            "synthetic:size=16,train=64,val=32",
            "--resolution",
            "16",
            "--import",
            other.to_str().unwrap(),
        ],
        None,
        "other.safetensors",
    );

    // A damaged quality table.
    let quality = std::fs::read(run.join("quality.json")).unwrap();
    std::fs::write(run.join("quality.json"), b"{\"space\": \"mobilenet\", \"units\": [").unwrap();
    refused(&["predictor", "--run", &r], None, "quality.json");
    std::fs::write(run.join("quality.json"), &quality).unwrap();

    // A predictor file of the wrong kind and one with the wrong number of features.
    std::fs::write(run.join("predictor.json"), b"[1, 2, 3]").unwrap();
    refused(&["predict", "--run", &r, "teacher"], None, "predictor.json");
    let file = serde_json::json!({
        "space": "mobilenet", "seed": 0, "features": "", "target": "", "chosen": "linear",
        "model": {"kind": "linear", "weights": [1.0, 2.0], "bias": 0.0},
        "residual_rmse": 1.0, "folds": 0, "scores": [], "fit_ids": [], "holdout_ids": []
    });
    std::fs::write(run.join("predictor.json"), serde_json::to_vec(&file).unwrap()).unwrap();
    refused(&["predict", "--run", &r, "teacher"], None, "2 features");

    // An architecture with an option that was not distilled cannot be predicted.
    let mut good = file.clone();
    good["model"]["weights"] = serde_json::json!([1.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
    std::fs::write(run.join("predictor.json"), serde_json::to_vec(&good).unwrap()).unwrap();
    refused(&["predict", "--run", &r, "largest"], None, "was not distilled");

    // A distilled unit whose weights were damaged: stitching names the file.
    let unit = std::fs::read(&first).unwrap();
    std::fs::write(&first, b"garbage").unwrap();
    refused(
        &["finetune", "--run", &r, "--arch", "teacher", "--final-steps", "1", "--final-batch-size", "16"],
        None,
        "o0",
    );
    std::fs::write(&first, &unit).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
