#!/usr/bin/env bash
# The one prepared call for the lent GPU machine (see ../shared/GPU.md): build with CUDA,
# run the cuda-labelled tests, run our GPU benchmarks and the peer in the same call, print a
# short table last. Full logs go under $OUT.
#
# On this machine first:  scripts/gpu_prepare.sh   (downloads the .deb files into .deps/ and
# copies the peer into .gpu/); then call the device tool with carry [".deps", ".gpu"] and
# command "bash scripts/gpu_check.sh".
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/gpu_out}"
mkdir -p "$OUT"
cd "$ROOT"

mkdir -p /opt/deps && for f in .deps/*.deb; do dpkg -x "$f" /opt/deps; done
export LD_LIBRARY_PATH=/opt/deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export PKG_CONFIG_PATH=/opt/deps/usr/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}
PREFIX="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)');/opt/deps/usr"

step() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt"; }

step configure
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOSTTRAIN_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_PREFIX_PATH="$PREFIX" >"$OUT/configure.log" 2>&1 \
  || { tail -30 "$OUT/configure.log"; exit 1; }
step build
ninja -C build-gpu -j16 posttrain $(ninja -C build-gpu -t targets all 2>/dev/null \
  | grep -oE '^(test_[a-z_]+|bench_[a-z_]+):' | tr -d ':' | sort -u) >"$OUT/build.log" 2>&1 \
  || { tail -40 "$OUT/build.log"; exit 1; }
step "cuda tests"
ctest --test-dir build-gpu -L cuda --output-on-failure >"$OUT/ctest_cuda.log" 2>&1
tail -5 "$OUT/ctest_cuda.log" | tee -a "$OUT/summary.txt"

step benchmarks
for b in bench/*_gpu.sh; do
  [[ -f "$b" ]] || continue
  bash "$b" build-gpu .gpu/peer_pytorch.py >"$OUT/$(basename "$b" .sh).log" 2>&1
  tail -15 "$OUT/$(basename "$b" .sh).log" | tee -a "$OUT/summary.txt"
done
step done
cat "$OUT/summary.txt"
