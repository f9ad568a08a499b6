#!/usr/bin/env bash
# The GPU test driver: on a machine with an NVIDIA GPU, configure and build, run every GPU test
# (each op against the CPU reference over a sweep of shapes and edge cases, the CUDA graph test,
# device-side error reporting), run compute-sanitizer memcheck and racecheck at small sizes,
# then the benchmarks when asked (BENCH=1), and print a one-screen summary last.
#
#   bash tests/gpu/run.sh            # tests + sanitizers
#   BENCH=1 bash tests/gpu/run.sh    # ... then the benchmarks
# Logs go to ${OUT:-build-gpu}/ .
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${BUILD_DIR:-build-gpu}
logs=${OUT:-$build}
mkdir -p "$logs"
summary=()
record() { summary+=("$(printf '%-34s %s' "$1" "$2")"); }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$logs/gpu.txt"
if ! cmake -S . -B "$build" -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DMXMOE_TESTS=ON \
        -DCMAKE_CUDA_ARCHITECTURES="80-real;90a-real" >"$logs/configure.log" 2>&1 ||
   ! cmake --build "$build" -j "$(nproc)" >"$logs/build.log" 2>&1; then
    tail -n 30 "$logs/configure.log" "$logs/build.log"
    echo "BUILD FAILED"
    exit 1
fi
grep -E "spill stores|stack frame: [1-9]" "$logs/build.log" | grep -vE " 0 bytes spill stores, 0 bytes spill loads" |
    grep -q . && record "ptxas spills/local memory" "FOUND (see build.log)" ||
    record "ptxas spills/local memory" "none"
record "compiler warnings (device gcc)" "$(grep -c "warning" "$logs/build.log")"

# A hang (a kernel that never finishes) must not eat the whole session: time limits, and
# line-buffered output so that the log shows where it stopped.
timeout "${TEST_TIMEOUT_S:-300}" stdbuf -oL "$build/tests/test_cuda" 2>&1 | tee "$logs/test_cuda.log"
record "test_cuda (full sweep)" "$(tail -1 "$logs/test_cuda.log")"

# the device's fast activation against its bound, every gate of its range (~1 s)
timeout "${TEST_TIMEOUT_S:-300}" "$build/tests/test_activation_gpu" >"$logs/activation_gpu.log" 2>&1
record "test_activation_gpu" "rc=$?, $(tail -1 "$logs/activation_gpu.log")"
# the FP16 E2M1 encoder against the reference's, every BF16 value at every scale (~1 s)
timeout "${TEST_TIMEOUT_S:-300}" "$build/tests/test_e2m1_gpu" >"$logs/e2m1_gpu.log" 2>&1
record "test_e2m1_gpu" "rc=$?, $(tail -1 "$logs/e2m1_gpu.log")"

# the Hopper bound's tightest cases over more draws than one sweep (no-op without sm_90)
timeout "${TEST_TIMEOUT_S:-300}" "$build/tests/test_cuda" --bound-stress 20 >"$logs/bound_stress.log" 2>&1
rc=$?
record "test_cuda --bound-stress 20" "rc=$rc, $(grep -E 'largest' "$logs/bound_stress.log" | sed 's/Hopper path: //') $(tail -1 "$logs/bound_stress.log")"

for tool in memcheck racecheck; do
    timeout "${TEST_TIMEOUT_S:-300}" compute-sanitizer --tool "$tool" --error-exitcode 3 "$build/tests/test_cuda" --small \
        >"$logs/sanitizer_$tool.log" 2>&1
    rc=$?
    record "compute-sanitizer $tool" "rc=$rc, $(grep -E 'ERROR SUMMARY|passed' "$logs/sanitizer_$tool.log" | tail -2 | tr '\n' ' ')"
done

MXMOE_BACKEND=cuda "$build/mxmoe" demo --tokens 64 >"$logs/demo.log" 2>&1
record "mxmoe demo (cuda)" "rc=$?, $(grep -iE 'tokens/s|PASS|FAIL' "$logs/demo.log" | tail -2 | tr '\n' ' ')"

if [ "${BENCH:-0}" = 1 ]; then
    bash bench/run_gpu.sh "$build" "$logs" && record "benchmarks" "done (see $logs)" ||
        record "benchmarks" "FAILED"
fi

echo
echo "================ GPU summary ================"
printf '%s\n' "${summary[@]}"
