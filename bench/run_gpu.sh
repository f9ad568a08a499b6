#!/usr/bin/env bash
# The GPU benchmark run (SPEC §6, issues 3 and 4): every shape at every token count, the grouped
# projection first, then the whole layer, each timed by `mxmoe bench --backend cuda`, then
# PyTorch's BF16/FP8 grouped GEMMs on the same per-expert counts by bench/torch_baseline.py,
# which also measures the card's ceilings and merges everything into one JSON and one table.
#
#   bash bench/run_gpu.sh BUILD LOGS          (tests/gpu/run.sh calls it when BENCH=1)
#
# Writes LOGS/bench-<date>-<card>-<commit>.json, LOGS/bench_table.txt, and the raw per-(op,
# shape) JSON and logs under LOGS/bench-raw/. The commit is $MXMOE_COMMIT, else
# `git rev-parse --short HEAD` (+"-dirty" when the sources differ from it), else "unknown".
# Knobs (environment): BENCH_OPS ("grouped layer"), BENCH_SHAPES (all four), BENCH_TOKENS
# (1,8,64,512,4096,8192), BENCH_BUDGET_MS (1500: time per point, each side), BENCH_MAX_S (420:
# no new mxmoe run starts after this many seconds, so the whole run stays well under 8 min),
# BENCH_BACKEND (cuda; cpu to try the script without a GPU: the baselines then fail softly),
# BENCH_PREPARE (mxmoe bench --prepare: 1, the default, prepared weights; 2, their codes also
# repacked in place for the Hopper path, mxmoe_weights_prepare_repack),
# BENCH_GEMM_DTYPE (the layer's moe_params.gemm_dtype: bf16, the library's default, or f32).
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: bench/run_gpu.sh BUILD LOGS}
logs=${2:?usage: bench/run_gpu.sh BUILD LOGS}
raw="$logs/bench-raw"
mkdir -p "$raw"
rm -f "$raw"/*.json

if [ -z "${MXMOE_COMMIT:-}" ]; then
    MXMOE_COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if [ "$MXMOE_COMMIT" != unknown ] &&
        ! git diff --quiet HEAD -- src include tools CMakeLists.txt 2>/dev/null; then
        MXMOE_COMMIT="$MXMOE_COMMIT-dirty"
    fi
fi
export MXMOE_COMMIT
ops=${BENCH_OPS:-grouped layer}
shapes=${BENCH_SHAPES:-gpt-oss-20b gpt-oss-120b qwen3-30b-a3b deepseek-v3}
tokens=${BENCH_TOKENS:-1,8,64,512,4096,8192}
budget=${BENCH_BUDGET_MS:-1500}
max_s=${BENCH_MAX_S:-420}
backend=${BENCH_BACKEND:-cuda}
start=$(date +%s)
status=0
inputs=()
# The card's SM clock and throttle reasons every second, beside the run: a card whose clocks
# sink mid-run (seen once: both sides 2-5x slower at n >= 4096, NOTES v32) shows it here.
clocks="$raw/clocks.csv"
monitor=
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_throttle_reasons.active \
        --format=csv,noheader,nounits -l 1 >"$clocks" 2>/dev/null &
    monitor=$!
fi

echo "== mxmoe bench (commit $MXMOE_COMMIT, tokens $tokens, ${budget} ms per point)"
for op in $ops; do
    for shape in $shapes; do
        if [ $(($(date +%s) - start)) -ge "$max_s" ]; then
            echo "   $op $shape: SKIPPED (past ${max_s} s)"
            status=1
            continue
        fi
        log="$raw/$op-$shape.log"
        extra=()
        [ "$op" = layer ] && [ -n "${BENCH_GEMM_DTYPE:-}" ] && extra=(--gemm-dtype "$BENCH_GEMM_DTYPE")
        timeout 300 "$build/mxmoe" bench --backend "$backend" --op "$op" --shape "$shape" \
            --tokens "$tokens" --budget-ms "$budget" --prepare "${BENCH_PREPARE:-1}" \
            --json "$raw/$op-$shape.json" "${extra[@]}" \
            >"$log" 2>&1
        rc=$?
        [ -s "$raw/$op-$shape.json" ] && inputs+=("$raw/$op-$shape.json")
        grep -E "^(grouped|layer) |copy bandwidth|error" "$log" | sed 's/^/   /'
        if [ $rc -ne 0 ]; then
            echo "   $op $shape: mxmoe bench exited $rc (see $log)"
            status=1
        fi
    done
done

echo "== PyTorch baselines and merge ($(($(date +%s) - start)) s so far)"
if [ ${#inputs[@]} -eq 0 ]; then
    echo "no mxmoe bench JSON to merge"
    exit 1
fi
python3 bench/torch_baseline.py --out-dir "$logs" --table "$logs/bench_table.txt" \
    --budget-ms "$budget" "${inputs[@]}" 2>"$raw/torch_baseline.log" || status=1
tail -n 5 "$raw/torch_baseline.log"
if [ -n "$monitor" ]; then
    kill "$monitor" 2>/dev/null
    # busy samples (throttle reasons other than "GPU idle", bit 0): their SM clocks, and how
    # many of them ran under a cap (power, thermal or other)
    python3 - "$clocks" <<'PY' | tee -a "$logs/bench_table.txt"
import sys
busy = []
for line in open(sys.argv[1]):
    f = line.strip().split(", ")
    if len(f) == 5 and f[1].isdigit() and f[4].startswith("0x") and f[4] != "0x0000000000000001":
        busy.append((int(f[1]), int(f[4], 16)))
if busy:
    mhz = sorted(c for c, _ in busy)
    capped = sum(1 for _, r in busy if r & ~1)
    print(f"SM clock while busy: min {mhz[0]}, median {mhz[len(mhz) // 2]} MHz over {len(busy)} "
          f"samples (1 s); under a power, thermal or other cap in {capped}")
PY
fi
echo "== benchmarks done in $(($(date +%s) - start)) s (status $status)"
exit $status
