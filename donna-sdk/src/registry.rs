//! Where layer types, spaces, devices and searchers are found by name.
//!
//! Built-in plugins register at link time with `inventory::submit!`; dynamic plugins (loaded
//! with `--plugin`) register at run time with the `register_*` functions. Lookups see both,
//! so every command works the same whichever way a thing arrived. Registered items live for
//! the whole process (plugin libraries are never unloaded), hence the `&'static` references.

use std::sync::RwLock;

use crate::cost::CostModel;
use crate::data::{Dataset, DatasetProvider};
use crate::error::{Result, SdkError};
use crate::layer::LayerType;
use crate::searcher::Searcher;
use crate::space::{SearchSpace, SpaceConfig};
use crate::value::Settings;

/// Makes search spaces of one kind for a configuration.
pub trait SpaceProvider: Send + Sync {
    /// Registered name.
    fn name(&self) -> &str;
    /// One line for `donna spaces`.
    fn summary(&self) -> &str;
    /// Builds the space for `config`.
    fn build(&self, config: &SpaceConfig) -> Result<Box<dyn SearchSpace>>;
}

/// A [`SpaceProvider`] from a name, a summary and a constructor function: what most spaces
/// need, without a type of their own.
pub struct SpaceFn {
    /// Registered name.
    pub name: &'static str,
    /// One line for `donna spaces`.
    pub summary: &'static str,
    /// Builds the space.
    pub build: fn(&SpaceConfig) -> Result<Box<dyn SearchSpace>>,
}

impl SpaceProvider for SpaceFn {
    fn name(&self) -> &str {
        self.name
    }
    fn summary(&self) -> &str {
        self.summary
    }
    fn build(&self, config: &SpaceConfig) -> Result<Box<dyn SearchSpace>> {
        (self.build)(config)
    }
}

/// Makes cost models (hardware targets).
pub trait DeviceProvider: Send + Sync {
    /// Registered name (`v100`, `cpu`, `agent`).
    fn name(&self) -> &str;
    /// One line for `donna devices`.
    fn summary(&self) -> &str;
    /// Builds the cost model; `args` is what follows `name:` in `--device name:args`.
    fn build(&self, args: &str) -> Result<Box<dyn CostModel>>;

    /// The analytical profiles behind this device, if it has any (`donna cost calibrate`
    /// refits them).
    fn analytical(&self) -> Option<&crate::analytical::AnalyticalProvider> {
        None
    }
}

/// Makes search algorithms.
pub trait SearcherProvider: Send + Sync {
    /// Registered name (`nsga2`, `random`).
    fn name(&self) -> &str;
    /// One line for `donna searchers`.
    fn summary(&self) -> &str;
    /// Builds the searcher with its settings.
    fn build(&self, settings: &Settings) -> Result<Box<dyn Searcher>>;
}

/// Link-time registration of a layer type.
pub struct LayerTypeRegistration(pub &'static dyn LayerType);
/// Link-time registration of a search space.
pub struct SpaceRegistration(pub &'static dyn SpaceProvider);
/// Link-time registration of a hardware target.
pub struct DeviceRegistration(pub &'static dyn DeviceProvider);
/// Link-time registration of a searcher.
pub struct SearcherRegistration(pub &'static dyn SearcherProvider);
/// Link-time registration of a dataset format.
pub struct DatasetRegistration(pub &'static dyn DatasetProvider);

inventory::collect!(LayerTypeRegistration);
inventory::collect!(SpaceRegistration);
inventory::collect!(DeviceRegistration);
inventory::collect!(SearcherRegistration);
inventory::collect!(DatasetRegistration);

static DYN_LAYERS: RwLock<Vec<&'static dyn LayerType>> = RwLock::new(Vec::new());
static DYN_SPACES: RwLock<Vec<&'static dyn SpaceProvider>> = RwLock::new(Vec::new());
static DYN_DEVICES: RwLock<Vec<&'static dyn DeviceProvider>> = RwLock::new(Vec::new());
static DYN_SEARCHERS: RwLock<Vec<&'static dyn SearcherProvider>> = RwLock::new(Vec::new());
static DYN_DATASETS: RwLock<Vec<&'static dyn DatasetProvider>> = RwLock::new(Vec::new());

fn read<T: ?Sized>(lock: &RwLock<Vec<&'static T>>) -> Vec<&'static T> {
    lock.read().unwrap_or_else(|e| e.into_inner()).clone()
}

fn sorted<T: ?Sized>(mut items: Vec<&'static T>, name: impl Fn(&T) -> &str) -> Vec<&'static T> {
    items.sort_by(|a, b| name(a).cmp(name(b)));
    items
}

fn find<T: ?Sized>(
    kind: &'static str,
    items: Vec<&'static T>,
    wanted: &str,
    name: impl Fn(&T) -> &str,
) -> Result<&'static T> {
    items.iter().copied().find(|i| name(i) == wanted).ok_or_else(|| SdkError::Unknown {
        kind,
        name: wanted.to_owned(),
        known: items.iter().map(|i| name(i).to_owned()).collect::<Vec<_>>().join(", "),
    })
}

fn add<T: ?Sized>(
    kind: &'static str,
    lock: &RwLock<Vec<&'static T>>,
    existing: Vec<&'static T>,
    item: Box<T>,
    name: impl Fn(&T) -> &str,
) -> Result<()> {
    if existing.iter().any(|e| name(e) == name(&item)) {
        return Err(SdkError::Config(format!("a {kind} named `{}` is already registered", name(&item))));
    }
    lock.write().unwrap_or_else(|e| e.into_inner()).push(Box::leak(item));
    Ok(())
}

/// Every layer type, sorted by name.
pub fn layer_types() -> Vec<&'static dyn LayerType> {
    let mut v: Vec<_> = inventory::iter::<LayerTypeRegistration>.into_iter().map(|r| r.0).collect();
    v.extend(read(&DYN_LAYERS));
    sorted(v, |l| l.name())
}

/// The layer type called `name`.
pub fn layer_type(name: &str) -> Result<&'static dyn LayerType> {
    find("layer type", layer_types(), name, |l| l.name())
}

/// Every search space provider, sorted by name.
pub fn spaces() -> Vec<&'static dyn SpaceProvider> {
    let mut v: Vec<_> = inventory::iter::<SpaceRegistration>.into_iter().map(|r| r.0).collect();
    v.extend(read(&DYN_SPACES));
    sorted(v, |s| s.name())
}

/// Builds the space called `name` for `config`; `file:PATH` reads a space file (see
/// [`crate::space_file`]), `compress:ARCH` is the compression space around an architecture
/// (see [`crate::compress`]).
pub fn space(name: &str, config: &SpaceConfig) -> Result<Box<dyn SearchSpace>> {
    config.check()?;
    if let Some(arch) = name.strip_prefix(crate::compress::PREFIX) {
        return Ok(Box::new(crate::compress::CompressSpace::new(arch, config)?));
    }
    if let Some(path) = name.strip_prefix("file:") {
        return Ok(Box::new(crate::space_file::load(std::path::Path::new(path), config)?));
    }
    find("search space", spaces(), name, |s| s.name())?.build(config)
}

/// Every device provider, sorted by name.
pub fn devices() -> Vec<&'static dyn DeviceProvider> {
    let mut v: Vec<_> = inventory::iter::<DeviceRegistration>.into_iter().map(|r| r.0).collect();
    v.extend(read(&DYN_DEVICES));
    sorted(v, |d| d.name())
}

/// Builds the cost model for `--device NAME[:ARGS]`.
pub fn device(spec: &str) -> Result<Box<dyn CostModel>> {
    let (name, args) = spec.split_once(':').unwrap_or((spec, ""));
    find("device", devices(), name, |d| d.name())?.build(args)
}

/// Every searcher provider, sorted by name.
pub fn searchers() -> Vec<&'static dyn SearcherProvider> {
    let mut v: Vec<_> = inventory::iter::<SearcherRegistration>.into_iter().map(|r| r.0).collect();
    v.extend(read(&DYN_SEARCHERS));
    sorted(v, |s| s.name())
}

/// Builds the searcher called `name`.
pub fn searcher(name: &str, settings: &Settings) -> Result<Box<dyn Searcher>> {
    find("searcher", searchers(), name, |s| s.name())?.build(settings)
}

/// Every dataset provider, sorted by name.
pub fn datasets() -> Vec<&'static dyn DatasetProvider> {
    let mut v: Vec<_> = inventory::iter::<DatasetRegistration>.into_iter().map(|r| r.0).collect();
    v.extend(read(&DYN_DATASETS));
    sorted(v, |d| d.name())
}

/// Opens `--data NAME[:ARG]` for a run at `resolution`.
pub fn dataset(spec: &str, resolution: i64) -> Result<Box<dyn Dataset>> {
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    find("dataset", datasets(), name, |d| d.name())?.open(arg, resolution)
}

/// Adds a dataset format at run time. Names must be new.
pub fn register_dataset(item: Box<dyn DatasetProvider>) -> Result<()> {
    add("dataset", &DYN_DATASETS, datasets(), item, |d| d.name())
}

/// Adds a layer type at run time (from a dynamic plugin). Names must be new.
pub fn register_layer_type(item: Box<dyn LayerType>) -> Result<()> {
    add("layer type", &DYN_LAYERS, layer_types(), item, |l| l.name())
}

/// Adds a search space at run time. Names must be new.
pub fn register_space(item: Box<dyn SpaceProvider>) -> Result<()> {
    add("search space", &DYN_SPACES, spaces(), item, |s| s.name())
}

/// Adds a device at run time. Names must be new.
pub fn register_device(item: Box<dyn DeviceProvider>) -> Result<()> {
    add("device", &DYN_DEVICES, devices(), item, |d| d.name())
}

/// Adds a searcher at run time. Names must be new.
pub fn register_searcher(item: Box<dyn SearcherProvider>) -> Result<()> {
    add("searcher", &DYN_SEARCHERS, searchers(), item, |s| s.name())
}
