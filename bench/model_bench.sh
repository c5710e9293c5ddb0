#!/bin/bash
# Model throughput on this CPU: ours (bench_model) beside transformers + PyTorch eager
# (bench/model_peer.py) on the same shapes in the same run, median of 5 timed runs each.
# Prints one JSON line per measurement, then a table with ratios (ours / transformers).
#   bench/model_bench.sh [BUILD_DIR]     (default build/; needs the bench_model target built)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
PY=${POSTTRAIN_PYTHON:-$HOME/.cache/posttrain/venv-torch-2.11.0/bin/python}
ITERS=${ITERS:-5}
THREADS=${THREADS:-$(nproc)}   # intra-op threads, the same for both
# "preset batch seq" entries, comma-separated in $SHAPES
IFS=',' read -ra SHAPES <<<"${SHAPES:-tiny 8 128,smol-135m 1 256}"
OUT=$(mktemp)
PEER_ERR=$(mktemp)
PEER_FAILED=0
# Runs a peer; its stderr (transformers' warnings) is shown only when it fails, and a failure
# leaves its rows out of the table instead of ending the script before the table.
run_peer() {
  if ! "$PY" "$@" 2>"$PEER_ERR" | tee -a "$OUT"; then
    PEER_FAILED=1
    echo "peer failed: $PY $*" >&2
    cat "$PEER_ERR" >&2
    echo "(the peers need transformers: scripts/setup_peers.sh installs the pinned packages)" >&2
  fi
}
for shape in "${SHAPES[@]}"; do
  read -r preset batch seq <<<"$shape"
  for mode in forward train; do
    args=(--preset "$preset" --batch "$batch" --seq "$seq" --mode "$mode" --iters "$ITERS" --threads "$THREADS")
    "$BUILD/bench_model" "${args[@]}" | tee -a "$OUT"
    run_peer "$HERE/model_peer.py" "${args[@]}"
  done
done
"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
key = lambda r: (r["preset"], r["mode"], r["batch"], r["seq"])
ours = {key(r): r for r in rows if r["impl"] == "posttrain"}
peer = {key(r): r for r in rows if r["impl"] == "transformers"}
print(f"\n{'shape':<22}{'mode':<9}{'posttrain tok/s':>16}{'transformers tok/s':>20}{'ratio':>8}")
for k, r in ours.items():
    p = peer.get(k)
    ratio = r["tokens_per_s"] / p["tokens_per_s"] if p else float("nan")
    shape = f"{k[0]} {k[2]}x{k[3]}"
    print(f"{shape:<22}{k[1]:<9}{r['tokens_per_s']:>16.0f}"
          f"{(p['tokens_per_s'] if p else float('nan')):>20.0f}{ratio:>8.2f}")
PYEOF
rm -f "$OUT"
rm -f "$PEER_ERR"
exit "$PEER_FAILED"
