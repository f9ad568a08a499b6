# Lab: A/B of the working tree against the files under dev/cuda/ab_old/ (same paths as in the
# tree, e.g. dev/cuda/ab_old/src/cuda/grouped_gemm_sm90.cu; dev/cuda/ab_prepare.sh REF fills it
# from a git ref), in one call on one card. build-gpu
# must hold the working tree's build (dev/cuda/smoke.sh); the old variant builds in /tmp/ab.
# Runs the grouped op with the kernel in GEMM (default sm90) at TOKENS on each of SHAPES, old and
# new in turn, ROUNDS times.
#   SHAPES="gpt-oss-20b deepseek-v3" TOKENS=512,8192 bash dev/cuda/ab.sh
set -u
rm -rf /tmp/ab && mkdir -p /tmp/ab && tar --exclude='./build*' -cf - . | tar -C /tmp/ab -xf -
cp -r dev/cuda/ab_old/. /tmp/ab/
( cd /tmp/ab && cmake -S . -B build -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_CUDA_ARCHITECTURES=90a-real > $OUT/ab-cfg.log 2>&1 &&
  cmake --build build -j16 --target mxmoe_cli > $OUT/ab-build.log 2>&1 ) || { tail -20 $OUT/ab-build.log; exit 1; }
for round in $(seq ${ROUNDS:-2}); do
  for v in old:/tmp/ab/build new:build-gpu; do
    for shape in ${SHAPES:-gpt-oss-20b qwen3-30b-a3b deepseek-v3}; do
      MXMOE_CUDA_GEMM=${GEMM:-sm90} timeout 120 ${v#*:}/mxmoe bench --backend cuda --op ${OP:-grouped} \
        --shape $shape --tokens ${TOKENS:-512,8192} --budget-ms ${BUDGET_MS:-200} |
        grep -E "^(grouped|layer) " | sed -E "s/^/${v%%:*} /; s/\| +[0-9]+\/[0-9]+ experts.*//"
    done
  done
done
