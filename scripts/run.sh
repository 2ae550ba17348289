#!/usr/bin/env bash
# The main job: the donna pipeline on the embedded synthetic dataset with the quick preset.
# Usage: scripts/run.sh [RUN_DIR] [extra donna run flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --release --locked -p donna
run_dir="${1:-runs/quick}"
shift || true
exec target/release/donna run --run "$run_dir" --preset quick --data synthetic "$@"
