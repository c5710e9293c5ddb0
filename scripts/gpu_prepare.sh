#!/usr/bin/env bash
# Run on the CPU machine before a GPU call: fetches the Debian packages the GPU machine lacks
# into .deps/ and copies the peer benchmark into .gpu/ (both ignored, carried by the device tool).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/.deps" "$ROOT/.gpu"
cd "$ROOT/.deps"
apt-get download libgloo-dev libsqlite3-dev libsqlite3-0 libboost-program-options1.74-dev \
  libboost-program-options1.74.0 libboost-program-options-dev libboost1.74-dev nlohmann-json3-dev \
  libgtest-dev libpcre2-dev libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 >/dev/null
cp "$ROOT/../shared/bench/peer_pytorch.py" "$ROOT/.gpu/"
echo "ready: carry [\".deps\", \".gpu\"], command \"bash scripts/gpu_check.sh\""
