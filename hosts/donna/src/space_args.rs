//! Flags that choose and configure a search space, shared by the commands that need one.

use clap::Args;
use donna_sdk::{registry, SearchSpace, SpaceConfig};

/// How to instantiate a space: name and configuration.
#[derive(Args, Clone, Debug)]
pub struct SpaceArgs {
    /// Search space (see `donna spaces`).
    #[arg(long, short = 's')]
    pub space: String,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// A space's configuration.
#[derive(Args, Clone, Debug)]
pub struct ConfigArgs {
    /// Input resolution in pixels (square).
    #[arg(long, default_value_t = 224)]
    pub resolution: i64,
    /// Global width multiplier.
    #[arg(long, default_value_t = 1.0)]
    pub width_mult: f64,
    /// Number of classes.
    #[arg(long, default_value_t = 1000)]
    pub classes: i64,
    /// Input channels.
    #[arg(long, default_value_t = 3)]
    pub in_channels: i64,
}

impl ConfigArgs {
    /// The SDK's configuration.
    pub fn config(&self) -> SpaceConfig {
        SpaceConfig {
            resolution: self.resolution,
            width_mult: self.width_mult,
            num_classes: self.classes,
            in_channels: self.in_channels,
        }
    }

    /// Builds space `name` with this configuration.
    pub fn build(&self, name: &str) -> anyhow::Result<Box<dyn SearchSpace>> {
        Ok(registry::space(name, &self.config())?)
    }
}

impl SpaceArgs {
    /// Builds the space.
    pub fn build(&self) -> anyhow::Result<Box<dyn SearchSpace>> {
        self.config.build(&self.space)
    }
}
