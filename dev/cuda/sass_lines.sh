# Lab: where a kernel's sm_90a SASS comes from, source line by source line (static counts, no
# device time): which inlined helpers make a kernel long, and where cold code sits. Uses the
# nvdisasm that dev/cuda/sass.sh unpacks (run sass.sh once first).
#   bash dev/cuda/sass_lines.sh src/cuda/grouped_gemm_sm90.cu kernelILi16EE [TOP]
# v40 found the narrow kernels' speed moving by up to 8 % with code that never runs, in both
# directions and not with the count alone: read this beside a same-call A/B, never instead.
set -eu
src=${1:?usage: sass_lines.sh FILE.cu KERNEL_NAME_PART [TOP]}
kernel=${2:?usage: sass_lines.sh FILE.cu KERNEL_NAME_PART [TOP]}
cd "$(dirname "$0")/../.."
nvdisasm=$(find "${MXMOE_TOOLS:-$HOME/.cache/mxmoe-tools}" -name nvdisasm -type f | head -1)
[ -n "$nvdisasm" ] || { echo "no nvdisasm: run dev/cuda/sass.sh once"; exit 1; }
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
cubin=$(mktemp --suffix=.cubin)
trap 'rm -f "$cubin"' EXIT
"$nvcc" -DMXMOE_BUILDING_LIBRARY -DMXMOE_HAVE_CUDA -Iinclude -Isrc -O3 -DNDEBUG -arch=sm_90a -cubin \
  --fmad=false -std=c++17 -lineinfo -x cu "$src" -o "$cubin"
"$nvdisasm" -g -c "$cubin" | python3 -c '
import collections, re, sys
kernel, top = sys.argv[1], int(sys.argv[2])
counts, inside, line = collections.Counter(), False, None
for l in sys.stdin:
    if ".section" in l and ".text" in l:
        inside = kernel in l
    elif inside and (m := re.search(r"//## File \"([^\"]+)\", line (\d+)", l)):
        line = "%s:%s" % (m[1].split("/")[-1], m[2])
    elif inside and re.match(r"\s+/\*[0-9a-f]{4,}\*/", l):
        counts[line] += 1
print("%d instructions" % sum(counts.values()))
for where, n in counts.most_common(top):
    print("%6d  %s" % (n, where))
' "$kernel" "${3:-25}"
