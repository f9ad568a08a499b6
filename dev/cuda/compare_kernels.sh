# Lab driver: the grouped projection on each GEMM kernel (MXMOE_CUDA_GEMM) in one call, mxmoe
# only (no baselines): picks the skinny/sm90 crossover. Needs build-gpu (dev/cuda/smoke.sh).
#   KERNELS="skinny sm90" SHAPES="..." TOKENS=1,8,64,512,4096 bash dev/cuda/compare_kernels.sh
set -u
for kernel in ${KERNELS:-skinny sm90}; do
  for shape in ${SHAPES:-gpt-oss-20b qwen3-30b-a3b deepseek-v3}; do
    MXMOE_CUDA_GEMM=$kernel timeout 120 build-gpu/mxmoe bench --backend cuda --op grouped \
      --shape "$shape" --tokens "${TOKENS:-1,8,64,512,4096}" --budget-ms "${BUDGET_MS:-200}" |
      grep -E "^grouped " | sed "s/^/$kernel /"
  done
done
