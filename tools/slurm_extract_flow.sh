#!/bin/bash
# Extract RGB frames, TV-L1 flow and warped flow for a whole dataset as a SLURM array job.
#
#   sbatch --array=0-31 tools/slurm_extract_flow.sh /data/UCF101/videos /data/UCF101/store
#
# Each array task writes only its own shard (OUT/shard-IIIII-of-00032): tsn-prep reads
# SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, so no --shard-index/--num-shards are needed, and
# tasks never contend for a file. Re-submitting the same array (the same --array range: the count
# is the number of shards) resumes: finished videos are skipped, so a task killed at its time limit
# just needs to run again. When all tasks are done, `tsn-prep info OUT` and `tsn-prep verify OUT`
# read every shard. docs/cluster.md has the whole workflow.
#
# Arguments after OUT go to both tsn-prep commands, e.g. a quick trial on a few frames:
#   sbatch --array=0-2 tools/slurm_extract_flow.sh videos/ store/ --size 112x84 --max-frames 6
#
# The log is tsn-flow-<job>_<task>.log in the directory sbatch was run from. slurmd opens it
# before this script starts, so it must not name a directory that may not exist (`mkdir` in the
# script is too late: every task would die with "Could not open stdout file" and no log). For a
# log directory, create it first and override the path when submitting:
#   mkdir -p logs && sbatch --output=logs/%x-%A_%a.log --array=0-31 tools/slurm_extract_flow.sh ...
#SBATCH --job-name=tsn-flow
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=tsn-flow-%A_%a.log
#
# TV-L1 on a GPU: add `#SBATCH --gres=gpu:1` and `--gpu 0` to the extract-flow line below. It runs
# from a pip install: tsn-prep's PyTorch TV-L1 on cuda:0 (the GPU SLURM gave the task), or
# OpenCV's CUDA TV-L1 when the installed cv2 was built with CUDA (--backend auto says which).
set -euo pipefail

usage="usage: sbatch --array=0-N $0 VIDEOS OUT [tsn-prep options for both steps]"
VIDEOS=${1:?$usage}
OUT=${2:?$usage}
shift 2

# Both steps run even if the first reports broken videos; the task fails if either did.
status=0
tsn-prep extract-frames "$VIDEOS" "$OUT" --workers "${SLURM_CPUS_PER_TASK:-1}" "$@" || status=$?
tsn-prep extract-flow "$VIDEOS" "$OUT" --modality flow --modality warped_flow \
    --workers "${SLURM_CPUS_PER_TASK:-1}" "$@" || status=$?
exit $status
