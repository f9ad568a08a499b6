# Lab: per-kernel durations of one grouped projection, and stall reasons of the sm90 GEMM.
set -u
{ [ -d build-gpu ] || cmake -S . -B build-gpu -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DMXMOE_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES="80-real;90a-real" > $OUT/cfg.log 2>&1; } && cmake --build build-gpu -j16 > $OUT/build.log 2>&1 || { tail -30 $OUT/build.log; exit 1; }
b=build-gpu/mxmoe
shape=${SHAPE:-gpt-oss-20b}
for n in ${TOKENS:-1 8192}; do
  echo "=== kernels, $shape grouped n=$n (us)"
  ncu --metrics gpu__time_duration.sum --launch-skip 14 --launch-count 7 $b bench --backend cuda --op grouped --shape $shape --tokens $n --iters 3 --budget-ms 50 > $OUT/k$n.txt 2>&1
  grep -E "^  [a-zA-Z_<].*\(|gpu__time_duration" $OUT/k$n.txt | sed -E 's/^ +//; s/\(.*//; s/gpu__time_duration.sum +//' | paste - - | head -8
done
n=${DETAIL:-1}
echo "=== sm90 GEMM stall reasons (warps per issue), $shape n=$n"
ncu -k regex:sm90_kernel --launch-skip 1 --launch-count 1 --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio,smsp__inst_executed.sum,sm__cycles_elapsed.avg,smsp__issue_active.avg.pct_of_peak_sustained_active $b bench --backend cuda --op grouped --shape $shape --tokens $n --iters 2 --budget-ms 50 > $OUT/stall.txt 2>&1
grep -E "stalled|inst_executed|cycles_elapsed|issue_active" $OUT/stall.txt | awk '$NF+0 > 0.05 || /inst|cycles|issue/' | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//' | head -30
