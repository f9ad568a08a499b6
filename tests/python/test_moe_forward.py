"""test_moe_forward.py — mxmoe_moe_forward, the whole layer, against oracle_moe.

Random small shapes (H, I multiples of 32, some not of 128); every activation, gate/up concat
and interleaved; biases none/F32/BF16/F16; act dtypes; every rule; router weight on the output
or on the input; x F32/BF16/F16; out F32/BF16/F16; linear and swizzled weight scales. Named
cases: top_k = 1, top_k = E, one token, ids -1, an expert map with experts elsewhere, every pair
dropped. Each output must equal the FP32-order emulation bit for bit and be close (normalised
error) to an FP64 pipeline with the same quantization points. The caller's x, ids and weights
must come back unchanged; the workspace is exactly the queried size and poisoned; a workspace
one byte short is a WORKSPACE error that writes nothing.
"""
import numpy as np
import pytest

import mx_operands as mo
import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_same_floats, assert_untouched, normalised_error, poison, poisoned_like, assert_untouched_after_data_error

DTYPES = {"F32": orc.F32, "BF16": orc.BF16, "F16": orc.F16}
LAYER_CASES = [(a, lay) for a in orc.MUL_ACTIVATIONS for lay in ("CONCAT", "INTERLEAVED")] + [
    (a, "CONCAT") for a in orc.ACTIVATIONS if a not in orc.MUL_ACTIVATIONS]
HIDDEN = [32, 64, 96, 128, 160, 288, 512]
# FP64 pipeline vs library, normalised: two roundings' worth of out's dtype plus the FP32
# sums. Where FP32 and FP64 GEMM-1 results straddle a rounding point, the two pipelines
# quantize an activation differently (rare); one block's scale a binade apart can move the
# output by a tenth (FLOOR saturates up to a quarter of a block's largest value, and RELU2 makes
# that value dominate). Then the activations themselves must still agree to their dtype, and
# the output is compared with the FP64 pipeline run from the library's quantized activation.
# A layout or indexing error gives ~1.
NORM_TOL = {np.dtype(np.float32): 2 * 2.0 ** -24 + 1e-6, np.dtype(np.float16): 2 * 2.0 ** -11,
            orc.BF16: 2 * 2.0 ** -8}
# Below the out dtype's smallest normal a rounding's error is absolute, at most half the
# subnormal step (F16 outputs of small layers land there): two such roundings per element add
# 2 * step/2 * sqrt(elements) to the error's norm.
OUT_HALF_SUBNORMAL = {np.dtype(np.float32): 2.0 ** -150, np.dtype(np.float16): 2.0 ** -25,
                      orc.BF16: 2.0 ** -134}


def random_ids(rng, tokens, top_k, global_experts, drop_fraction):
    """Distinct experts per token (as a router gives), some slots -1."""
    ids = np.argsort(rng.random((tokens, global_experts)), axis=1)[:, :top_k].astype(np.int32)
    ids[rng.random(ids.shape) < drop_fraction] = -1
    return ids


def build_case(rng, activation, layout, **fixed):
    """A random MoeCase; `fixed` pins fields (or tokens/top_k/hidden/inter/use_map); None = draw."""

    def get(name, draw):
        return fixed[name] if fixed.get(name) is not None else draw()

    experts = get("num_experts", lambda: int(rng.integers(1, 7)))
    tokens = get("tokens", lambda: int(rng.integers(1, 24)))
    hidden = get("hidden", lambda: int(rng.choice(HIDDEN)))
    inter = get("inter", lambda: int(rng.choice(HIDDEN)))
    use_map = get("use_map", lambda: bool(rng.random() < 0.3))
    expert_map, global_experts = None, experts
    if use_map:
        global_experts = experts + int(rng.integers(0, 4))
        expert_map = np.full(global_experts, -1, dtype=np.int32)
        expert_map[rng.choice(global_experts, size=experts, replace=False)] = rng.permutation(
            experts)
    top_k = get("top_k", lambda: int(rng.integers(1, global_experts + 1)))
    drop = float(rng.choice([0.0, 0.2]))
    ids = get("topk_ids", lambda: random_ids(rng, tokens, top_k, global_experts, drop))
    weights = rng.random(ids.shape).astype(np.float32) + np.float32(0.05)
    x_dtype = DTYPES[get("x_dtype", lambda: str(rng.choice(list(DTYPES))))]
    x = mo.varied_rows(rng, tokens, hidden, 8).astype(np.float32).astype(x_dtype)
    rows13 = orc.w13_rows(activation, inter)
    # scales over ~20 binades so that FP32 sums round and the summation order is observable
    # (the quantized activation's own scales vary little, so GEMM-2 needs w2's spread)
    w13 = mo.random_weights(rng, experts, rows13, hidden, 104, 122)
    w2 = mo.random_weights(rng, experts, hidden, inter, 100, 122)

    def bias(rows):
        kind = str(rng.choice(["none", "F32", "BF16", "F16"]))
        if kind == "none":
            return None
        return (rng.standard_normal((experts, rows))).astype(np.float32).astype(DTYPES[kind])

    return orc.MoeCase(
        x=x, topk_ids=ids, topk_weights=weights, w13=w13, w2=w2,
        b13=get("b13", lambda: bias(rows13)), b2=get("b2", lambda: bias(hidden)),
        num_experts=experts, activation=activation, layout=layout,
        alpha=float(np.float32(1.702)), limit=7.0,
        act_dtype=DTYPES[get("act_dtype", lambda: str(rng.choice(["BF16", "BF16", "F16", "F32"])))],
        rule=get("rule", lambda: str(rng.choice(orc.RULES))),
        weight_on_input=get("weight_on_input", lambda: bool(rng.random() < 0.4)),
        expert_map=expert_map,
        out_dtype=DTYPES[get("out_dtype", lambda: str(rng.choice(list(DTYPES))))],
        gemm_dtype=DTYPES[get("gemm_dtype", lambda: "F32")])


def moe_params(lib, case):
    p = lib.mxmoe_moe_params_default()
    p.num_experts = case.num_experts
    p.act.activation = mx.Activation[case.activation]
    p.act.layout = mx.GateUpLayout[case.layout]
    p.act.swiglu_alpha, p.act.swiglu_limit = case.alpha, case.limit
    p.act.act_dtype = mx.DTYPE_OF_NP[np.dtype(case.act_dtype)]
    p.act.rule = mx.Rule[case.rule]
    p.router_weight_on_input = int(case.weight_on_input)
    p.gemm_dtype = mx.DTYPE_OF_NP[np.dtype(case.gemm_dtype)]
    return p


def describe(case, w_layout):
    t, k = case.topk_ids.shape
    return (f"{case.activation} {case.layout} E={case.num_experts} T={t} k={k} "
            f"H={case.x.shape[1]} I={case.w2[0].shape[2]} x={case.x.dtype} "
            f"act={np.dtype(case.act_dtype)} rule={case.rule} "
            f"on_input={case.weight_on_input} map={case.expert_map is not None} "
            f"b13={None if case.b13 is None else case.b13.dtype} "
            f"b2={None if case.b2 is None else case.b2.dtype} out={np.dtype(case.out_dtype)} "
            f"gemm={np.dtype(case.gemm_dtype)} w_scales={w_layout}")


def run_and_check(ctx, lib, case, w_layout="LINEAR"):
    """Checks one case; returns the number of GEMM-2 outputs whose FP32 sum rounded."""
    what = describe(case, w_layout)
    params = moe_params(lib, case)
    tokens, top_k = case.topk_ids.shape
    hidden, inter = case.x.shape[1], case.w2[0].shape[2]
    ws_bytes = ctx.moe_workspace_size(params, tokens, top_k, hidden, inter)
    workspace = poisoned_like(ws_bytes, np.uint8)
    out = poisoned_like(case.x.shape, case.out_dtype)
    inputs_before = [a.copy() for a in (case.x, case.topk_ids, case.topk_weights)]
    w13 = mo.weights_for_library(*case.w13, w_layout)
    w2 = mo.weights_for_library(*case.w2, w_layout)
    ctx.moe_forward(case.x, case.topk_ids, case.topk_weights, w13, w2, case.b13, case.b2,
                    params, workspace, out, expert_map=case.expert_map)
    for before, after, name in zip(inputs_before, (case.x, case.topk_ids, case.topk_weights),
                                   ("x", "topk_ids", "topk_weights")):
        assert before.tobytes() == after.tobytes(), f"{what}: the caller's {name} was modified"
    emulated = orc.moe_forward_emulated(case)
    assert_same_floats(out, emulated.out, f"{what}: vs FP32 emulation")
    fp64 = orc.moe_forward_fp64(case)
    ref = fp64.out
    tol = NORM_TOL[np.dtype(case.out_dtype)]
    if np.dtype(case.gemm_dtype) == orc.BF16:
        # GEMM results kept in BF16: where the FP32 and FP64 sums straddle a BF16 rounding
        # point the two pipelines' terms differ by one BF16 step
        tol = max(tol, NORM_TOL[orc.BF16])
    if not (np.array_equal(emulated.act_codes, fp64.act_codes)
            and np.array_equal(emulated.act_scales, fp64.act_scales)):
        act_tol = max(NORM_TOL[np.dtype(case.act_dtype)], tol)
        act_err = normalised_error(emulated.act, fp64.act)
        assert act_err <= act_tol, f"{what}: activation vs FP64 pipeline {act_err:.3g}"
        ref = orc.moe_forward_fp64_from_act(case, emulated.act_codes, emulated.act_scales)
    ref_norm = np.linalg.norm(ref.astype(np.float64))
    if ref_norm > 0:
        tol += 2 * OUT_HALF_SUBNORMAL[np.dtype(case.out_dtype)] * np.sqrt(out.size) / ref_norm
    err = normalised_error(out, ref)
    assert err <= tol, f"{what}: normalised error vs FP64 pipeline {err:.3g} > {tol:.3g}"
    return out, emulated.gemm2_rounded


def draw_unambiguous(rng, activation, layout, **fixed):
    """A case whose activation step has no libm-midpoint element (redrawn otherwise)."""
    for _ in range(20):
        case = build_case(rng, activation, layout, **fixed)
        if not orc.moe_forward_emulated(case).ambiguous:
            return case
    raise RuntimeError("every draw had a libm-ambiguous activation value")


@pytest.mark.parametrize("activation,layout", LAYER_CASES)
def test_moe_forward_random(ctx, lib, rng, activation, layout):
    rounded = 0
    for i in range(12):
        case = draw_unambiguous(rng, activation, layout, out_dtype="F32" if i < 4 else None)
        rounded += run_and_check(ctx, lib, case, "SWIZZLED" if i % 2 else "LINEAR")[1]
    # the bit-exact comparison only tells summation orders apart where FP32 rounds
    assert rounded > 0, "no GEMM-2 sum rounded: the data no longer exercise the summation order"


@pytest.mark.parametrize("activation,layout", [("SILU_MUL", "CONCAT"),
                                               ("SWIGLU_OAI", "INTERLEAVED"),
                                               ("GELU_TANH", "CONCAT")])
def test_moe_forward_bf16_gemm_results(ctx, lib, rng, activation, layout):
    """gemm_dtype = BF16: both GEMMs' results rounded to BF16 after their biases."""
    for i in range(6):
        case = draw_unambiguous(rng, activation, layout, gemm_dtype="BF16")
        run_and_check(ctx, lib, case, "SWIZZLED" if i % 2 else "LINEAR")


@pytest.mark.parametrize("top_k", ["one", "all"])
def test_top_k_extremes(ctx, lib, rng, top_k):
    for weight_on_input in (False, True):
        experts = int(rng.integers(2, 6))
        case = draw_unambiguous(rng, "SILU_MUL", "CONCAT", num_experts=experts, use_map=False,
                                top_k=1 if top_k == "one" else experts,
                                weight_on_input=weight_on_input)
        run_and_check(ctx, lib, case)


def test_gpt_oss_like_shape(ctx, lib, rng):
    """H = I = 2880 (not a multiple of 128), SwiGLU on interleaved gate/up, biases, top-2 of
    4, swizzled weight scales: gpt-oss's layer at a small expert count."""
    case = draw_unambiguous(rng, "SWIGLU_OAI", "INTERLEAVED", num_experts=4, tokens=3, top_k=2,
                            hidden=2880, inter=2880, use_map=False, act_dtype="BF16",
                            rule="RCEIL", out_dtype="BF16", weight_on_input=False, x_dtype="BF16")
    case.b13 = rng.standard_normal((4, 2 * 2880)).astype(np.float32).astype(orc.BF16)
    case.b2 = rng.standard_normal((4, 2880)).astype(np.float32).astype(orc.BF16)
    run_and_check(ctx, lib, case, "SWIZZLED")


def test_one_token(ctx, lib, rng):
    for activation, layout in LAYER_CASES:
        case = draw_unambiguous(rng, activation, layout, tokens=1)
        run_and_check(ctx, lib, case)


def test_dropped_pairs_and_expert_map(ctx, lib, rng):
    for _ in range(4):
        case = draw_unambiguous(rng, "SWIGLU_OAI", "INTERLEAVED", use_map=True, tokens=16)
        case.topk_ids[3, :] = -1  # token 3 has no expert at all: its output is 0
        out, _ = run_and_check(ctx, lib, case)
        assert (out[3].astype(np.float64) == 0).all()


def test_every_pair_dropped(ctx, lib, rng):
    case = build_case(rng, "SILU_MUL", "CONCAT", tokens=5, top_k=2, use_map=False,
                      topk_ids=np.full((5, 2), -1, dtype=np.int32))
    out, _ = run_and_check(ctx, lib, case)
    assert (out.astype(np.float64) == 0).all()


def test_weight_on_input_with_top_k_above_one(ctx, lib, rng):
    """The seed allows only top-1 here and mutates x; mxmoe does neither."""
    for act_dtype in ("BF16", "F16", "F32"):
        case = draw_unambiguous(rng, "GELU_TANH_MUL", "CONCAT", weight_on_input=True, top_k=3,
                                num_experts=4, use_map=False, act_dtype=act_dtype)
        run_and_check(ctx, lib, case)


def test_workspace_too_small(ctx, lib, rng):
    case = draw_unambiguous(rng, "SILU_MUL", "CONCAT", tokens=8)
    params = moe_params(lib, case)
    tokens, top_k = case.topk_ids.shape
    size = ctx.moe_workspace_size(params, tokens, top_k, case.x.shape[1], case.w2[0].shape[2])
    assert size > 0
    workspace = poisoned_like(size - 1, np.uint8)
    out = poisoned_like(case.x.shape, case.out_dtype)
    status = ctx.moe_forward(case.x, case.topk_ids, case.topk_weights,
                             mo.weights_for_library(*case.w13, "LINEAR"),
                             mo.weights_for_library(*case.w2, "LINEAR"), case.b13, case.b2,
                             params, workspace, out, expert_map=case.expert_map, check=False)
    assert status == mx.Status.WORKSPACE
    assert_untouched(out), assert_untouched(workspace)
    poison(out)
    status = ctx.moe_forward(case.x, case.topk_ids, case.topk_weights,
                             mo.weights_for_library(*case.w13, "LINEAR"),
                             mo.weights_for_library(*case.w2, "LINEAR"), case.b13, case.b2,
                             params, None, out, expert_map=case.expert_map, check=False)
    assert status == mx.Status.WORKSPACE
    assert_untouched(out)


def test_out_of_range_id_is_reported(ctx, lib, rng):
    case = draw_unambiguous(rng, "SILU_MUL", "CONCAT", tokens=6, top_k=1, use_map=False,
                            num_experts=3)
    case.topk_ids[4, 0] = 3
    params = moe_params(lib, case)
    size = ctx.moe_workspace_size(params, 6, 1, case.x.shape[1], case.w2[0].shape[2])
    out = poisoned_like(case.x.shape, case.out_dtype)
    status = ctx.moe_forward(case.x, case.topk_ids, case.topk_weights,
                             mo.weights_for_library(*case.w13, "LINEAR"),
                             mo.weights_for_library(*case.w2, "LINEAR"), case.b13, case.b2,
                             params, poisoned_like(size, np.uint8), out, check=False)
    assert status == mx.Status.OUT_OF_RANGE
    assert_untouched_after_data_error(ctx, out)
