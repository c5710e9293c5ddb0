#!/usr/bin/env bash
# Run on this (CPU) machine before the one GPU call (see ../shared/GPU.md and gpu_check.sh):
# - .deps/: Debian packages the GPU machine lacks (runtime libraries of our binaries, and the
#   headers a fallback build there would need), unpacked there under /opt/deps;
# - .gpu/bin/: our binaries built here (build/ links LibTorch's CUDA libraries from the same
#   torch 2.11.0+cu130 wheel the GPU machine has, so they run there as they are and the call
#   spends no device time compiling);
# - .gpu/peer_pytorch.py: the Python peer, which does not travel with the tree.
# Both folders are ignored by git; call the device tool with carry [".deps", ".gpu"] and command
# "bash scripts/gpu_check.sh".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$(cd "${1:-$ROOT/build}" && pwd)"
cmake --build "$BUILD" --target posttrain bench_sft bench_model test_core test_kernels -j2 >/dev/null
rm -rf "$ROOT/.gpu" && mkdir -p "$ROOT/.deps" "$ROOT/.gpu/bin"
cd "$ROOT/.deps"
apt-get download libsqlite3-dev libsqlite3-0 libboost-program-options1.74-dev \
  libboost-program-options1.74.0 libboost-program-options-dev libboost1.74-dev nlohmann-json3-dev \
  libgtest-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 \
  libicu72 libicu-dev >/dev/null
cp "$BUILD"/{posttrain,bench_sft,bench_model,test_core,test_kernels} "$ROOT/.gpu/bin/"
cp "$ROOT/../shared/bench/peer_pytorch.py" "$ROOT/.gpu/"
du -sh "$ROOT/.deps" "$ROOT/.gpu"
echo "ready: carry [\".deps\", \".gpu\"], command \"bash scripts/gpu_check.sh\""
