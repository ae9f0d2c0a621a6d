#!/bin/bash
# Multi-node FSDP2 training of the 2.7B hybrid with longssm, one torchrun per node under SLURM.
# Submit with: sbatch examples/slurm_fsdp.sh DATA_GLOB VALID_FILE RUN_DIR
# (after a preemption, submit again with the same RUN_DIR: --resume continues from its newest
# checkpoint, resharded to however many GPUs the new allocation has).
#SBATCH --job-name=longssm-2.7b
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1          # one torchrun per node; it starts one process per GPU
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=32
#SBATCH --time=48:00:00
set -euo pipefail

train_glob=${1:?training text files (a glob)}
valid=${2:?validation text file}
run_dir=${3:?run folder}
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
resume=()
if [ -e "$run_dir/checkpoints/latest" ]; then resume=(--resume "$run_dir"); fi

srun torchrun \
    --nnodes "$SLURM_NNODES" --nproc_per_node "$SLURM_GPUS_PER_NODE" \
    --rdzv_backend c10d --rdzv_endpoint "$head_node:29500" --rdzv_id "$SLURM_JOB_ID" \
    -m longssm.cli.main train --preset hybrid-h3-2.7b "${resume[@]}" \
    --set "data.train=[\"$train_glob\"]" --set "data.valid=[\"$valid\"]" --set 'data.tokenizer="bpe"' \
    --set 'train.parallel="fsdp"' --set train.activation_checkpointing=true \
    --set train.seq_len=2048 --set train.batch_size=256 --set train.accumulate=2 \
    --set train.lr=1.6e-4 --set train.steps=100000 --set train.checkpoint_every=1000 \
    --set "train.out_dir=\"$run_dir\""
