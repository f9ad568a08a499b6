# Lab: per-kernel durations of one grouped projection, and Nsight Compute sections of the sm90 GEMM.
set -u
{ [ -d build-gpu ] || cmake -S . -B build-gpu -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DMXMOE_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES="80-real;90a-real" > $OUT/cfg.log 2>&1; } && cmake --build build-gpu -j16 > $OUT/build.log 2>&1 || { tail -30 $OUT/build.log; exit 1; }
b=build-gpu/mxmoe
for n in ${TOKENS:-1 8192}; do
  echo "=== kernels, gpt-oss-20b grouped n=$n"
  ncu --metrics gpu__time_duration.sum --launch-skip 12 --launch-count 8 $b bench --backend cuda --op grouped --shape gpt-oss-20b --tokens $n --iters 3 --budget-ms 50 2>&1 | grep -E "^  [a-zA-Z_].*\(|gpu__time_duration" | sed -E 's/\(int, int, int\)//' | paste - - | awk '{print $1, $(NF)}' | head -16
done
n=${DETAIL:-8192}
echo "=== sm90 kernel details, n=$n"
ncu -k regex:sm90 --launch-skip 1 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats $b bench --backend cuda --op grouped --shape gpt-oss-20b --tokens $n --iters 2 --budget-ms 50 > $OUT/ncu_detail.txt 2>&1
grep -E "Duration|Throughput|Stall|Warp Cycles|Issued|Eligible|Active Warps|Registers|Shared Memory Config|Achieved|No Eligible|One or More" $OUT/ncu_detail.txt | head -50
