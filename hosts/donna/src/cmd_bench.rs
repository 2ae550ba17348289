//! `donna bench loader`: can the data loader keep up with training?
//! `donna bench distill`: what a distillation step costs, next to PyTorch.
//! `donna bench latency`: do repeated measurements of one architecture agree?
//!
//! Three figures from one run, same data, batch size and threads: the loader alone
//! (decode + augment + normalise, images/s), training steps on batches prepared beforehand
//! (the compute ceiling), and training steps fed by the prefetching loader. The last should be
//! close to the second: the loader then does not starve training.

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use donna_sdk::data::{Augment, Batch, Dataset, Loader, LoaderConfig, Normalization, Split};
use donna_sdk::network::{build_network, use_channels_last};
use donna_sdk::optim::{Optimizer, OptimizerConfig, OptimizerKind};
use donna_sdk::{compute::compute_device, registry, SpaceConfig};
use tch::nn::{ModuleT, VarStore};
use tch::{Reduction, Tensor};

#[derive(Args)]
pub struct LoaderBenchArgs {
    /// Dataset spec.
    #[arg(long, default_value = "synthetic")]
    data: String,
    #[command(flatten)]
    net: BenchNet,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Training steps timed (after 3 warm-up steps).
    #[arg(long, default_value_t = 30)]
    steps: usize,
}

/// The network a benchmark runs: a space's teacher at a size.
#[derive(Args)]
pub struct BenchNet {
    /// Search space.
    #[arg(long, default_value = "mobilenet")]
    space: String,
    /// Input resolution.
    #[arg(long, default_value_t = 32)]
    resolution: i64,
    /// Width multiplier.
    #[arg(long, default_value_t = 0.25)]
    width_mult: f64,
}

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Loader images/s alone, next to training steps with and without the loader.
    Loader(LoaderBenchArgs),
    /// Distillation: a block option's training speed, the teacher's share with K options per
    /// pass, and (with --pytorch) the same step in PyTorch eager.
    Distill(DistillBenchArgs),
    /// Measure one architecture several times, each a fresh measurement as `donna cost` takes
    /// it, and print how far apart the results are.
    Latency(LatencyBenchArgs),
    /// The searchers on a DONNA-shaped problem (5 blocks x 384 options by default), and with
    /// --pymoo the same problem in pymoo's NSGA-II: time and hypervolume side by side.
    Search(crate::cmd_bench_search::SearchBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Loader(a) => loader(&a),
        BenchCommand::Distill(a) => distill(&a),
        BenchCommand::Latency(a) => latency(&a),
        BenchCommand::Search(a) => crate::cmd_bench_search::run(&a),
    }
}

#[derive(Args)]
pub struct LatencyBenchArgs {
    /// Hardware target, `NAME[:SETTINGS]` (see `donna devices`).
    #[arg(long, short = 'd', default_value = "cpu")]
    device: String,
    /// The architecture (`SPACE:OPT/...`, `SPACE:teacher|smallest|largest`, or a JSON file).
    #[arg(long)]
    arch: String,
    /// Separate measurements (the network is built anew for each).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: i64,
    #[command(flatten)]
    config: crate::space_args::ConfigArgs,
}

fn latency(a: &LatencyBenchArgs) -> anyhow::Result<()> {
    if !(2..=1000).contains(&a.runs) {
        return crate::usage(format!("--runs {} out of range 2..=1000", a.runs));
    }
    let (space, arch) = crate::cmd_arch::load_arch(&a.arch, &a.config)?;
    let device = registry::device(&a.device)?;
    let info = device.info();
    let query = donna_sdk::cost::CostQuery { batch: a.batch, precision: info.precision };
    println!("{} ({}, {}; {}), batch {}", info.device, info.runtime, info.runtime_version, info.method, a.batch);
    println!("{}", space.format_arch(&arch));
    let cpu_before = CpuTimes::now();
    let mut ms = Vec::with_capacity(a.runs);
    for run in 1..=a.runs {
        let t = Instant::now();
        let l = device.latency(space.as_ref(), std::slice::from_ref(&arch), &query)?[0];
        let spread = l.cv.map(|cv| format!(" ± {:.1}%", 100.0 * cv)).unwrap_or_default();
        println!("run {run:>3}: {:>10.3} ms{spread}  (measured in {:.2} s)", l.ms, t.elapsed().as_secs_f64());
        ms.push(l.ms);
    }
    let (min, max) = ms.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    println!("min {min:.3} ms, max {max:.3} ms: spread (max - min) / min = {:.1}%", 100.0 * (max / min - 1.0));
    // Other work on the machine is what moves measurements most: show how much there was.
    if let (Some(before), Some(after)) = (cpu_before, CpuTimes::now()) {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        println!(
            "other processes used {:.2} of {cores} cores meanwhile{}",
            after.others_since(&before),
            if after.others_since(&before) > 0.2 { ": the figures above are not from a quiet machine" } else { "" }
        );
    }
    Ok(())
}

/// CPU time used by the whole machine and by this process (Linux: /proc), in clock ticks.
struct CpuTimes {
    busy: u64,
    ours: u64,
    at: Instant,
}

impl CpuTimes {
    fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // cpu  user nice system idle iowait irq softirq steal ...
        let f: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
        let busy = f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)? + f.get(7).unwrap_or(&0);
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest: Vec<&str> = own.rsplit_once(')')?.1.split_whitespace().collect();
        let ours = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
        Some(Self { busy, ours, at: Instant::now() })
    }

    /// Cores' worth of CPU used by other processes since `earlier`.
    fn others_since(&self, earlier: &CpuTimes) -> f64 {
        // SAFETY: sysconf only reads a system constant.
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let others = (self.busy - earlier.busy).saturating_sub(self.ours - earlier.ours) as f64 / ticks_per_s;
        others / self.at.duration_since(earlier.at).as_secs_f64().max(1e-3)
    }
}

#[derive(Args)]
pub struct DistillBenchArgs {
    #[command(flatten)]
    net: BenchNet,
    /// Block whose teacher option is trained [default: the middle block].
    #[arg(long)]
    block: Option<usize>,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: i64,
    /// Timed steps per measurement.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Python with PyTorch 2.13 to time the same step in PyTorch eager (benches/distill_step.py).
    #[arg(long, value_name = "PYTHON")]
    pytorch: Option<std::path::PathBuf>,
    /// The PyTorch counterpart script.
    #[arg(long, default_value = "benches/distill_step.py")]
    pytorch_script: std::path::PathBuf,
}

fn time_per<F: FnMut()>(steps: usize, mut f: F) -> f64 {
    f();
    let t = Instant::now();
    for _ in 0..steps {
        f();
    }
    t.elapsed().as_secs_f64() / steps as f64
}

fn distill(a: &DistillBenchArgs) -> anyhow::Result<()> {
    use donna_sdk::network::build_block;
    use donna_sdk::nsr::nsr_loss;

    let device = compute_device();
    let config =
        SpaceConfig { resolution: a.net.resolution, width_mult: a.net.width_mult, num_classes: 10, in_channels: 3 };
    let space = registry::space(&a.net.space, &config)?;
    let b = a.block.unwrap_or(space.blocks().len() / 2);
    let Some(spec) = space.blocks().get(b) else {
        return crate::usage(format!("--block {b}: space `{}` has {} blocks", a.net.space, space.blocks().len()));
    };
    let teacher_arch = space.teacher();
    let option = &teacher_arch.blocks[b];
    tch::manual_seed(0);
    let tvs = VarStore::new(device);
    let teacher = build_network(space.as_ref(), &teacher_arch, &tvs.root())?;
    use_channels_last(&tvs);
    let x = donna_sdk::network::to_channels_last(&Tensor::randn(
        [a.batch_size, 3, a.net.resolution, a.net.resolution],
        (tch::Kind::Float, device),
    ));
    let prefix = || tch::no_grad(|| teacher.block_io(&x, b, false));
    let (xin, y) = prefix();
    let t_prefix = time_per(a.steps, || {
        let _ = prefix();
    });

    struct Student {
        module: donna_sdk::network::LayerStack,
        opt: Optimizer,
        _vs: VarStore,
    }
    let mut students: Vec<Student> = (0..32)
        .map(|_| -> anyhow::Result<Student> {
            let vs = VarStore::new(device);
            let module = build_block(space.as_ref(), b, option, &vs.root())?;
            use_channels_last(&vs);
            let opt =
                Optimizer::new(&vs, OptimizerConfig { kind: OptimizerKind::Adamw, momentum: 0.9, weight_decay: 0.0 });
            Ok(Student { module, opt, _vs: vs })
        })
        .collect::<anyhow::Result<_>>()?;
    let step = |s: &mut Student, xin: &Tensor, y: &Tensor| {
        s.opt.zero_grad();
        let loss = nsr_loss(&s.module.forward_t(xin, true), y);
        loss.backward();
        s.opt.step(2e-3);
    };
    let t_step = time_per(a.steps, || step(&mut students[0], &xin, &y));

    println!(
        "{} block {b} option {} (teacher's), input {}, batch {}, {} libtorch threads",
        a.net.space,
        spec.format_option(option),
        spec.input,
        a.batch_size,
        tch::get_num_threads()
    );
    println!("option training step:    {:>8.2} ms  ({:.0} images/s)", 1e3 * t_step, a.batch_size as f64 / t_step);
    println!("teacher up to block {b}:   {:>8.2} ms per batch", 1e3 * t_prefix);
    println!(
        "K   pass, teacher shared   pass, teacher per option   teacher share of shared pass   teacher ms per option"
    );
    for k in [1usize, 8, 32] {
        let shared = time_per(a.steps.div_ceil(k).max(2), || {
            let (xin, y) = prefix();
            for s in students.iter_mut().take(k) {
                step(s, &xin, &y);
            }
        });
        let repeated = time_per(a.steps.div_ceil(k).max(2), || {
            for s in students.iter_mut().take(k) {
                let (xin, y) = prefix();
                step(s, &xin, &y);
            }
        });
        println!(
            "{k:<3} {:>17.1} ms   {:>21.1} ms   {:>27.1}%   {:.2} (1/{k} of {:.2})",
            1e3 * shared,
            1e3 * repeated,
            100.0 * t_prefix / shared,
            1e3 * t_prefix / k as f64,
            1e3 * t_prefix
        );
    }

    if let Some(python) = &a.pytorch {
        let layers = space.block_layers(b, option)?;
        let spec_json = serde_json::json!({
            "layers": layers,
            "input": [spec.input.channels, spec.input.height, spec.input.width],
            "batch": a.batch_size,
            "threads": tch::get_num_threads(),
            "steps": a.steps.max(10),
            "warmup": 3,
            "variance_floor": donna_sdk::nsr::VARIANCE_FLOOR,
        });
        let path = std::env::temp_dir().join(format!("donna-bench-distill-{}.json", std::process::id()));
        std::fs::write(&path, serde_json::to_vec(&spec_json)?)?;
        let t_ours = time_per(a.steps.max(10), || step(&mut students[1], &xin, &y));
        let out = std::process::Command::new(python).arg(&a.pytorch_script).arg(&path).output();
        let _ = std::fs::remove_file(&path);
        let out = out.map_err(|e| anyhow::anyhow!("{}: {e}", python.display()))?;
        if !out.status.success() {
            anyhow::bail!("{} failed: {}", a.pytorch_script.display(), String::from_utf8_lossy(&out.stderr).trim());
        }
        let theirs: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let torch_rate = theirs["images_per_second"].as_f64().unwrap_or(f64::NAN);
        let ours = a.batch_size as f64 / t_ours;
        println!(
            "same step, PyTorch {} eager ({} threads): {torch_rate:.0} images/s; donna {ours:.0} images/s; donna / PyTorch = {:.2}",
            theirs["torch"].as_str().unwrap_or("?"),
            theirs["threads"],
            ours / torch_rate
        );
    }
    Ok(())
}

fn loader(a: &LoaderBenchArgs) -> anyhow::Result<()> {
    let device = compute_device();
    let ds: Arc<dyn Dataset> = Arc::from(registry::dataset(&a.data, a.net.resolution)?);
    let norm = Normalization::estimate(ds.as_ref(), 2048)?;
    let info = ds.info().clone();
    let config = SpaceConfig {
        resolution: a.net.resolution,
        width_mult: a.net.width_mult,
        num_classes: info.classes,
        in_channels: info.channels,
    };
    let space = registry::space(&a.net.space, &config)?;
    let images = a.batch_size * (a.steps + 3);
    let cfg = LoaderConfig {
        batch_size: a.batch_size,
        resolution: a.net.resolution,
        augment: Some(Augment { crop_padding: 4, flip: true }),
        shuffle: true,
        drop_last: true,
        seed: 0,
        epoch: 0,
        limit: Some(images.min(info.train_len)),
        prefetch: 3,
        device,
    };

    let t = Instant::now();
    let batches: Vec<Batch> =
        Loader::new(ds.clone(), Split::Train, cfg.clone(), norm.clone()).collect::<Result<_, _>>()?;
    let loader_rate = (batches.len() * a.batch_size) as f64 / t.elapsed().as_secs_f64();
    if batches.len() < 4 {
        return crate::usage("too few training images for the benchmark; lower --steps or --batch-size");
    }

    tch::manual_seed(0);
    let vs = VarStore::new(device);
    let net = build_network(space.as_ref(), &space.teacher(), &vs.root())?;
    use_channels_last(&vs);
    let mut opt = Optimizer::new(&vs, OptimizerConfig { kind: OptimizerKind::Sgd, momentum: 0.9, weight_decay: 5e-4 });
    let mut step = |b: &Batch| {
        opt.zero_grad();
        let loss =
            net.forward_t(&b.images, true).cross_entropy_loss::<Tensor>(&b.labels, None, Reduction::Mean, -100, 0.1);
        loss.backward();
        opt.step(0.01);
    };
    for b in &batches[..3] {
        step(b);
    }
    let t = Instant::now();
    for b in &batches[3..] {
        step(b);
    }
    let compute_rate = ((batches.len() - 3) * a.batch_size) as f64 / t.elapsed().as_secs_f64();

    let mut loader = Loader::new(ds, Split::Train, cfg, norm);
    for _ in 0..3 {
        step(&loader.next().transpose()?.expect("warm-up batches"));
    }
    let t = Instant::now();
    let mut n = 0;
    for b in loader {
        step(&b?);
        n += a.batch_size;
    }
    let fed_rate = n as f64 / t.elapsed().as_secs_f64();

    println!(
        "{} {}x{}, {} teacher x{}, batch {}, {} libtorch threads, {} rayon threads",
        info.name,
        a.net.resolution,
        a.net.resolution,
        a.net.space,
        a.net.width_mult,
        a.batch_size,
        tch::get_num_threads(),
        rayon::current_num_threads()
    );
    println!("loader alone:                 {loader_rate:>8.0} images/s");
    println!("training, batches in memory:  {compute_rate:>8.0} images/s");
    println!(
        "training, fed by the loader:  {fed_rate:>8.0} images/s ({:.0}% of in-memory)",
        100.0 * fed_rate / compute_rate
    );
    Ok(())
}
