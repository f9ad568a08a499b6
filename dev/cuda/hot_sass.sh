# Lab: where a kernel's instructions and stalls go, per SASS instruction (Nsight Compute source
# page): how the stall samples split before, in and after the hot loop, and the hottest
# instructions by executed count and by stall samples.
#   OP=grouped SHAPE=gpt-oss-20b N=8192 KERNEL=sm90_kernel [BUILD=build-lab-x] bash dev/cuda/hot_sass.sh
# SKIP: matching launches skipped first (default 2; the layer's GEMM-2 is every second sm90
# kernel: OP=layer SKIP=3); TAG names the outputs (hot$TAG-sass.csv).
set -u
ncu -f --set full --import-source no -k regex:"${KERNEL:-sm90_kernel}" --launch-skip ${SKIP:-2} --launch-count 1 \
  -o $OUT/hot${TAG:-} ${BUILD:-build-gpu}/mxmoe bench --backend cuda --op ${OP:-grouped} --shape ${SHAPE:-gpt-oss-20b} \
  --tokens ${N:-8192} --iters 4 --budget-ms 50 > $OUT/hot${TAG:-}-run.txt 2>&1 || tail -5 $OUT/hot${TAG:-}-run.txt
ncu --import $OUT/hot${TAG:-}.ncu-rep --page source --csv --print-source sass > $OUT/hot${TAG:-}-sass.csv \
  2> $OUT/hot${TAG:-}-err.txt || { tail -5 $OUT/hot${TAG:-}-err.txt; }
python3 - "$OUT/hot${TAG:-}-sass.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head = next(i for i, r in enumerate(rows) if any("Source" in c for c in r))
cols, body = rows[head], rows[head + 1:]
print("columns:", cols[:40])
def num(r, name):
    i = next((j for j, c in enumerate(cols) if c.startswith(name)), None)
    try: return float(r[i].replace(",", "")) if i is not None else 0.0
    except ValueError: return 0.0
src = next(j for j, c in enumerate(cols) if "Source" in c)
addr = next((j for j, c in enumerate(cols) if "Address" in c), 0)
tot = sum(num(r, "Instructions Executed") for r in body)
print("instructions executed (warp):", tot)
# Where the time goes around the hot loop: the kernel's SASS split at the first and last
# instruction executed at least half as often as the hottest one (the main loop, for the
# kernels here), with each part's share of the stall samples and of the instructions.
ex = [num(r, "Instructions Executed") for r in body]
st = [num(r, "Warp Stall Sampling (All") for r in body]
hot = [i for i, e in enumerate(ex) if e >= 0.5 * max(ex)]
parts = {"before the loop": range(0, hot[0]), "the loop": range(hot[0], hot[-1] + 1),
         "after it": range(hot[-1] + 1, len(body))}
for name, idx in parts.items():
    print("%-16s %5.1f %% of stall samples, %5.1f %% of instructions" %
          (name, 100 * sum(st[i] for i in idx) / max(sum(st), 1),
           100 * sum(ex[i] for i in idx) / max(tot, 1)))
for key in ("Instructions Executed", "Warp Stall Sampling (All"):
    print("=== top by", key)
    for r in sorted(body, key=lambda r: -num(r, key))[:45]:
        print("%10.0f  %s  %s" % (num(r, key), r[addr], r[src][:110]))
PY
