#!/usr/bin/env bash
# Store import/export throughput against the Python peer, in the same run on the same file.
#
#   bench/store_import_bench.sh [PEER_SCRIPT] [N] [REPEATS]
#     PEER_SCRIPT  default ../shared/bench/peer_store_import.py (relative to the repository)
#     N            pairs to generate (default 100000, ~1 KB each)
#     REPEATS      runs of each importer, alternating peer/ours (default 3)
#   POSTTRAIN_BIN picks the binary (default build/posttrain).
#
# The input is made by the peer itself (--make FILE --n N). The peer times its parse/hash/
# dedup/insert loop and commit; ours is timed as the wall time of the whole
# `posttrain store import` process (start, open, schema creation, parse, hash, insert, commit),
# which can only understate our rate. Export is timed the same way. Prints one JSON line per
# measurement, then a table of the median rates and the ratio.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${1:-$ROOT/../shared/bench/peer_store_import.py}
N=${2:-100000}
REPEATS=${3:-3}
BIN=${POSTTRAIN_BIN:-$ROOT/build/posttrain}
[[ -f $PEER ]] || { echo "peer script not found: $PEER" >&2; exit 2; }
[[ -x $BIN ]] || { echo "posttrain binary not found: $BIN (set POSTTRAIN_BIN)" >&2; exit 2; }
WORK=$(mktemp -d /tmp/store_bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
IN=$WORK/pairs.jsonl
python3 "$PEER" --make "$IN" --n "$N"
BYTES=$(stat -c %s "$IN")

now() { date +%s.%N; }
rate() { awk -v n="$1" -v a="$2" -v b="$3" 'BEGIN { printf "%.6f %.1f", b - a, n / (b - a) }'; }

peer_rates=(); our_rates=(); export_rates=()
for ((i = 1; i <= REPEATS; i++)); do
  line=$(python3 "$PEER" --db "$WORK/peer.db" "$IN")
  echo "$line"
  peer_rates+=("$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["pairs_per_s"])' "$line")")

  rm -f "$WORK"/ours.db*
  t0=$(now)
  "$BIN" store import --store "$WORK/ours.db" --format trl --source bench "$IN" >"$WORK/import.log"
  t1=$(now)
  read -r secs r <<<"$(rate "$N" "$t0" "$t1")"
  pairs=$(sqlite3 "$WORK/ours.db" 'SELECT count(*) FROM preference_pairs')
  [[ $pairs == "$N" ]] || { echo "ours stored $pairs pairs, expected $N" >&2; exit 1; }
  echo "{\"impl\": \"posttrain\", \"what\": \"store-import\", \"lines\": $N, \"pairs\": $pairs, \"bytes\": $BYTES, \"seconds\": $secs, \"pairs_per_s\": $r}"
  our_rates+=("$r")

  t0=$(now)
  "$BIN" store export --store "$WORK/ours.db" --format trl --output "$WORK/out.jsonl" >/dev/null
  t1=$(now)
  read -r secs r <<<"$(rate "$N" "$t0" "$t1")"
  rows=$(wc -l <"$WORK/out.jsonl")
  [[ $rows == "$N" ]] || { echo "export wrote $rows rows, expected $N" >&2; exit 1; }
  echo "{\"impl\": \"posttrain\", \"what\": \"store-export\", \"pairs\": $rows, \"seconds\": $secs, \"pairs_per_s\": $r}"
  export_rates+=("$r")
done

# The exported rows are the imported rows (compared as JSON values).
python3 - "$IN" "$WORK/out.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
b = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
assert a == b, "export differs from the imported file"
PY

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
P=$(median "${peer_rates[@]}"); O=$(median "${our_rates[@]}"); E=$(median "${export_rates[@]}")
echo
echo "store import/export, $N TRL pairs ($BYTES bytes), median of $REPEATS runs"
awk -v p="$P" -v o="$O" -v e="$E" 'BEGIN {
  printf "  %-34s %12s\n", "measurement", "pairs/s"
  printf "  %-34s %12.0f\n", "import: python peer (loop only)", p
  printf "  %-34s %12.0f\n", "import: posttrain (whole process)", o
  printf "  %-34s %12.2fx\n", "import ratio posttrain / peer", o / p
  printf "  %-34s %12.0f\n", "export: posttrain (whole process)", e
}'
