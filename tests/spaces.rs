//! The built-in spaces, end to end through the SDK: round trips, building, counting, stitching.

use donna_layers as _;
use donna_space_attention as _;
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;

use donna_sdk::network::{build_block, build_network, count_block, count_network, trainable_elems};
use donna_sdk::{registry, Architecture, SearchSpace, SpaceConfig, SplitMix64};
use tch::nn;
use tch::{Device, Kind, Tensor};

const SPACES: [&str; 3] = ["mobilenet", "efficientnet", "attention"];

fn small() -> SpaceConfig {
    SpaceConfig { resolution: 32, width_mult: 0.25, num_classes: 10, in_channels: 3 }
}

fn space(name: &str, config: &SpaceConfig) -> Box<dyn SearchSpace> {
    registry::space(name, config).unwrap()
}

#[test]
fn random_architectures_round_trip_through_json_and_text() {
    for name in SPACES {
        let s = space(name, &small());
        let mut rng = SplitMix64::new(11);
        for _ in 0..20 {
            let arch = s.decode(&s.sample(&mut rng));
            let json = serde_json::to_string(&arch).unwrap();
            let back: Architecture = serde_json::from_str(&json).unwrap();
            assert_eq!(s.validate(&back).unwrap(), s.validate(&arch).unwrap(), "{json}");
            assert_eq!(back, arch);
            let text = s.format_arch(&arch);
            assert_eq!(s.parse_arch(&text).unwrap(), arch, "{text}");
            assert_eq!(s.format_arch(&s.parse_arch(&text).unwrap()), text);
        }
    }
}

#[test]
fn random_networks_train_on_cpu_with_the_expected_shapes_and_counted_parameters() {
    tch::manual_seed(0);
    let config = small();
    for name in SPACES {
        let s = space(name, &config);
        let mut rng = SplitMix64::new(3);
        let mut archs = vec![s.teacher()];
        archs.extend((0..2).map(|_| s.decode(&s.sample(&mut rng))));
        for arch in archs {
            let vs = nn::VarStore::new(Device::Cpu);
            let net = build_network(s.as_ref(), &arch, &vs.root()).unwrap();
            let count = count_network(s.as_ref(), &arch).unwrap();
            assert_eq!(count.total.params, trainable_elems(&vs), "{}", s.format_arch(&arch));

            let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let (features, logits) = net.features_t(&x, true);
            assert_eq!(logits.size(), vec![2, 10]);
            assert_eq!(features.len(), s.blocks().len() + 1);
            for (b, spec) in s.blocks().iter().enumerate() {
                assert_eq!(features[b].size(), spec.input.batch(2).to_vec(), "{name} block {b} input");
                assert_eq!(features[b + 1].size(), spec.output.batch(2).to_vec(), "{name} block {b} output");
            }
            let loss = logits.cross_entropy_for_logits(&Tensor::from_slice(&[1i64, 7]));
            loss.backward();
            for (n, t) in vs.variables() {
                if t.requires_grad() {
                    assert!(t.grad().defined(), "{name}: no gradient for {n}");
                }
            }
            assert!(f64::try_from(loss).unwrap().is_finite());
        }
    }
}

#[test]
fn every_option_of_every_block_produces_the_blocks_output_shape() {
    for name in SPACES {
        for config in [small(), SpaceConfig { resolution: 64, width_mult: 0.5, ..small() }] {
            let s = space(name, &config);
            for (b, spec) in s.blocks().iter().enumerate() {
                for option in &spec.options {
                    let part = count_block(s.as_ref(), b, option).unwrap();
                    assert_eq!(part.output, spec.output, "{name} b{b} {}", spec.format_option(option));
                }
            }
        }
    }
}

#[test]
fn teachers_at_224_have_the_reference_parameter_counts() {
    // torchvision mobilenet_v2 and efficientnet_b0; timm deit_tiny without the class token.
    let want = [("mobilenet", 3_504_872u64), ("efficientnet", 5_288_548), ("attention", 5_717_032)];
    for (name, params) in want {
        let s = space(name, &SpaceConfig::default());
        let count = count_network(s.as_ref(), &s.teacher()).unwrap();
        assert_eq!(count.total.params, params, "{name}");
    }
    let s = space("mobilenet", &SpaceConfig::default());
    let macs = count_network(s.as_ref(), &s.teacher()).unwrap().total.macs;
    assert_eq!(macs, 300_774_272, "MobileNetV2 MACs at 224 px");
}

#[test]
fn a_block_built_alone_has_the_parameter_names_and_shapes_it_has_in_the_network() {
    let config = small();
    for name in SPACES {
        let s = space(name, &config);
        let arch = s.decode(&s.sample(&mut SplitMix64::new(5)));
        let whole = nn::VarStore::new(Device::Cpu);
        build_network(s.as_ref(), &arch, &whole.root()).unwrap();
        let whole_vars = whole.variables();
        for (b, option) in arch.blocks.iter().enumerate() {
            let alone = nn::VarStore::new(Device::Cpu);
            build_block(s.as_ref(), b, option, &alone.root()).unwrap();
            let vars = alone.variables();
            assert!(!vars.is_empty());
            for (n, t) in &vars {
                assert!(n.starts_with(&format!("blocks.{b}.")), "{n}");
                assert_eq!(whole_vars[n].size(), t.size(), "{n}");
            }
            let in_whole = whole_vars.keys().filter(|n| n.starts_with(&format!("blocks.{b}."))).count();
            assert_eq!(in_whole, vars.len(), "{name} block {b}");
        }
    }
}

#[test]
fn space_sizes_are_exact() {
    let c = SpaceConfig::default();
    assert_eq!(space("mobilenet", &c).size().to_string(), 240u128.pow(6).to_string());
    assert_eq!(space("efficientnet", &c).size().to_string(), 960u128.pow(6).to_string());
    assert_eq!(space("attention", &c).size().to_string(), 144u128.pow(4).to_string());
}

#[test]
fn sampling_is_seeded_and_variation_stays_in_the_space() {
    let s = space("efficientnet", &small());
    let a: Vec<_> = (0..5)
        .map({
            let mut r = SplitMix64::new(9);
            let s = &s;
            move |_| s.sample(&mut r)
        })
        .collect();
    let mut r = SplitMix64::new(9);
    assert!(a.iter().all(|g| *g == s.sample(&mut r)));
    let mut rng = SplitMix64::new(1);
    for pair in a.windows(2) {
        let m = s.mutate(&pair[0], 0.0, &mut rng);
        assert_ne!(m, pair[0], "a mutation changes at least one block");
        s.validate(&s.decode(&m)).unwrap();
        let c = s.crossover(&pair[0], &pair[1], &mut rng);
        for b in 0..c.0.len() {
            assert!(c.0[b] == pair[0].0[b] || c.0[b] == pair[1].0[b]);
        }
    }
}

#[test]
fn invalid_architectures_get_precise_errors() {
    let s = space("mobilenet", &small());
    let teacher = s.format_arch(&s.teacher());
    let err = |text: &str| s.parse_arch(text).unwrap_err().to_string();
    let mut blocks: Vec<String> = teacher.split('/').map(str::to_owned).collect();
    blocks[3] = blocks[3].replace("e6", "e5");
    assert_eq!(err(&blocks.join("/")), "block 3: expansion 5 not in {2,3,4,6}");
    assert_eq!(err(&teacher.replacen("k3", "q3", 1)), "block 0: unknown setting `q3` (keys: k, e, d, se, w)");
    assert!(err(&teacher.replace("mobilenet:", "attention:")).contains("for space `attention`"));
    assert!(err("mobilenet:k3-e6-d2-se0-w1").contains("has 6 blocks, the architecture has 1"));
    assert!(err("k3-e6").contains("expected `SPACE:OPTION/OPTION/...`"));
    assert!(err(&teacher.replacen("k3-e6-d2-se0-w1", "k3-e6-d2-se0", 1)).contains("is not an option of this block"));
    assert!(err(&teacher.replacen("k3", "k3-k5", 1)).contains("kernel given twice"));

    let mut arch = s.teacher();
    arch.blocks[2].set("e", 7i64);
    assert_eq!(s.validate(&arch).unwrap_err().to_string(), "block 2: expansion 7 not in {2,3,4,6}");
    let json = r#"{"space":"mobilenet","blocks":[{"k":3}]}"#;
    let arch: Architecture = serde_json::from_str(json).unwrap();
    assert!(s.validate(&arch).is_err());
}
