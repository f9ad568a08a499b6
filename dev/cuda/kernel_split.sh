# Lab: where one op's time goes, kernel by kernel, at the card's running clocks (Nsight Compute
# with --clock-control none; caches still flushed between kernels, so each kernel reads cold):
# per kernel of one call, its duration, DRAM bytes and DRAM throughput against peak.
#   OP=grouped SHAPES="gpt-oss-20b qwen3-30b-a3b" TOKENS="512 8192" bash dev/cuda/kernel_split.sh
# Needs build-gpu/mxmoe (tests/gpu/run.sh or dev/cuda/smoke.sh builds it), or BIN=another mxmoe
# (e.g. an A/B variant's, build-abv/main/build/mxmoe); GEMM sets MXMOE_CUDA_GEMM (default auto).
set -u
op=${OP:-grouped}
metrics=gpu__time_duration.sum,dram__bytes.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
for shape in ${SHAPES:-gpt-oss-20b}; do
  for n in ${TOKENS:-8192}; do
    echo "=== $op $shape n=$n: kernel, us, DRAM MB, DRAM % of peak"
    ncu --clock-control none --metrics "$metrics" --launch-skip "${SKIP:-10}" \
      --launch-count "${COUNT:-8}" \
      env MXMOE_CUDA_GEMM="${GEMM:-auto}" "${BIN:-build-gpu/mxmoe}" bench --backend cuda --op "$op" --shape "$shape" --tokens "$n" \
      --iters 3 --budget-ms 50 > "$OUT/split-$op-$shape-$n${TAG:-}.txt" 2>&1
    python3 - "$OUT/split-$op-$shape-$n${TAG:-}.txt" <<'PY'
import re, sys
name, vals = None, {}
def flush():
    if name:
        print("%-40s %9.1f %9.1f %6.1f" % (
            name[:40], vals.get("gpu__time_duration.sum", 0), vals.get("dram__bytes.sum", 0),
            vals.get("dram__throughput.avg.pct_of_peak_sustained_elapsed", 0)))
scale = {"ns": 1e-3, "us": 1, "usecond": 1, "msecond": 1e3, "ms": 1e3, "byte": 1e-6, "Kbyte": 1e-3,
         "Mbyte": 1, "Gbyte": 1e3, "%": 1}
for line in open(sys.argv[1]):
    m = re.match(r"  (\S.*?)\(.*\)", line)
    if m and not line.startswith("    "):
        flush(); name, vals = m[1].strip(), {}
        continue
    m = re.match(r"\s+(\S+)\s+(\S+)\s+([\d.,]+)$", line)
    if m and name:
        vals[m[1]] = float(m[3].replace(",", "")) * scale.get(m[2], 1)
flush()
PY
  done
done
