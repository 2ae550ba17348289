//! Dynamic plugins through the command line: the example plugins (`mydevice`, `ghost`) load
//! with `--plugin` and show up beside the built-ins; a tiny run of the plugin's `ghostnet`
//! space distils blocks made of the plugin's `ghost` layer (their loss falls) and searches the
//! plugin device; and every kind of bad library is refused with one line and exit code 2.
//!
//! The plugins are dev-dependencies of `donna` built as `cdylib`s, so `cargo test` builds the
//! `.so` files next to this test's binary.

use std::path::PathBuf;
use std::process::{Command, Output};

use donna_sdk::artifact;
use donna_sdk::distill::QualityTable;
use donna_sdk::search::ParetoFile;

fn donna(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_donna")).args(args).output().expect("donna runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A plugin library built by cargo for this test (`target/<profile>/deps/lib<name>.so`).
fn plugin(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    let file = format!("lib{}.so", name.replace('-', "_"));
    let candidates = [deps.join(&file), deps.parent().unwrap().join(&file)];
    let found = candidates.iter().find(|p| p.is_file()).unwrap_or_else(|| panic!("{file} not built next to {deps:?}"));
    found.display().to_string()
}

fn mydevice() -> String {
    plugin("donna-plugin-mydevice")
}

fn ghost() -> String {
    plugin("donna-plugin-ghost")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("donna-plugins-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn plugins_show_up_beside_the_built_ins() {
    let (dev, gh) = (mydevice(), ghost());
    let with = |cmd: &str| donna(&["--plugin", &dev, "--plugin", &gh, cmd]);
    let o = with("plugins");
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("mydevice") && out.contains("device mydevice"), "{out}");
    assert!(out.contains("layer ghost, space ghostnet"), "{out}");
    assert!(out.contains(&format!("1.0.0 / libtorch {}", donna_plugin_abi::LIBTORCH_TAG)), "{out}");
    let devices = text(&with("devices"));
    assert!(devices.contains("mydevice") && devices.contains("v100"), "{devices}");
    let spaces = text(&with("spaces"));
    assert!(spaces.contains("ghostnet") && spaces.contains("8x8x8x8") && spaces.contains("mobilenet"), "{spaces}");
    let layers = text(&with("layers"));
    assert!(layers.contains("ghost ") && layers.contains("mbconv"), "{layers}");
    // Without --plugin nothing is loaded and the names are unknown.
    assert!(text(&donna(&["plugins"])).contains("no plugins loaded"));
    let o = donna(&["arch", "sample", "--space", "ghostnet"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // The same plugin twice is refused, not registered twice.
    let o = donna(&["--plugin", &dev, "--plugin", &dev, "devices"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("already loaded"), "{}", text(&o));
}

/// Every `--plugin` refusal: one `error:` line naming the reason, exit code 2, no panic.
fn refused(path: &str, reason: &str) {
    let o = donna(&["--plugin", path, "devices"]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "{path}: {}", text(&o));
    assert_eq!(err.trim_end().lines().count(), 1, "{path}: not one line: {err}");
    assert!(err.starts_with("error: plugin ") && err.contains(reason), "{path}: {err}");
    assert!(!err.contains("panicked") && o.stdout.is_empty(), "{path}: {}", text(&o));
}

/// The C library this test runs with: a real shared library that is not a donna plugin.
fn libc_path() -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("/libc.so") || p.contains("/libc-"))
        .expect("libc is mapped")
        .to_owned()
}

#[test]
fn bad_plugins_are_refused_with_one_line_and_exit_code_2() {
    let dir = temp_dir("refusals");
    refused(dir.join("missing.so").to_str().unwrap(), "no such file");
    let text_file = dir.join("notes.so");
    std::fs::write(&text_file, "not a library\n").unwrap();
    refused(text_file.to_str().unwrap(), "not a loadable library");
    refused(&libc_path(), "not a donna plugin");
    refused(
        &plugin("donna-plugin-fixture-other-interface"),
        "built against donna plugin interface 2.0.0, this donna loads interface 1.0.0",
    );
    refused(
        &plugin("donna-plugin-fixture-other-libtorch"),
        &format!("built against libtorch 1.13.1, this donna uses libtorch {}", donna_plugin_abi::LIBTORCH_TAG),
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A latency table for `ghostnet` at 16 px: ghost options cheaper than inverted residuals,
/// larger kernels and deeper blocks slower. `skip` leaves one option out.
fn latency_table(gh: &str, skip: Option<&str>) -> serde_json::Value {
    let mut blocks = Vec::new();
    for b in 0..4 {
        let o = donna(&[
            "--plugin",
            gh,
            "arch",
            "options",
            "--space",
            "ghostnet",
            "--resolution",
            "16",
            "--block",
            &b.to_string(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        let mut block = serde_json::Map::new();
        for option in String::from_utf8_lossy(&o.stdout).lines().skip(1).filter(|l| Some(*l) != skip) {
            let ms = 0.1
                * (b + 1) as f64
                * if option.contains("tghost") { 1.0 } else { 2.0 }
                * if option.contains("k5") { 1.5 } else { 1.0 }
                * if option.contains("d2") { 2.0 } else { 1.0 };
            block.insert(option.to_owned(), ms.into());
        }
        blocks.push(serde_json::Value::Object(block));
    }
    serde_json::json!({ "runtime": "test-npu", "space": "ghostnet", "fixed_ms": 0.5, "blocks": blocks })
}

#[test]
fn a_plugin_space_distils_its_plugin_layer_and_searches_the_plugin_device() {
    let (dev, gh) = (mydevice(), ghost());
    let dir = temp_dir("run");
    let table = dir.join("latency.json");
    std::fs::write(&table, serde_json::to_string_pretty(&latency_table(&gh, None)).unwrap()).unwrap();
    let device = format!("mydevice:{}", table.display());
    let run = dir.join("run");
    let flags = "--space ghostnet --data synthetic:size=16,train=96,val=48 --resolution 16 --epochs 1 --batch-size 32 \
                 --steps 24 --distill-batch-size 32 --val-images 48 \
                 --archs 5 --holdout 3 --finetune-steps 3 --finetune-batch-size 16 --finetune-val-images 48 \
                 --population 6 --generations 2 --top 1 --final-steps 3 --final-batch-size 16";
    let mut args = vec!["--plugin", &gh, "--plugin", &dev, "run", "--run", run.to_str().unwrap(), "--device", &device];
    args.extend(flags.split_whitespace());
    let o = donna(&args);
    assert!(o.status.success(), "{}", text(&o));

    // Every option of every block was distilled; the ghost options train (their loss falls).
    let quality: QualityTable = artifact::read_json(&run.join("quality.json")).unwrap();
    assert_eq!(quality.space, "ghostnet");
    let ghost_units: Vec<_> = quality.units.iter().filter(|u| u.option_text.starts_with("tghost")).collect();
    assert_eq!(ghost_units.len(), 16, "4 ghost options in each of 4 blocks");
    for u in &ghost_units {
        assert!(u.params > 0 && u.macs > 0, "{u:?}");
        assert!(
            u.train_nsr < u.first_train_nsr,
            "block {} {}: NSR {} -> {}",
            u.block,
            u.option_text,
            u.first_train_nsr,
            u.train_nsr
        );
    }

    // The search priced its candidates with the plugin device's table.
    let front_file = std::fs::read_dir(run.join("search"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with("mydevice"))
        .map(|p| p.join("pareto.json"))
        .unwrap_or_else(|| panic!("no search/mydevice*: {}", text(&o)));
    let front: ParetoFile = artifact::read_json(&front_file).unwrap();
    assert!(!front.front.is_empty());
    for entry in &front.front {
        // fixed 0.5 ms plus four blocks at >= 0.1, 0.2, 0.3, 0.4 ms.
        assert!(entry.latency_ms >= 1.5 - 1e-9 && entry.latency_ms <= 0.5 + 6.0 * 1.0 + 1e-9, "{}", entry.latency_ms);
    }

    // `donna cost` prices with the same table, and names what it cannot price.
    let teacher = "ghostnet:tmb-k3-d2/tmb-k3-d2/tmb-k3-d2/tmb-k3-d2";
    let o = donna(&["--plugin", &gh, "--plugin", &dev, "cost", "--device", &device, "--resolution", "16", teacher]);
    assert!(o.status.success(), "{}", text(&o));
    let partial = dir.join("partial.json");
    std::fs::write(&partial, latency_table(&gh, Some("tmb-k3-d2")).to_string()).unwrap();
    let partial_device = format!("mydevice:{}", partial.display());
    let o =
        donna(&["--plugin", &gh, "--plugin", &dev, "cost", "--device", &partial_device, "--resolution", "16", teacher]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("no latency for block 0 option `tmb-k3-d2`"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A layer whose forward pass fails, and a device that panics: each failure is an error for
/// its call, the rest of the work goes on and is saved, and donna exits with a message, never
/// a crash or a panic message.
#[test]
fn a_plugin_failing_at_run_time_is_an_error_for_that_call_not_a_crash() {
    let faulty = plugin("donna-plugin-fixture-faulty");
    let dir = temp_dir("faulty");
    let clean = |o: &Output| {
        let t = text(o);
        assert!(!t.contains("thread '") && !t.contains("RUST_BACKTRACE"), "a panic escaped:\n{t}");
        assert!(t.contains("deliberate failure of the faulty fixture"), "the plugin's message is lost:\n{t}");
    };

    // The device panics inside the plugin: caught at the boundary, one error line, exit 1.
    let o = donna(&["--plugin", &faulty, "cost", "--device", "faulty", "--resolution", "32", "mobilenet:teacher"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    clean(&o);
    assert!(text(&o).contains("panicked"), "{}", text(&o));

    // A space whose block offers the faulty layer beside mbconv.
    let space = dir.join("mixed.toml");
    std::fs::write(
        &space,
        "name = \"mixed\"\n\n[[stem]]\ntype = \"conv_bn_act\"\nout = 8\nk = 3\nstride = 1\n\n\
         [[block]]\nout = 16\nstride = 2\nteacher = \"d1-e4-k3-tmbconv\"\n[block.choices]\n\
         t = [\"mbconv\", \"faulty\"]\nk = [3]\ne = [4]\nd = [1]\n\n[[head]]\ntype = \"classifier\"\n",
    )
    .unwrap();
    let run = dir.join("run");
    let space_arg = format!("file:{}", space.display());
    let init = ["--space", &space_arg, "--data", "synthetic:size=16,train=64,val=32", "--resolution", "16"];
    let mut args =
        vec!["--plugin", &faulty, "teacher", "--run", run.to_str().unwrap(), "--epochs", "1", "--batch-size", "32"];
    args.extend(init);
    let o = donna(&args);
    assert!(o.status.success(), "{}", text(&o));
    let o = donna(&[
        "--plugin",
        &faulty,
        "distill",
        "--run",
        run.to_str().unwrap(),
        "--steps",
        "3",
        "--options-per-pass",
        "1",
        "--distill-batch-size",
        "32",
        "--val-images",
        "32",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    clean(&o);
    let t = text(&o);
    assert!(t.contains("forward failed") && t.contains("faulty"), "{t}");
    // The mbconv option was distilled and saved despite its neighbour's failure.
    let saved: Vec<String> = std::fs::read_dir(run.join("bkd/b0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(saved.iter().any(|n| n.ends_with(".safetensors")), "{saved:?}\n{t}");
    assert_eq!(saved.iter().filter(|n| n.ends_with(".json")).count(), 1, "{saved:?}");
    assert!(!run.join("quality.json").exists(), "no quality table from an incomplete distillation");
    std::fs::remove_dir_all(&dir).unwrap();
}
