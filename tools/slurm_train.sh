#!/bin/bash
# Train a TSN stream on one or more nodes: srun starts one torchrun per node, each starting one
# training process per GPU (or TSN_NPROC_PER_NODE CPU processes); rendezvous on the job's first
# node. The arguments are tsn-train fit options. docs/cluster.md has the whole workflow.
#
#   sbatch --nodes=2 --gpus-per-node=4 tools/slurm_train.sh --modality rgb --store store/ \
#       --train-list lists/train.txt --val-list lists/val.txt --classes lists/classes.txt --out runs/rgb
#   TSN_DEVICE=cpu TSN_NPROC_PER_NODE=4 sbatch --nodes=2 --cpus-per-task=16 tools/slurm_train.sh ...
#
# Environment: TSN_DEVICE=gpu|cpu (default gpu: cuda, NCCL; cpu: gloo), TSN_NPROC_PER_NODE
# (default: the node's GPUs, or 1 with cpu), TSN_FIT (what torchrun starts; default
# "-m tsn_train.cli fit"), MASTER_PORT (default 20000 + job id mod 20000), OMP_NUM_THREADS
# (default: the task's CPUs over the processes per node).
#SBATCH --job-name=tsn-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --output=tsn-train-%j.log
# (--output names no directory: slurmd opens the log before the script runs; see
# tools/slurm_extract_flow.sh.)
set -euo pipefail

case ${TSN_DEVICE:-gpu} in
  gpu)
    gpus=${SLURM_GPUS_ON_NODE:-}
    if [ -z "$gpus" ] && [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
      gpus=$(tr ',' '\n' <<< "$CUDA_VISIBLE_DEVICES" | grep -c .)
    fi
    NPROC=${TSN_NPROC_PER_NODE:-${gpus:-}}
    if [ -z "$NPROC" ] || [ "$NPROC" -lt 1 ]; then
      echo "$0: no GPUs in this job: submit with --gpus-per-node=N, or set TSN_DEVICE=cpu" >&2
      exit 2
    fi
    DEVICE=cuda ;;
  cpu)
    NPROC=${TSN_NPROC_PER_NODE:-1}
    DEVICE=cpu ;;
  *)
    echo "$0: TSN_DEVICE must be gpu or cpu, not '$TSN_DEVICE'" >&2
    exit 2 ;;
esac
read -r -a FIT <<< "${TSN_FIT:--m tsn_train.cli fit}"

CPUS=${SLURM_CPUS_PER_TASK:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( CPUS / NPROC > 0 ? CPUS / NPROC : 1 ))}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
MASTER_PORT=${MASTER_PORT:-$(( 20000 + SLURM_JOB_ID % 20000 ))}
export MASTER_ADDR MASTER_PORT
echo "$(date '+%F %T') job $SLURM_JOB_ID: $SLURM_NNODES node(s) x $NPROC process(es), device $DEVICE," \
     "rendezvous $MASTER_ADDR:$MASTER_PORT"

# srun no longer passes the job's --cpus-per-task on to its tasks (SLURM 22.05+): say it again.
srun --nodes="$SLURM_NNODES" --ntasks="$SLURM_NNODES" --ntasks-per-node=1 \
    --cpus-per-task="$CPUS" --kill-on-bad-exit=1 \
    torchrun --nnodes="$SLURM_NNODES" --nproc-per-node="$NPROC" \
    --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="$SLURM_JOB_ID" \
    "${FIT[@]}" --device "$DEVICE" "$@"
