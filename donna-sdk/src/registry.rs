//! Where layer types, spaces, devices and searchers are found by name.
//!
//! Everything here arrives in a [`Plugin`] through [`install`]: built-in plugins are declared
//! at link time with `inventory::submit! { BuiltinPlugin { .. } }` and installed on first use;
//! dynamic plugins (loaded with `--plugin`) are installed at run time. One path for both, so
//! every command works the same whichever way a thing arrived. Installed items live for the
//! whole process (plugin libraries are never unloaded), hence the `&'static` references.

use std::path::PathBuf;
use std::sync::{Once, RwLock};

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

/// Where a plugin came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// Linked into this binary.
    BuiltIn,
    /// A library loaded with `--plugin`.
    Library {
        /// The file.
        path: PathBuf,
        /// The plugin interface version it was built against.
        interface: String,
        /// The libtorch version it was built against.
        libtorch: String,
        /// Milliseconds to open and check it.
        load_ms: f64,
    },
}

/// A plugin: a named set of layer types, spaces, devices, searchers and datasets.
///
/// Everything in the registry arrives in a plugin, through [`install`], which is the only way
/// in: built-in plugins are declared with a [`BuiltinPlugin`] (collected at link time and
/// installed on first use), dynamic ones are built by `donna_plugin_abi::host::load` from a
/// library, with adapters around the library's objects. Name checks, listings (`donna
/// plugins`) and lookups are the same for both.
pub struct Plugin {
    /// Unique plugin name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line on what it is.
    pub summary: String,
    /// Built in, or the library it came from.
    pub origin: Origin,
    /// Layer types it contributes.
    pub layer_types: Vec<&'static dyn LayerType>,
    /// Search spaces it contributes.
    pub spaces: Vec<&'static dyn SpaceProvider>,
    /// Devices (cost models) it contributes.
    pub devices: Vec<&'static dyn DeviceProvider>,
    /// Search algorithms it contributes.
    pub searchers: Vec<&'static dyn SearcherProvider>,
    /// Dataset formats it contributes.
    pub datasets: Vec<&'static dyn DatasetProvider>,
}

impl Plugin {
    /// An empty plugin called `name`, to fill in.
    pub fn new(name: &str, version: &str, summary: &str, origin: Origin) -> Self {
        Self {
            name: name.to_owned(),
            version: version.to_owned(),
            summary: summary.to_owned(),
            origin,
            layer_types: Vec::new(),
            spaces: Vec::new(),
            devices: Vec::new(),
            searchers: Vec::new(),
            datasets: Vec::new(),
        }
    }

    /// `(kind, name)` of everything it contributes, in a fixed order.
    pub fn contributions(&self) -> Vec<(&'static str, String)> {
        let mut v: Vec<(&'static str, String)> = Vec::new();
        v.extend(self.layer_types.iter().map(|l| ("layer", l.name().to_owned())));
        v.extend(self.spaces.iter().map(|s| ("space", s.name().to_owned())));
        v.extend(self.devices.iter().map(|d| ("device", d.name().to_owned())));
        v.extend(self.searchers.iter().map(|s| ("searcher", s.name().to_owned())));
        v.extend(self.datasets.iter().map(|d| ("dataset", d.name().to_owned())));
        v
    }
}

/// A plugin linked into the binary, declared in its crate with
/// `inventory::submit! { BuiltinPlugin { devices: &[&MINE], ..BuiltinPlugin::empty(..) } }`.
pub struct BuiltinPlugin {
    /// Unique plugin name.
    pub name: &'static str,
    /// Its version (the crate's).
    pub version: &'static str,
    /// One line on what it is.
    pub summary: &'static str,
    /// Layer types it contributes.
    pub layer_types: &'static [&'static dyn LayerType],
    /// Search spaces it contributes.
    pub spaces: &'static [&'static dyn SpaceProvider],
    /// Devices it contributes.
    pub devices: &'static [&'static dyn DeviceProvider],
    /// Search algorithms it contributes.
    pub searchers: &'static [&'static dyn SearcherProvider],
    /// Dataset formats it contributes.
    pub datasets: &'static [&'static dyn DatasetProvider],
}

impl BuiltinPlugin {
    /// A plugin called `name` contributing nothing yet, to complete with struct update syntax.
    pub const fn empty(name: &'static str, version: &'static str, summary: &'static str) -> Self {
        Self { name, version, summary, layer_types: &[], spaces: &[], devices: &[], searchers: &[], datasets: &[] }
    }

    fn plugin(&self) -> Plugin {
        Plugin {
            layer_types: self.layer_types.to_vec(),
            spaces: self.spaces.to_vec(),
            devices: self.devices.to_vec(),
            searchers: self.searchers.to_vec(),
            datasets: self.datasets.to_vec(),
            ..Plugin::new(self.name, self.version, self.summary, Origin::BuiltIn)
        }
    }
}

inventory::collect!(BuiltinPlugin);

static PLUGINS: RwLock<Vec<&'static Plugin>> = RwLock::new(Vec::new());
static BUILTINS: Once = Once::new();

fn installed() -> Vec<&'static Plugin> {
    BUILTINS.call_once(|| {
        let mut builtins: Vec<&BuiltinPlugin> = inventory::iter::<BuiltinPlugin>.into_iter().collect();
        builtins.sort_by_key(|b| b.name);
        for b in builtins {
            if let Err(e) = add_plugin(b.plugin()) {
                // Two built-ins with one name are a packaging bug; the first one stays usable.
                eprintln!("warning: built-in plugin `{}` not installed: {e}", b.name);
            }
        }
    });
    PLUGINS.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Every installed plugin: the built-ins (by name), then the loaded ones in load order.
pub fn plugins() -> Vec<&'static Plugin> {
    installed()
}

/// Installs `plugin`: checks that its name, and the name of everything it contributes (per
/// kind), are new, then adds all of it at once; on a clash, nothing.
pub fn install(plugin: Plugin) -> Result<&'static Plugin> {
    installed();
    add_plugin(plugin)
}

fn add_plugin(plugin: Plugin) -> Result<&'static Plugin> {
    let mut list = PLUGINS.write().unwrap_or_else(|e| e.into_inner());
    if let Some(other) = list.iter().find(|p| p.name == plugin.name) {
        let from = match &other.origin {
            Origin::BuiltIn => "built in".to_owned(),
            Origin::Library { path, .. } => format!("loaded from {}", path.display()),
        };
        return Err(SdkError::Config(format!("a plugin named `{}` is already {from}", plugin.name)));
    }
    let mut seen: Vec<(&'static str, String)> = Vec::new();
    for item in plugin.contributions() {
        let owner = list.iter().find(|p| p.contributions().contains(&item)).map(|p| p.name.clone());
        if owner.is_some() || seen.contains(&item) {
            let (kind, name) = item;
            let owner = owner.unwrap_or_else(|| plugin.name.clone());
            return Err(SdkError::Config(format!(
                "a {kind} named `{name}` is already registered (by plugin `{owner}`)"
            )));
        }
        seen.push(item);
    }
    let plugin: &'static Plugin = Box::leak(Box::new(plugin));
    list.push(plugin);
    Ok(plugin)
}

fn all<T: ?Sized + 'static>(pick: impl Fn(&'static Plugin) -> &'static [&'static T]) -> Vec<&'static T> {
    installed().into_iter().flat_map(|p| pick(p).iter().copied()).collect()
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

/// Every layer type, sorted by name.
pub fn layer_types() -> Vec<&'static dyn LayerType> {
    sorted(all(|p| &p.layer_types), |l| l.name())
}

/// The layer type called `name`.
pub fn layer_type(name: &str) -> Result<&'static dyn LayerType> {
    find("layer type", layer_types(), name, |l| l.name())
}

/// Every search space provider, sorted by name.
pub fn spaces() -> Vec<&'static dyn SpaceProvider> {
    sorted(all(|p| &p.spaces), |s| s.name())
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
    sorted(all(|p| &p.devices), |d| d.name())
}

/// Builds the cost model for `--device NAME[:ARGS]`.
pub fn device(spec: &str) -> Result<Box<dyn CostModel>> {
    let (name, args) = spec.split_once(':').unwrap_or((spec, ""));
    find("device", devices(), name, |d| d.name())?.build(args)
}

/// Every searcher provider, sorted by name.
pub fn searchers() -> Vec<&'static dyn SearcherProvider> {
    sorted(all(|p| &p.searchers), |s| s.name())
}

/// Builds the searcher called `name`.
pub fn searcher(name: &str, settings: &Settings) -> Result<Box<dyn Searcher>> {
    find("searcher", searchers(), name, |s| s.name())?.build(settings)
}

/// Every dataset provider, sorted by name.
pub fn datasets() -> Vec<&'static dyn DatasetProvider> {
    sorted(all(|p| &p.datasets), |d| d.name())
}

/// Opens `--data NAME[:ARG]` for a run at `resolution`.
pub fn dataset(spec: &str, resolution: i64) -> Result<Box<dyn Dataset>> {
    let (name, arg) = spec.split_once(':').unwrap_or((spec, ""));
    find("dataset", datasets(), name, |d| d.name())?.open(arg, resolution)
}
