//! Crash safety and scale-out through the command line, on a tiny configuration:
//! - `donna run` killed with SIGKILL again and again, a little later each time, then re-run to
//!   the end, gives the same results as a run that was never interrupted;
//! - the predictor stage split between two processes running at once, launched by the Slurm
//!   job-array template as tasks 0 and 1 of 2, gives the same predictor as one process, and
//!   two finetune shards at once give the models of one process;
//! - damaged artifacts (flipped bytes, a changed digit, a truncated file) are reported by
//!   `donna verify` and `donna plan`, refused when read, and redone to the same results.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use donna_sdk::accuracy::SampleResult;
use donna_sdk::artifact;
use donna_sdk::export::ModelRecord;

const FLAGS: &str = "--data synthetic:size=16,train=96,val=48 --resolution 16 --epochs 2 --batch-size 32 \
                     --steps 4 --max-options 2 --distill-batch-size 32 --val-images 48 \
                     --archs 5 --holdout 3 --finetune-steps 4 --finetune-batch-size 16 --finetune-val-images 48 \
                     --device v100 --population 6 --generations 2 --top 1 --final-steps 4 --final-batch-size 16";

fn donna() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_donna"));
    c.env("GOMP_SPINCOUNT", "10000");
    c
}

fn run_args(run: &Path) -> Vec<String> {
    let mut v = vec!["run".to_owned(), "--run".to_owned(), run.display().to_string()];
    v.extend(FLAGS.split_whitespace().map(str::to_owned));
    v
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("donna-crash-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

type Nsr = Vec<(usize, usize, f64, f64, f64)>;
type Accuracies = Vec<(String, f64)>;

/// What must not depend on interruptions: every NSR, the predictor, the front, and every
/// measured accuracy (not wall times).
fn results(run: &Path) -> (Nsr, Vec<u8>, Vec<u8>, Accuracies, Accuracies) {
    let read = |f: &str| std::fs::read(run.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let quality: donna_sdk::distill::QualityTable = artifact::read_json(&run.join("quality.json")).unwrap();
    let nsr = quality.units.iter().map(|u| (u.block, u.option, u.nsr, u.initial_nsr, u.train_nsr)).collect();
    let (samples, _) = artifact::read_json_lines::<SampleResult>(&run.join("predictor/samples.jsonl")).unwrap();
    let mut samples: Vec<(String, f64)> = samples.into_iter().map(|s| (s.id, s.accuracy)).collect();
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    samples.dedup_by(|a, b| a.0 == b.0);
    (nsr, read("predictor.json"), read("search/v100/pareto.json"), samples, model_accuracies(run))
}

#[test]
fn a_run_killed_at_any_moment_resumes_to_the_same_results() {
    let dir = temp_dir("kill");
    let whole = dir.join("whole");
    let o = donna().args(run_args(&whole)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let expected = results(&whole);

    // Attempts killed after 0.25 s, 0.35 s, 0.49 s, ... (x1.4 each), each resuming the last,
    // until one finishes by itself. The first three together last about a second, well under a
    // run (which also pays process start-up each time), so at least three are killed; the
    // growing delays guarantee that an attempt eventually outlives the rest of the work. The
    // delays do not depend on the uninterrupted run's duration, which other tests running
    // beside it can inflate.
    let killed = dir.join("killed");
    let mut kills = 0;
    for attempt in 1..=40 {
        let log = dir.join(format!("attempt-{attempt}.log"));
        let err = std::fs::File::create(&log).unwrap();
        let mut child = donna().args(run_args(&killed)).stdout(Stdio::null()).stderr(err).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(250).mul_f64(1.4f64.powi(attempt - 1)));
        if let Some(status) = child.try_wait().unwrap() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(status.success(), "attempt {attempt} after {kills} kills failed: {log}");
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    let o = donna().args(run_args(&killed)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(kills >= 3, "only {kills} attempts were still running when killed");
    let got = results(&killed);
    assert_eq!(got.0, expected.0, "distilled NSRs differ after {kills} kills");
    assert!(got.1 == expected.1, "predictor.json differs after {kills} kills");
    assert!(got.2 == expected.2, "pareto.json differs after {kills} kills");
    assert_eq!(got.3, expected.3, "predictor sample accuracies differ");
    assert_eq!(got.4, expected.4, "finetuned model accuracies differ");
    // No temporary file is left looking like an artifact.
    let mut stack = vec![killed.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                assert!(!name.contains(".tmp-"), "temporary file left behind: {}", p.display());
            }
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn two_predictor_shards_at_once_give_the_predictor_of_one_process() {
    let dir = temp_dir("shards");
    let one = dir.join("one");
    // Teacher and distillation once, then the same starting point twice.
    let distill: Vec<&str> = ["distill", "--run", one.to_str().unwrap()]
        .into_iter()
        .chain("--steps 4 --max-options 2 --distill-batch-size 32 --val-images 48".split(' '))
        .collect();
    let teacher: Vec<&str> = ["teacher", "--run", one.to_str().unwrap(), "--data", "synthetic:size=16,train=96,val=48"]
        .into_iter()
        .chain(["--resolution", "16", "--epochs", "2", "--batch-size", "32"])
        .collect();
    let o = donna().args(&teacher).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = donna().args(&distill).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let two = dir.join("two");
    let o = Command::new("cp").arg("-r").arg(&one).arg(&two).output().unwrap();
    assert!(o.status.success());

    let predictor = |run: &Path| {
        let mut c = donna();
        c.args(["predictor", "--run", run.to_str().unwrap()]);
        c.args("--archs 5 --holdout 3 --finetune-steps 4 --finetune-batch-size 16 --finetune-val-images 48".split(' '));
        c
    };
    let o = predictor(&one).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    // Two tasks of a job array, as Slurm would start them (deploy/slurm/donna-array.sh).
    let task = |i: &str| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/slurm/donna-array.sh");
        let mut c = Command::new("bash");
        c.arg(script).args(["predictor", two.to_str().unwrap()]);
        c.args("--archs 5 --holdout 3 --finetune-steps 4 --finetune-batch-size 16 --finetune-val-images 48".split(' '));
        c.env("DONNA", env!("CARGO_BIN_EXE_donna")).env("SLURM_ARRAY_TASK_COUNT", "2").env("SLURM_ARRAY_TASK_ID", i);
        c.env("SLURM_CPUS_PER_TASK", "1");
        c.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    };
    let (a, b) = (task("0"), task("1"));
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a), text(&b));
    // Both shards finished; at least one of them saw every sample and fitted. Fit again to be
    // sure the file is the final one (nothing is finetuned twice).
    let o = predictor(&two).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (lines, _) = artifact::read_json_lines::<SampleResult>(&two.join("predictor/samples.jsonl")).unwrap();
    assert_eq!(lines.len(), 8, "each sample finetuned exactly once across the shards");
    assert_eq!(
        std::fs::read(one.join("predictor.json")).unwrap(),
        std::fs::read(two.join("predictor.json")).unwrap(),
        "sharded and single-process predictors differ"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Flips one byte in the middle of `path` (its size stays the same).
fn flip_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() * 2 / 3]).unwrap();
}

#[test]
fn damaged_artifacts_are_detected_reported_and_redone() {
    let dir = temp_dir("damage");
    let run = dir.join("run");
    let o = donna().args(run_args(&run)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let expected = results(&run);
    let verify = || donna().args(["verify", "--run", run.to_str().unwrap()]).output().unwrap();
    let o = verify();
    assert!(o.status.success(), "{}", text(&o));
    // The teacher's training checkpoints were removed on purpose: not reported missing.
    assert!(text(&o).contains(" 0 damaged, 0 missing"), "{}", text(&o));

    // Damage that keeps every file parseable or the right size is the kind a reader cannot
    // see by itself: a flipped digit in a JSON table, a flipped bit in a tensor.
    let first = |dir: PathBuf, ext: &str| {
        let mut v: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v.into_iter().find(|p| p.extension().is_some_and(|e| e == ext) || ext.is_empty()).unwrap()
    };
    let model = first(run.join("models"), "");
    let damaged = [
        run.join("teacher.safetensors"),
        first(run.join("bkd/b0"), "safetensors"),
        run.join("quality.json"),
        model.join("model.pt"),
    ];
    flip_byte(&damaged[0]);
    flip_byte(&damaged[1]);
    let quality = std::fs::read_to_string(&damaged[2]).unwrap();
    let digit = quality.find(|c: char| c.is_ascii_digit() && c != '9').unwrap();
    let mut changed = quality.into_bytes();
    changed[digit] += 1;
    std::fs::write(&damaged[2], changed).unwrap();
    truncate(&damaged[3]);

    let o = verify();
    assert!(!o.status.success(), "verify must fail on damage: {}", text(&o));
    let report = text(&o);
    for path in &damaged {
        let rel = path.strip_prefix(&run).unwrap().to_str().unwrap();
        assert!(report.contains(&format!("damaged  {rel}")), "{rel} not reported:\n{report}");
    }
    assert!(report.contains("4 damaged"), "{report}");
    // Planning reports damage without touching the files.
    let o =
        donna().args(["plan", "--run", run.to_str().unwrap(), "--steps", "4", "--max-options", "2"]).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let plan = text(&o);
    assert!(plan.lines().any(|l| l.starts_with("distill") && l.ends_with("damaged")), "{plan}");
    assert!(plan.lines().any(|l| l.starts_with("finetune") && l.ends_with("damaged")), "{plan}");
    assert!(damaged.iter().all(|p| p.is_file()), "plan moved a file");
    // A stage that reads a damaged file refuses it with the path, instead of using it.
    let o = donna().args(["predict", "--run", run.to_str().unwrap(), "teacher"]).output().unwrap();
    assert!(!o.status.success());
    assert!(text(&o).contains("quality.json: damaged artifact"), "{}", text(&o));

    // The next run moves each damaged file aside, redoes it, and ends where it was.
    let o = donna().args(run_args(&run)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let log = text(&o);
    for path in [&damaged[0], &damaged[1], &damaged[3]] {
        assert!(log.contains(&format!("{}: damaged artifact", path.display())), "{}:\n{log}", path.display());
        let aside = path.with_file_name(format!("{}.damaged", path.file_name().unwrap().to_str().unwrap()));
        assert!(aside.is_file(), "{} kept for inspection", aside.display());
    }
    assert_eq!(results(&run), expected, "the redone artifacts differ from the originals");
    let o = verify();
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `id -> accuracy` of every exported model of `run`.
fn model_accuracies(run: &Path) -> Accuracies {
    let mut models = Vec::new();
    for entry in std::fs::read_dir(run.join("models")).unwrap() {
        let record: ModelRecord = artifact::read_json(&entry.unwrap().path().join("model.json")).unwrap();
        models.push((record.id, record.accuracy));
    }
    models.sort_by(|a, b| a.0.cmp(&b.0));
    models
}

#[test]
fn finetune_shards_at_once_give_the_models_of_one_process() {
    let dir = temp_dir("finetune-shards");
    let one = dir.join("one");
    let o = donna().args(run_args(&one)).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    std::fs::remove_dir_all(one.join("models")).unwrap();
    let two = dir.join("two");
    let o = Command::new("cp").arg("-r").arg(&one).arg(&two).output().unwrap();
    assert!(o.status.success());
    let finetune = |run: &Path, shard: Option<&str>| {
        let mut c = donna();
        c.args(["finetune", "--run", run.to_str().unwrap(), "--device", "v100", "--top", "3"]);
        c.args("--final-steps 4 --final-batch-size 16".split(' '));
        if let Some(s) = shard {
            c.args(["--shard", s]);
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    let o = finetune(&one, None).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let (a, b) = (finetune(&two, Some("0/2")).spawn().unwrap(), finetune(&two, Some("1/2")).spawn().unwrap());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success() && b.status.success(), "{}\n{}", text(&a), text(&b));
    let expected = model_accuracies(&one);
    assert!(expected.len() >= 2, "the front gives several models: {expected:?}");
    assert_eq!(model_accuracies(&two), expected, "sharded and single-process finetunes differ");
    let o = donna().args(["finetune", "--run", two.to_str().unwrap(), "--shard", "2/2"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
