#!/bin/bash
# DPO training-step throughput and memory on this machine: posttrain (bench_dpo: reference
# log-probs computed once, the reference freed before training) beside transformers + PyTorch
# eager keeping the reference in memory (bench/dpo_peer.py), in the same run, ROUNDS times in
# turn per shape; prints their JSON lines, then per shape the median ratios of steps/s and of
# peak memory above each process's baseline (goal: >= 1.5x / 1.3x speed on tiny / smol-135m at
# <= 0.6x the peer's memory).
#   bench/dpo_bench.sh [BUILD_DIR]     (default build/; needs the bench_dpo target built)
# Environment: ITERS (5), THREADS (nproc), ROUNDS (3), SHAPES ("preset batch prompt resp;...").
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
PY=${POSTTRAIN_PYTHON:-$HOME/.cache/posttrain/venv-torch-2.11.0/bin/python}
ITERS=${ITERS:-5}
THREADS=${THREADS:-$(nproc)}
ROUNDS=${ROUNDS:-3}
IFS=';' read -ra SHAPES <<<"${SHAPES:-tiny 8 128 128;smol-135m 2 128 128}"
OUT=$(mktemp)
for shape in "${SHAPES[@]}"; do
  read -r preset batch prompt resp <<<"$shape"
  args=(--preset "$preset" --batch "$batch" --prompt "$prompt" --resp "$resp" --iters "$ITERS"
        --threads "$THREADS")
  for ((round = 0; round < ROUNDS; round++)); do
    "$BUILD/bench_dpo" "${args[@]}" | tee -a "$OUT"
    "$PY" "$HERE/dpo_peer.py" "${args[@]}" 2>/dev/null | tee -a "$OUT"
  done
done
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
key = lambda r: (r["preset"], r["batch"], r["prompt"], r["resp"])
ours, peer = {}, {}
for r in rows:
    (ours if r["impl"] == "posttrain" else peer).setdefault(key(r), []).append(r)
print(f"\n{'shape':<26}{'ours steps/s':>13}{'peer steps/s':>13}{'speed':>7}"
      f"{'ours MiB':>10}{'peer MiB':>10}{'mem':>6}")
for k, mine in ours.items():
    theirs = peer.get(k, [])
    speed = [m["steps_per_s"] / t["steps_per_s"] for m, t in zip(mine, theirs)]
    mem = [m["peak_mem_mib"] / t["peak_mem_mib"] for m, t in zip(mine, theirs)]
    shape = f"{k[0]} {k[1]}x({k[2]}+2x{k[3]})"
    if not speed:
        print(f"{shape:<26}{statistics.median(m['steps_per_s'] for m in mine):>13.3f}  (no peer)")
        continue
    print(f"{shape:<26}{statistics.median(m['steps_per_s'] for m in mine):>13.3f}"
          f"{statistics.median(t['steps_per_s'] for t in theirs):>13.3f}"
          f"{statistics.median(speed):>7.2f}"
          f"{statistics.median(m['peak_mem_mib'] for m in mine):>10.0f}"
          f"{statistics.median(t['peak_mem_mib'] for t in theirs):>10.0f}"
          f"{statistics.median(mem):>6.2f}   (median of {len(speed)} rounds)")
PYEOF
rm -f "$OUT"
