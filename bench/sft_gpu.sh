#!/bin/bash
# SFT on a GPU: posttrain's trainer (bench_sft --device cuda, bf16 autocast, fused AdamW) beside
# the Python peer (transformers + PyTorch, eager and torch.compile) on the same card in the same
# run: llama-1b shapes, batch 4 x 2048, the first quarter of each row a masked prompt (as the
# peer). Prints each measurement's JSON line, then a table of tokens/s, MFU, peak memory and the
# ratio to each peer.
#   BIN=build bench/sft_gpu.sh PEER.py      (PEER.py: ../shared/bench/peer_pytorch.py)
# Environment: STEPS (10), PRESET (llama-1b), SMOL (1: also smol-135m, ours and eager peer),
# MODE (full | profile: ours, ours with activation checkpointing, the eager peer, and a Kineto
# profile of our step: the GPU kernels that take the most time).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${BIN:-$HERE/../build}
PEER=${1:?usage: bench/sft_gpu.sh PEER.py}
STEPS=${STEPS:-10}
PRESET=${PRESET:-llama-1b}
LOG=$(mktemp)
ours() {  # preset keep_logits_mb checkpointing
  timeout 300 "$BIN/bench_sft" --device cuda --preset "$1" --batch 4 --seq 2048 --iters "$STEPS" \
    --warmup 3 --prompt-frac 0.25 --keep-logits-mb "$2" --checkpointing "$3" | tee -a "$LOG"
}
peer() {  # preset [--compile]
  PYTHONUNBUFFERED=1 timeout 400 python3 "$PEER" --what sft --preset "$1" --steps "$STEPS" \
    "${@:2}" 2>&1 | grep '^{' | tee -a "$LOG"
}
if [[ "${MODE:-full}" == profile ]]; then
  ours "$PRESET" 4096 0
  ours "$PRESET" 4096 1
  peer "$PRESET"
  timeout 300 "$BIN/bench_sft" --device cuda --preset "$PRESET" --batch 4 --seq 2048 --iters 2 \
    --warmup 2 --prompt-frac 0.25 --profile 2 | grep -E '"(kernel|profile_steps)"'
else
  ours "$PRESET" 4096 0
  peer "$PRESET"
  peer "$PRESET" --compile
  ours "$PRESET" 0 0        # logits recomputed in backward: less memory
  ours "$PRESET" 4096 1     # activation checkpointing: least memory
  POSTTRAIN_NO_CUDA_KERNELS=1 ours "$PRESET" 4096 0   # A/B: ATen ops in place of our kernels
  if [[ "${SMOL:-1}" == 1 ]]; then
    ours smol-135m 4096 0
    peer smol-135m
  fi
  timeout 300 "$BIN/bench_sft" --device cuda --preset "$PRESET" --batch 4 --seq 2048 --iters 2 \
    --warmup 2 --prompt-frac 0.25 --profile 2 | grep -E '"(kernel|profile_steps)"'
fi
python3 - "$LOG" <<'PYEOF'
import json, sys
rows = [r for r in (json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")) if "preset" in r]
peers = {(r["preset"], r["peer"]): r for r in rows if "peer" in r}
print(f"\n{'run':<44}{'tok/s':>9}{'MFU':>7}{'peak GiB':>10}{'x eager':>9}{'x compile':>11}")
for r in rows:
    if "peer" in r:
        name, mfu = f"{r['peer']} {r['preset']}", r["mfu"]
    else:
        name = (f"posttrain {r['preset']} keep={r['keep_logits_mb']} ckpt={r['checkpointing']}"
                + ("" if r.get("cuda_kernels") else " aten"))
        mfu = r["mfu_peer_formula"]  # the peer's FLOP count, for a like-for-like MFU
    e = peers.get((r["preset"], "pytorch-eager+hf")); c = peers.get((r["preset"], "pytorch-compile+hf"))
    ratio = lambda p: f"{r['tokens_per_s'] / p['tokens_per_s']:.2f}" if p else "-"
    print(f"{name:<44}{r['tokens_per_s']:>9.0f}{100 * mfu:>6.1f}%{r['peak_mem_gib']:>10.1f}"
          f"{ratio(e):>9}{ratio(c):>11}")
for r in rows:
    if "peer" not in r:
        print(f"posttrain {r['preset']} keep={r['keep_logits_mb']} ckpt={r['checkpointing']}"
              f"{'' if r.get('cuda_kernels') else ' aten'}: step {r['median_s']*1e3:.0f} ms = "
              f"fwd {r['micro_fwd_s']*1e3:.0f} + bwd {(r['micro_fwd_bwd_s']-r['micro_fwd_s'])*1e3:.0f}"
              f" + clip/AdamW/collate {(r['median_s']-r['micro_fwd_bwd_s'])*1e3:.0f} ms; "
              f"MFU (our count, causal half) {100*r['mfu']:.1f}%")
PYEOF
rm -f "$LOG"
