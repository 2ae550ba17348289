//! The `donna` command line as a user drives it: listings, architectures, run directories and
//! the exit codes and one-line errors for bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

fn donna(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_donna")).args(args).output().expect("donna runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("donna-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn spaces_lists_the_three_builtins_with_exact_sizes() {
    let o = donna(&["spaces"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("mobilenet") && out.contains("efficientnet") && out.contains("attention"), "{out}");
    assert!(out.contains(&240u128.pow(6).to_string()), "{out}");
    let searchers = stdout(&donna(&["searchers"]));
    assert!(searchers.contains("random"), "{searchers}");
    let layers = stdout(&donna(&["layers"]));
    assert!(layers.contains("mbconv") && layers.contains("transformer"), "{layers}");
}

#[test]
fn arch_sample_is_one_parseable_line_and_seeded() {
    let a = donna(&["arch", "sample", "--space", "efficientnet", "--seed", "4"]);
    let b = donna(&["arch", "sample", "--space", "efficientnet", "--seed", "4"]);
    let c = donna(&["arch", "sample", "--space", "efficientnet", "--seed", "5"]);
    assert!(a.status.success(), "{}", stderr(&a));
    let line = stdout(&a);
    assert_eq!(line.lines().count(), 1);
    assert!(line.starts_with("efficientnet:"));
    assert_eq!(line, stdout(&b));
    assert_ne!(line, stdout(&c));
    let show = donna(&["arch", "show", line.trim()]);
    assert!(show.status.success(), "{}", stderr(&show));
}

#[test]
fn arch_show_prints_blocks_and_totals_of_the_teacher() {
    let teacher = stdout(&donna(&["arch", "teacher", "--space", "mobilenet"]));
    let o = donna(&["arch", "show", teacher.trim()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in ["b0", "b5", "24x56x56", "3,504,872", "300.77M", "total"] {
        assert!(out.contains(want), "missing {want} in\n{out}");
    }
}

#[test]
fn arch_show_reads_json_files_and_reports_bad_ones() {
    let dir = temp_dir("json");
    let good = dir.join("arch.json");
    let o = donna(&["arch", "sample", "--space", "attention", "--json", "--seed", "2"]);
    std::fs::write(&good, stdout(&o)).unwrap();
    let o = donna(&["arch", "show", good.to_str().unwrap(), "--resolution", "32", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert!(doc["total"]["params"].as_u64().unwrap() > 0);

    let bad = dir.join("bad.json");
    std::fs::write(&bad, r#"{"space":"attention","blocks":[{"x":"attn""#).unwrap();
    let o = donna(&["arch", "show", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("bad.json"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_architecture_or_unknown_space_is_a_one_line_error_with_exit_code_2() {
    let teacher = stdout(&donna(&["arch", "teacher", "--space", "mobilenet"]));
    let mut blocks: Vec<String> = teacher.trim().split('/').map(str::to_owned).collect();
    blocks[3] = blocks[3].replace("e6", "e5");
    let bad = blocks.join("/");
    let o = donna(&["arch", "show", &bad]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "error: block 3: expansion 5 not in {2,3,4,6}\n");

    let o = donna(&["arch", "sample", "--space", "resnet"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), "error: unknown search space `resnet` (known: attention, efficientnet, mobilenet)\n");

    let o = donna(&["arch", "show", "not-an-arch"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1);

    let o = donna(&["arch", "sample", "--space", "mobilenet", "--resolution", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("resolution 0 out of range"), "{}", stderr(&o));
}

#[test]
fn init_writes_run_json_once_and_refuses_other_settings() {
    let dir = temp_dir("init");
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let o = donna(&["init", "--run", r, "--space", "attention", "--resolution", "32", "--seed", "7"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(cfg["space"], "attention");
    assert_eq!(cfg["seed"], 7);
    assert_eq!(cfg["space_config"]["resolution"], 32);
    let again = donna(&["init", "--run", r, "--space", "attention", "--resolution", "32", "--seed", "7"]);
    assert!(again.status.success());
    let other = donna(&["init", "--run", r, "--space", "attention", "--resolution", "32", "--seed", "8"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr(&other).contains("--seed 8 disagrees with"), "{}", stderr(&other));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn teacher_trains_a_tiny_run_skips_when_done_and_refuses_a_corrupt_import() {
    let dir = temp_dir("teacher");
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let args = ["teacher", "--run", r, "--data", "synthetic:size=16,train=64,val=32", "--resolution", "16"];
    let tiny = ["--epochs", "1", "--batch-size", "32"];
    let o = donna(&[&args[..], &tiny[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("validation accuracy"), "{}", stdout(&o));
    assert!(run.join("teacher.safetensors").exists() && run.join("teacher.json").exists());
    assert!(!run.join("teacher.ckpt.json").exists());
    let first = std::fs::read(run.join("teacher.safetensors")).unwrap();

    let again = donna(&["teacher", "--run", r, "--epochs", "1", "--batch-size", "32"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(std::fs::read(run.join("teacher.safetensors")).unwrap(), first, "a finished stage is not redone");

    let other = donna(&["teacher", "--run", r, "--epochs", "2", "--batch-size", "32"]);
    assert_eq!(other.status.code(), Some(2));
    assert!(stderr(&other).contains("other settings"), "{}", stderr(&other));

    let bad = dir.join("bad.safetensors");
    std::fs::write(&bad, b"\x08\x00\x00\x00\x00\x00\x00\x00{}").unwrap();
    let fresh = dir.join("fresh");
    let o = donna(&[&args[..2], &[fresh.to_str().unwrap()], &args[3..], &["--import", bad.to_str().unwrap()]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.safetensors"), "{}", stderr(&o));

    let o = donna(&["teacher", "--run", dir.join("x").to_str().unwrap(), "--data", "cifar10:/nonexistent/cifar"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/cifar"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn named_architectures_and_baselines_use_the_same_keywords() {
    let small = stdout(&donna(&["arch", "show", "mobilenet:smallest", "--resolution", "32", "--json"]));
    let large = stdout(&donna(&["arch", "show", "mobilenet:largest", "--resolution", "32", "--json"]));
    let macs = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap()["total"]["macs"].as_u64().unwrap();
    assert!(macs(&small) * 10 < macs(&large), "{small}\n{large}");
    assert!(small.contains("k3-e2-d1-se0"), "{small}");

    let dir = temp_dir("baseline");
    let r = dir.join("run");
    let base =
        ["train", "--run", r.to_str().unwrap(), "--data", "synthetic:size=16,train=64,val=32", "--resolution", "16"];
    let tiny = ["--epochs", "1", "--batch-size", "32"];
    for arch in ["linear", "smallest"] {
        let o = donna(&[&base[..], &tiny[..], &["--arch", arch]].concat());
        assert!(o.status.success(), "{arch}: {}", stderr(&o));
        assert!(r.join(format!("baselines/{arch}.json")).exists());
    }
    let o = donna(&[&base[..], &tiny[..], &["--arch", "mobilenet:k9"]].concat());
    assert_eq!(o.status.code(), Some(2));
    let o = donna(&[&base[..], &tiny[..], &["--arch", "linear", "--name", "../x"]].concat());
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn distill_shards_merge_into_one_quality_table_and_bad_shards_are_refused() {
    let dir = temp_dir("distill");
    let run = dir.join("run");
    let r = run.to_str().unwrap();
    let o = donna(&[
        "teacher",
        "--run",
        r,
        "--data",
        "synthetic:size=16,train=64,val=32",
        "--resolution",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "32",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let args = [
        "distill",
        "--run",
        r,
        "--blocks",
        "0,1",
        "--max-options",
        "2",
        "--distill-epochs",
        "1",
        "--distill-batch-size",
        "32",
    ];
    let first = donna(&[&args[..], &["--shard", "0/2"]].concat());
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stdout(&first).contains("2 of 4 units are not done yet"), "{}", stdout(&first));
    assert!(!run.join("quality.json").exists());
    let second = donna(&[&args[..], &["--shard", "1/2"]].concat());
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(stdout(&second).contains("quality table: 4 units"), "{}", stdout(&second));
    let table: serde_json::Value = serde_json::from_slice(&std::fs::read(run.join("quality.json")).unwrap()).unwrap();
    assert_eq!(table["units"].as_array().unwrap().len(), 4);
    assert_eq!(table["config"]["steps"], 2, "one epoch of 64 images in batches of 32");
    let merged = donna(&[&args[..], &["--merge"]].concat());
    assert!(merged.status.success(), "{}", stderr(&merged));

    for bad in ["2/2", "x", "1/0"] {
        let o = donna(&[&args[..], &["--shard", bad]].concat());
        assert_eq!(o.status.code(), Some(2), "{bad}");
    }
    let o = donna(&["distill", "--run", r, "--blocks", "9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("block 9 does not exist"), "{}", stderr(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cost_prices_architectures_on_the_analytical_devices() {
    let devices = stdout(&donna(&["devices"]));
    assert!(devices.contains("v100") && devices.contains("s20") && devices.contains("EXTRAPOLATED"), "{devices}");
    let o = donna(&["cost", "--device", "v100:ncnn-vulkan-fp16", "mobilenet:teacher", "efficientnet:teacher"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ms: Vec<f64> =
        stdout(&o).lines().skip(1).map(|l| l.split_whitespace().next().unwrap().parse().unwrap()).collect();
    assert_eq!(ms.len(), 2);
    assert!((ms[0] / 1.76 - 1.0).abs() < 0.15 && (ms[1] / 3.02 - 1.0).abs() < 0.15, "{ms:?}");
    let dir = temp_dir("cost");
    let cache = dir.join("latency.jsonl");
    let c = cache.to_str().unwrap();
    for _ in 0..2 {
        let o = donna(&["cost", "--device", "s20", "--cache", c, "mobilenet:teacher", "mobilenet:smallest"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    assert_eq!(std::fs::read_to_string(&cache).unwrap().lines().count(), 2, "the second call reused the cache");
    std::fs::remove_dir_all(&dir).unwrap();
    let o = donna(&["cost", "--device", "tpu", "mobilenet:teacher"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown device `tpu`"), "{}", stderr(&o));
    let o = donna(&["cost", "--device", "v100", "mobilenet:teacher", "--batch", "0"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn cost_calibrate_refits_a_profile_to_measurements_that_profile_then_prices() {
    let dir = temp_dir("calibrate");
    let meas = dir.join("measured.json");
    std::fs::write(
        &meas,
        r#"[{"network": "mobilenet_v2", "arch": "mobilenet:teacher", "resolution": 224, "batch": 1, "ms": 9.2, "source": "test"},
            {"network": "efficientnet_b0", "arch": "efficientnet:teacher", "resolution": 224, "batch": 1, "ms": 14.0, "source": "test"}]"#,
    )
    .unwrap();
    let out = dir.join("profile.json");
    let calibrate = |device: &str| {
        let (m, o) = (meas.to_str().unwrap(), out.to_str().unwrap());
        donna(&["cost", "calibrate", "--device", device, "--measurements", m, "--out", o])
    };
    let o = calibrate("s20");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = donna(&["cost", "--device", &format!("profile:{}", out.display()), "mobilenet:teacher"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ms: f64 = stdout(&o).lines().nth(1).unwrap().split_whitespace().next().unwrap().parse().unwrap();
    assert!((ms / 9.2 - 1.0).abs() < 0.05, "{ms}");

    std::fs::write(&meas, "[{\"network\": 3}]").unwrap();
    let o = calibrate("s20");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("measured.json"), "{}", stderr(&o));
    let o = calibrate("cpu");
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lut_error_compares_a_block_table_with_whole_networks_and_bench_latency_repeats_one() {
    let tiny = ["--resolution", "16", "--width-mult", "0.25", "--classes", "10"];
    let quick = "cpu:threads=1,warmup=1,repeats=3,rounds=2,max_rounds=3";
    let lut = ["cost", "lut-error", "--device", quick, "--space", "mobilenet", "--archs", "3", "--seed", "1"];
    let dir = temp_dir("lut");
    let table = dir.join("lut.json");
    let o = donna(&[&lut[..], &tiny[..], &["--lut-out", table.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("MAPE") && out.contains("Kendall tau"), "{out}");
    assert_eq!(out.lines().filter(|l| l.contains("mobilenet:")).count(), 3, "{out}");
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&table).unwrap()).unwrap();
    assert_eq!(doc["blocks"].as_array().unwrap().len(), 6);
    std::fs::remove_dir_all(&dir).unwrap();

    let o = donna(&[&lut[..6], &["--archs", "1"], &tiny[..]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));

    let bench = ["bench", "latency", "--device", quick, "--arch", "mobilenet:teacher", "--runs", "2"];
    let o = donna(&[&bench[..], &tiny[..]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("spread (max - min) / min"), "{}", stdout(&o));
}
