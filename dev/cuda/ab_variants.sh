# Lab: several variants of the sources timed (and optionally tested) in one device call, on one
# card, interleaved. A variant is an overlay of files under dev/cuda/variants/NAME/ (same paths
# as in the tree) on a copy of the working tree; "tree" is the working tree itself. Prepare the
# overlays here with `bash dev/cuda/ab_prepare.sh REF NAME` (REF's version of every file under
# src/, include/ and tests/ that differs from the working tree), then delete dev/cuda/variants/.
#   TESTS=1 SHAPES="gpt-oss-20b deepseek-v3" TOKENS=512,8192 bash dev/cuda/ab_variants.sh
# TESTS=1 also builds and runs test_cuda --small per variant (its sm_90a cases included).
# Timings end with one line per point: each variant's eager,replayed µs in each round
# (dev/cuda/ab_json.py turns the call's timing files into a JSON for bench/results/).
# Copies and builds live in build-abv/ (ignored, so the device keeps them between calls while
# the machine stays warm): BUILD=0 reuses them, e.g. tests in one call and timings in the next.
set -u
names="tree $(ls dev/cuda/variants 2>/dev/null | tr '\n' ' ')"
targets="mxmoe_cli"; [ "${TESTS:-0}" = 1 ] && targets="mxmoe_cli test_cuda"
for v in $names; do # builds in parallel: one variant's build alone leaves most cores idle
  [ "${BUILD:-1}" = 1 ] || break
  dir=build-abv/$v
  rm -rf "$dir" && mkdir -p "$dir"
  tar --exclude='./build*' --exclude='./dev/cuda/variants' -cf - . | tar -C "$dir" -xf -
  [ "$v" != tree ] && cp -r "dev/cuda/variants/$v/." "$dir/"
  ( cd "$dir" && cmake -S . -B build -G Ninja -DMXMOE_WERROR=OFF -DCMAKE_BUILD_TYPE=Release \
      -DMXMOE_TESTS=ON -DCMAKE_CUDA_ARCHITECTURES=90a-real > "$OUT/cfg-$v.log" 2>&1 &&
    cmake --build build -j8 --target $targets > "$OUT/build-$v.log" 2>&1 ) ||
    { echo "$v: build failed"; tail -20 "$OUT/build-$v.log"; } &
done
wait
for v in $names; do
  dir=build-abv/$v
  [ -f "$OUT/build-$v.log" ] &&
  grep -E "spill stores [1-9]|C7514" "$OUT/build-$v.log" | head -3 | sed "s/^/$v: /"
  if [ "${TESTS:-0}" = 1 ] && [ -x "$dir/build/tests/test_cuda" ]; then
    timeout 150 "$dir/build/tests/test_cuda" --small > "$OUT/test-$v.log" 2>&1
    echo "$v: test_cuda --small rc=$? $(tail -1 "$OUT/test-$v.log")"
    grep -E "FAIL" "$OUT/test-$v.log" | head -5 | sed "s/^/$v: /"
  fi
done
# each invocation its own file: a call may run several
timings=$(mktemp "$OUT/ab-timings-XXXX.txt")
{
for round in $(seq "${ROUNDS:-1}"); do
  for shape in ${SHAPES-gpt-oss-20b deepseek-v3}; do # SHAPES= : no timings
    for v in $names; do
      [ -x "build-abv/$v/build/mxmoe" ] || continue
      MXMOE_CUDA_GEMM=${GEMM:-sm90} timeout 120 "build-abv/$v/build/mxmoe" bench --backend cuda \
        --op "${OP:-grouped}" --shape "$shape" --tokens "${TOKENS:-512,8192}" \
        --budget-ms "${BUDGET_MS:-200}" | grep -E "^(grouped|layer) | replayed:" |
        sed -E "s/^/$v /; s/\| +[0-9]+\/[0-9]+ experts.*//"
    done
  done
done
} | tee "$timings"
# One line per point: every variant's eager,replayed us in each round, side by side.
python3 - "$timings" $names <<'PY'
import collections, re, sys
runs, cur = collections.defaultdict(list), None
for line in open(sys.argv[1]):
    m = re.match(r"(\S+) (grouped|layer) +(\S+) +n=(\d+) +([\d.]+) us", line)
    if m:
        cur = (m[1], m[2], m[3], int(m[4]))
        runs[cur].append([float(m[5])])
    elif cur and (m := re.match(r"\S+ +replayed: +([\d.]+) us", line)):
        runs[cur][-1].append(float(m[1]))
print("=== eager,replayed us per round")
for op, shape, n in sorted({k[1:] for k in runs}):
    cells = [v + " " + " / ".join(",".join("%.1f" % x for x in r) for r in runs[(v, op, shape, n)])
             for v in sys.argv[2:] if (v, op, shape, n) in runs]
    print("%-7s %-14s n=%-5d %s" % (op, shape, n, " | ".join(cells)))
PY
