# Lab: the sm_90a GEMM's consumer timeline at one point (MXMOE_SM90_LAB bit 1024, which stamps
# clock64() around each chunk's wait, conversion, MMAs and promotion; results stay right):
# builds the lab variant, runs the point eagerly, summarises with dev/cuda/timeline.py.
# The three-warpgroup kernel (128-token tiles) stamps each half of its chunks too.
#   SHAPE=gpt-oss-20b N=4096 MMA_CYCLES=384 bash dev/cuda/timeline.sh
set -u
dir=build-lab-timeline
cmake -S . -B $dir -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_ARCHITECTURES=90a-real "-DCMAKE_CUDA_FLAGS=-DMXMOE_SM90_LAB=1024 ${EXTRA:-}" > /dev/null 2>&1 &&
  cmake --build $dir -j16 --target mxmoe_cli > /tmp/timeline-build.log 2>&1 || tail -5 /tmp/timeline-build.log
MXMOE_SM90_STAMPS=/tmp/stamps.bin MXMOE_SM90_EPI_STAMPS=/tmp/epi.bin $dir/mxmoe bench --backend cuda --op grouped \
  --shape ${SHAPE:-gpt-oss-20b} --tokens ${N:-8192} --graph 0 --iters 3 --budget-ms 50 | grep -E "^grouped"
python3 dev/cuda/timeline.py /tmp/stamps.bin --mma-cycles ${MMA_CYCLES:-0} --epilogue /tmp/epi.bin
