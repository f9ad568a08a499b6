nvidia-smi --query-gpu=name --format=csv,noheader
TEST_TIMEOUT_S=200 OUT=$OUT/suite BUILD_DIR=build-gpu bash tests/gpu/run.sh > $OUT/suite.txt 2>&1
grep -E "largest|spill|test_cuda|memcheck|racecheck|demo|FAIL" $OUT/suite.txt | head -20
MXMOE_COMMIT=$(cat .mxmoe_commit) BENCH_MAX_S=300 BENCH_BUDGET_MS=300 bash bench/run_gpu.sh build-gpu /tmp/bl > $OUT/bench.log 2>&1
cp /tmp/bl/bench-*.json /tmp/bl/bench_table.txt $OUT/
tail -5 $OUT/bench.log
cat $OUT/bench_table.txt | head -80
