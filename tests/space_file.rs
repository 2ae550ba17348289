//! Search spaces declared in a TOML file: a custom space goes through the whole pipeline from
//! the command line, and malformed files are refused with the line and the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use donna_layers as _;

use donna_sdk::{registry, SpaceConfig};

/// The two-block space the fuzz targets also use, with a comment line first (the error line
/// numbers below count it).
static TINYNET: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("# A two-block space for tests.\n{}", donna_sdk::fuzzing::TINY_SPACE));

fn donna(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_donna")).args(args).output().expect("donna runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("donna-space-file-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config() -> SpaceConfig {
    SpaceConfig { resolution: 16, width_mult: 1.0, num_classes: 10, in_channels: 3 }
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    format!("file:{}", path.display())
}

#[test]
fn a_space_file_builds_the_declared_blocks_and_teacher() {
    let dir = temp_dir("build");
    let spec = write(&dir, "tinynet.toml", &TINYNET);
    let space = registry::space(&spec, &config()).unwrap();
    assert_eq!(space.name(), "tinynet");
    assert_eq!(space.blocks().len(), 2);
    // 2 types x 2 kernels x 2 expansions x 2 depths; 2 x 2 x 2 in the second block.
    assert_eq!(space.blocks()[0].options.len(), 16);
    assert_eq!(space.blocks()[1].options.len(), 8);
    assert_eq!((space.blocks()[1].output.channels, space.blocks()[1].output.height), (32, 4));
    let teacher = space.teacher();
    assert_eq!(space.format_arch(&teacher), "tinynet:d2-e4-k3-tmbconv/d1-e4-k3");
    let counts = donna_sdk::network::count_network(space.as_ref(), &teacher).unwrap();
    assert!(counts.total.params > 0 && counts.total.macs > 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_space_files_name_the_line_and_the_field() {
    let dir = temp_dir("bad");
    let cases: [(&str, String, &str); 7] = [
        ("syntax", TINYNET.replace("out = 24", "out = = 24"), ":12:"),
        ("unknown layer", TINYNET.replace("\"fused_mbconv\"", "\"ghost\""), "block[0].choices.t"),
        ("bad teacher", TINYNET.replace("d2-e4-k3-tmbconv", "d3-e4-k3-tmbconv"), "block[0].teacher"),
        ("bad stride", TINYNET.replace("stride = 2\nteacher = \"d1", "stride = 9\nteacher = \"d1"), "block[1].stride"),
        ("unknown field", TINYNET.replace("activation = \"relu\"", "activaton = \"relu\""), "activaton"),
        ("no type", TINYNET.replace("type = \"classifier\"\n", "classes = 10\n"), "head[1]"),
        ("bad name", TINYNET.replace("name = \"tinynet\"", "name = \"tiny net\""), ":2: name"),
    ];
    for (what, body, expected) in cases {
        let spec = write(&dir, "bad.toml", &body);
        let err = registry::space(&spec, &config()).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("bad.toml") && err.contains(expected), "{what}: `{err}` lacks `{expected}`");
    }
    // Through the command line: exit code 2, one line, no panic.
    let spec = write(&dir, "bad.toml", &TINYNET.replace("\"fused_mbconv\"", "\"ghost\""));
    let o = donna(&["arch", "teacher", "--space", &spec]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("block[0].choices.t") && !text(&o).contains("panicked"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_space_file_goes_through_distill_search_and_finetune() {
    let dir = temp_dir("pipeline");
    let spec = write(&dir, "tinynet.toml", &TINYNET);
    let run = dir.join("run");
    let flags = format!(
        "run --run {} --space {spec} --data synthetic:size=16,train=96,val=48 --resolution 16 --width-mult 1 \
         --epochs 1 --batch-size 32 --steps 3 --max-options 3 --distill-batch-size 32 --val-images 48 \
         --archs 4 --holdout 2 --finetune-steps 2 --finetune-batch-size 16 --finetune-val-images 48 \
         --device s20 --population 4 --generations 1 --top 1 --final-steps 2 --final-batch-size 16",
        run.display()
    );
    let args: Vec<&str> = flags.split_whitespace().collect();
    let o = donna(&args);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("quality table: 6 units"), "{}", text(&o));
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("tinynet:"), "{report}");
    let models: Vec<_> = std::fs::read_dir(run.join("models")).unwrap().collect();
    assert_eq!(models.len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explore_compares_the_fronts_of_two_spaces() {
    let dir = temp_dir("explore");
    let spec = write(&dir, "tinynet.toml", &TINYNET);
    let root = dir.join("explore");
    let flags = format!(
        "explore --spaces mobilenet,{spec} --root {} --data synthetic:size=16,train=96,val=48 --resolution 16 \
         --epochs 1 --batch-size 32 --steps 2 --max-options 3 --distill-batch-size 32 --val-images 48 \
         --archs 4 --holdout 2 --finetune-steps 2 --finetune-batch-size 16 --finetune-val-images 48 \
         --device v100 --population 4 --generations 1",
        root.display()
    );
    let args: Vec<&str> = flags.split_whitespace().collect();
    let o = donna(&args);
    assert!(o.status.success(), "{}", text(&o));
    let md = std::fs::read_to_string(root.join("explore-v100.md")).unwrap();
    assert!(md.contains("| mobilenet |") && md.contains("tinynet.toml |"), "{md}");
    assert_eq!(md.matches("best ≤").count(), 4, "four default budgets: {md}");
    let svg = std::fs::read_to_string(root.join("explore-v100.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 2);
    // Each space has its own run, resumable like `donna run`.
    assert!(root.join("mobilenet/predictor.json").exists());
    let again = donna(&args);
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(std::fs::read_to_string(root.join("explore-v100.md")).unwrap(), md, "the same comparison again");
    std::fs::remove_dir_all(&dir).unwrap();
}
