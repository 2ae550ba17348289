//! `donna init`: the run directory that later stages read their settings from.

use std::path::PathBuf;

use clap::Args;
use donna_sdk::{registry, RunConfig, RunDir};

use crate::space_args::ConfigArgs;

#[derive(Args)]
pub struct InitArgs {
    /// Run directory.
    #[arg(long)]
    run: PathBuf,
    /// Search space.
    #[arg(long, short = 's', default_value = "mobilenet")]
    space: String,
    /// Dataset (`synthetic`, `cifar10:PATH`, ...).
    #[arg(long, default_value = "synthetic")]
    data: String,
    /// Preset (`quick` or `full`).
    #[arg(long, default_value = "quick")]
    preset: String,
    /// Seed of every random choice in the run.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn init(a: &InitArgs) -> anyhow::Result<()> {
    let config = a.config.config();
    // Fail now, not stages later, on a space that cannot be built.
    registry::space(&a.space, &config)?;
    let run = RunDir::new(&a.run);
    run.create(&RunConfig {
        space: a.space.clone(),
        space_config: config,
        data: a.data.clone(),
        preset: a.preset.clone(),
        seed: a.seed,
    })?;
    println!("{}", run.config_path().display());
    Ok(())
}
