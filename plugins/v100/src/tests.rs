//! The calibrated profiles reproduce their reference latencies and rank the networks right.

use donna_layers as _;
use donna_sdk::analytical::{reference_ops, AnalyticalModel, Profile};
use donna_sdk::cost::CostQuery;
use donna_sdk::{registry, Precision, SpaceConfig};
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;

#[test]
fn every_profile_reproduces_its_references_within_15_percent() {
    for text in super::PROVIDER.profiles {
        let profile = Profile::from_json(text, "test").unwrap();
        let runtime = profile.runtime.clone();
        let model = AnalyticalModel::new(profile).unwrap();
        for r in &model.profile().references {
            let ms = model.profile().latency_ms(&reference_ops(r).unwrap(), r.batch);
            assert!(
                (ms / r.ms - 1.0).abs() < 0.15,
                "{runtime} {} batch {}: {ms:.2} ms vs {} ms",
                r.network,
                r.batch,
                r.ms
            );
        }
        assert!(model.calibration_error < 0.15, "{runtime}: {}", model.calibration_error);
    }
}

#[test]
fn mobilenet_v2_is_faster_than_efficientnet_b0_on_every_runtime() {
    let config = SpaceConfig::default();
    let mb = registry::space("mobilenet", &config).unwrap();
    let eff = registry::space("efficientnet", &config).unwrap();
    for text in super::PROVIDER.profiles {
        let profile = Profile::from_json(text, "test").unwrap();
        let runtime = profile.runtime.clone();
        let query = CostQuery { batch: 1, precision: profile.precision };
        let device = registry::device(&format!("{}:{runtime}", super::PROVIDER.name)).unwrap();
        let a = device.latency(mb.as_ref(), &[mb.teacher()], &query).unwrap()[0].ms;
        let b = device.latency(eff.as_ref(), &[eff.teacher()], &query).unwrap()[0].ms;
        assert!(a < b, "{runtime}: MobileNetV2 {a:.2} ms, EfficientNet-B0 {b:.2} ms");
        let other = if profile.precision == Precision::Fp32 { Precision::Fp16 } else { Precision::Fp32 };
        assert!(device.latency(mb.as_ref(), &[mb.teacher()], &CostQuery { batch: 1, precision: other }).is_err());
    }
    assert!(registry::device(&format!("{}:nope", super::PROVIDER.name))
        .err()
        .unwrap()
        .to_string()
        .contains("unknown runtime"));
}
