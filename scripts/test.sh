#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every crate's unit, integration and CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Test binaries train tiny networks, several at once; busy-waiting OpenMP threads then fight
# over the 2 cores (a loaded machine took a test from 1 s to 144 s; passive waiting: 23 s).
export OMP_WAIT_POLICY=PASSIVE
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
