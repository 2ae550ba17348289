#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every crate's unit, integration and CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# Test binaries train tiny networks, several at once; OpenMP threads that busy-wait then fight
# over the 2 cores. Measured with two CPU hogs running: tests/teacher.rs took 33.9 s by
# default, 4.6 s with OMP_WAIT_POLICY=PASSIVE, 3.9 s with a short spin; idle, the short spin is
# as fast as the default (passive waiting made the distill test 2.7x slower).
export GOMP_SPINCOUNT=10000
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
