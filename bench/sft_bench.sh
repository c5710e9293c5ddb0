#!/bin/bash
# SFT training-step throughput on this CPU: posttrain's trainer (bench_sft) beside transformers +
# PyTorch eager doing the same steps (bench/sft_peer.py) in the same run, median of 5 steps each.
# Prints one JSON line per measurement, then a table of steps/s, tokens/s and ratios.
#   bench/sft_bench.sh [BUILD_DIR]     (default build/; needs the bench_sft target built)
# Environment: ITERS (5), THREADS (nproc), SHAPES ("preset batch seq accum;..." ).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
PY=${POSTTRAIN_PYTHON:-$HOME/.cache/posttrain/venv-torch-2.11.0/bin/python}
ITERS=${ITERS:-5}
THREADS=${THREADS:-$(nproc)}   # intra-op threads, the same for both
# preset batch seq accum
IFS=';' read -ra SHAPES <<<"${SHAPES:-tiny 8 256 1;smol-135m 2 256 1}"
OUT=$(mktemp)
for shape in "${SHAPES[@]}"; do
  read -r preset batch seq accum <<<"$shape"
  args=(--preset "$preset" --batch "$batch" --seq "$seq" --accum "$accum" --iters "$ITERS" --threads "$THREADS")
  "$BUILD/bench_sft" "${args[@]}" | tee -a "$OUT"
  "$PY" "$HERE/sft_peer.py" "${args[@]}" 2>/dev/null | tee -a "$OUT"
done
"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
key = lambda r: (r["preset"], r["batch"], r["seq"], r["accum"])
ours = {key(r): r for r in rows if r["impl"] == "posttrain"}
peer = {key(r): r for r in rows if r["impl"] == "transformers"}
print(f"\n{'shape':<24}{'posttrain steps/s':>18}{'tok/s':>9}{'transformers steps/s':>22}"
      f"{'tok/s':>9}{'ratio':>7}")
for k, r in ours.items():
    p = peer.get(k)
    ratio = r["tokens_per_s"] / p["tokens_per_s"] if p else float("nan")
    shape = f"{k[0]} {k[1]}x{k[2]}x{k[3]}"
    print(f"{shape:<24}{r['steps_per_s']:>18.3f}{r['tokens_per_s']:>9.0f}"
          f"{(p['steps_per_s'] if p else float('nan')):>22.3f}"
          f"{(p['tokens_per_s'] if p else float('nan')):>9.0f}{ratio:>7.2f}")
PYEOF
rm -f "$OUT"
