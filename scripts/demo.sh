#!/usr/bin/env bash
# The main job until the round-by-round recipe lands: sets everything up, then runs the most
# complete end-to-end path that exists, on CPU, in a few minutes:
#   a tiny Llama from scratch -> SFT with packing and eval -> averaging of checkpoints (lineage
#   in the store) -> per-token log-probs -> synthetic math/code data checked by execution ->
#   preference annotations imported, summarised and exported.
# Everything lands in runs/demo/ (or $POSTTRAIN_RUN_DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
P="$ROOT/build/posttrain"
RUN="${POSTTRAIN_RUN_DIR:-$ROOT/runs/demo}"
rm -rf "$RUN" && mkdir -p "$RUN"
cd "$ROOT"
step() { printf '\n== %s\n' "$*"; }

step "1. a tiny Llama (byte-level tokenizer) from scratch"
"$P" init --preset tiny --seed 0 --output "$RUN/base"

step "2. SFT on arithmetic dialogues (packed, loss on assistant turns), checkpoints every 20 steps"
"$P" sft --config sft/examples/tiny_sft.json \
  --set model.path="$RUN/base" --set output.dir="$RUN/sft" | tail -n 3
ckpts=("$RUN"/sft/checkpoint-*)

step "3. average the last two checkpoints, lineage recorded in the store"
"$P" store init --store "$RUN/store.db"
"$P" average --output "$RUN/averaged" --store "$RUN/store.db" "${ckpts[-2]}" "${ckpts[-1]}"

step "4. per-token log-probs of a dialogue under the averaged model"
printf '%s\n' '{"messages":[{"role":"user","content":"What is 2+3?"},{"role":"assistant","content":"5"}]}' \
  '{"text":"7+8=15"}' >"$RUN/score_in.jsonl"
"$P" logprobs --model "$RUN/averaged" --input "$RUN/score_in.jsonl" --output "$RUN/score_out.jsonl"
python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r=json.loads(l); lp=r["token_logprobs"]; n=len(r["input_ids"])
    print(n, "tokens, mean log-prob", round(sum(lp)/len(lp), 3))' "$RUN/score_out.jsonl"

step "5. synthetic data checked by execution (math exact answers; code in the sandbox)"
"$P" synth math --count 5 --seed 1 --output "$RUN/math_problems.jsonl"
"$P" verify --kind math --input tests/fixtures/synthetic/verify_math.jsonl --output "$RUN/math_verdicts.jsonl"
"$P" verify --kind code --input tests/fixtures/synthetic/verify_code.jsonl --output "$RUN/code_verdicts.jsonl"
python3 -c 'import json,sys
for f in sys.argv[1:]:
    rows=[json.loads(l) for l in open(f)]
    print(f.split("/")[-1], "passed", sum(r["passed"] for r in rows), "of", len(rows))' \
  "$RUN/math_verdicts.jsonl" "$RUN/code_verdicts.jsonl"

step "6. annotators' preference pairs: import, stats, export for TRL"
"$P" store import --store "$RUN/store.db" --format annotations --round 1 \
  tests/fixtures/datastore/annotations.jsonl
"$P" store stats --store "$RUN/store.db"
"$P" store export --store "$RUN/store.db" --format trl --output "$RUN/pairs_trl.jsonl"
echo "exported $(wc -l <"$RUN/pairs_trl.jsonl") pairs to $RUN/pairs_trl.jsonl"
echo; echo "demo done: $RUN"
