//! The plugin interface carries the built-in layer types unchanged.
//!
//! Every built-in layer type is exported through `PluginBuilder` (the plugin side) and wrapped
//! by `host::adapt` (the host side), in one process, exactly as a library's layer types are.
//! For every distinct layer of every option of every block of the three built-in spaces (and
//! their stems and heads), the adapted layer must give the same output shape, the same
//! counters, the same variable names and shapes, and, with the same weights, the same outputs
//! in training and in evaluation mode as the native layer, and its gradients must reach the
//! host's variables. So a built-in could ship as a plugin without any change of behaviour.

use std::collections::BTreeSet;
use std::path::Path;

use donna_layers as _;
use donna_plugin_abi::PluginBuilder;
use donna_sdk::counters::Op;
use donna_sdk::{checkpoint, registry, FeatureShape, LayerModule, LayerSpec, LayerType, Result, Settings, SpaceConfig};
use donna_space_attention as _;
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;
use tch::nn;
use tch::{Device, Kind, Tensor};

/// A built-in layer type, handed to the exporter as a plugin author's type would be.
struct Native(&'static dyn LayerType);

impl LayerType for Native {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn summary(&self) -> &str {
        self.0.summary()
    }
    fn output_shape(&self, settings: &Settings, input: FeatureShape) -> Result<FeatureShape> {
        self.0.output_shape(settings, input)
    }
    fn ops(&self, settings: &Settings, input: FeatureShape) -> Result<Vec<Op>> {
        self.0.ops(settings, input)
    }
    fn build(&self, path: &nn::Path, settings: &Settings, input: FeatureShape) -> Result<LayerModule> {
        self.0.build(path, settings, input)
    }
}

/// Distinct (layer, input shape) pairs of the built-in spaces at a small configuration, the
/// first `PER_KIND` of each layer type in space, block and option order (enough to cover every
/// setting each type takes; all of them would be ~500 and take 18 s).
fn layers_of_builtin_spaces() -> Vec<(LayerSpec, FeatureShape)> {
    const PER_KIND: usize = 30;
    let mut per_kind = std::collections::BTreeMap::<String, usize>::new();
    let config = SpaceConfig { resolution: 32, width_mult: 0.25, num_classes: 10, in_channels: 3 };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let mut add = |specs: Vec<LayerSpec>, mut shape: FeatureShape| {
        for spec in specs {
            let next = registry::layer_type(&spec.kind).unwrap().output_shape(&spec.settings, shape).unwrap();
            let count = per_kind.entry(spec.kind.clone()).or_default();
            if *count < PER_KIND && seen.insert(format!("{} {:?} {shape:?}", spec.kind, spec.settings)) {
                *count += 1;
                out.push((spec, shape));
            }
            shape = next;
        }
    };
    for name in ["mobilenet", "efficientnet", "attention"] {
        let space = registry::space(name, &config).unwrap();
        add(space.stem_layers(), space.input_shape());
        for (b, block) in space.blocks().iter().enumerate() {
            for option in &block.options {
                add(space.block_layers(b, option).unwrap(), block.input);
            }
        }
        let last = space.blocks().last().unwrap().output;
        add(space.head_layers(), last);
    }
    out
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn every_built_in_layer_behaves_the_same_through_the_plugin_interface() {
    tch::manual_seed(0);
    let builtins: Vec<&'static dyn LayerType> = registry::layer_types();
    let mut builder = PluginBuilder::new("builtins", "0", "the built-in layer types, exported");
    for lt in &builtins {
        builder = builder.layer_type(Native(*lt));
    }
    let adapted = donna_plugin_abi::host::adapt(builder.into_contents(), Path::new("(in process)"));
    assert_eq!(adapted.layer_types.len(), builtins.len());

    let layers = layers_of_builtin_spaces();
    let kinds: BTreeSet<&str> = layers.iter().map(|(s, _)| s.kind.as_str()).collect();
    assert!(kinds.len() >= 7, "the spaces use most built-in layer types: {kinds:?}");
    for (i, (spec, input)) in layers.iter().enumerate() {
        let native = registry::layer_type(&spec.kind).unwrap();
        let through = *adapted.layer_types.iter().find(|l| l.name() == spec.kind).unwrap();
        let what = format!("layer {i}: {} {:?} on {input:?}", spec.kind, spec.settings);
        let s = &spec.settings;
        assert_eq!(native.output_shape(s, *input).unwrap(), through.output_shape(s, *input).unwrap(), "{what}");
        assert_eq!(native.ops(s, *input).unwrap(), through.ops(s, *input).unwrap(), "{what}");

        let (vs_native, vs_through) = (nn::VarStore::new(Device::Cpu), nn::VarStore::new(Device::Cpu));
        let m_native = native.build(&(vs_native.root() / "l"), s, *input).unwrap();
        let m_through = through.build(&(vs_through.root() / "l"), s, *input).unwrap();
        let shapes = |vs: &nn::VarStore| {
            let mut v: Vec<(String, Vec<i64>)> = vs.variables().into_iter().map(|(n, t)| (n, t.size())).collect();
            v.sort();
            v
        };
        assert_eq!(shapes(&vs_native), shapes(&vs_through), "{what}: variables differ");
        let trainable = |vs: &nn::VarStore| vs.trainable_variables().len();
        assert_eq!(trainable(&vs_native), trainable(&vs_through), "{what}: trainable variables differ");
        // The same weights in both (strict: every variable by name), then the same outputs.
        checkpoint::copy_into(&vs_through, &checkpoint::variables(&vs_native), true, &what).unwrap();
        let x = Tensor::randn(input.batch(3), (Kind::Float, Device::Cpu));
        for train in [true, false] {
            // Dropout draws from libtorch's generator, which both sides share: reseed for each.
            tch::manual_seed(i as i64);
            let a = m_native.forward_t(&x, train);
            tch::manual_seed(i as i64);
            let b = m_through.forward_t(&x, train);
            assert_eq!(a.size(), b.size(), "{what}");
            assert!(max_diff(&a, &b) < 1e-5, "{what}: outputs differ by {} (train {train})", max_diff(&a, &b));
        }
        // Gradients flow back to the host's variables through the interface.
        let loss = m_through.forward_t(&x, true).square().mean(Kind::Float);
        loss.backward();
        let reached = vs_through.trainable_variables().iter().any(|v| v.grad().defined());
        assert!(reached || trainable(&vs_through) == 0, "{what}: no gradient reached the host's variables");
    }
    eprintln!("{} distinct layers of {} layer types compared", layers.len(), kinds.len());
}
