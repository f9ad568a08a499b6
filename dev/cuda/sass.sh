# Lab: the sm_90a SASS of a CUDA file, read here without device time. cuobjdump and the
# nvdisasm it runs come from NVIDIA's wheels on PyPI (nvidia-cuda-cuobjdump, -nvdisasm),
# unpacked once outside the repo, into ${MXMOE_TOOLS:-~/.cache/mxmoe-tools}.
#   bash dev/cuda/sass.sh src/cuda/grouped_gemm_sm90.cu             # instructions per kernel
#   bash dev/cuda/sass.sh src/cuda/grouped_gemm_sm90.cu kernelILi192 # that kernel's SASS
# Counts are static (each unrolled copy once, nothing weighted by how often it runs); for a hot
# loop, read the loop itself, between its MMAs. Without a kernel name it also prints ptxas's
# local-memory warnings (spills): at BN = 192 the consumers sit at 232 registers and small
# changes anywhere in the kernel spill their unit walk (bench/NOTES.md v37).
set -eu
src=${1:?usage: sass.sh FILE.cu [KERNEL_NAME_PART]}
cd "$(dirname "$0")/../.."
tools=${MXMOE_TOOLS:-$HOME/.cache/mxmoe-tools}
for tool in cuobjdump nvdisasm; do
  if [ -z "$(find "$tools" -name $tool -type f 2>/dev/null)" ]; then
    mkdir -p "$tools"
    python3 -m pip download -q --no-deps nvidia-cuda-$tool -d "$tools/whl"
    (cd "$tools" && unzip -q -o "whl/nvidia_cuda_$tool-*.whl")
  fi
done
dump=$(find "$tools" -name cuobjdump -type f | head -1)
export PATH="$(dirname "$(find "$tools" -name nvdisasm -type f | head -1)"):$PATH"
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
cubin=$(mktemp --suffix=.cubin)
trap 'rm -f "$cubin"' EXIT
"$nvcc" -DMXMOE_BUILDING_LIBRARY -DMXMOE_HAVE_CUDA -Iinclude -Isrc -O3 -DNDEBUG -arch=sm_90a -cubin \
  --fmad=false -std=c++17 -Xptxas=--warn-on-local-memory-usage -x cu "$src" -o "$cubin" 2>&1 |
  grep -E "Local memory used" | sed -E "s/^ptxas warning : //" || true
if [ $# -lt 2 ]; then
  "$dump" -sass "$cubin" | awk '/Function : /{f=$3} /\/\*[0-9a-f]+\*\/ /{n[f]++}
    END{for (k in n) printf "%7d  %s\n", n[k], k}' | sort -k2
else
  fun=$("$dump" -sass "$cubin" | grep -o "Function : [^ ]*$2[^ ]*" | head -1 | cut -d' ' -f3)
  "$dump" -sass -fun "$fun" "$cubin" | grep -E '/\*[0-9a-f]+\*/ ' |
    sed -E 's@/\* 0x[0-9a-f]+ \*/@@; s/ +;/;/; s/  +/ /g'
fi
