#!/bin/bash
# A donna stage as a Slurm job array: N tasks share one run directory on a shared filesystem.
#
#   sbatch --array=0-15 deploy/slurm/donna-array.sh distill  /shared/runs/r1
#   sbatch --array=0-7  deploy/slurm/donna-array.sh predictor /shared/runs/r1
#   sbatch --array=0-3  deploy/slurm/donna-array.sh finetune  /shared/runs/r1 --device v100 --top 4
#
# Each task takes every N-th unit (`--shard I/N`); units already done are skipped, so a failed
# or preempted task is simply resubmitted. Whichever task finishes the last unit merges (the
# quality table, the predictor fit); `donna distill --merge` or a re-run of any task does it
# otherwise. `donna plan --run DIR --summary` shows progress from any node.
#SBATCH --job-name=donna
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=donna-%A_%a.log
set -euo pipefail
stage="${1:?stage: distill, predictor or finetune}"
run="${2:?run directory (shared filesystem)}"
shift 2
count="${SLURM_ARRAY_TASK_COUNT:?run as a job array (sbatch --array=0-N)}"
index="${SLURM_ARRAY_TASK_ID:?}"
export GOMP_SPINCOUNT=10000 OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-4}"
exec "${DONNA:-donna}" "$stage" --run "$run" --shard "$index/$count" "$@"
