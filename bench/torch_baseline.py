#!/usr/bin/env python3
"""torch_baseline.py — PyTorch's grouped GEMMs next to `mxmoe bench`, in the same run, on the
same card, and the merged benchmark JSON + table (SPEC §6, issue 3 item 6, issue 4 item 3).

    python3 bench/torch_baseline.py --out-dir LOGS [--table LOGS/bench_table.txt] IN.json [...]
    python3 bench/torch_baseline.py --dry-run --out merged.json IN.json     # no torch needed

What it measures (torch 2.11 on CUDA):
  ceilings   copy_GBps   a 1 GiB device-to-device copy, counting bytes read + written (the
                         convention of reference/anchors.md and of `mxmoe bench`)
             fp8_TFLOPs  torch._scaled_mm 8192^3 e4m3 x e4m3 -> bf16, unit tensor-wise scales,
                         the faster of use_fast_accum False/True (both recorded)
             bf16_TFLOPs torch.mm 8192^3 bf16 (informative)
  grouped    torch._grouped_mm (BF16 A [M, K] x B [E, K, N], offs = cumsum of the per-expert
             counts that `mxmoe bench` wrote) and torch._scaled_grouped_mm (FP8 e4m3, row-wise
             unit scales, use_fast_accum=True, BF16 out), the anchors' method. The activations
             are already grouped and already BF16/FP8: torch's times hold no gather,
             quantization or scatter (mxmoe's grouped op does all three).
  layer      the two grouped GEMMs of the layer (gate||up [E, 2I, H], then down [E, H, I]) with
             a trivial activation between them (silu(gate) * up in BF16; for FP8 then a plain
             cast to e4m3): no routing, permutation, bias or weighted reduction.
Timing is the same as mxmoe's: warm-up, then each call alone between two CUDA events, median,
at most --iters runs or --budget-ms per point; weights cycle through copies whose active experts
span --rotate-mb, so runs read them from HBM and not from the 50 MB L2. Where mxmoe also timed
replays of its runs recorded in a CUDA graph (`graph_us`), torch's calls on every weight copy in
turn, at least 4, are captured into one graph (torch.cuda.graph, mxmoe's rule) and its
replays timed the same way, each over its calls (`torch_*_graph_us`).

Then floor_us and target_us of every point are recomputed with the ceilings measured here:
  floor_us  = max(W / copy, F / fp8)     target_us = max(10 us, W / (0.8 copy), F / 900 TFLOP/s)
with W (active experts' MXFP4 bytes) and F (FLOPs) as `mxmoe bench` computed them.

Every baseline is wrapped: an error (unsupported layout, out of memory, an API that changed)
becomes null plus the message in the JSON, and the run goes on.
"""
import argparse
import datetime
import json
import math
import os
import re
import statistics
import sys
import time
import traceback

TARGET_MIN_US = 10.0
TARGET_COPY_SHARE = 0.8
TARGET_FLOPS = 900e12


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Merging the inputs


def load_inputs(paths):
    """Reads the JSON files of `mxmoe bench`; returns (merged dict, list of load errors)."""
    merged, errors = None, []
    for path in paths:
        try:
            with open(path) as f:
                doc = json.load(f)
        except Exception as e:  # a truncated file from a crashed run must not stop the rest
            errors.append("%s: %s" % (path, e))
            log("torch_baseline: skipping %s: %s" % (path, e))
            continue
        if merged is None:
            merged = {k: v for k, v in doc.items() if k != "points"}
            merged["ceilings"] = dict(doc.get("ceilings") or {})
            merged["points"] = []
            merged["inputs"] = []
        merged["inputs"].append(os.path.basename(path))
        merged["points"].extend(doc.get("points") or [])
    if merged is None:
        merged = {"card": None, "commit": None, "date": None, "ceilings": {}, "points": [],
                  "inputs": []}
    # The copy bandwidth mxmoe measured stays next to torch's, for comparison.
    c = merged["ceilings"]
    if "copy_GBps" in c and "copy_GBps_mxmoe" not in c:
        c["copy_GBps_mxmoe"] = c["copy_GBps"]
    merged["input_errors"] = errors
    return merged, errors


def recompute(point, ceilings):
    """floor_us, target_us, meets_target and the comparisons, from W, F and the ceilings."""
    w, f = point.get("weight_bytes"), point.get("flops")
    copy = ceilings.get("copy_GBps")
    fp8 = ceilings.get("fp8_TFLOPs")
    if w is None or f is None:
        return
    mem_us = w / (copy * 1e9) * 1e6 if copy else None
    fp8_us = f / (fp8 * 1e12) * 1e6 if fp8 else None
    parts = [x for x in (mem_us, fp8_us) if x is not None]
    point["floor_us"] = max(parts) if parts else None
    point["floor_basis"] = ("max(memory, fp8)" if fp8_us is not None and mem_us is not None
                            else "memory only" if mem_us is not None else "fp8 only"
                            if fp8_us is not None else "none")
    if copy:
        point["target_us"] = max(TARGET_MIN_US, w / (TARGET_COPY_SHARE * copy * 1e9) * 1e6,
                                 f / TARGET_FLOPS * 1e6)
    t = point.get("time_us")
    tgt = point.get("target_us")
    point["meets_target"] = (t <= tgt) if (t is not None and tgt is not None) else None
    fp8_t = point.get("torch_fp8_us")
    point["vs_torch_fp8"] = (fp8_t / t) if (t and fp8_t) else None
    point["beats_torch_fp8"] = (t < fp8_t) if (t and fp8_t) else None
    if point.get("floor_us") and t:
        point["floor_fraction"] = point["floor_us"] / t
    g, fp8_g = point.get("graph_us"), point.get("torch_fp8_graph_us")
    if g is not None:
        point["graph_meets_target"] = (g <= tgt) if tgt is not None else None
        point["graph_vs_torch_fp8"] = (fp8_g / g) if (g and fp8_g) else None


# --------------------------------------------------------------------------------------------
# Torch measurements


class Timer:
    """Warm-up, then each call alone between two CUDA events; median in microseconds."""

    def __init__(self, torch, iters, budget_s):
        self.torch, self.iters, self.budget_ms = torch, iters, budget_s * 1e3
        self.start = torch.cuda.Event(enable_timing=True)
        self.end = torch.cuda.Event(enable_timing=True)

    def one(self, fn, i):
        self.start.record()
        fn(i)
        self.end.record()
        self.end.synchronize()
        return self.start.elapsed_time(self.end)  # ms

    def __call__(self, fn):
        i, warm, warm_ms = 0, 0, 0.0
        while warm == 0 or (warm < 5 and warm_ms < 0.25 * self.budget_ms):
            warm_ms += self.one(fn, i)
            warm, i = warm + 1, i + 1
        times, total = [], 0.0
        while len(times) < self.iters and (not times or total < self.budget_ms):
            t = self.one(fn, i)
            times.append(t)
            total, i = total + t, i + 1
        return {"us": statistics.median(times) * 1e3, "min_us": min(times) * 1e3,
                "runs": len(times), "warmup_runs": warm}


def measure_ceilings(torch, copy_bytes):
    c, errors = {}, {}
    dev = "cuda"
    try:
        src = torch.empty(copy_bytes, dtype=torch.uint8, device=dev).random_(0, 256)
        dst = torch.empty_like(src)
        r = Timer(torch, 10, 5.0)(lambda i: dst.copy_(src))
        c["copy_GBps"] = 2.0 * copy_bytes / (r["us"] * 1e-6) / 1e9
        c["copy_bytes"] = copy_bytes
        c["copy_convention"] = "bytes read + bytes written per second"
        c["copy_source"] = "torch dst.copy_(src), 1 GiB, median of 10"
        del src, dst
    except Exception as e:
        errors["copy"] = repr(e)
    n = 8192
    try:
        a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
        r = Timer(torch, 20, 3.0)(lambda i: torch.mm(a, b))
        c["bf16_TFLOPs"] = 2.0 * n ** 3 / (r["us"] * 1e-6) / 1e12
        fa = a.to(torch.float8_e4m3fn)
        fb = b.to(torch.float8_e4m3fn).t().contiguous().t()  # column-major, as _scaled_mm wants
        one = torch.tensor(1.0, device=dev, dtype=torch.float32)
        for fast in (False, True):
            r = Timer(torch, 20, 3.0)(lambda i: torch._scaled_mm(
                fa, fb, scale_a=one, scale_b=one, out_dtype=torch.bfloat16,
                use_fast_accum=fast))
            c["fp8_TFLOPs_fast_accum" if fast else "fp8_TFLOPs_normal_accum"] = \
                2.0 * n ** 3 / (r["us"] * 1e-6) / 1e12
        c["fp8_TFLOPs"] = max(c["fp8_TFLOPs_fast_accum"], c["fp8_TFLOPs_normal_accum"])
        c["fp8_source"] = "torch._scaled_mm 8192^3 e4m3, unit tensor-wise scales, bf16 out"
        del a, b, fa, fb
    except Exception as e:
        errors["matmul"] = repr(e)
    torch.cuda.empty_cache()
    return c, errors


class WeightCache:
    """Copies of one (op, shape)'s weights in one dtype, grown on demand: [E, rows, K] each."""

    def __init__(self, torch, experts, mats, dtype, max_bytes):
        self.torch, self.experts, self.mats, self.dtype = torch, experts, mats, dtype
        self.max_bytes, self.copies = max_bytes, []
        self.elsize = 2 if dtype == torch.bfloat16 else 1

    def expert_bytes(self):
        return sum(r * k for r, k in self.mats) * self.elsize

    def make(self):
        torch = self.torch
        out = []
        for rows, k in self.mats:
            w = torch.empty(self.experts, rows, k, device="cuda", dtype=self.dtype)
            step = max(1, (1 << 28) // (rows * k))  # ~256M elements of BF16 scratch at a time
            for e0 in range(0, self.experts, step):
                e1 = min(self.experts, e0 + step)
                w[e0:e1].copy_(torch.randn(e1 - e0, rows, k, device="cuda",
                                           dtype=torch.bfloat16) * 0.05)
            out.append(w)
        return out

    def get(self, count):
        full = self.experts * self.expert_bytes()
        count = max(1, min(count, int(self.max_bytes // full)))
        while len(self.copies) < count:
            if not self.copies:
                self.copies.append(self.make())
            else:
                self.copies.append([w.clone() for w in self.copies[0]])
        return self.copies[:count]


def rotation_count(active, expert_bytes, rotate_bytes):
    return max(1, math.ceil(rotate_bytes / max(1, active * expert_bytes)))


def grouped_fns(torch, kind, a, offs, copies, m_total, experts, n):
    """The call of one grouped GEMM for BF16 or FP8 on copy i % len(copies)."""
    if kind == "bf16":
        return lambda i: torch._grouped_mm(a, copies[i % len(copies)][0].transpose(-2, -1),
                                           offs=offs)
    scale_a = torch.ones(m_total, device="cuda", dtype=torch.float32)
    scale_b = torch.ones(experts, n, device="cuda", dtype=torch.float32)
    return lambda i: fp8_grouped(torch, a, copies[i % len(copies)][0].transpose(-2, -1),
                                 scale_a, scale_b, offs)


_fp8_api = {}


def fp8_grouped(torch, a, b, scale_a, scale_b, offs):
    """torch._scaled_grouped_mm (row-wise scales), or the public F.scaled_grouped_mm if the
    private one is gone; remembers which one worked."""
    api = _fp8_api.get("name")
    if api in (None, "torch._scaled_grouped_mm"):
        try:
            out = torch._scaled_grouped_mm(a, b, scale_a, scale_b, offs=offs,
                                           out_dtype=torch.bfloat16, use_fast_accum=True)
            _fp8_api["name"] = "torch._scaled_grouped_mm"
            return out
        except (AttributeError, TypeError, RuntimeError) as e:
            if api is not None:
                raise
            _fp8_api["private_error"] = repr(e)
    import torch.nn.functional as F
    rw = F.ScalingType.RowWise
    out = F.scaled_grouped_mm(a, b, scale_a, rw, scale_b, rw, offs=offs,
                              output_dtype=torch.bfloat16, use_fast_accum=True)
    _fp8_api["name"] = "torch.nn.functional.scaled_grouped_mm"
    return out


def offsets(torch, counts):
    ends, s = [], 0
    for c in counts:
        s += int(c)
        ends.append(s)
    return torch.tensor(ends, device="cuda", dtype=torch.int32), s


def grouped_call(torch, point, caches, kind, rotate_bytes):
    """The call of one grouped GEMM on weight copy i, and the number of copies."""
    counts = point["counts"]
    experts, n, k = point["experts"], point["N"], point["K"]
    offs, m_total = offsets(torch, counts)
    active = sum(1 for c in counts if c > 0)
    cache = caches[kind]
    copies = cache.get(rotation_count(active, cache.expert_bytes(), rotate_bytes))
    a = torch.randn(m_total, k, device="cuda", dtype=torch.bfloat16)
    if kind == "fp8":
        a = a.to(torch.float8_e4m3fn)
    return grouped_fns(torch, kind, a, offs, copies, m_total, experts, n), len(copies)


def layer_call(torch, point, caches, kind, rotate_bytes):
    """Both grouped GEMMs of the layer with silu(gate) * up between (BF16), cast to FP8 for
    the FP8 variant, on weight copy i; and the number of copies."""
    counts = point["counts"]
    experts, h, inter = point["experts"], point["hidden"], point["intermediate"]
    offs, m_total = offsets(torch, counts)
    active = sum(1 for c in counts if c > 0)
    cache = caches[kind]
    copies = cache.get(rotation_count(active, cache.expert_bytes(), rotate_bytes))
    x = torch.randn(m_total, h, device="cuda", dtype=torch.bfloat16)
    if kind == "bf16":
        def fn(i):
            w13, w2 = copies[i % len(copies)]
            g = torch._grouped_mm(x, w13.transpose(-2, -1), offs=offs)
            act = torch.nn.functional.silu(g[:, :inter]) * g[:, inter:]
            return torch._grouped_mm(act, w2.transpose(-2, -1), offs=offs)
    else:
        xq = x.to(torch.float8_e4m3fn)
        sa = torch.ones(m_total, device="cuda", dtype=torch.float32)
        s13 = torch.ones(experts, 2 * inter, device="cuda", dtype=torch.float32)
        s2 = torch.ones(experts, h, device="cuda", dtype=torch.float32)

        def fn(i):
            w13, w2 = copies[i % len(copies)]
            g = fp8_grouped(torch, xq, w13.transpose(-2, -1), sa, s13, offs)
            act = (torch.nn.functional.silu(g[:, :inter]) * g[:, inter:]).to(
                torch.float8_e4m3fn)
            return fp8_grouped(torch, act, w2.transpose(-2, -1), sa, s2, offs)
    return fn, len(copies)


MIN_GRAPH_RUNS = 4


def graph_runs(copies):
    """Calls per captured graph: every weight copy in turn, at least MIN_GRAPH_RUNS (mxmoe's
    rule)."""
    return copies * -(-MIN_GRAPH_RUNS // copies)


def graphed(torch, fn, runs):
    """fn(0) .. fn(runs - 1) captured in one CUDA graph; returns its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up off the capture, as torch.cuda.graph asks
        for i in range(runs):
            fn(i)
    torch.cuda.current_stream().wait_stream(side)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(runs):
            fn(i)
    return lambda i: g.replay()


def error_text(e):
    return "%s: %s" % (type(e).__name__, str(e).splitlines()[0] if str(e) else "")


def group_key(p):
    return (p.get("op"), p.get("shape"))


def run_baselines(torch, merged, args):
    timer = Timer(torch, args.iters, args.budget_ms / 1e3)
    rotate_bytes = args.rotate_mb * 1e6
    points = merged["points"]
    groups = []
    for p in points:  # consecutive points of one (op, shape) share their weight copies
        if not groups or group_key(groups[-1][0]) != group_key(p):
            groups.append([])
        groups[-1].append(p)
    for group in groups:
        first = group[0]
        op = first.get("op")
        try:
            if op == "grouped":
                mats = [(first["N"], first["K"])]
            else:
                mats = [(2 * first["intermediate"], first["hidden"]),
                        (first["hidden"], first["intermediate"])]
            caches = {kind: WeightCache(torch, first["experts"], mats, dtype,
                                        args.rotate_max_mb * 1e6)
                      for kind, dtype in (("bf16", torch.bfloat16),
                                          ("fp8", torch.float8_e4m3fn))}
        except Exception as e:
            for p in group:
                p["torch_bf16_us"] = p["torch_fp8_us"] = None
                p["torch_error"] = "set-up: %r" % (e,)
            continue
        for kind in ("bf16", "fp8"):
            for p in group:
                key = "torch_%s_us" % kind
                p[key] = None
                if "counts" not in p:
                    p["torch_%s_error" % kind] = "no per-expert counts in the input JSON"
                    continue
                try:
                    make = grouped_call if op == "grouped" else layer_call
                    fn, count = make(torch, p, caches, kind, rotate_bytes)
                    r = timer(fn)
                    p[key] = r["us"]
                    p["torch_%s_min_us" % kind] = r["min_us"]
                    p["torch_%s_runs" % kind] = r["runs"]
                    p["torch_%s_rotation_copies" % kind] = count
                    if kind == "fp8":
                        p["torch_fp8_api"] = _fp8_api.get("name")
                    if "graph_us" in p:  # mxmoe timed replays too: so does torch
                        gkey = "torch_%s_graph_us" % kind
                        p[gkey] = None
                        try:
                            runs = graph_runs(count)
                            g = timer(graphed(torch, fn, runs))
                            p[gkey] = g["us"] / runs
                            p["torch_%s_graph_min_us" % kind] = g["min_us"] / runs
                            p["torch_%s_graph_runs_per_replay" % kind] = runs
                        except Exception as e:
                            p["torch_%s_graph_error" % kind] = error_text(e)
                            torch.cuda.synchronize()
                except Exception as e:
                    msg = error_text(e)
                    p["torch_%s_error" % kind] = msg
                    log("torch_baseline: %s %s n=%s %s: %s" % (op, p.get("shape"),
                                                             p.get("tokens"), kind, msg))
                    if args.verbose:
                        traceback.print_exc()
                    torch.cuda.synchronize()
                log_point(p, kind)
            caches[kind].copies.clear()
            torch.cuda.empty_cache()
    if "private_error" in _fp8_api:
        merged["torch_fp8_private_api_error"] = _fp8_api["private_error"]


def log_point(p, kind):
    v = p.get("torch_%s_us" % kind)
    log("torch %-4s %-7s %-13s n=%-5s %s" % (kind, p.get("op"), p.get("shape"), p.get("tokens"),
                                             "%.1f us" % v if v is not None else "null"))


# --------------------------------------------------------------------------------------------
# Dry run: the merge and table logic without torch


def dry_run(merged):
    merged["dry_run"] = True
    c = merged["ceilings"]
    c.update({"copy_GBps": 2966.0, "fp8_TFLOPs": 1441.0, "fp8_TFLOPs_fast_accum": 1441.0,
              "fp8_TFLOPs_normal_accum": 1416.0, "bf16_TFLOPs": 788.0,
              "copy_convention": "bytes read + bytes written per second",
              "copy_source": "DRY RUN: anchors' H100 numbers, nothing measured"})
    for i, p in enumerate(merged["points"]):
        f = p.get("flops") or 0.0
        w = p.get("weight_bytes") or 0.0
        p["torch_bf16_us"] = 40.0 + f / 500e12 * 1e6 + 3.76 * w / 2966e9 * 1e6
        if i % 5 == 4:  # exercise the error path of the table
            p["torch_fp8_us"] = None
            p["torch_fp8_error"] = "DRY RUN: simulated failure"
        else:
            p["torch_fp8_us"] = 30.0 + f / 700e12 * 1e6 + 1.88 * w / 2966e9 * 1e6
        if "graph_us" in p:
            p["torch_bf16_graph_us"] = p["torch_bf16_us"] - 30.0
            p["torch_fp8_graph_us"] = (p["torch_fp8_us"] - 25.0 if p["torch_fp8_us"] else None)


# --------------------------------------------------------------------------------------------
# Output


def fmt(v, spec="%.1f"):
    return "-" if v is None else spec % v


def table(merged):
    c = merged["ceilings"]
    lines = []
    lines.append("card %s, commit %s, date %s%s" % (merged.get("card"), merged.get("commit"),
                                                   merged.get("date"),
                                                   " (DRY RUN: fake torch numbers)"
                                                   if merged.get("dry_run") else ""))
    lines.append("ceilings: copy %s GB/s (read+write; mxmoe measured %s), fp8 %s TFLOP/s, "
                 "bf16 %s TFLOP/s" % (fmt(c.get("copy_GBps"), "%.0f"),
                                      fmt(c.get("copy_GBps_mxmoe"), "%.0f"),
                                      fmt(c.get("fp8_TFLOPs"), "%.0f"),
                                      fmt(c.get("bf16_TFLOPs"), "%.0f")))
    head = ["op", "shape", "n", "mxmoe us", "floor us", "target us", "torch bf16 us",
            "torch fp8 us", "vs fp8", "target", "| replayed us", "torch fp8", "vs fp8",
            "target"]
    rows = []
    met = {True: "met", False: "MISS", None: "-"}
    for p in merged["points"]:
        t = p.get("time_us")
        vs, gvs = p.get("vs_torch_fp8"), p.get("graph_vs_torch_fp8")
        rows.append([str(p.get("op")), str(p.get("shape")), str(p.get("tokens")),
                     fmt(t) if t is not None else "FAIL", fmt(p.get("floor_us")),
                     fmt(p.get("target_us")), fmt(p.get("torch_bf16_us")),
                     fmt(p.get("torch_fp8_us")), "-" if vs is None else "%.2fx" % vs,
                     met[p.get("meets_target")], fmt(p.get("graph_us")),
                     fmt(p.get("torch_fp8_graph_us")), "-" if gvs is None else "%.2fx" % gvs,
                     met[p.get("graph_meets_target")]])
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    right = set(range(2, len(head)))

    def line(r):
        return " | ".join(r[i].rjust(widths[i]) if i in right else r[i].ljust(widths[i])
                          for i in range(len(head)))
    lines.append(line(head))
    lines.append("-+-".join("-" * w for w in widths))
    lines.extend(line(r) for r in rows)
    lines.append("vs fp8 = torch fp8 us / mxmoe us (> 1: mxmoe faster); target = max(10 us, "
                 "W/(0.8 copy), F/900 TFLOP/s); floor = max(W/copy, F/fp8)")
    lines.append("replayed: each side's runs on every weight copy in turn (at least 4) recorded "
                 "in one CUDA graph, its replays timed the same way, per run")
    errs = [(p, k) for p in merged["points"]
            for k in ("torch_bf16_error", "torch_fp8_error", "torch_bf16_graph_error",
                      "torch_fp8_graph_error", "error") if p.get(k)]
    for p, k in errs:
        lines.append("  %s %s n=%s %s: %s" % (p.get("op"), p.get("shape"), p.get("tokens"), k,
                                             p[k]))
    return "\n".join(lines) + "\n"


def finite(v):
    """The document with every NaN/Inf replaced by null (json.dump would write bare NaN)."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: finite(x) for k, x in v.items()}
    if isinstance(v, list):
        return [finite(x) for x in v]
    return v


def slug(text):
    return re.sub(r"[^A-Za-z0-9]+", "-", str(text or "unknown")).strip("-") or "unknown"


def output_path(merged, args):
    if args.out:
        return args.out
    now = datetime.datetime.now(datetime.timezone.utc)
    date = (merged.get("date") or now.strftime("%Y-%m-%d"))[:10]
    name = "bench-%s-%s-%s.json" % (date, slug(merged.get("card")), slug(merged.get("commit")))
    return os.path.join(args.out_dir, name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", help="JSON files written by `mxmoe bench --json`")
    ap.add_argument("--out", help="merged JSON path")
    ap.add_argument("--out-dir", default=".", help="directory for bench-<date>-<card>-<commit>"
                    ".json when --out is not given")
    ap.add_argument("--table", help="also write the table here")
    ap.add_argument("--iters", type=int, default=50, help="most timed runs per baseline")
    ap.add_argument("--budget-ms", type=float, default=2000, help="time budget per baseline")
    ap.add_argument("--rotate-mb", type=float, default=256, help="active weight MB cycled")
    ap.add_argument("--rotate-max-mb", type=float, default=16384, help="cap per weight cache")
    ap.add_argument("--copy-mb", type=int, default=1024, help="copy-bandwidth buffer size")
    ap.add_argument("--dry-run", action="store_true", help="no torch: fake numbers, to test "
                    "the merge and the table")
    ap.add_argument("--verbose", action="store_true", help="print tracebacks")
    args = ap.parse_args()

    merged, _ = load_inputs(args.inputs)
    merged["baseline_tool"] = "bench/torch_baseline.py"
    t0 = time.time()
    if args.dry_run:
        dry_run(merged)
    else:
        try:
            import torch
            if not torch.cuda.is_available():
                raise RuntimeError("torch sees no CUDA device")
            merged["torch_version"] = torch.__version__
            merged["card"] = torch.cuda.get_device_name()
            cap = torch.cuda.get_device_capability()
            merged["compute_capability"] = "%d.%d" % cap
            ceilings, errors = measure_ceilings(torch, args.copy_mb << 20)
            merged["ceilings"].update(ceilings)
            if errors:
                merged["ceiling_errors"] = errors
            log("torch_baseline: ceilings %s" % json.dumps(ceilings))
            run_baselines(torch, merged, args)
        except Exception as e:
            merged["torch_error"] = "%s: %s" % (type(e).__name__, e)
            log("torch_baseline: no torch baselines: %s" % merged["torch_error"])
            if args.verbose:
                traceback.print_exc()
            for p in merged["points"]:
                p.setdefault("torch_bf16_us", None)
                p.setdefault("torch_fp8_us", None)
    merged["baseline_seconds"] = round(time.time() - t0, 1)
    for p in merged["points"]:
        recompute(p, merged["ceilings"])
    path = output_path(merged, args)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(finite(merged), f, indent=1)
        f.write("\n")
    text = table(merged)
    sys.stdout.write(text)
    if args.table:
        with open(args.table, "w") as f:
            f.write(text)
    log("torch_baseline: wrote %s" % path)
    # Exit 3 when the baselines could not run at all (the outputs are written anyway).
    return 3 if merged.get("torch_error") else 0


if __name__ == "__main__":
    sys.exit(main())
