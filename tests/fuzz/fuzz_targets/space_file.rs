//! Space files (TOML); the invariants are those of `donna_sdk::fuzzing::space_file`.
#![no_main]

use donna_layers as _;

use donna_sdk::fuzzing;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fuzzing::space_file(data));
