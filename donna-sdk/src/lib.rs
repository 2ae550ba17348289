//! # donna-sdk: the interface of donna
//!
//! donna finds neural networks that are Pareto-optimal in accuracy and latency for a given
//! device, following DONNA (Moons et al., ICCV 2021): distil every block option of a search
//! space against a teacher, fit an accuracy predictor on the blocks' quality, search each
//! device with NSGA-II, and finetune the winners.
//!
//! This crate is the interface every other crate implements or drives:
//! - [`SearchSpace`] describes a space as layer lists and option lists;
//!   [`network`] builds tch modules and [`counters`] from that one description.
//! - [`LayerType`] is a brick of block options (`mbconv`, `transformer`, …).
//! - [`CostModel`], [`Predictor`] and [`Searcher`] are the hardware, accuracy and search
//!   extension points.
//! - [`registry`] finds all of them by name, whether linked in (built-in plugins register with
//!   `inventory`) or loaded at run time.
//!
//! ```no_run
//! use donna_sdk::{registry, SpaceConfig};
//! let space = registry::space("mobilenet", &SpaceConfig::default())?;
//! let arch = space.parse_arch("mobilenet:k3-e6-d2-se0-w1/k3-e6-d3-se0-w1/k3-e6-d4-se0-w1/k3-e6-d3-se0-w1/k3-e6-d3-se0-w1/k3-e6-d1-se0")?;
//! let count = donna_sdk::network::count_network(space.as_ref(), &arch)?;
//! println!("{} params, {} MACs", count.total.params, count.total.macs);
//! # Ok::<(), donna_sdk::SdkError>(())
//! ```
#![deny(missing_docs)]

pub mod accuracy;
pub mod analytical;
pub mod arch;
pub mod artifact;
pub mod checkpoint;
pub mod compress;
pub mod compute;
pub mod cost;
pub mod counters;
pub mod data;
pub mod distill;
pub mod error;
pub mod export;
pub mod finetune;
pub mod fuzzing;
pub mod latency_cache;
pub mod layer;
pub mod layout;
pub mod network;
pub mod nsr;
pub mod optim;
pub mod pareto;
pub mod plot;
pub mod predictor;
pub mod preset;
pub mod progress;
pub mod registry;
pub mod report;
pub mod rng;
pub mod run_dir;
pub mod search;
pub mod searcher;
pub mod space;
pub mod space_file;
pub mod stats;
pub mod subspace;
pub mod teacher;
pub mod train;
pub mod value;

pub use arch::{Architecture, BlockOption, Genome, SpaceSize};
pub use cost::{CostModel, CostQuery, DeviceInfo, Latency, LatencyMethod, Precision};
pub use counters::{Counters, Op, OpKind};
pub use error::{catch_plugin_failure, PluginFailure, Result, SdkError};
pub use layer::{FeatureShape, LayerModule, LayerSpec, LayerType};
pub use layout::LayoutSpace;
pub use predictor::Predictor;
pub use rng::SplitMix64;
pub use run_dir::{RunConfig, RunDir};
pub use searcher::{Evaluation, Evaluator, Searcher};
pub use space::{BlockSpec, Dimension, SearchSpace, SpaceConfig};
pub use value::{Settings, Value};

/// Re-exported so plugins use the same `inventory` as the registry.
pub use inventory;
/// Re-exported so plugins use the same `tch` as the SDK.
pub use tch;
