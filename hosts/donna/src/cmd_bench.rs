//! `donna bench loader`: can the data loader keep up with training?
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
    /// Search space whose teacher is trained.
    #[arg(long, default_value = "mobilenet")]
    space: String,
    /// Input resolution.
    #[arg(long, default_value_t = 32)]
    resolution: i64,
    /// Width multiplier.
    #[arg(long, default_value_t = 0.25)]
    width_mult: f64,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Training steps timed (after 3 warm-up steps).
    #[arg(long, default_value_t = 30)]
    steps: usize,
}

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Loader images/s alone, next to training steps with and without the loader.
    Loader(LoaderBenchArgs),
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Loader(a) => loader(&a),
    }
}

fn loader(a: &LoaderBenchArgs) -> anyhow::Result<()> {
    let device = compute_device();
    let ds: Arc<dyn Dataset> = Arc::from(registry::dataset(&a.data, a.resolution)?);
    let norm = Normalization::estimate(ds.as_ref(), 2048)?;
    let info = ds.info().clone();
    let config = SpaceConfig {
        resolution: a.resolution,
        width_mult: a.width_mult,
        num_classes: info.classes,
        in_channels: info.channels,
    };
    let space = registry::space(&a.space, &config)?;
    let images = a.batch_size * (a.steps + 3);
    let cfg = LoaderConfig {
        batch_size: a.batch_size,
        resolution: a.resolution,
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
        a.resolution,
        a.resolution,
        a.space,
        a.width_mult,
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
