#!/bin/bash
# Extract RGB frames, TV-L1 flow and warped flow for a whole dataset as a SLURM array job; each
# task writes only its own shard (tsn-prep reads SLURM_ARRAY_TASK_ID / _COUNT), and resubmitting
# the same --array range resumes. docs/cluster.md has the whole workflow.
#
#   sbatch --array=0-31 tools/slurm_extract_flow.sh /data/UCF101/videos /data/UCF101/store
#   sbatch --array=0-2 tools/slurm_extract_flow.sh videos/ store/ --size 112x84 --max-frames 6
#
# Arguments after OUT go to both tsn-prep commands. The log's --output must name no directory
# that may not exist (slurmd opens it before this script runs): for one, create it first, e.g.
#   mkdir -p logs && sbatch --output=logs/%x-%A_%a.log --array=0-31 tools/slurm_extract_flow.sh ...
#SBATCH --job-name=tsn-flow
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --output=tsn-flow-%A_%a.log
# TV-L1 on a GPU: add `#SBATCH --gres=gpu:1` and `--gpu 0` to the extract-flow line below.
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
