//! The plugin side: write against the SDK's types, export through [`crate::export_plugin!`].
//!
//! A layer type is the SDK's own [`LayerType`] (the same trait the built-in layers implement).
//! A search space is its layout as data ([`SpaceLayout`], the arguments of
//! `LayoutSpace::new`) plus the rule that expands an option into layers ([`PluginSpace`]). A
//! device is a [`PluginDevice`] whose cost models price architectures from their parts' ops
//! ([`ArchCost`]): the host counts them, so a plugin needs no search space object.
//!
//! Every entry point runs inside [`guard`]: a panic in plugin code becomes an error for that
//! call instead of unwinding across the boundary (undefined behaviour) or aborting the host.

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};

use abi_stable::sabi_trait::TD_Opaque;
use abi_stable::std_types::{RResult, RSlice, RStr, RString, RVec};
use donna_sdk::counters::Op;
use donna_sdk::{
    BlockOption, BlockSpec, CostQuery, DeviceInfo, FeatureShape, Latency, LayerModule, LayerSpec, LayerType,
    SpaceConfig,
};
use tch::nn;

use crate::convert;
use crate::ffi::*;

thread_local! {
    /// How many [`guard`]s this thread is inside, and where the last panic in one happened.
    static GUARDED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    static PANIC_AT: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Installs, once, a panic hook that keeps panics inside a [`guard`] quiet (their message
/// travels to the host in the error) and records where they happened; panics elsewhere go to
/// the previous hook as before.
fn quiet_guarded_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARDED.with(|g| g.get()) > 0 {
                let at = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                PANIC_AT.with(|p| *p.borrow_mut() = at);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning an error or a panic into an `RErr` with a one-line message
/// (`panicked at FILE:LINE: MESSAGE` for a panic, which is not printed by the plugin).
pub fn guard<T>(f: impl FnOnce() -> Result<T, String>) -> RResult<T, RString> {
    quiet_guarded_panics();
    GUARDED.with(|g| g.set(g.get() + 1));
    let outcome = catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(g.get() - 1));
    match outcome {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e.into()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            let at = PANIC_AT.with(|p| p.borrow_mut().take()).map_or(String::new(), |a| format!(" at {a}"));
            RResult::RErr(format!("panicked{at}: {}", msg.lines().next().unwrap_or_default()).into())
        }
    }
}

/// A search space as data: what `donna_sdk::LayoutSpace::new` takes. Block input shapes and
/// spatial sizes are traced by the host; a block only declares its output channels.
pub struct SpaceLayout {
    /// Fixed layers before block 0 (any registered layer type, built-in or from a plugin).
    pub stem: Vec<LayerSpec>,
    /// The searchable blocks.
    pub blocks: Vec<BlockSpec>,
    /// Fixed layers after the last block, ending in class logits.
    pub head: Vec<LayerSpec>,
    /// The teacher's option of each block.
    pub teacher: Vec<BlockOption>,
}

/// A search space contributed by a plugin.
pub trait PluginSpace: Send + Sync + 'static {
    /// Registered name.
    fn name(&self) -> &str;
    /// One line for `donna spaces`.
    fn summary(&self) -> &str;
    /// The layout for `config`.
    fn layout(&self, config: &SpaceConfig) -> Result<SpaceLayout, String>;
    /// The layers of `option` in block `index`, whose traced spec is `block`.
    fn block_layers(
        &self,
        config: &SpaceConfig,
        index: usize,
        block: &BlockSpec,
        option: &BlockOption,
    ) -> Result<Vec<LayerSpec>, String>;
}

/// One part of an architecture: the stem, a block or the head.
#[derive(Clone, Debug)]
pub struct PartCost {
    /// `stem`, `b0`, …, `head`.
    pub name: String,
    /// The block's option in text form (`k3-e6`); empty for stem and head.
    pub option: String,
    /// Input shape.
    pub input: FeatureShape,
    /// Output shape.
    pub output: FeatureShape,
    /// Its primitive ops on one sample.
    pub ops: Vec<Op>,
}

/// An architecture to price, counted by the host.
#[derive(Clone, Debug)]
pub struct ArchCost {
    /// Its space.
    pub space: String,
    /// Its text form.
    pub text: String,
    /// Stem, blocks and head, in order.
    pub parts: Vec<PartCost>,
}

/// A cost model contributed by a plugin.
pub trait PluginCostModel: Send + Sync + 'static {
    /// What it is.
    fn info(&self) -> DeviceInfo;
    /// Latencies of `archs`, in order.
    fn latency(&self, archs: &[ArchCost], query: &CostQuery) -> Result<Vec<Latency>, String>;
}

/// A device (hardware target) contributed by a plugin.
pub trait PluginDevice: Send + Sync + 'static {
    /// Registered name.
    fn name(&self) -> &str;
    /// One line for `donna devices`.
    fn summary(&self) -> &str;
    /// The cost model for `--device NAME:ARGS`.
    fn build(&self, args: &str) -> Result<Box<dyn PluginCostModel>, String>;
}

/// What a plugin contributes; returned by the function named in [`crate::export_plugin!`].
pub struct PluginBuilder {
    info: RPluginInfo,
    layer_types: Vec<LayerTypeBox>,
    spaces: Vec<SpaceProviderBox>,
    devices: Vec<DeviceProviderBox>,
}

impl PluginBuilder {
    /// A plugin called `name` at `version` (usually `env!("CARGO_PKG_VERSION")`).
    pub fn new(name: &str, version: &str, summary: &str) -> Self {
        Self {
            info: RPluginInfo {
                name: name.into(),
                version: version.into(),
                summary: summary.into(),
                interface: crate::INTERFACE_VERSION.into(),
                libtorch: crate::LIBTORCH_TAG.into(),
            },
            layer_types: Vec::new(),
            spaces: Vec::new(),
            devices: Vec::new(),
        }
    }

    /// Adds a layer type.
    pub fn layer_type(mut self, layer: impl LayerType + 'static) -> Self {
        self.layer_types.push(LayerTypeFfi_TO::from_value(LayerExport(Box::new(layer)), TD_Opaque));
        self
    }

    /// Adds a search space.
    pub fn space(mut self, space: impl PluginSpace) -> Self {
        self.spaces.push(SpaceProviderFfi_TO::from_value(SpaceExport(Box::new(space)), TD_Opaque));
        self
    }

    /// Adds a device.
    pub fn device(mut self, device: impl PluginDevice) -> Self {
        self.devices.push(DeviceProviderFfi_TO::from_value(DeviceExport(Box::new(device)), TD_Opaque));
        self
    }

    /// The stable form (called by [`crate::export_plugin!`]).
    pub fn into_contents(self) -> RPluginContents {
        RPluginContents {
            info: self.info,
            layer_types: self.layer_types.into(),
            spaces: self.spaces.into(),
            devices: self.devices.into(),
        }
    }
}

struct LayerExport(Box<dyn LayerType>);

impl LayerTypeFfi for LayerExport {
    fn name(&self) -> RString {
        self.0.name().into()
    }
    fn summary(&self) -> RString {
        self.0.summary().into()
    }
    fn output_shape(&self, settings: &RSettings, input: RShape) -> RResult<RShape, RString> {
        guard(|| {
            let s = convert::sdk_settings(settings);
            self.0.output_shape(&s, convert::sdk_shape(input)).map(convert::shape).map_err(|e| e.to_string())
        })
    }
    fn ops(&self, settings: &RSettings, input: RShape) -> RResult<RVec<ROp>, RString> {
        guard(|| {
            let s = convert::sdk_settings(settings);
            let ops = self.0.ops(&s, convert::sdk_shape(input)).map_err(|e| e.to_string())?;
            Ok(convert::vec(&ops, convert::op))
        })
    }
    fn build(&self, settings: &RSettings, input: RShape, device: i64) -> RResult<RBuiltLayer, RString> {
        guard(|| {
            let s = convert::sdk_settings(settings);
            let vs = nn::VarStore::new(convert::device(device));
            let module = self.0.build(&vs.root(), &s, convert::sdk_shape(input)).map_err(|e| e.to_string())?;
            // The store drops here; the module and the host share the variables' storage.
            let trainable: HashSet<usize> = vs.trainable_variables().iter().map(|t| t.data_ptr() as usize).collect();
            let mut params: Vec<(String, tch::Tensor)> = vs.variables().into_iter().collect();
            params.sort_by(|a, b| a.0.cmp(&b.0));
            let params = params
                .into_iter()
                .map(|(name, t)| RParam {
                    trainable: trainable.contains(&(t.data_ptr() as usize)),
                    name: name.into(),
                    tensor: OwnedTensor::new(t),
                })
                .collect();
            Ok(RBuiltLayer { module: LayerModuleFfi_TO::from_value(ModuleExport(module), TD_Opaque), params })
        })
    }
}

struct ModuleExport(LayerModule);

impl LayerModuleFfi for ModuleExport {
    fn forward(&self, xs: TensorRef<'_>, train: bool) -> RResult<OwnedTensor, RString> {
        guard(|| Ok(OwnedTensor::new(self.0.forward_t(&xs.get(), train))))
    }
}

struct SpaceExport(Box<dyn PluginSpace>);

impl SpaceProviderFfi for SpaceExport {
    fn name(&self) -> RString {
        self.0.name().into()
    }
    fn summary(&self) -> RString {
        self.0.summary().into()
    }
    fn layout(&self, config: RSpaceConfig) -> RResult<RSpaceLayout, RString> {
        guard(|| {
            let l = self.0.layout(&convert::sdk_space_config(config))?;
            Ok(RSpaceLayout {
                stem: convert::vec(&l.stem, convert::layer),
                blocks: convert::vec(&l.blocks, convert::block),
                head: convert::vec(&l.head, convert::layer),
                teacher: convert::vec(&l.teacher, convert::settings),
            })
        })
    }
    fn block_layers(
        &self,
        config: RSpaceConfig,
        index: usize,
        block: &RBlock,
        option: &RSettings,
    ) -> RResult<RVec<RLayerSpec>, RString> {
        guard(|| {
            let config = convert::sdk_space_config(config);
            let layers =
                self.0.block_layers(&config, index, &convert::sdk_block(block), &convert::sdk_settings(option))?;
            Ok(convert::vec(&layers, convert::layer))
        })
    }
}

struct DeviceExport(Box<dyn PluginDevice>);

impl DeviceProviderFfi for DeviceExport {
    fn name(&self) -> RString {
        self.0.name().into()
    }
    fn summary(&self) -> RString {
        self.0.summary().into()
    }
    fn build(&self, args: RStr<'_>) -> RResult<CostModelBox, RString> {
        guard(|| {
            let model = self.0.build(args.as_str())?;
            Ok(CostModelFfi_TO::from_value(CostModelExport(model), TD_Opaque))
        })
    }
}

struct CostModelExport(Box<dyn PluginCostModel>);

impl CostModelFfi for CostModelExport {
    fn info(&self) -> RDeviceInfo {
        convert::device_info(&self.0.info())
    }
    fn latency(&self, archs: RSlice<'_, RArchCost>, query: RCostQuery) -> RResult<RVec<RLatency>, RString> {
        guard(|| {
            let archs: Vec<ArchCost> = archs
                .iter()
                .map(|a| ArchCost {
                    space: a.space.to_string(),
                    text: a.text.to_string(),
                    parts: a
                        .parts
                        .iter()
                        .map(|p| PartCost {
                            name: p.name.to_string(),
                            option: p.option.to_string(),
                            input: convert::sdk_shape(p.input),
                            output: convert::sdk_shape(p.output),
                            ops: p.ops.iter().map(convert::sdk_op).collect(),
                        })
                        .collect(),
                })
                .collect();
            let query = CostQuery { batch: query.batch, precision: convert::sdk_precision(query.precision) };
            let latencies = self.0.latency(&archs, &query)?;
            if latencies.len() != archs.len() {
                return Err(format!("priced {} of {} architectures", latencies.len(), archs.len()));
            }
            Ok(latencies.iter().map(|l| RLatency { ms: l.ms, cv: l.cv.into() }).collect())
        })
    }
}

/// Exports a plugin: `export_plugin!(plugin);` where `fn plugin() -> PluginBuilder`.
///
/// It defines the library's root module (the plugin's crate needs `abi_stable` as a
/// dependency for the attribute this expands to) and guards the call against panics.
#[macro_export]
macro_rules! export_plugin {
    ($builder:path) => {
        /// The plugin's root module, found by donna's loader.
        #[::abi_stable::export_root_module]
        fn donna_plugin_root_module() -> $crate::ffi::PluginRef {
            use ::abi_stable::prefix_type::PrefixTypeTrait;
            extern "C" fn contents(
            ) -> ::abi_stable::std_types::RResult<$crate::ffi::RPluginContents, ::abi_stable::std_types::RString> {
                $crate::export::guard(|| Ok($builder().into_contents()))
            }
            $crate::ffi::Plugin { contents }.leak_into_prefix()
        }
    };
}
