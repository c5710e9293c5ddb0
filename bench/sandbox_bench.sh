#!/usr/bin/env bash
# Sandboxed executions per second through the CLI: `posttrain verify --kind code` on N tiny
# programs (one sandbox execution each: bwrap + namespaces + python3 startup + 3 asserts), at
# each worker count. Prints one JSON line per measurement, then a table.
#
#   bench/sandbox_bench.sh [POSTTRAIN_BIN] [N] [WORKERS...]
#   bench/sandbox_bench.sh build/posttrain 100 1 2
set -euo pipefail
BIN=${1:-build/posttrain}
N=${2:-100}
shift $(( $# >= 2 ? 2 : $# ))
WORKERS=("$@")
[ ${#WORKERS[@]} -eq 0 ] && WORKERS=(1 2)
[ -x "$BIN" ] || { echo "sandbox_bench: no executable at $BIN" >&2; exit 2; }

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for i in $(seq 1 "$N"); do
  printf '{"id": "b%d", "prompt": "add", "response": "```python\\ndef add(a, b):\\n    return a + b\\n```", "tests": "assert add(%d, 1) == %d\\nassert add(0, 0) == 0\\nassert add(-1, 1) == 0"}\n' \
    "$i" "$i" "$((i + 1))"
done > "$TMP/in.jsonl"

declare -a ROWS
for w in "${WORKERS[@]}"; do
  start=$(date +%s.%N)
  "$BIN" verify --kind code --workers "$w" --timeout 5 --input "$TMP/in.jsonl" \
    --output "$TMP/out.jsonl" 2>"$TMP/err.txt"
  end=$(date +%s.%N)
  passed=$(grep -c '"verdict":"pass"' "$TMP/out.jsonl" || true)
  secs=$(echo "$end - $start" | bc -l)
  rate=$(echo "$N / $secs" | bc -l)
  printf '{"bench": "sandbox_exec", "workers": %d, "executions": %d, "passed": %d, "seconds": %.3f, "exec_per_s": %.2f, "cpus": %d}\n' \
    "$w" "$N" "$passed" "$secs" "$rate" "$(nproc)"
  ROWS+=("$(printf '%7d  %10d  %8d  %9.2f  %10.2f' "$w" "$N" "$passed" "$secs" "$rate")")
done
echo
echo "workers  executions    passed    seconds  exec/s"
printf '%s\n' "${ROWS[@]}"
