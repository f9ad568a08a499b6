# Lab: where a device fault happens. Builds the working tree (or overlay VARIANT from
# dev/cuda/variants/, see ab_prepare.sh) with -lineinfo into build-fault/, runs one benchmark
# point under compute-sanitizer: the first faults' kind, thread, and source line (a TMA fault
# may surface at a later copy of the same thread than the one at fault).
#   VARIANT=v10 SHAPE=gpt-oss-20b TOKENS=64 OUT=$OUT bash dev/cuda/fault.sh
set -u
v=${VARIANT:-tree}
dir=build-fault/$v
rm -rf "$dir" && mkdir -p "$dir"
tar --exclude='./build*' --exclude='./dev/cuda/variants' -cf - . | tar -C "$dir" -xf -
[ "$v" != tree ] && cp -r "dev/cuda/variants/$v/." "$dir/"
cd "$dir" || exit 1
cmake -S . -B build -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_FLAGS=-lineinfo -DCMAKE_CUDA_ARCHITECTURES=90a-real > fault-cfg.log 2>&1 &&
  cmake --build build -j16 --target mxmoe_cli > fault-build.log 2>&1 ||
  { tail -30 fault-build.log; exit 1; }
MXMOE_CUDA_GEMM=${GEMM:-sm90} timeout 300 compute-sanitizer --tool memcheck \
  --show-backtrace device --print-limit 3 ./build/mxmoe bench --backend cuda --op grouped \
  --shape "${SHAPE:-gpt-oss-20b}" --tokens "${TOKENS:-64}" --budget-ms 1 2>&1 |
  tee "$OUT/fault-sanitizer-$v.log" | head -${LINES_SHOWN:-60}
