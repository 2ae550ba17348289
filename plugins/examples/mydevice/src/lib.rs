//! # mydevice: a hardware backend as a donna plugin
//!
//! Prices architectures from a latency table you measured on your device: one latency per
//! option of each block (keyed by the option's text form, as `donna arch options` prints it)
//! plus a fixed time for the stem and head. `--device mydevice:TABLE.json`:
//!
//! ```json
//! {
//!   "runtime": "my-npu-sdk", "runtime_version": "3.1", "space": "mobilenet",
//!   "batch": 1, "fixed_ms": 0.8,
//!   "blocks": [ {"k3-e6-d2-se0-w1": 0.41, "k5-e4-d1-se1": 0.22}, ... ]
//! }
//! ```
//!
//! An architecture with an option the table lacks is refused with the block and option named,
//! never guessed.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use donna_plugin_abi::{ArchCost, PluginBuilder, PluginCostModel, PluginDevice};
use donna_sdk::{CostQuery, DeviceInfo, Latency, LatencyMethod, Precision};
use serde::Deserialize;

/// The measured table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyTable {
    /// The runtime that was measured.
    #[serde(default = "default_runtime")]
    pub runtime: String,
    /// Its version (cached latencies are keyed by it).
    #[serde(default = "default_version")]
    pub runtime_version: String,
    /// The search space the options belong to.
    pub space: String,
    /// The batch size measured.
    #[serde(default = "one")]
    pub batch: i64,
    /// Stem and head, milliseconds.
    #[serde(default)]
    pub fixed_ms: f64,
    /// Per block: option text to milliseconds.
    pub blocks: Vec<BTreeMap<String, f64>>,
}

fn default_runtime() -> String {
    "mydevice".into()
}
fn default_version() -> String {
    "1".into()
}
fn one() -> i64 {
    1
}

struct MyDevice;

impl PluginDevice for MyDevice {
    fn name(&self) -> &str {
        "mydevice"
    }
    fn summary(&self) -> &str {
        "latency table measured on your device (mydevice:TABLE.json; example plugin)"
    }
    fn build(&self, args: &str) -> Result<Box<dyn PluginCostModel>, String> {
        if args.is_empty() {
            return Err("give the latency table: --device mydevice:TABLE.json".into());
        }
        let text = std::fs::read_to_string(args).map_err(|e| format!("{args}: {e}"))?;
        let table: LatencyTable = serde_json::from_str(&text).map_err(|e| format!("{args}: {e}"))?;
        Ok(Box::new(TableModel { path: args.to_owned(), table }))
    }
}

struct TableModel {
    path: String,
    table: LatencyTable,
}

impl TableModel {
    fn price(&self, arch: &ArchCost) -> Result<f64, String> {
        let t = &self.table;
        if arch.space != t.space {
            return Err(format!("{}: measured for space `{}`, cannot price `{}`", self.path, t.space, arch.text));
        }
        let blocks: Vec<_> = arch.parts.iter().filter(|p| !p.option.is_empty()).collect();
        if blocks.len() != t.blocks.len() {
            return Err(format!("{}: has {} blocks, `{}` has {}", self.path, t.blocks.len(), arch.text, blocks.len()));
        }
        let mut ms = t.fixed_ms;
        for (b, (part, measured)) in blocks.iter().zip(&t.blocks).enumerate() {
            ms += measured.get(&part.option).ok_or_else(|| {
                format!(
                    "{}: no latency for block {b} option `{}` (of `{}`); measure it and add it to blocks[{b}]",
                    self.path, part.option, arch.text
                )
            })?;
        }
        Ok(ms)
    }
}

impl PluginCostModel for TableModel {
    fn info(&self) -> DeviceInfo {
        DeviceInfo {
            device: "mydevice".into(),
            runtime: self.table.runtime.clone(),
            runtime_version: self.table.runtime_version.clone(),
            method: LatencyMethod::LookupTable,
            precision: Precision::Fp32,
        }
    }

    fn latency(&self, archs: &[ArchCost], query: &CostQuery) -> Result<Vec<Latency>, String> {
        if query.batch != self.table.batch || query.precision != Precision::Fp32 {
            return Err(format!(
                "{}: measured at batch {} in fp32, asked for batch {} in {:?}",
                self.path, self.table.batch, query.batch, query.precision
            ));
        }
        archs.iter().map(|a| Ok(Latency { ms: self.price(a)?, cv: None })).collect()
    }
}

fn plugin() -> PluginBuilder {
    PluginBuilder::new("mydevice", env!("CARGO_PKG_VERSION"), "example hardware backend: a measured latency table")
        .device(MyDevice)
}

donna_plugin_abi::export_plugin!(plugin);
