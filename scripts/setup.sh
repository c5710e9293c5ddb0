#!/usr/bin/env bash
# Idempotent setup for a fresh machine of this kind (Debian, root, PyPI reachable):
# Debian packages, the pinned LibTorch (from PyPI's torch wheel) in a venv outside the
# clone, a small venv with selenium for the browser test, then a configured and built tree
# in ./build.
#
#   scripts/setup.sh            install + build (torch on)
#   POSTTRAIN_WITH_TORCH=OFF scripts/setup.sh   torch-free build (store, synth, verify, annotate)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TORCH_PIN="${POSTTRAIN_TORCH_PIN:-2.11.0}"
WITH_TORCH="${POSTTRAIN_WITH_TORCH:-ON}"
CACHE="${POSTTRAIN_CACHE:-$HOME/.cache/posttrain}"
VENV="$CACHE/venv-torch-$TORCH_PIN"
BUILD_DIR="${POSTTRAIN_BUILD_DIR:-$ROOT/build}"

log() { printf '[setup] %s\n' "$*" >&2; }

install_debian_packages() {
  local pkgs=(cmake ninja-build ccache g++ pkg-config nlohmann-json3-dev
              libboost-program-options-dev libsqlite3-dev libgtest-dev libgmock-dev
              libpcre2-dev libicu-dev libssl-dev libgloo-dev bubblewrap util-linux python3-venv
              libcpp-httplib-dev libyaml-cpp-dev chromium chromium-driver fonts-dejavu-core)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_torch_venv() {
  if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.startswith('$TORCH_PIN') else 1)" 2>/dev/null; then
    return
  fi
  log "creating $VENV with torch==$TORCH_PIN (the wheel brings its CUDA libraries; gigabytes)"
  mkdir -p "$CACHE"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q "torch==$TORCH_PIN" numpy
}

# Python selenium for the annotation page's browser test (tests/annotate/browser_test.py drives
# Debian's chromium through its chromedriver); CMake looks for this venv by default.
install_browser_venv() {
  local venv="$CACHE/venv-browser"
  if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c "import selenium" 2>/dev/null; then
    return
  fi
  log "creating $venv with selenium (the annotation page's browser test)"
  mkdir -p "$CACHE"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "selenium>=4.10"
}

configure_and_build() {
  export CCACHE_BASEDIR="$ROOT" CCACHE_DIR="${CCACHE_DIR:-$CACHE/ccache}" CCACHE_COMPILERCHECK=content
  export CCACHE_SLOPPINESS="pch_defines,time_macros,include_file_mtime,include_file_ctime"
  local args=(-S "$ROOT" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
              -DPOSTTRAIN_WITH_TORCH="$WITH_TORCH")
  if [[ "$WITH_TORCH" == ON ]]; then
    args+=(-DCMAKE_PREFIX_PATH="$("$VENV/bin/python" -c 'import torch;print(torch.utils.cmake_prefix_path)')"
           -DPython3_EXECUTABLE="$VENV/bin/python")
  fi
  cmake "${args[@]}" >/dev/null
  cmake --build "$BUILD_DIR" -j "$(nproc)"
}

install_debian_packages
install_browser_venv
[[ "$WITH_TORCH" == ON ]] && install_torch_venv
[[ "${POSTTRAIN_SETUP_NO_BUILD:-0}" == 1 ]] || configure_and_build
