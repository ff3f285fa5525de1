#!/usr/bin/env bash
# Regenerates results/fmnist/ (the paper's Figure 5 on Fashion-MNIST, plus classification and the
# Mix'n'Match menu) from the shipped model and the baseline runs:
#   scripts/results-fmnist.sh [RUNS_DIR]      default RUNS_DIR: runs
# needs models/matvit-fmnist and, from scripts/train-baselines.sh, RUNS_DIR/baseline-{xl-nocrop,s,m}/best.
# Steps (each a matvit command; the report lists them again with their outputs):
#   1. classification on test: MatViT, and the XL-only baseline sliced to s/m/l
#   2. Mix'n'Match on the held-out last 5k of train; the front becomes the model's menu
#   3. retrieval: corpus = train (60k) embedded by XL, queries = test (10k) by s/m/l/xl and three
#      menu entries; the baselines: the XL-only model sliced, and independently trained S and M ViTs
#      querying the XL-only model's corpus
#   4. the report (Markdown + SVG)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-runs}"
out=results/fmnist
model=models/matvit-fmnist
mkdir -p "$out"
matvit() { node bin/matvit.js "$@"; }

matvit eval classify --model "$model" --data fashion-mnist:test --json "$out/classify-matvit.json" --csv "$out/classify-matvit.csv"
matvit eval classify --model "$runs/baseline-xl-nocrop/best" --data fashion-mnist:test --json "$out/classify-xl-only.json"
matvit mixnmatch --model "$model" --data 'fashion-mnist:train[55000:]' --out "$out/mixnmatch.json" --write-menu
# Three menu entries around 0.5-0.6 of XL's MFLOPs (all 19 with --menu: ~3x the time).
matvit eval retrieval --model "$model" --corpus fashion-mnist:train --queries fashion-mnist:test \
  --ffn-dims 64,128,128,128,128,128 --ffn-dims 128,128,128,256,256,256 --ffn-dims 128,128,256,256,256,256 \
  --json "$out/retrieval-matvit.json"
matvit eval retrieval --model "$runs/baseline-xl-nocrop/best" --corpus fashion-mnist:train --queries fashion-mnist:test \
  --query-model "independent-s=$runs/baseline-s/best:s" --query-model "independent-m=$runs/baseline-m/best:m" \
  --json "$out/retrieval-baselines.json"
matvit report --title "MatViT on Fashion-MNIST" --out "$out" --in "$out/classify-matvit.json" "$out/classify-xl-only.json" \
  "$out/mixnmatch.json" "$out/retrieval-matvit.json" "$out/retrieval-baselines.json"
