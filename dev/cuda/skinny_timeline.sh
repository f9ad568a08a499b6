# Lab: where the few-tokens kernel's time goes at the decode points. Builds the kernel with
# MXMOE_SKINNY_LAB bit 8 (a timeline, results right), runs each point eagerly and summarises it
# with dev/cuda/skinny_timeline.py; then times knock-out builds (LABS, name:bits: 1 no MMAs, 2 no
# token staging, 4 no weight copies; results wrong) against the default build (build-gpu) in the
# same call, eager and replayed (needs build-gpu). A point that runs another kernel (deepseek-v3
# n = 8: the Hopper GEMM) leaves the previous point's stamps in place: skip it.
#   SHAPES="gpt-oss-20b qwen3-30b-a3b" TOKENS="1 8" LABS="nomma:1 nocopy:4" bash dev/cuda/skinny_timeline.sh
set -u
labs=${LABS:-}
for v in timeline:8 $labs; do
  name=${v%%:*}; bits=${v#*:}; dir=build-skinny-$name
  ( cmake -S . -B $dir -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a-real \
      -DCMAKE_CUDA_FLAGS="-DMXMOE_SKINNY_LAB=$bits" > $OUT/cfg-$name.log 2>&1 &&
    cmake --build $dir -j8 --target mxmoe_cli > $OUT/build-$name.log 2>&1 || tail -5 $OUT/build-$name.log ) &
done
wait
for shape in ${SHAPES:-gpt-oss-20b qwen3-30b-a3b deepseek-v3}; do
  for n in ${TOKENS:-1 8}; do
    echo "=== timeline $shape n=$n"
    rm -f /tmp/skinny-stamps.bin
    MXMOE_SKINNY_STAMPS=/tmp/skinny-stamps.bin build-skinny-timeline/mxmoe bench --backend cuda --op grouped \
      --shape $shape --tokens $n --graph 0 --iters 3 --budget-ms 50 | grep -E "^grouped"
    [ -f /tmp/skinny-stamps.bin ] && python3 dev/cuda/skinny_timeline.py /tmp/skinny-stamps.bin
  done
done
for v in default: $labs; do
  name=${v%%:*}; dir=build-skinny-$name; [ $name = default ] && dir=build-gpu
  for shape in ${SHAPES:-gpt-oss-20b qwen3-30b-a3b deepseek-v3}; do
    $dir/mxmoe bench --backend cuda --op grouped --shape $shape --tokens $(echo ${TOKENS:-1 8} | tr ' ' ,) \
      --budget-ms 200 | grep -E "^grouped| replayed:" | sed -E "s/^/$name /"
  done
done
