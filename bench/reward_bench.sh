#!/bin/bash
# Reward-model training throughput on this CPU, in the same run:
#  1. posttrain (bench_reward, separate and one_row layouts) beside transformers'
#     LlamaForSequenceClassification + the same loss in PyTorch eager (bench/reward_peer.py) on
#     the same pairs and batch, per shape;
#  2. the one-row layout beside separate rows, prompts four times longer than responses, three
#     responses (pairs/s).
# Each measurement is the median of ITERS steps; with ROUNDS > 1 the programs run in turn that
# many times and the table gives the median ratio. Prints JSON lines, then a table.
#   bench/reward_bench.sh [BUILD_DIR]     (default build/; needs the bench_reward target)
# Environment: ITERS (5), THREADS (nproc), ROUNDS (3),
#   SHAPES ("preset batch prompt response;..."), LAYOUT_SHAPE ("preset batch prompt response").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
PY=${POSTTRAIN_PYTHON:-$HOME/.cache/posttrain/venv-torch-2.11.0/bin/python}
ITERS=${ITERS:-5}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-3}
IFS=';' read -ra SHAPES <<<"${SHAPES:-tiny 8 96 32;smol-135m 2 96 32}"
read -r lp lb lprompt lresp <<<"${LAYOUT_SHAPE:-tiny 8 128 32}"
OUT=$(mktemp)
for ((round = 0; round < ROUNDS; round++)); do
  for shape in "${SHAPES[@]}"; do
    read -r preset batch prompt resp <<<"$shape"
    args=(--preset "$preset" --batch "$batch" --prompt "$prompt" --response "$resp"
          --responses 2 --iters "$ITERS" --threads "$THREADS")
    "$BUILD/bench_reward" "${args[@]}" --layout separate | tee -a "$OUT"
    "$BUILD/bench_reward" "${args[@]}" --layout one_row | tee -a "$OUT"
    "$PY" "$HERE/reward_peer.py" "${args[@]}" 2>/dev/null | tee -a "$OUT"
  done
  args=(--preset "$lp" --batch "$lb" --prompt "$lprompt" --response "$lresp" --responses 3
        --iters "$ITERS" --threads "$THREADS")
  "$BUILD/bench_reward" "${args[@]}" --layout separate | tee -a "$OUT"
  "$BUILD/bench_reward" "${args[@]}" --layout one_row | tee -a "$OUT"
done
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {}
for r in rows:
    k = (r["preset"], r["batch"], r["prompt"], r["response"], r["responses"])
    by.setdefault(k, {}).setdefault(r["impl"] + "/" + r["layout"], []).append(r["pairs_per_s"])
med = statistics.median
print(f"\n{'shape (preset batch prompt resp K)':<36}{'ours sep':>10}{'ours 1row':>10}"
      f"{'peer':>10}{'sep/peer':>10}{'1row/peer':>10}{'1row/sep':>10}   (pairs/s, medians)")
for k, v in by.items():
    s = med(v["posttrain/separate"]); o = med(v["posttrain/one_row"])
    p = med(v["transformers/separate"]) if "transformers/separate" in v else float("nan")
    print(f"{' '.join(map(str, k)):<36}{s:>10.1f}{o:>10.1f}{p:>10.1f}{s / p:>10.2f}"
          f"{o / p:>10.2f}{o / s:>10.2f}")
PYEOF
rm -f "$OUT"
