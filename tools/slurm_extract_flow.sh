#!/bin/bash
# Extract TV-L1 flow and warped flow for a whole dataset as a SLURM array job.
#
#   sbatch --array=0-31 tools/slurm_extract_flow.sh /data/UCF101/videos /data/UCF101/store
#
# Each array task writes only its own shard (OUT/shard-IIIII-of-00032): tsn-prep reads
# SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, so no --shard-index/--num-shards are needed, and
# tasks never contend for a file. Re-submitting the same array resumes: finished videos are
# skipped, so a task killed at its time limit just needs to run again. When all tasks are done,
# `tsn-prep info OUT` and `tsn-prep verify OUT` read every shard.
#SBATCH --job-name=tsn-flow
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=logs/tsn-flow-%A_%a.log
# For OpenCV-CUDA TV-L1 instead (needs an OpenCV built with CUDA), add:
#   #SBATCH --gres=gpu:1     and pass --gpu 0 below.
set -euo pipefail

VIDEOS=${1:?usage: sbatch --array=0-N $0 VIDEOS OUT}
OUT=${2:?usage: sbatch --array=0-N $0 VIDEOS OUT}
mkdir -p logs

# Both steps run even if the first reports broken videos; the task fails if either did.
status=0
tsn-prep extract-frames "$VIDEOS" "$OUT" --workers "${SLURM_CPUS_PER_TASK:-1}" || status=$?
tsn-prep extract-flow "$VIDEOS" "$OUT" --modality flow --modality warped_flow \
    --workers "${SLURM_CPUS_PER_TASK:-1}" || status=$?
exit $status
