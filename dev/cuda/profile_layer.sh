# Lab: per-kernel durations (Nsight Compute) of one op call: OP=layer SHAPE=gpt-oss-20b N=1.
set -u
op=${OP:-layer}; shape=${SHAPE:-gpt-oss-20b}; n=${N:-1}
ncu --metrics gpu__time_duration.sum --launch-skip ${SKIP:-10} --launch-count ${COUNT:-10} build-gpu/mxmoe bench --backend cuda --op $op --shape $shape --tokens $n --iters 3 --budget-ms 50 > $OUT/k-$op-$shape-$n.txt 2>&1
grep -E "^  [a-zA-Z_<].*\(|gpu__time_duration" $OUT/k-$op-$shape-$n.txt | sed -E 's/^ +//; s/\(.*//; s/gpu__time_duration.sum +//' | paste - - | head -${COUNT:-10}
