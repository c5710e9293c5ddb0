#!/usr/bin/env bash
# The main job: sets everything up, then runs recipes/tiny_math.json, the Llama 3 post-training
# loop round after round on a `tiny` model from scratch (CPU, no downloads): round 0 is SFT on
# verified synthetic sums; each later round samples K answers per fresh problem, scores them
# with the verifier and a reward model, trains the reward model, SFT on the best answers, DPO
# on best-versus-worst pairs, averages the SFT and DPO models and evaluates on held-out
# problems. Ends with the per-round table and the HTML report.
# Everything lands in runs/tiny_math/ (or $POSTTRAIN_RUN_DIR); running it again resumes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
P="$ROOT/build/posttrain"
RUN="${POSTTRAIN_RUN_DIR:-$ROOT/runs/tiny_math}"
mkdir -p "$RUN"
cd "$ROOT"
"$P" recipe run recipes/tiny_math.json --output "$RUN" "$@"
"$P" report --store "$RUN/store.db" --output "$RUN/report.html"
echo
echo "per round (held-out problems, greedy answers checked by the verifier):"
python3 - "$RUN/rounds.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
keys = [k for k in rows[-1] if k not in ("round", "policy")]
print("round " + " ".join(f"{k:>18}" for k in keys))
for r in rows:
    print(f"{r['round']:>5} " + " ".join(
        f"{r[k]:>18.3f}" if isinstance(r.get(k), (int, float)) else f"{str(r.get(k, '')):>18}"
        for k in keys))
PY
echo "report: $RUN/report.html"
