# Lab: Nsight Compute view of one op (build-gpu must exist, e.g. from dev/cuda/smoke.sh):
#   1. per-kernel durations of one call, for each token count in TOKENS;
#   2. for the kernel matching KERNEL at n = DETAIL: DRAM throughput, issue activity,
#      instructions and the stall reasons above 0.1 warps per issue.
#   OP=grouped|layer SHAPE=gpt-oss-20b TOKENS="1 8192" KERNEL=sm90_kernel DETAIL=1 bash dev/cuda/profile.sh
# Nsight flushes the caches between kernels: durations are cold-cache, above the benchmark's.
set -u
op=${OP:-grouped}
shape=${SHAPE:-gpt-oss-20b}
for n in ${TOKENS:-1 8192}; do
  echo "=== kernels, $op $shape n=$n (us)"
  ncu --metrics gpu__time_duration.sum --launch-skip ${SKIP:-10} --launch-count ${COUNT:-8} \
    build-gpu/mxmoe bench --backend cuda --op "$op" --shape "$shape" \
    --tokens "$n" --iters 3 --budget-ms 50 > "$OUT/k-$op-$n.txt" 2>&1
  grep -E "^  [a-zA-Z_<].*\(|gpu__time_duration" "$OUT/k-$op-$n.txt" |
    sed -E 's/^ +//; s/\(.*//; s/gpu__time_duration.sum +//' | paste - - | head -${COUNT:-8}
done
kernel=${KERNEL:-sm90_kernel}
n=${DETAIL:-1}
echo "=== $kernel, $op $shape n=$n"
ncu -k regex:"$kernel" --launch-skip 2 --launch-count 1 --metrics \
  gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,lts__t_bytes.sum.per_second,lts__t_sectors.avg.pct_of_peak_sustained_elapsed,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
  build-gpu/mxmoe bench --backend cuda --op "$op" --shape "$shape" --tokens "$n" --iters 4 --budget-ms 50 \
  > "$OUT/stall-$n.txt" 2>&1
grep -E "duration|dram__|lts__|warps_active|issue_active|inst_executed|stalled" "$OUT/stall-$n.txt" |
  awk '!/stalled/ || $NF+0 > 0.1' |
  sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//; s/ +/ /g'
