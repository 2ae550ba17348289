//! Every built-in layer: ops agree with the built module, forward gives the declared shape,
//! gradients reach every parameter, and bad settings are refused with the setting's name.

use donna_sdk::counters::Counters;
use donna_sdk::{registry, FeatureShape, Settings};
use tch::nn;
use tch::{Device, Kind, Tensor};

fn cases() -> Vec<(&'static str, Settings, FeatureShape)> {
    let s = Settings::new;
    vec![
        (
            "conv_bn_act",
            s().with("out", 16i64).with("k", 3i64).with("stride", 2i64).with("act", "swish"),
            FeatureShape::new(3, 15, 15),
        ),
        ("conv_bn_act", s().with("out", 8i64).with("k", 1i64), FeatureShape::new(8, 4, 4)),
        ("pointwise", s().with("out", 12i64), FeatureShape::new(24, 4, 4)),
        ("mbconv", s().with("out", 8i64).with("k", 3i64).with("e", 1i64), FeatureShape::new(8, 8, 8)),
        (
            "mbconv",
            s().with("out", 16i64).with("k", 5i64).with("e", 6i64).with("stride", 2i64).with("se", true),
            FeatureShape::new(8, 9, 9),
        ),
        (
            "mbconv",
            s().with("out", 8i64).with("k", 7i64).with("e", 3i64).with("act", "swish"),
            FeatureShape::new(8, 4, 4),
        ),
        (
            "fused_mbconv",
            s().with("out", 8i64).with("k", 3i64).with("e", 1i64).with("se", true),
            FeatureShape::new(8, 6, 6),
        ),
        (
            "fused_mbconv",
            s().with("out", 16i64).with("k", 3i64).with("e", 4i64).with("stride", 2i64),
            FeatureShape::new(8, 8, 8),
        ),
        ("transformer", s().with("heads", 3i64).with("mlp", 4i64), FeatureShape::new(24, 4, 4)),
        ("conv_mixer", s().with("mlp", 2i64), FeatureShape::new(12, 5, 5)),
        ("patch_embed", s().with("out", 24i64).with("patch", 4i64), FeatureShape::new(3, 16, 16)),
        ("classifier", s().with("classes", 10i64).with("dropout", 0.2), FeatureShape::new(32, 2, 2)),
        ("classifier", s().with("classes", 5i64).with("norm", "ln"), FeatureShape::new(24, 4, 4)),
    ]
}

#[test]
fn ops_params_equal_built_parameters_and_forward_has_declared_shape() {
    tch::manual_seed(0);
    for (kind, settings, input) in cases() {
        let lt = registry::layer_type(kind).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let module = lt.build(&vs.root(), &settings, input).unwrap();
        let ops = lt.ops(&settings, input).unwrap();
        let built: u64 = vs.trainable_variables().iter().map(|t| t.numel() as u64).sum();
        assert_eq!(Counters::of(&ops).params, built, "{kind} {settings:?}");

        let x = Tensor::randn(input.batch(2), (Kind::Float, Device::Cpu));
        let y = module.forward_t(&x, true);
        let out = lt.output_shape(&settings, input).unwrap();
        let want: Vec<i64> = if kind == "classifier" { vec![2, out.channels] } else { out.batch(2).to_vec() };
        assert_eq!(y.size(), want, "{kind}");

        y.square().mean(Kind::Float).backward();
        for (name, t) in vs.variables() {
            if t.requires_grad() {
                assert!(t.grad().defined(), "{kind}: no gradient for {name}");
            }
        }
    }
}

#[test]
fn macs_of_a_known_conv_are_exact() {
    // 3->16, 3x3, stride 2 on 15x15: output 8x8, 8*8*16*3*9 MACs.
    let s = Settings::new().with("out", 16i64).with("k", 3i64).with("stride", 2i64);
    let ops = registry::layer_type("conv_bn_act").unwrap().ops(&s, FeatureShape::new(3, 15, 15)).unwrap();
    assert_eq!(Counters::of(&ops).macs, 8 * 8 * 16 * 3 * 9);
}

#[test]
fn bad_settings_name_the_problem() {
    let mb = registry::layer_type("mbconv").unwrap();
    let input = FeatureShape::new(8, 8, 8);
    let err = mb.ops(&Settings::new().with("out", 8i64).with("e", 2i64), input).unwrap_err().to_string();
    assert!(err.contains("missing setting `k`"), "{err}");
    let err =
        mb.ops(&Settings::new().with("out", 8i64).with("k", 4i64).with("e", 2i64), input).unwrap_err().to_string();
    assert!(err.contains("kernel 4 must be odd"), "{err}");
    let err = mb
        .ops(&Settings::new().with("out", 8i64).with("k", 3i64).with("e", 2i64).with("act", "tanh"), input)
        .unwrap_err()
        .to_string();
    assert!(err.contains("activation `tanh`"), "{err}");
    let tr = registry::layer_type("transformer").unwrap();
    let err = tr.ops(&Settings::new().with("heads", 5i64).with("mlp", 2i64), input).unwrap_err().to_string();
    assert!(err.contains("5 heads do not divide width 8"), "{err}");
    assert!(registry::layer_type("nope").err().unwrap().to_string().contains("unknown layer type `nope`"));
}
