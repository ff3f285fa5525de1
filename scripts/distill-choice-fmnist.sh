#!/usr/bin/env bash
# Which distillation loss the nested fine-tune uses by default (train --distill-kl / --distill-cosine):
# KL on the logits, cosine on the embeddings, both, or none (cross-entropy only), each from the same
# matformerized dense model at the same short budget (1 epoch of 20k images, 12% of the full
# fine-tune), validated on the held-out last 5k of train: top-1 per granularity (train's own
# validation) and 1-NN of queries embedded by each granularity against a 10k corpus embedded by XL.
#   scripts/distill-choice-fmnist.sh [RUNS_DIR] [START_MODEL]
# default START_MODEL: RUNS_DIR/matformerized (scripts/matformerize-fmnist.sh). Safe to re-run: resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
start="${2:-$runs/matformerized}"
out=results/fmnist-matformerize/distill-choice
mkdir -p "$out"
matvit() { node bin/matvit.js "$@"; }
for variant in both:1:1 kl:1:0 cosine:0:1 none; do
  IFS=: read -r name kl cosine <<<"$variant"
  distill=()
  [ "$name" = none ] || distill=(--distill self --distill-kl "$kl" --distill-cosine "$cosine")
  matvit train --init "$start" --data 'fashion-mnist:train[:20000]' --val 'fashion-mnist:train[55000:]' --out "$runs/dc-$name" \
    --resume --epochs 1 --warmup-steps 20 --lr 3e-4 --crop-scale 1,1 --batch-size 128 --seed 7 "${distill[@]}"
  [ -f "$out/retrieval-$name.json" ] ||
    matvit eval retrieval --model "$runs/dc-$name/best" --corpus 'fashion-mnist:train[20000:30000]' \
      --queries 'fashion-mnist:train[55000:]' --json "$out/retrieval-$name.json"
done
