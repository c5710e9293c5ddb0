#!/usr/bin/env bash
# Installs the peers' pinned Python packages (bench/requirements-peers.txt: transformers,
# tokenizers, safetensors, datasets) into the LibTorch venv scripts/setup.sh made, so the
# benchmarks' peers (bench/model_bench.sh, bench/sft_bench.sh) and the fixture scripts run on a
# fresh machine. Idempotent: pip leaves satisfied pins alone. Needs PyPI.
#   scripts/setup_peers.sh       (after scripts/setup.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_PIN="${POSTTRAIN_TORCH_PIN:-2.11.0}"
VENV="${POSTTRAIN_CACHE:-$HOME/.cache/posttrain}/venv-torch-$TORCH_PIN"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup_peers] no venv at $VENV: run scripts/setup.sh first" >&2
  exit 1
fi
# The torch pin rides along so pip never swaps the venv's LibTorch for another version.
"$VENV/bin/pip" install -q -r "$ROOT/bench/requirements-peers.txt" "torch==$TORCH_PIN"
"$VENV/bin/python" -c "import transformers, datasets; print('[setup_peers] transformers',
transformers.__version__, 'datasets', datasets.__version__)" >&2
