TEST_TIMEOUT_S=200 OUT=$OUT/suite BUILD_DIR=build-gpu bash tests/gpu/run.sh 2>&1 | tail -8
grep -E "FAIL|largest" $OUT/suite/test_cuda.log | head -20
for r in 1 2; do for shape in qwen3-30b-a3b gpt-oss-20b deepseek-v3; do for mode in fused composed; do
  if [ $mode = composed ]; then export MXMOE_CUDA_PROJECTION=composed; else unset MXMOE_CUDA_PROJECTION; fi
  build-gpu/mxmoe bench --backend cuda --op grouped --shape $shape --tokens 1,8 2>&1 | grep "^grouped" | sed "s/^/$mode /" | cut -c1-150
done; done; done
unset MXMOE_CUDA_PROJECTION
MXMOE_COMMIT=$(cat .mxmoe_commit) BENCH_MAX_S=300 BENCH_OPS="grouped" bash bench/run_gpu.sh build-gpu /tmp/bl > /tmp/bl.log 2>&1; cp /tmp/bl/bench-*.json /tmp/bl/bench_table.txt $OUT/ 2>/dev/null; tail -28 /tmp/bl/bench_table.txt | cut -c1-200 || tail -30 /tmp/bl.log
