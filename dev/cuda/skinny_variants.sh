# Lab: the skinny GEMM built with other ring shapes / activation slabs (shared memory, hence
# CTAs per SM), timed against the default build (build-gpu) in the same call. A variant is
# stages:slab_bytes[:blocks_a_stage] (skinny_layout.cuh; a 32-token slab must hold a stage).
#   VARIANTS="3:9216:8 5:8192:4" bash dev/cuda/skinny_variants.sh
set -u
for v in ${VARIANTS:-3:12288:8}; do
  IFS=: read -r st act blocks <<< "$v"; blocks=${blocks:-8}; dir=build-skinny-$st-$act-$blocks
  cmake -S . -B $dir -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
    -DCMAKE_CUDA_FLAGS="-DMXMOE_SKINNY_STAGES=$st -DMXMOE_SKINNY_ACT_BYTES=$act -DMXMOE_SKINNY_STAGE_BLOCKS=$blocks" > $OUT/cfg-$v.log 2>&1 &&
    cmake --build $dir -j16 --target mxmoe_cli > $OUT/build-$v.log 2>&1 || { tail -5 $OUT/build-$v.log; continue; }
  for shape in ${SHAPES:-gpt-oss-20b deepseek-v3}; do
    MXMOE_CUDA_GEMM=skinny $dir/mxmoe bench --backend cuda --op grouped --shape $shape --tokens ${TOKENS:-1,8,64} --budget-ms 200 | grep -E "^grouped" | sed "s/^/$v /"
  done
done
for shape in ${SHAPES:-gpt-oss-20b deepseek-v3}; do
  MXMOE_CUDA_GEMM=skinny build-gpu/mxmoe bench --backend cuda --op grouped --shape $shape --tokens ${TOKENS:-1,8,64} --budget-ms 200 | grep -E "^grouped" | sed "s/^/default /"
done
