#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every crate's unit, integration and CLI tests.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
