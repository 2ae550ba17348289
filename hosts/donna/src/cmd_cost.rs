//! `donna cost --device D ARCH`: an architecture's latency on a hardware target.

use clap::Args;
use donna_sdk::cost::{CostQuery, Precision};
use donna_sdk::registry;

use crate::space_args::ConfigArgs;

#[derive(Args)]
pub struct CostArgs {
    /// Hardware target, `NAME[:RUNTIME]` (see `donna devices`).
    #[arg(long, short = 'd')]
    device: String,
    /// Architectures (`SPACE:OPT/...`, `SPACE:teacher|smallest|largest`, or JSON files).
    #[arg(required = true)]
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

pub fn run(a: &CostArgs) -> anyhow::Result<()> {
    if !(1..=65_536).contains(&a.batch) {
        return crate::usage(format!("--batch {} out of range 1..=65536", a.batch));
    }
    let device = registry::device(&a.device)?;
    let info = device.info();
    let precision = match a.precision.as_deref() {
        None => None,
        Some("fp32") => Some(Precision::Fp32),
        Some("fp16") => Some(Precision::Fp16),
        Some("int8") => Some(Precision::Int8),
        Some(other) => return crate::usage(format!("--precision {other} not in {{fp32, fp16, int8}}")),
    };
    let cache = a.cache.as_deref().map(donna_sdk::latency_cache::LatencyCache::open).transpose()?;
    println!("{} ({}, {}; {})", info.device, info.runtime, info.runtime_version, info.method);
    for text in &a.archs {
        let (space, arch) = crate::cmd_arch::load_arch(text, &a.config)?;
        let query = CostQuery { batch: a.batch, precision: precision.unwrap_or(info.precision) };
        let archs = std::slice::from_ref(&arch);
        let result = match &cache {
            Some(c) => c.latency(device.as_ref(), space.as_ref(), archs, &query)?,
            None => device.latency(space.as_ref(), archs, &query)?,
        };
        let l = result[0];
        let spread = l.cv.map(|cv| format!(" ± {:.1}%", 100.0 * cv)).unwrap_or_default();
        println!("{:>10.3} ms{spread}  batch {}  {}", l.ms, a.batch, space.format_arch(&arch));
    }
    Ok(())
}
