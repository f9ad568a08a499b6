# Lab: the skinny GEMM built with other ring depths / activation slabs (shared memory, hence
# CTAs per SM), timed against the default build (build-gpu) in the same call.
#   VARIANTS="5:12288 6:16384" bash dev/cuda/skinny_variants.sh
set -u
for v in ${VARIANTS:-5:12288}; do
  st=${v%%:*}; act=${v##*:}; dir=build-skinny-$st-$act
  cmake -S . -B $dir -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
    -DCMAKE_CUDA_FLAGS="-DMXMOE_SKINNY_STAGES=$st -DMXMOE_SKINNY_ACT_BYTES=$act" > $OUT/cfg-$v.log 2>&1 &&
    cmake --build $dir -j16 --target mxmoe_cli > $OUT/build-$v.log 2>&1 || { tail -5 $OUT/build-$v.log; continue; }
  for shape in ${SHAPES:-gpt-oss-20b deepseek-v3}; do
    MXMOE_CUDA_GEMM=skinny $dir/mxmoe bench --backend cuda --op grouped --shape $shape --tokens ${TOKENS:-1,8,64} --budget-ms 200 | grep -E "^grouped" | sed "s/^/$v /"
  done
done
for shape in ${SHAPES:-gpt-oss-20b deepseek-v3}; do
  MXMOE_CUDA_GEMM=skinny build-gpu/mxmoe bench --backend cuda --op grouped --shape $shape --tokens ${TOKENS:-1,8,64} --budget-ms 200 | grep -E "^grouped" | sed "s/^/default /"
done
