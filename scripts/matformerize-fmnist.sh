#!/usr/bin/env bash
# A dense ViT made elastic on Fashion-MNIST (results/fmnist-matformerize/): the XL-only baseline of
# scripts/train-baselines.sh (trained at full FFN width only) is matformerized (neurons reordered by
# importance), then fine-tuned with the MatFormer objective plus distillation toward XL.
#   scripts/matformerize-fmnist.sh [RUNS_DIR] [EPOCHS]   default RUNS_DIR: runs, EPOCHS: 3
# needs RUNS_DIR/baseline-xl-nocrop/best (scripts/train-baselines.sh xl). Safe to re-run: resumes.
# The fine-tune's budget: EPOCHS x 55k images (3: 165k, 12.5% of the 24 x 55k the from-scratch
# shipped model used).
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
epochs="${2:-3}"
out=results/fmnist-matformerize
dense="$runs/baseline-xl-nocrop/best"
mkdir -p "$out"
matvit() { node bin/matvit.js "$@"; }

# 1. The permutation: activation statistics on 2048 training images; sliced top-1 on the held-out
#    last 5k of train before and after (the test split is kept for step 3).
[ -f "$runs/matformerized/config.json" ] ||
  matvit matformerize --model "$dense" --out "$runs/matformerized" --data 'fashion-mnist:train[:55000]' --samples 2048 \
    --val 'fashion-mnist:train[55000:]' | tee "$out/matformerize.txt"
# 2. Nested fine-tune: sampled objective, distillation toward XL of the same weights, no crops
#    (the baseline's second stage's augmentation), a short warm-up from an already trained model.
matvit train --init "$runs/matformerized" --data 'fashion-mnist:train[:55000]' --val 'fashion-mnist:train[55000:]' \
  --out "$runs/matformerized-ft" --resume --epochs "$epochs" --warmup-steps 100 --lr 3e-4 --crop-scale 1,1 \
  --batch-size 128 --checkpoint-every 200 --distill self --seed 7
# 3. Test split: classification of the dense model sliced, the permuted one, the fine-tuned one;
#    retrieval with the train split (60k) embedded by XL as the corpus.
for m in dense:"$dense" matformerized:"$runs/matformerized" finetuned:"$runs/matformerized-ft/best"; do
  name="${m%%:*}" dir="${m#*:}"
  matvit eval classify --model "$dir" --data fashion-mnist:test --json "$out/classify-$name.json"
  matvit eval retrieval --model "$dir" --corpus fashion-mnist:train --queries fashion-mnist:test --json "$out/retrieval-$name.json"
done
