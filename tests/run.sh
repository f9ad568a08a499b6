#!/usr/bin/env bash
# Builds mxmoe and runs every test: the C test programs and the Python oracle suite (ml_dtypes,
# numpy FP64). The Python test dependencies are installed into a venv inside the build folder,
# so this works on a fresh machine with only a C compiler, CMake and python3.
#
#   bash tests/run.sh            # build in ./build
#   BUILD_DIR=out bash tests/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)

if [ ! -x "$build/venv/bin/python" ]; then
    echo "== creating $build/venv for the Python test dependencies"
    mkdir -p "$build"
    python3 -m venv "$build/venv"
fi
"$build/venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/python/requirements.txt

echo "== configuring and building ($build)"
cmake -S . -B "$build" -DMXMOE_PYTHON="$PWD/$build/venv/bin/python" >/dev/null
cmake --build "$build" -j "$jobs"

echo "== running the tests"
ctest --test-dir "$build" --output-on-failure -j "$jobs"
