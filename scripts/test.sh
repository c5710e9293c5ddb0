#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), builds, and runs the whole test suite with CTest.
# CUDA-labelled tests skip themselves when no device is present.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup.sh"
BUILD_DIR="${POSTTRAIN_BUILD_DIR:-$ROOT/build}"
ctest --test-dir "$BUILD_DIR" -j "$(nproc)" --output-on-failure "$@"
