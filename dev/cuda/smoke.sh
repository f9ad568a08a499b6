# Lab driver for one device call: build, the full GPU test, then the grouped benchmark.
set -u
export MXMOE_COMMIT=$(cat .mxmoe_commit 2>/dev/null || echo unknown)
nvidia-smi --query-gpu=name --format=csv,noheader
cmake -S . -B build-gpu -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DMXMOE_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES="80-real;90a-real" > $OUT/cfg.log 2>&1 && cmake --build build-gpu -j16 > $OUT/build.log 2>&1 || { tail -30 $OUT/cfg.log $OUT/build.log; exit 1; }
echo "build ok"
if [ "${TESTS:-1}" = 1 ]; then
  timeout 200 build-gpu/tests/test_cuda > $OUT/test_cuda.log 2>&1; echo "test rc=$?"; grep -E "FAIL|sm90|Hopper|passed" $OUT/test_cuda.log | head -40
fi
BENCH_OPS=${BENCH_OPS:-grouped} BENCH_SHAPES=${BENCH_SHAPES:-"gpt-oss-20b qwen3-30b-a3b deepseek-v3"} BENCH_BUDGET_MS=${BENCH_BUDGET_MS:-300} BENCH_MAX_S=${BENCH_MAX_S:-200} timeout 300 bash bench/run_gpu.sh build-gpu $OUT > $OUT/bench.log 2>&1; tail -45 $OUT/bench.log
