#!/usr/bin/env bash
# Downloads Fashion-MNIST (Zalando Research, MIT licence; 60k train + 10k test images, 28x28
# grayscale, 10 classes) into datasets/fashion-mnist/ of this repository, where the
# `fashion-mnist:train` and `fashion-mnist:test` dataset specs look first.
#
# Only needed without the Debian package, which installs the same four files under
# /usr/share/datasets/fashion-mnist/:   sudo apt-get install dataset-fashion-mnist
#
# Usage: scripts/download-fashion-mnist.sh [DEST_DIR]     (default: datasets/fashion-mnist)
# Files already present and verified are kept. Each file is checked by the SHA-256 of its
# *decompressed* content (the IDX bytes), so differently recompressed copies verify too.
set -euo pipefail

dest="${1:-"$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/datasets/fashion-mnist"}"
# The upstream README's download links, then the GitHub copy of the same files.
mirrors=(
  "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
  "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion"
)
declare -A sha256=(
  [train-images-idx3-ubyte.gz]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
  [train-labels-idx1-ubyte.gz]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
  [t10k-images-idx3-ubyte.gz]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
  [t10k-labels-idx1-ubyte.gz]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

verify() { [ -s "$1" ] && [ "$(gunzip -c "$1" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "${sha256[$(basename "$1")]}" ]; }

fetch() { # url out
  if command -v curl >/dev/null; then curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null; then wget -q -O "$2" "$1"
  else echo "need curl or wget" >&2; return 1; fi
}

mkdir -p "$dest"
for name in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  out="$dest/$name"
  if verify "$out"; then echo "ok       $out"; continue; fi
  ok=
  for m in "${mirrors[@]}"; do
    echo "download $m/$name"
    if fetch "$m/$name" "$out.part" && verify "$out.part"; then mv "$out.part" "$out"; ok=1; break; fi
    echo "  failed or checksum mismatch" >&2
  done
  rm -f "$out.part"
  [ -n "$ok" ] || { echo "could not get $name; alternatively: sudo apt-get install dataset-fashion-mnist" >&2; exit 1; }
  echo "ok       $out"
done
