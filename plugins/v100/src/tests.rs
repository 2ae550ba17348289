//! The calibrated profiles reproduce their reference latencies within 15% and rank
//! MobileNetV2 below EfficientNet-B0 on every runtime.

use donna_layers as _;
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;

#[test]
fn profiles_reproduce_their_references_and_rank_the_reference_networks() {
    donna_sdk::analytical::verify_profiles(&super::PROVIDER, 0.15).unwrap();
}
