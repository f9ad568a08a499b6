"""test_route.py — mxmoe_route against the FP64 oracle.

All three methods; renormalize on and off; groups (SIGMOID_GROUPED with num_groups > 1,
topk_groups < num_groups, a correction bias, a scaling factor); exact ties (equal logits must
pick the lower expert id, in selection order); top_k = 1 and = E; F32/BF16/F16 logits; NaN
logits rejected with OUT_OF_RANGE and outputs untouched.

Ids must equal the oracle's exactly. Tokens whose FP64 selection had a near-tie (two different
scores within 1e-5 relative, where FP32 may legitimately order them the other way) are redrawn
before the call, so no comparison is loosened. Weights are FP32 softmax/sigmoid results: they
must match the FP64 values to (E + 16) FP32 ulps.
"""
import numpy as np
import pytest

import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_bytes_equal, assert_untouched, poisoned_like, assert_untouched_after_data_error

LOGIT_DTYPES = {"F32": orc.F32, "BF16": orc.BF16, "F16": orc.F16}


def draw_logits(rng, tokens, experts, dtype, tied):
    if tied:  # few distinct values: many exact ties
        return (rng.integers(-3, 4, size=(tokens, experts)) / 2.0).astype(np.float32).astype(dtype)
    scale = float(rng.choice([0.5, 2.0, 6.0]))
    return (rng.standard_normal((tokens, experts)) * scale).astype(np.float32).astype(dtype)


def unambiguous_logits(rng, tokens, experts, dtype, tied, oracle_args):
    """Logits whose oracle selection has no near-tie (redrawing the tokens that had one)."""
    logits = draw_logits(rng, tokens, experts, dtype, tied)
    for _ in range(50):
        _, _, near = orc.route(logits, **oracle_args)
        if not near.any():
            return logits
        logits[near] = draw_logits(rng, int(near.sum()), experts, dtype, tied)
    raise RuntimeError("could not draw logits free of near-ties")


def route_params(lib, method, top_k, renormalize, num_groups=1, topk_groups=1,
                 scaling_factor=1.0):
    p = lib.mxmoe_route_params_default()
    p.method = mx.Routing[method]
    p.top_k, p.renormalize = top_k, int(renormalize)
    p.num_groups, p.topk_groups, p.scaling_factor = num_groups, topk_groups, scaling_factor
    return p


def random_config(rng, method, top_k=None):
    """top_k: None (random), "one" or "all"."""
    experts = int(rng.choice([1, 2, 8, 32, 64, 128, 256]))
    top_k = {None: lambda: int(rng.choice([1, experts, rng.integers(1, experts + 1)])),
             "one": lambda: 1, "all": lambda: experts}[top_k]()
    cfg = dict(method=method, top_k=top_k, renormalize=bool(rng.random() < 0.5))
    bias = None
    if method == "SIGMOID_GROUPED":
        groups = [g for g in (1, 2, 4, 8) if experts % g == 0 and experts // g >= 2] or [1]
        num_groups = int(rng.choice(groups))
        topk_groups = num_groups if top_k == experts else int(rng.integers(1, num_groups + 1))
        # top_k must fit in the kept groups
        top_k = min(top_k, topk_groups * (experts // num_groups))
        cfg.update(top_k=top_k, num_groups=num_groups, topk_groups=topk_groups,
                   scaling_factor=float(np.float32(rng.choice([1.0, 2.5]))))
        if rng.random() < 0.7:
            bias = (rng.standard_normal(experts) * 0.1).astype(np.float32)
    return experts, cfg, bias


def run_and_compare(ctx, lib, rng, method, dtype, tied, top_k=None):
    experts, cfg, bias = random_config(rng, method, top_k)
    tokens = int(rng.integers(1, 200))
    logits = unambiguous_logits(rng, tokens, experts, dtype, tied,
                                dict(cfg, correction_bias=bias))
    want_ids, want_w, _ = orc.route(logits, **cfg, correction_bias=bias)
    ids = poisoned_like((tokens, cfg["top_k"]), np.int32)
    weights = poisoned_like((tokens, cfg["top_k"]), np.float32)
    params = route_params(lib, **cfg)
    ctx.route(logits, params, ids, weights, correction_bias=bias)
    what = f"{cfg} E={experts} T={tokens} logits={dtype} tied={tied} bias={bias is not None}"
    assert_bytes_equal(ids, want_ids, f"ids {what}")
    tol = (experts + 16) * 2.0 ** -23 * np.abs(want_w) + 1e-37
    err = np.abs(weights.astype(np.float64) - want_w)
    bad = err > tol
    assert not bad.any(), (f"weights {what}: {int(bad.sum())} beyond {experts + 16} ulps, first "
                           f"got {weights[bad][:4]} want {want_w[bad][:4]}")


@pytest.mark.parametrize("dtype", list(LOGIT_DTYPES))
@pytest.mark.parametrize("method", orc.ROUTINGS)
def test_route_random(ctx, lib, rng, method, dtype):
    for _ in range(8):
        run_and_compare(ctx, lib, rng, method, LOGIT_DTYPES[dtype], tied=False)


@pytest.mark.parametrize("dtype", list(LOGIT_DTYPES))
@pytest.mark.parametrize("method", orc.ROUTINGS)
def test_route_exact_ties(ctx, lib, rng, method, dtype):
    for _ in range(8):
        run_and_compare(ctx, lib, rng, method, LOGIT_DTYPES[dtype], tied=True)


@pytest.mark.parametrize("top_k", ["one", "all"])
@pytest.mark.parametrize("method", orc.ROUTINGS)
def test_top_k_one_and_all(ctx, lib, rng, method, top_k):
    for tied in (False, True):
        for _ in range(4):
            run_and_compare(ctx, lib, rng, method, orc.F32, tied, top_k)


@pytest.mark.parametrize("method", orc.ROUTINGS)
def test_all_equal_logits_pick_lowest_ids_in_order(ctx, lib, method):
    experts, top_k = 16, 5
    logits = np.full((3, experts), 0.25, dtype=np.float32)
    ids = poisoned_like((3, top_k), np.int32)
    weights = poisoned_like((3, top_k), np.float32)
    ctx.route(logits, route_params(lib, method, top_k, True), ids, weights)
    assert ids.tolist() == [list(range(top_k))] * 3
    assert np.allclose(weights, 1.0 / top_k, rtol=1e-6)


def test_nan_logits_are_rejected(ctx, lib):
    logits = np.zeros((4, 8), dtype=np.float32)
    logits[2, 5] = np.nan
    for method in orc.ROUTINGS:
        ids, weights = poisoned_like((4, 2), np.int32), poisoned_like((4, 2), np.float32)
        status = ctx.route(logits, route_params(lib, method, 2, False), ids, weights, check=False)
        assert status == mx.Status.OUT_OF_RANGE, method
        assert_untouched_after_data_error(ctx, ids, weights)


@pytest.mark.parametrize("top_k", [0, 9])
def test_bad_top_k_is_rejected(ctx, lib, top_k):
    logits = np.zeros((4, 8), dtype=np.float32)
    ids = poisoned_like((4, max(top_k, 1)), np.int32)
    weights = poisoned_like((4, max(top_k, 1)), np.float32)
    status = ctx.route(logits, route_params(lib, "SOFTMAX_TOPK", top_k, False), ids, weights,
                       check=False)
    assert status != mx.Status.OK
    assert_untouched(ids), assert_untouched(weights)
