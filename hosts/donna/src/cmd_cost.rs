//! `donna cost --device D ARCH`: an architecture's latency on a hardware target.
//! `donna cost calibrate`: refit an analytical model to your measurements.
//! `donna cost lut-error`: how far a per-block lookup table is from whole-network measurements.

use clap::Args;
use donna_sdk::cost::{CostQuery, Precision};
use donna_sdk::registry;

use crate::space_args::{ConfigArgs, SpaceArgs};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CostArgs {
    #[command(subcommand)]
    sub: Option<CostCommand>,
    /// Hardware target, `NAME[:RUNTIME]` (see `donna devices`).
    #[arg(long, short = 'd')]
    device: Option<String>,
    /// Architectures (`SPACE:OPT/...`, `SPACE:teacher|smallest|largest`, or JSON files).
    archs: Vec<String>,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: i64,
    /// Precision: fp32, fp16 or int8 [default: the device runtime's].
    #[arg(long)]
    precision: Option<String>,
    /// Latency cache (JSON lines): reuse what was priced before on the same device, runtime
    /// version, batch and precision, and add what is new.
    #[arg(long, value_name = "FILE.jsonl")]
    cache: Option<std::path::PathBuf>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(clap::Subcommand)]
pub enum CostCommand {
    /// Refit an analytical device's profile to your own measurements and write it, for use as
    /// `--device profile:FILE`.
    Calibrate(CalibrateArgs),
    /// Build a per-block lookup table (each option timed alone, plus stem and head) for the
    /// options of N sampled architectures, sum it per architecture, measure the whole networks,
    /// and print the table's error (MAPE) and rank agreement (Kendall tau).
    LutError(LutErrorArgs),
}

#[derive(Args)]
pub struct LutErrorArgs {
    /// Measured device, `cpu[:SETTINGS]` or `cuda[:SETTINGS]`.
    #[arg(long, short = 'd', default_value = "cpu")]
    device: String,
    #[command(flatten)]
    space: SpaceArgs,
    /// Architectures sampled.
    #[arg(long, default_value_t = 20)]
    archs: usize,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    batch: i64,
    /// Also write the lookup table (JSON).
    #[arg(long, value_name = "FILE.json")]
    lut_out: Option<std::path::PathBuf>,
}

fn lut_error(a: &LutErrorArgs) -> anyhow::Result<()> {
    use donna_device_measured::{lut::BlockLut, Measured};
    use donna_sdk::stats::{kendall_tau, mape};
    use donna_sdk::CostModel;

    if !(2..=10_000).contains(&a.archs) {
        return crate::usage(format!("--archs {} out of range 2..=10000", a.archs));
    }
    if !(1..=65_536).contains(&a.batch) {
        return crate::usage(format!("--batch {} out of range 1..=65536", a.batch));
    }
    let space = a.space.build()?;
    let measured = Measured::from_spec(&a.device)?;
    let info = measured.info();
    let mut rng = donna_sdk::SplitMix64::new(a.seed);
    let archs: Vec<_> = (0..a.archs).map(|_| space.decode(&space.sample(&mut rng))).collect();

    let t = std::time::Instant::now();
    let lut = BlockLut::build(&measured, space.as_ref(), &archs, a.batch)?;
    let lut_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let whole: Vec<f64> = measured
        .latency(space.as_ref(), &archs, &CostQuery { batch: a.batch, precision: Precision::Fp32 })?
        .iter()
        .map(|l| l.ms)
        .collect();
    let whole_s = t.elapsed().as_secs_f64();
    let table: Vec<f64> = archs.iter().map(|arch| lut.latency_ms(space.as_ref(), arch)).collect::<Result<_, _>>()?;

    println!("{} ({}, {}), batch {}", info.device, info.runtime, info.runtime_version, a.batch);
    println!(
        "lookup table: {} block options + stem ({:.3} ms) + head ({:.3} ms), timed alone in {lut_s:.1} s; \
         {} whole networks measured in {whole_s:.1} s",
        lut.options(),
        lut.stem.ms,
        lut.head.ms,
        archs.len()
    );
    println!("{:>4} {:>10} {:>12} {:>8}  architecture", "#", "table ms", "measured ms", "error");
    for (i, arch) in archs.iter().enumerate() {
        println!(
            "{i:>4} {:>10.3} {:>12.3} {:>+7.1}%  {}",
            table[i],
            whole[i],
            100.0 * (table[i] / whole[i] - 1.0),
            space.format_arch(arch)
        );
    }
    let bias = 100.0 * (table.iter().sum::<f64>() / whole.iter().sum::<f64>() - 1.0);
    println!(
        "MAPE {:.1}%, Kendall tau {:.3}, table total {bias:+.1}% of measured ({} architectures)",
        mape(&table, &whole),
        kendall_tau(&table, &whole),
        archs.len()
    );
    if let Some(path) = &a.lut_out {
        donna_sdk::artifact::write_json(path, &lut)?;
        println!("lookup table -> {}", path.display());
    }
    Ok(())
}

#[derive(Args)]
pub struct CalibrateArgs {
    /// The analytical device whose profile (hardware figures and priors) is refitted, `NAME[:RUNTIME]`.
    #[arg(long, short = 'd')]
    device: String,
    /// Your measurements: a JSON list of references
    /// (`[{"network": "...", "arch": "mobilenet:teacher", "resolution": 224, "batch": 1, "ms": 2.1, "source": "..."}]`).
    #[arg(long, value_name = "FILE.json")]
    measurements: std::path::PathBuf,
    /// Where to write the fitted profile.
    #[arg(long, value_name = "PROFILE.json")]
    out: std::path::PathBuf,
}

fn calibrate(a: &CalibrateArgs) -> anyhow::Result<()> {
    use donna_sdk::analytical::{reference_ops, Profile, Reference};
    let (name, runtime) = a.device.split_once(':').unwrap_or((&a.device, ""));
    let provider = registry::devices().into_iter().find(|d| d.name() == name);
    let Some(provider) = provider else {
        return crate::usage(format!("unknown device `{name}`"));
    };
    // Only analytical devices have profiles to refit.
    let mut profile: Profile = match provider.analytical() {
        Some(p) => p.profile(runtime)?,
        None => return crate::usage(format!("`{name}` is not an analytical device (try v100 or s20)")),
    };
    let refs: Vec<Reference> = donna_sdk::artifact::read_json(&a.measurements)?;
    let resolved: Vec<_> = refs.iter().map(|r| Ok((reference_ops(r)?, r))).collect::<donna_sdk::Result<_>>()?;
    let worst = profile.calibrate(&resolved)?;
    for (ops, r) in &resolved {
        let ms = profile.latency_ms(ops, r.batch);
        println!(
            "{:<20} batch {:>4}: measured {:>9.3} ms, fitted {:>9.3} ms ({:+.1}%)",
            r.network,
            r.batch,
            r.ms,
            ms,
            100.0 * (ms / r.ms - 1.0)
        );
    }
    profile.references = refs;
    profile.notes = format!("Refitted by `donna cost calibrate` from {}. {}", a.measurements.display(), profile.notes);
    donna_sdk::artifact::write_json(&a.out, &profile)?;
    println!(
        "largest error {:.1}%; profile -> {} (use --device profile:{})",
        100.0 * worst,
        a.out.display(),
        a.out.display()
    );
    Ok(())
}

pub fn run(a: &CostArgs) -> anyhow::Result<()> {
    match &a.sub {
        Some(CostCommand::Calibrate(c)) => return calibrate(c),
        Some(CostCommand::LutError(l)) => return lut_error(l),
        None => {}
    }
    let Some(device_name) = &a.device else {
        return crate::usage("give --device NAME and one or more architectures (or `donna cost calibrate`)");
    };
    if a.archs.is_empty() {
        return crate::usage("give one or more architectures to price");
    }
    if !(1..=65_536).contains(&a.batch) {
        return crate::usage(format!("--batch {} out of range 1..=65536", a.batch));
    }
    let device = registry::device(device_name)?;
    let info = device.info();
    let precision = match a.precision.as_deref() {
        None => None,
        Some("fp32") => Some(Precision::Fp32),
        Some("fp16") => Some(Precision::Fp16),
        Some("int8") => Some(Precision::Int8),
        Some(other) => return crate::usage(format!("--precision {other} not in {{fp32, fp16, int8}}")),
    };
    let cache = a.cache.as_deref().map(donna_sdk::latency_cache::LatencyCache::open).transpose()?;
    let query = CostQuery { batch: a.batch, precision: precision.unwrap_or(info.precision) };
    let loaded: Vec<_> =
        a.archs.iter().map(|text| crate::cmd_arch::load_arch(text, &a.config)).collect::<anyhow::Result<_>>()?;
    // One call per space: a device that measures many networks per request (an agent) gets
    // them all at once, as it would a search generation.
    let mut latencies = vec![None; loaded.len()];
    for (i, (space, _)) in loaded.iter().enumerate() {
        if latencies[i].is_some() {
            continue;
        }
        let same: Vec<usize> = (i..loaded.len()).filter(|&j| loaded[j].0.name() == space.name()).collect();
        let archs: Vec<_> = same.iter().map(|&j| loaded[j].1.clone()).collect();
        let priced = match &cache {
            Some(c) => c.latency(device.as_ref(), space.as_ref(), &archs, &query)?,
            None => device.latency(space.as_ref(), &archs, &query)?,
        };
        for (&j, l) in same.iter().zip(priced) {
            latencies[j] = Some(l);
        }
    }
    println!("{} ({}, {}; {})", info.device, info.runtime, info.runtime_version, info.method);
    for ((space, arch), l) in loaded.iter().zip(latencies.into_iter().flatten()) {
        let spread = l.cv.map(|cv| format!(" ± {:.1}%", 100.0 * cv)).unwrap_or_default();
        println!("{:>10.3} ms{spread}  batch {}  {}", l.ms, a.batch, space.format_arch(arch));
    }
    Ok(())
}
