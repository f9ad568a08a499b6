# Lab: Nsight Compute view of one kernel in a grouped projection: duration, DRAM throughput,
# issue activity and the main stall reasons.  KERNEL=skinny SHAPE=deepseek-v3 N=1 bash dev/cuda/profile_kernel.sh
set -u
ncu -k regex:${KERNEL:-skinny} --launch-skip 2 --launch-count 1 --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,dram__bytes_read.sum,sm__warps_active.avg.pct_of_peak_sustained_active,smsp__issue_active.avg.pct_of_peak_sustained_active,smsp__inst_executed.sum,regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio \
  build-gpu/mxmoe bench --backend cuda --op grouped --shape ${SHAPE:-deepseek-v3} --tokens ${N:-1} --iters 4 --budget-ms 50 > $OUT/ncu-${KERNEL:-skinny}-${N:-1}.txt 2>&1
grep -E "duration|dram__|warps_active|issue_active|inst_executed|stalled" $OUT/ncu-${KERNEL:-skinny}-${N:-1}.txt | awk '!/stalled/ || $NF+0 > 0.1' | sed -E 's/smsp__average_warps_issue_stalled_//; s/_per_issue_active.ratio//; s/ +/ /g'
