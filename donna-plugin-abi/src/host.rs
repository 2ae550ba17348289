//! The host side: load a plugin library, check it, and register what it contributes with the
//! SDK's registry behind adapters that implement the SDK's own traits, so every command uses a
//! plugin's layer types, spaces and devices exactly like built-in ones.
//!
//! The adapters are installed with [`registry::install`], like the built-in plugins, so a
//! command cannot tell the two apart. Each library is loaded through its own header (`lib_header_from_path`), not
//! `RootModule::load_from_file`, which caches one module per interface type and would hand a
//! second `--plugin` the first plugin again. Libraries are never unloaded.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use abi_stable::library::{lib_header_from_path, LibraryError};
use abi_stable::std_types::{RResult, RString};
use donna_sdk::counters::Op;
use donna_sdk::registry::{self, DeviceProvider, Origin, Plugin, SpaceProvider};
use donna_sdk::{
    Architecture, CostModel, CostQuery, DeviceInfo, FeatureShape, Latency, LayerModule, LayerType, LayoutSpace, Result,
    SdkError, SearchSpace, Settings, SpaceConfig,
};
use tch::nn;

use crate::convert;
use crate::ffi::*;

/// The plugins loaded from libraries so far, in load order (built-in ones are listed by
/// [`registry::plugins`] too).
pub fn loaded() -> Vec<&'static Plugin> {
    registry::plugins().into_iter().filter(|p| matches!(p.origin, Origin::Library { .. })).collect()
}

fn refuse(path: &Path, why: impl fmt::Display) -> SdkError {
    SdkError::Config(format!("plugin {}: {why}", path.display()))
}

/// Loads the plugin library at `path`, checks its interface version and layout (which covers
/// the libtorch version), wraps its layer types, spaces and devices in adapters that implement
/// the SDK's traits, and installs them with [`registry::install`], the path built-in plugins
/// take too. A refusal is an [`SdkError::Config`] with a one-line reason, and installs nothing.
pub fn load(path: &Path) -> Result<&'static Plugin> {
    let start = Instant::now();
    if !path.is_file() {
        return Err(refuse(path, "no such file"));
    }
    // An absolute path, so the dynamic loader opens this file instead of searching its paths.
    let absolute = std::fs::canonicalize(path).map_err(|e| refuse(path, e))?;
    let header = lib_header_from_path(&absolute).map_err(|e| refuse(path, library_error(&e)))?;
    let root = header.init_root_module::<PluginRef>().map_err(|e| refuse(path, library_error(&e)))?;
    let contents = match (root.contents())() {
        RResult::ROk(c) => c,
        RResult::RErr(e) => return Err(refuse(path, format!("failed to start: {e}"))),
    };
    let mut record = adapt(contents, path);
    if let Origin::Library { load_ms, .. } = &mut record.origin {
        *load_ms = start.elapsed().as_secs_f64() * 1e3;
    }
    registry::install(record).map_err(|e| refuse(path, e))
}

/// Wraps what a plugin library contributes in adapters that implement the SDK's traits: a
/// [`Plugin`] ready for [`registry::install`]. (Public so tests can pass built-in layer types
/// through the interface in-process and compare them with the native ones.)
pub fn adapt(contents: RPluginContents, path: &Path) -> Plugin {
    let info = &contents.info;
    let plugin = info.name.to_string();
    let origin = Origin::Library {
        path: path.to_owned(),
        interface: info.interface.to_string(),
        libtorch: info.libtorch.to_string(),
        load_ms: 0.0,
    };
    let mut record = Plugin::new(&plugin, info.version.as_str(), info.summary.as_str(), origin);
    for layer in contents.layer_types {
        let name = layer.name().to_string();
        let summary = layer.summary().to_string();
        record.layer_types.push(leak(HostLayerType { plugin: plugin.clone(), name, summary, layer }));
    }
    for space in contents.spaces {
        let name = space.name().to_string();
        let summary = space.summary().to_string();
        record.spaces.push(leak(HostSpace { plugin: plugin.clone(), name, summary, space: space.into() }));
    }
    for device in contents.devices {
        let name = device.name().to_string();
        let summary = device.summary().to_string();
        record.devices.push(leak(HostDevice { plugin: plugin.clone(), name, summary, device }));
    }
    record
}

/// An adapter that lives as long as the process (libraries are never unloaded).
fn leak<T>(adapter: T) -> &'static T {
    Box::leak(Box::new(adapter))
}

/// One line for a library that cannot be loaded as a donna plugin.
fn library_error(e: &LibraryError) -> String {
    match e {
        LibraryError::OpenError { err, .. } => {
            format!("not a loadable library ({})", err.to_string().lines().next().unwrap_or_default())
        }
        LibraryError::GetSymbolError { .. } => "not a donna plugin (it exports no plugin root module)".into(),
        LibraryError::IncompatibleVersionNumber { actual_version, expected_version, .. } => format!(
            "built against donna plugin interface {actual_version}, this donna loads interface \
             {expected_version} (rebuild it against donna-plugin-abi {}.x)",
            expected_version.major
        ),
        LibraryError::AbiInstability(report) => {
            let report = report.to_string();
            if std::env::var_os("DONNA_PLUGIN_REPORT").is_some() {
                eprintln!("{report}");
            }
            match other_libtorch(&report) {
                Some(theirs) => format!(
                    "built against libtorch {theirs}, this donna uses libtorch {} (rebuild it with the same libtorch)",
                    crate::LIBTORCH_TAG
                ),
                None => {
                    let first = report.lines().map(str::trim).find(|l| l.starts_with("Error:")).unwrap_or_default();
                    format!("its interface types differ from this donna's, though the versions match ({first})")
                }
            }
        }
        other => other.to_string().lines().next().unwrap_or_default().to_owned(),
    }
}

/// The libtorch version a layout report says the plugin's tensor types carry, when the report
/// is about the libtorch tag.
fn other_libtorch(report: &str) -> Option<String> {
    // abi_stable reports a tag mismatch as `Expected: '<tag>'` then `Found: '<tag>'`; ours are
    // libtorch versions, so an expected value equal to our tag means the plugin's is the found.
    let lines: Vec<&str> = report.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let quoted = |l: &str| l.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')).map(str::to_owned);
    lines.windows(4).find_map(|w| {
        let ours = w[0] == "Expected:" && quoted(w[1]).as_deref() == Some(crate::LIBTORCH_TAG);
        if ours && w[2] == "Found:" {
            quoted(w[3])
        } else {
            None
        }
    })
}

fn plugin_error(plugin: &str, what: &str, e: RString) -> SdkError {
    let message = format!("plugin `{plugin}` {what}: {e}");
    // A panic is the plugin's fault (exit code 1); any other error reports bad input to it.
    if e.starts_with("panicked") {
        SdkError::Plugin(message)
    } else {
        SdkError::Config(message)
    }
}

struct HostLayerType {
    plugin: String,
    name: String,
    summary: String,
    layer: LayerTypeBox,
}

impl HostLayerType {
    fn err(&self, e: RString) -> SdkError {
        let message = format!("{} (layer type `{}` of plugin `{}`)", e, self.name, self.plugin);
        // Setting errors keep their kind (bad input, exit code 2); a panic is the plugin's own.
        if e.starts_with("panicked") {
            SdkError::Plugin(message)
        } else {
            SdkError::Setting(message)
        }
    }
}

impl LayerType for HostLayerType {
    fn name(&self) -> &str {
        &self.name
    }
    fn summary(&self) -> &str {
        &self.summary
    }
    fn output_shape(&self, settings: &Settings, input: FeatureShape) -> Result<FeatureShape> {
        self.layer
            .output_shape(&convert::settings(settings), convert::shape(input))
            .into_result()
            .map(convert::sdk_shape)
            .map_err(|e| self.err(e))
    }
    fn ops(&self, settings: &Settings, input: FeatureShape) -> Result<Vec<Op>> {
        let ops = self.layer.ops(&convert::settings(settings), convert::shape(input)).into_result();
        Ok(ops.map_err(|e| self.err(e))?.iter().map(convert::sdk_op).collect())
    }
    fn build(&self, path: &nn::Path, settings: &Settings, input: FeatureShape) -> Result<LayerModule> {
        let built = self
            .layer
            .build(&convert::settings(settings), convert::shape(input), convert::device_index(path.device()))
            .into_result()
            .map_err(|e| self.err(e))?;
        for p in built.params {
            // `Path::add` takes one name component; the plugin's names are dotted paths.
            let mut parts: Vec<&str> = p.name.split('.').collect();
            let last = parts.pop().unwrap_or_default();
            let sub = parts.iter().fold(path.clone(), |sub, c| sub / *c);
            let _ = sub.add(last, p.tensor.into_tch(), p.trainable);
        }
        Ok(Box::new(HostModule {
            label: format!("layer type `{}` of plugin `{}`", self.name, self.plugin),
            module: built.module,
        }))
    }
}

struct HostModule {
    label: String,
    module: LayerModuleBox,
}

impl fmt::Debug for HostModule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PluginModule({})", self.label)
    }
}

impl nn::ModuleT for HostModule {
    fn forward_t(&self, xs: &tch::Tensor, train: bool) -> tch::Tensor {
        match self.module.forward(TensorRef::new(xs), train) {
            RResult::ROk(t) => t.into_tch(),
            // `ModuleT` has no error path: unwind host frames with a `PluginFailure`, which the
            // stage (or the command) catches and reports as an error.
            RResult::RErr(e) => {
                std::panic::panic_any(donna_sdk::PluginFailure(format!("{}: forward failed: {e}", self.label)))
            }
        }
    }
}

struct HostSpace {
    plugin: String,
    name: String,
    summary: String,
    space: std::sync::Arc<SpaceProviderBox>,
}

impl SpaceProvider for HostSpace {
    fn name(&self) -> &str {
        &self.name
    }
    fn summary(&self) -> &str {
        &self.summary
    }
    fn build(&self, config: &SpaceConfig) -> Result<Box<dyn SearchSpace>> {
        let rconfig = convert::space_config(config);
        let layout =
            self.space.layout(rconfig).into_result().map_err(|e| plugin_error(&self.plugin, "space layout", e))?;
        let provider = std::sync::Arc::clone(&self.space);
        let plugin = self.plugin.clone();
        let expand = move |index: usize, block: &donna_sdk::BlockSpec, option: &donna_sdk::BlockOption| {
            let layers = provider
                .block_layers(rconfig, index, &convert::block(block), &convert::settings(option))
                .into_result()
                .map_err(|e| plugin_error(&plugin, "block layers", e))?;
            Ok(layers.iter().map(convert::sdk_layer).collect())
        };
        let space = LayoutSpace::new(
            &self.name,
            config.clone(),
            layout.stem.iter().map(convert::sdk_layer).collect(),
            layout.blocks.iter().map(convert::sdk_block).collect(),
            layout.head.iter().map(convert::sdk_layer).collect(),
            layout.teacher.iter().map(convert::sdk_settings).collect(),
            Box::new(expand),
        )?;
        Ok(Box::new(space))
    }
}

struct HostDevice {
    plugin: String,
    name: String,
    summary: String,
    device: DeviceProviderBox,
}

impl DeviceProvider for HostDevice {
    fn name(&self) -> &str {
        &self.name
    }
    fn summary(&self) -> &str {
        &self.summary
    }
    fn build(&self, args: &str) -> Result<Box<dyn CostModel>> {
        let model =
            self.device.build(args.into()).into_result().map_err(|e| plugin_error(&self.plugin, "device", e))?;
        Ok(Box::new(HostCostModel { plugin: self.plugin.clone(), model }))
    }
}

struct HostCostModel {
    plugin: String,
    model: CostModelBox,
}

impl CostModel for HostCostModel {
    fn info(&self) -> DeviceInfo {
        convert::sdk_device_info(&self.model.info())
    }

    fn latency(&self, space: &dyn SearchSpace, archs: &[Architecture], query: &CostQuery) -> Result<Vec<Latency>> {
        let priced = archs.iter().map(|a| arch_cost(space, a)).collect::<Result<Vec<_>>>()?;
        let query = RCostQuery { batch: query.batch, precision: convert::precision(query.precision) };
        let latencies = self
            .model
            .latency(priced.as_slice().into(), query)
            .into_result()
            .map_err(|e| plugin_error(&self.plugin, "latency", e))?;
        Ok(latencies.iter().map(|l| Latency { ms: l.ms, cv: l.cv.into_option() }).collect())
    }
}

fn arch_cost(space: &dyn SearchSpace, arch: &Architecture) -> Result<RArchCost> {
    let count = donna_sdk::network::count_network(space, arch)?;
    let blocks = space.blocks();
    let parts = count
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let option = match i.checked_sub(1).filter(|b| *b < blocks.len()) {
                Some(b) => blocks[b].format_option(&arch.blocks[b]),
                None => String::new(),
            };
            let ops: Vec<Op> = p.layers.iter().flat_map(|l| l.ops.iter().cloned()).collect();
            RPart {
                name: p.name.as_str().into(),
                option: option.into(),
                input: convert::shape(p.input),
                output: convert::shape(p.output),
                ops: convert::vec(&ops, convert::op),
            }
        })
        .collect();
    Ok(RArchCost { space: arch.space.as_str().into(), text: space.format_arch(arch).into(), parts })
}

#[cfg(test)]
mod tests {
    //! The adapters both ways, in one process: what a plugin exports, wrapped as the host
    //! wraps it, behaves like the SDK object it came from.

    use donna_sdk::counters::{Counters, OpKind};
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind, Tensor};

    use super::*;
    use crate::export::PluginBuilder;

    /// A 1x1 convolution with batch norm; `out = 0` panics, like a plugin bug.
    struct Mix;

    impl LayerType for Mix {
        fn name(&self) -> &str {
            "mix"
        }
        fn summary(&self) -> &str {
            "test layer"
        }
        fn output_shape(&self, s: &Settings, input: FeatureShape) -> Result<FeatureShape> {
            Ok(input.with_channels(s.int("out")?))
        }
        fn ops(&self, s: &Settings, input: FeatureShape) -> Result<Vec<Op>> {
            let out = s.int("out")?;
            assert!(out > 0, "out must be positive");
            let (c, pos) = (input.channels as u64, input.positions() as u64);
            Ok(vec![
                Op {
                    kind: OpKind::Pointwise,
                    macs: c * out as u64 * pos,
                    params: c * out as u64,
                    input_elems: 0,
                    output_elems: 0,
                },
                Op { kind: OpKind::Norm, macs: 0, params: 2 * out as u64, input_elems: 0, output_elems: 0 },
            ])
        }
        fn build(&self, path: &nn::Path, s: &Settings, input: FeatureShape) -> Result<LayerModule> {
            let out = s.int("out")?;
            let conv =
                nn::conv2d(path / "conv", input.channels, out, 1, nn::ConvConfig { bias: false, ..Default::default() });
            let bn = nn::batch_norm2d(path / "bn", out, Default::default());
            Ok(Box::new(nn::seq_t().add(conv).add(bn)))
        }
    }

    fn host_layer() -> HostLayerType {
        let mut contents = PluginBuilder::new("test", "0", "test").layer_type(Mix).into_contents();
        let layer = contents.layer_types.pop().unwrap();
        HostLayerType { plugin: "test".into(), name: "mix".into(), summary: "test".into(), layer }
    }

    #[test]
    fn a_plugin_layer_trains_in_the_hosts_var_store() {
        let layer = host_layer();
        let input = FeatureShape::new(4, 5, 5);
        let settings = Settings::new().with("out", 6i64);
        let vs = nn::VarStore::new(Device::Cpu);
        let module = layer.build(&(vs.root() / "blocks" / 0), &settings, input).unwrap();
        let counted = Counters::of(&layer.ops(&settings, input).unwrap()).params;
        assert_eq!(counted, donna_sdk::network::trainable_elems(&vs), "ops agree with the built module");
        let names: Vec<String> = vs.variables().into_keys().collect();
        assert!(names.contains(&"blocks.0.conv.weight".to_owned()), "{names:?}");
        assert!(names.contains(&"blocks.0.bn.running_mean".to_owned()), "buffers cross too: {names:?}");

        let x = Tensor::randn([8, 4, 5, 5], (Kind::Float, Device::Cpu));
        let target = Tensor::randn([8, 6, 5, 5], (Kind::Float, Device::Cpu));
        let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
        let loss = |m: &LayerModule| (m.forward_t(&x, true) - &target).square().mean(Kind::Float);
        let first = loss(&module).double_value(&[]);
        for _ in 0..20 {
            opt.backward_step(&loss(&module));
        }
        let last = loss(&module).double_value(&[]);
        assert!(last < first, "the host's optimizer trains the plugin's tensors: {first} -> {last}");
    }

    #[test]
    fn a_panic_in_plugin_code_is_an_error_for_that_call() {
        let layer = host_layer();
        let bad = Settings::new().with("out", 0i64);
        let err = layer.ops(&bad, FeatureShape::new(4, 5, 5)).unwrap_err().to_string();
        assert!(err.contains("panicked at ") && err.contains(".rs:"), "the panic's place is kept: {err}");
        assert!(err.contains(": out must be positive") && err.contains("`mix` of plugin `test`"), "{err}");
        // The layer still works after the panic.
        assert!(layer.ops(&Settings::new().with("out", 2i64), FeatureShape::new(4, 5, 5)).is_ok());
        let missing = layer.output_shape(&Settings::new(), FeatureShape::new(4, 5, 5)).unwrap_err();
        assert!(missing.to_string().contains("missing setting `out`"), "{missing}");
    }

    #[test]
    fn libtorch_tag_mismatches_are_recognised_in_a_layout_report() {
        let report =
            format!("Tag:\n  '1.13.1'\nExtra:\n  Expected:\n    '{}'\n  Found:\n    '1.13.1'\n", crate::LIBTORCH_TAG);
        assert_eq!(other_libtorch(&report).as_deref(), Some("1.13.1"));
        assert_eq!(other_libtorch("Error:mismatched package\nExpected:\n  'a'\nFound:\n  'b'"), None);
    }
}
