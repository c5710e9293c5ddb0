#!/bin/bash
# SFT training-step throughput on this CPU: posttrain's trainer (bench_sft) beside transformers +
# PyTorch eager doing the same steps (bench/sft_peer.py) in the same run, median of 5 steps each.
# Prints one JSON line per measurement, then a table of steps/s, tokens/s and ratios.
#   bench/sft_bench.sh [BUILD_DIR]     (default build/; needs the bench_sft target built)
# Environment: ITERS (5), THREADS (nproc), SHAPES ("preset batch seq accum;..." ), ROUNDS (1):
# with ROUNDS > 1 each shape runs ours then the peer that many times in turn (so both see the
# same drift in a shared machine's load) and the table gives each round's ratio and their median.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
PY=${POSTTRAIN_PYTHON:-$HOME/.cache/posttrain/venv-torch-2.11.0/bin/python}
ITERS=${ITERS:-5}
THREADS=${THREADS:-$(nproc)}   # intra-op threads, the same for both
# preset batch seq accum
ROUNDS=${ROUNDS:-1}
IFS=';' read -ra SHAPES <<<"${SHAPES:-tiny 8 256 1;smol-135m 2 256 1}"
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
  read -r preset batch seq accum <<<"$shape"
  args=(--preset "$preset" --batch "$batch" --seq "$seq" --accum "$accum" --iters "$ITERS" --threads "$THREADS")
  for ((round = 0; round < ROUNDS; round++)); do
    "$BUILD/bench_sft" "${args[@]}" | tee -a "$OUT"
    run_peer "$HERE/sft_peer.py" "${args[@]}"
  done
done
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
key = lambda r: (r["preset"], r["batch"], r["seq"], r["accum"])
ours, peer = {}, {}
for r in rows:  # in file order: round i of ours pairs with round i of the peer
    (ours if r["impl"] == "posttrain" else peer).setdefault(key(r), []).append(r)
print(f"\n{'shape':<24}{'posttrain steps/s':>18}{'tok/s':>9}{'transformers steps/s':>22}"
      f"{'tok/s':>9}{'ratio':>7}")
for k, mine in ours.items():
    theirs = peer.get(k, [])
    ratios = []
    for i, r in enumerate(mine):
        p = theirs[i] if i < len(theirs) else None
        ratio = r["tokens_per_s"] / p["tokens_per_s"] if p else float("nan")
        ratios.append(ratio)
        shape = f"{k[0]} {k[1]}x{k[2]}x{k[3]}" + (f" #{i + 1}" if len(mine) > 1 else "")
        print(f"{shape:<24}{r['steps_per_s']:>18.3f}{r['tokens_per_s']:>9.0f}"
              f"{(p['steps_per_s'] if p else float('nan')):>22.3f}"
              f"{(p['tokens_per_s'] if p else float('nan')):>9.0f}{ratio:>7.2f}")
    if len(ratios) > 1:
        print(f"{k[0]} {k[1]}x{k[2]}x{k[3]}: median ratio over {len(ratios)} rounds "
              f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
PYEOF
rm -f "$OUT"
rm -f "$PEER_ERR"
exit "$PEER_FAILED"
