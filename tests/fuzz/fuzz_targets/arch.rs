//! Architecture strings against every built-in space and a small space-file space; the
//! invariants are those of `donna_sdk::fuzzing::arch_text`.
#![no_main]

use std::sync::OnceLock;

use donna_layers as _;
use donna_space_attention as _;
use donna_space_efficientnet as _;
use donna_space_mobilenet as _;

use donna_sdk::{fuzzing, SearchSpace};
use libfuzzer_sys::fuzz_target;

static SPACES: OnceLock<Vec<Box<dyn SearchSpace>>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    for space in SPACES.get_or_init(fuzzing::arch_spaces) {
        fuzzing::arch_text(space.as_ref(), data);
    }
});
