# Lab: is the sm_90a GEMM bound by L2 -> SM traffic? Builds the copies-only knock-out next to the
# default build (build-gpu must exist), then Nsight Compute's L2 and DRAM counters for the GEMM
# kernel of both, at n = TOKENS on each shape in SHAPES.
#   SHAPES="gpt-oss-20b deepseek-v3" TOKENS=8192 bash dev/cuda/l2_probe.sh
set -u
LABS="copies:-DMXMOE_SM90_LAB=15" TOKENS=${TOKENS:-8192} SHAPES="${SHAPES:-gpt-oss-20b}" \
  bash dev/cuda/sm90_knockouts.sh
metrics=gpu__time_duration.sum,lts__t_bytes.sum,lts__t_bytes.sum.per_second,lts__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,l1tex__m_xbar2l1tex_read_bytes.sum.per_second,sm__inst_executed.sum
for dir in build-gpu build-lab-copies; do
  for shape in ${SHAPES:-gpt-oss-20b}; do
    echo "=== $dir $shape n=${TOKENS:-8192}"
    MXMOE_CUDA_GEMM=sm90 ncu -k regex:sm90_kernel --launch-skip 2 --launch-count 1 --metrics $metrics \
      $dir/mxmoe bench --backend cuda --op grouped --shape $shape --tokens ${TOKENS:-8192} --iters 4 --budget-ms 50 \
      > $OUT/l2-$dir-$shape.txt 2>&1
    grep -E "duration|lts__|dram__|xbar|inst_executed" $OUT/l2-$dir-$shape.txt | sed -E 's/ +/ /g'
  done
done
