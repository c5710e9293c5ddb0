#!/usr/bin/env bash
# The one prepared call for the lent GPU machine (see ../shared/GPU.md): CUDA tests, then SFT on
# llama-1b shapes (batch 4 x 2048) beside the Python peer eager and torch.compile'd in the same
# call, a short table last. Full logs go under $OUT.
#
# Here first:  scripts/gpu_prepare.sh  (binaries into .gpu/bin, .deb files into .deps/, the peer
# into .gpu/); then the device tool with carry [".deps", ".gpu"], command
# "bash scripts/gpu_check.sh" (MODE=profile in front: a shorter run with a kernel profile, see
# bench/sft_gpu.sh). The carried binaries are used when they run there; otherwise it
# builds (configure + ninja, several minutes of device time).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/gpu_out}"
mkdir -p "$OUT"
cd "$ROOT"
step() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }

mkdir -p /opt/deps && for f in .deps/*.deb; do dpkg -x "$f" /opt/deps; done
SITE="$(python3 -c 'import torch,os;print(os.path.dirname(os.path.dirname(torch.__file__)))')"
NV_LIBS="$(ls -d "$SITE"/nvidia/*/lib "$SITE"/nvidia/cu13/lib 2>/dev/null | sort -u | tr '\n' ':')"
export LD_LIBRARY_PATH="$SITE/torch/lib:${NV_LIBS}/opt/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
# Tests find fixtures at the path compiled in here; point it at this tree.
FIX_HERE="/work/main/tests/fixtures"
if [[ "$ROOT" != /work/main && ! -e "$FIX_HERE" ]]; then
  mkdir -p /work/main/tests && ln -s "$ROOT/tests/fixtures" "$FIX_HERE"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader \
  | tee -a "$OUT/summary.txt"

BIN=.gpu/bin
step "smoke: carried binaries"
if ! "$BIN/posttrain" --help >"$OUT/smoke.log" 2>&1 || ! "$BIN/test_core" \
    --gtest_filter=FusedAdamW.FirstStep* >>"$OUT/smoke.log" 2>&1; then
  tail -5 "$OUT/smoke.log" | tee -a "$OUT/summary.txt"
  step "fallback: build here"
  PREFIX="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)');/opt/deps/usr"
  export PKG_CONFIG_PATH=/opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}
  cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOSTTRAIN_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH="$PREFIX" >"$OUT/configure.log" 2>&1 \
    || { tail -30 "$OUT/configure.log"; exit 1; }
  ninja -C build-gpu -j16 posttrain bench_sft test_core test_kernels >"$OUT/build.log" 2>&1 \
    || { tail -40 "$OUT/build.log"; exit 1; }
  BIN=build-gpu
fi
"$BIN/bench_sft" --preset tiny --batch 2 --seq 64 --iters 1 --device cuda 2>&1 \
  | tail -3 | tee -a "$OUT/summary.txt"

step "cuda tests"
# Every suite named Cuda* (the CUDA-only checks in each test binary), and the trainer pieces that
# also run on the GPU.
"$BIN/test_core" --gtest_filter='Cuda*:FusedAdamW.*:TargetLogprobs.*' >"$OUT/cuda_tests.log" 2>&1
"$BIN/test_kernels" --gtest_filter='Cuda*' >>"$OUT/cuda_tests.log" 2>&1
grep -E '^\[  (PASSED|FAILED|SKIPPED) |FAILED|Failure' "$OUT/cuda_tests.log" \
  | tail -24 | tee -a "$OUT/summary.txt"

step "sft benchmark"
BIN="$BIN" bash bench/sft_gpu.sh .gpu/peer_pytorch.py >"$OUT/sft_gpu.log" 2>&1
grep -v '"kernel"' "$OUT/sft_gpu.log" | tail -14 | tee -a "$OUT/summary.txt"
step done
cat "$OUT/summary.txt"
