# Lab: where the sm_90a GEMM's time goes. Builds variants of the kernel (name:CUDA flags) and
# times each against the default build (build-gpu) in the same call. Flags the kernel knows:
# -DMXMOE_SM90_LAB=bits knocks parts out (results wrong, timing only: 1 no promotion, 2 no
# weight conversion, 4 no epilogue, 8 no MMA, 16 no weight copy, 32 no activation copy, 64 no
# activation-factor copy, 128 no result stores, 256 MMAs with both operands from shared memory, 512 no GEMM at all;
# 1024 is a timeline instead, results right: dev/cuda/timeline.sh; the token prepass: 2048 no
# pair-row stores, 4096 no E2M1 quantization, 8192 no factor stores (per-kernel times:
# dev/cuda/kernel_split.sh BIN=);
# bit 4 also removes the MMAs, whose accumulators then go unread, so "MMA and copies only" is 3);
# -DMXMOE_SM90_STAGES=s sets the ring depth.
#   LABS="copies:-DMXMOE_SM90_LAB=15 st3:-DMXMOE_SM90_STAGES=3" TOKENS=512,8192 bash dev/cuda/sm90_knockouts.sh
set -u
labs=${LABS:-copies:-DMXMOE_SM90_LAB=15}
for v in $labs; do
  name=${v%%:*}; flags=${v#*:}; dir=build-lab-$name
  ( cmake -S . -B $dir -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
      -DCMAKE_CUDA_FLAGS="${flags//,/ }" > $OUT/cfg-$name.log 2>&1 &&
    cmake --build $dir -j4 --target mxmoe_cli > $OUT/build-$name.log 2>&1 || tail -5 $OUT/build-$name.log ) &
done
wait
for v in default: $labs; do
  name=${v%%:*}; dir=build-lab-$name; [ $name = default ] && dir=build-gpu
  for shape in ${SHAPES:-gpt-oss-20b deepseek-v3}; do
    MXMOE_CUDA_GEMM=sm90 $dir/mxmoe bench --backend cuda --op grouped --shape $shape --tokens ${TOKENS:-512,8192} --budget-ms 200 |
      grep -E "^grouped" | sed -E "s/^/$name /; s/\| +[0-9]+\/[0-9]+ experts.*TFLOP/| TFLOP/"
  done
done
