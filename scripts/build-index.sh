#!/usr/bin/env bash
# Builds a corpus index as a batch job: in N shards one after the other, then merges them.
# Everything it does is `matvit index build --shard i/N` and `matvit index merge`; the point is
# the job shape. Each step is resumable, so re-running the script after a crash, a kill or a
# preempted job continues where it stopped: finished shards add nothing, a shard cut short adds
# only what it had not committed, and the merge skips what the output already holds.
#
# Usage: scripts/build-index.sh MODEL DATA OUT [SHARDS] [-- EXTRA BUILD OPTIONS]
#   MODEL   checkpoint directory          DATA  dataset spec (a folder, files:DIR, fashion-mnist:train, ...)
#   OUT     the merged index              SHARDS number of shards (default 1: a plain build into OUT)
#   extra options go to every `index build`, e.g.  -- --batch 128 --max-pixels 50000000
# Shard i is built in OUT.shards/i-of-N. On several machines, run the build line of each shard on
# its own machine instead (the split is by a hash of each image's path, the same everywhere),
# copy the shard directories together and run the merge line.
# Example: scripts/build-index.sh runs/fm fashion-mnist:train indexes/fm-train 4
set -euo pipefail

# Without arguments: print the comment above as help.
if [ $# -lt 3 ]; then awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 2; fi
model=$1 data=$2 out=$3 shards=${4:-1}
shift $(( $# >= 4 ? 4 : 3 ))
[ "${1:-}" = "--" ] && shift
matvit=("node" "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/bin/matvit.js")

if [ "$shards" -eq 1 ]; then
  exec "${matvit[@]}" index build --model "$model" --data "$data" --out "$out" "$@"
fi
parts=()
for i in $(seq 1 "$shards"); do
  part="$out.shards/$i-of-$shards"
  echo "== shard $i/$shards -> $part" >&2
  "${matvit[@]}" index build --model "$model" --data "$data" --out "$part" --shard "$i/$shards" "$@"
  parts+=("$part")
done
echo "== merge -> $out" >&2
"${matvit[@]}" index merge --out "$out" "${parts[@]}"
"${matvit[@]}" index verify --index "$out"
