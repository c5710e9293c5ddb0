#!/bin/bash
# Decoding throughput on this CPU, ours (`posttrain generate`) beside transformers' generate
# (bench/generate_peer.py) on the same model folder and prompts in the same run:
#   1. per preset: 32 prompts x 64 tokens, K = 4 samples, 64 new tokens, top-p 0.9, eos ignored;
#   2. prefix sharing (tiny): K = 8 on 512-token prompts, ours shared beside --no-prefix-sharing.
# Output tokens/s counts sampled tokens over the generation time (model loading excluded on
# both sides). One JSON line per measurement, then a table.
#   bench/generate_bench.sh [BUILD_DIR]      PRESETS="tiny smol-135m" SHARE_PROMPTS=8 THREADS=N
# GPU machine (not run yet): DEVICE=cuda DTYPE=bfloat16 PRESETS="smol-135m llama-1b" with a
# build whose posttrain runs there (scripts/gpu_prepare.sh); both sides then run on the GPU.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
PY=${POSTTRAIN_PYTHON:-$HOME/.cache/posttrain/venv-torch-2.11.0/bin/python}
PRESETS=${PRESETS-tiny smol-135m}   # PRESETS= runs only the prefix-sharing case
SHARE_PROMPTS=${SHARE_PROMPTS:-8}
THREADS=${THREADS:-$(nproc)}   # intra-op threads, the same for both
DEVICE=${DEVICE:-cpu}
DTYPE=${DTYPE:-float32}
export OMP_NUM_THREADS=$THREADS
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/results.jsonl

prompts() {  # prompts N LEN VOCAB FILE: random ids (seeded) as input_ids rows
  "$PY" - "$@" <<'PYEOF'
import json, random, sys
n, length, vocab, path = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = random.Random(0)
with open(path, "w") as f:
    for _ in range(n):
        f.write(json.dumps({"input_ids": [rng.randrange(3, vocab) for _ in range(length)]}) + "\n")
PYEOF
}

ours() {  # ours LABEL MODEL PROMPTS K NEW [extra flags]: one JSON line from the summary
  local label=$1 model=$2 in=$3 k=$4 new=$5
  shift 5
  "$BUILD/posttrain" generate --model "$model" --input "$in" --output "$TMP/out.jsonl" \
    --samples "$k" --max-new-tokens "$new" --top-p 0.9 --ignore-eos --device "$DEVICE" \
    --dtype "$DTYPE" "$@" 2>"$TMP/err"
  "$PY" - "$label" "$k" "$new" "$TMP/err" <<'PYEOF'
import json, re, sys
label, k, new, err = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
line = [l for l in open(err).read().replace("\r", "\n").splitlines() if l.startswith("generate:")][-1]
m = re.search(r"(\d+) new tokens in ([\d.]+) s \(([\d.]+) tokens/s", line)
print(json.dumps({"impl": "posttrain", "label": label, "samples": k, "new": new,
                  "new_tokens": int(m.group(1)), "seconds": float(m.group(2)),
                  "tokens_per_s": float(m.group(3))}))
PYEOF
}

for preset in $PRESETS; do
  model=$TMP/$preset
  "$BUILD/posttrain" init --preset "$preset" --seed 0 --output "$model" >/dev/null 2>&1
  vocab=$("$PY" -c "import json;print(json.load(open('$model/config.json'))['vocab_size'])")
  prompts 32 64 "$vocab" "$TMP/p_$preset.jsonl"
  ours "$preset" "$model" "$TMP/p_$preset.jsonl" 4 64 | tee -a "$OUT"
  "$PY" "$HERE/generate_peer.py" --model "$model" --prompts "$TMP/p_$preset.jsonl" --samples 4 \
    --new 64 --label "$preset" --threads "$THREADS" --device "$DEVICE" --dtype "$DTYPE" \
    2>/dev/null | tee -a "$OUT"
done

model=$TMP/tiny
[ -d "$model" ] || "$BUILD/posttrain" init --preset tiny --seed 0 --output "$model" >/dev/null 2>&1
vocab=$("$PY" -c "import json;print(json.load(open('$model/config.json'))['vocab_size'])")
prompts "$SHARE_PROMPTS" 512 "$vocab" "$TMP/long.jsonl"
ours "share:shared" "$model" "$TMP/long.jsonl" 8 64 | tee -a "$OUT"
ours "share:unshared" "$model" "$TMP/long.jsonl" 8 64 --no-prefix-sharing | tee -a "$OUT"

"$PY" - "$OUT" <<'PYEOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ours = {r["label"]: r for r in rows if r["impl"] == "posttrain"}
peer = {r["label"]: r for r in rows if r["impl"] == "transformers"}
print(f"\n{'case':<28}{'posttrain tok/s':>16}{'peer tok/s':>12}{'ratio':>8}")
for label, r in ours.items():
    if label.startswith("share:"):
        continue
    p = peer.get(label)
    ratio = r["tokens_per_s"] / p["tokens_per_s"] if p else float("nan")
    print(f"{label + ' 32x64 K=4 +64':<28}{r['tokens_per_s']:>16.1f}"
          f"{(p['tokens_per_s'] if p else float('nan')):>12.1f}{ratio:>8.2f}")
s, u = ours.get("share:shared"), ours.get("share:unshared")
if s and u:
    print(f"{'tiny 512-tok K=8 shared':<28}{s['tokens_per_s']:>16.1f}{'(unshared)':>12}"
          f"{s['tokens_per_s'] / u['tokens_per_s']:>8.2f}")
    print(f"{'tiny 512-tok K=8 unshared':<28}{u['tokens_per_s']:>16.1f}")
PYEOF
