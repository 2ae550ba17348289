//! The run directory: one folder holds everything a pipeline run produces.
//!
//! ```text
//! DIR/run.json                      space, space config, data, preset, seed (written first)
//! DIR/teacher.safetensors           the trained reference network
//! DIR/quality.json                  NSR of every distilled (block, option)
//! DIR/predictor.json                the fitted accuracy predictor
//! DIR/search/<device>/pareto.json   the Pareto front for a hardware target
//! DIR/models/<id>/                  finetuned, exported models
//! DIR/report.md                     the summary of the run
//! ```
//! Later stages read the space, data and seed from `run.json` rather than from flags, so a run
//! cannot mix settings by accident.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::artifact;
use crate::error::{Result, SdkError};
use crate::space::SpaceConfig;

/// What a run is about; fixed when the run directory is created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Search space name.
    pub space: String,
    /// Resolution, width, classes and input channels of the space.
    pub space_config: SpaceConfig,
    /// Dataset spec (`synthetic`, `cifar10:PATH`, …).
    pub data: String,
    /// Preset name (`quick`, `full`).
    pub preset: String,
    /// Seed of every random choice in the run.
    pub seed: u64,
}

/// A run directory on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// The run at `root` (nothing is read yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `DIR/run.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// Reads `run.json`, or says how to create it.
    pub fn config(&self) -> Result<RunConfig> {
        let path = self.config_path();
        if !path.exists() {
            return Err(SdkError::Config(format!(
                "{} has no run.json: create the run first (e.g. `donna init --run {}`)",
                self.root.display(),
                self.root.display()
            )));
        }
        artifact::read_json(&path)
    }

    /// Creates the run with `config`, or checks that an existing run has the same one.
    pub fn create(&self, config: &RunConfig) -> Result<()> {
        let path = self.config_path();
        if path.exists() {
            let existing = self.config()?;
            if existing != *config {
                return Err(SdkError::Config(format!(
                    "{} already holds a run with other settings ({}); use another --run directory",
                    self.root.display(),
                    serde_json::to_string(&existing).unwrap_or_default()
                )));
            }
            return Ok(());
        }
        artifact::write_json(&path, config)
    }

    /// `DIR/teacher.safetensors`.
    pub fn teacher(&self) -> PathBuf {
        self.root.join("teacher.safetensors")
    }

    /// `DIR/quality.json`.
    pub fn quality(&self) -> PathBuf {
        self.root.join("quality.json")
    }

    /// `DIR/predictor.json`.
    pub fn predictor(&self) -> PathBuf {
        self.root.join("predictor.json")
    }

    /// `DIR/search/<device>/pareto.json`.
    pub fn pareto(&self, device: &str) -> PathBuf {
        self.root.join("search").join(sanitize(device)).join("pareto.json")
    }

    /// `DIR/models/<id>/`.
    pub fn model_dir(&self, id: &str) -> PathBuf {
        self.root.join("models").join(sanitize(id))
    }

    /// `DIR/report.md`.
    pub fn report(&self) -> PathBuf {
        self.root.join("report.md")
    }
}

/// A name safe as one path component (`agent:host:9000` -> `agent_host_9000`).
fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_config_is_created_once_and_guards_against_mixing() {
        let dir = std::env::temp_dir().join(format!("donna-run-{}", std::process::id()));
        let run = RunDir::new(&dir);
        assert!(run.config().unwrap_err().to_string().contains("no run.json"));
        let cfg = RunConfig {
            space: "mobilenet".into(),
            space_config: SpaceConfig::default(),
            data: "synthetic".into(),
            preset: "quick".into(),
            seed: 1,
        };
        run.create(&cfg).unwrap();
        run.create(&cfg).unwrap();
        assert_eq!(run.config().unwrap(), cfg);
        let other = RunConfig { seed: 2, ..cfg };
        assert!(run.create(&other).unwrap_err().to_string().contains("other settings"));
        assert_eq!(run.pareto("agent:h:1"), dir.join("search/agent_h_1/pareto.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
