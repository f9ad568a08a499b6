"""test_plan.py — mxmoe_plan bit-identical to the oracle's stable sort.

Random ids with -1 (dropped pairs), experts with zero tokens, an expert map with -1 entries
(expert parallelism), T*k = 1, every pair dropped, ids straight from mxmoe_route; and
OUT_OF_RANGE for ids outside [-1, E_global) or map entries outside [-1, E), outputs untouched.
"""
import numpy as np
import pytest

import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_bytes_equal, assert_untouched, poisoned_like, assert_untouched_after_data_error
from test_route import route_params


def plan_outputs(tokens, top_k, experts):
    return (poisoned_like(experts, np.int32), poisoned_like(experts + 1, np.int32),
            poisoned_like(tokens * top_k, np.int32), poisoned_like(tokens * top_k, np.int32))


def check_plan(ctx, topk_ids, expert_map, experts):
    tokens, top_k = topk_ids.shape
    outs = plan_outputs(tokens, top_k, experts)
    ctx.plan(topk_ids, expert_map, experts, *outs)
    for name, got, want in zip(("counts", "offsets", "sorted", "row_of"), outs,
                               orc.plan(topk_ids, expert_map, experts)):
        assert_bytes_equal(got, want, f"{name} (T={tokens} k={top_k} E={experts} "
                                      f"map={'yes' if expert_map is not None else 'no'})")


def random_ids(rng, tokens, top_k, global_experts, drop_fraction):
    ids = rng.integers(0, global_experts, size=(tokens, top_k)).astype(np.int32)
    ids[rng.random(ids.shape) < drop_fraction] = -1
    return ids


def test_plan_random(ctx, rng):
    for _ in range(40):
        experts = int(rng.integers(1, 300))
        tokens, top_k = int(rng.integers(1, 400)), int(rng.integers(1, 9))
        hot = rng.integers(0, experts, size=max(1, experts // 4))  # leaves many experts empty
        ids = rng.choice(hot, size=(tokens, top_k)).astype(np.int32)
        if rng.random() < 0.5:
            ids = random_ids(rng, tokens, top_k, experts, float(rng.choice([0.0, 0.2])))
        else:
            ids[rng.random(ids.shape) < 0.1] = -1
        check_plan(ctx, ids, None, experts)


def test_plan_with_expert_map(ctx, rng):
    for _ in range(30):
        global_experts = int(rng.integers(1, 300))
        local = int(rng.integers(1, global_experts + 1))
        # a random subset of global experts lives here, in a random local order
        emap = np.full(global_experts, -1, dtype=np.int32)
        here = rng.choice(global_experts, size=local, replace=False)
        emap[here] = rng.permutation(local)
        ids = random_ids(rng, int(rng.integers(1, 300)), int(rng.integers(1, 9)), global_experts,
                         0.1)
        check_plan(ctx, ids, emap, local)


def test_plan_edges(ctx):
    check_plan(ctx, np.array([[3]], dtype=np.int32), None, 4)               # T*k = 1
    check_plan(ctx, np.full((5, 2), -1, dtype=np.int32), None, 3)           # all dropped
    check_plan(ctx, np.zeros((7, 3), dtype=np.int32), None, 1)              # one expert
    check_plan(ctx, np.array([[1, 0]], dtype=np.int32), np.array([-1, -1], np.int32), 1)


def test_plan_of_route_output(ctx, lib, rng):
    logits = rng.standard_normal((100, 64)).astype(np.float32)
    ids, weights = poisoned_like((100, 6), np.int32), poisoned_like((100, 6), np.float32)
    ctx.route(logits, route_params(lib, "SOFTMAX_TOPK", 6, True), ids, weights)
    check_plan(ctx, ids, None, 64)


@pytest.mark.parametrize("bad_id", [-2, 8, 1 << 30])
def test_out_of_range_ids(ctx, rng, bad_id):
    ids = random_ids(rng, 10, 2, 8, 0.1)
    ids[6, 1] = bad_id
    outs = plan_outputs(10, 2, 8)
    assert ctx.plan(ids, None, 8, *outs, check=False) == mx.Status.OUT_OF_RANGE
    assert_untouched_after_data_error(ctx, *outs)
    assert ctx.last_error()


@pytest.mark.parametrize("bad_entry", [-2, 4])
def test_out_of_range_map_entries(ctx, rng, bad_entry):
    emap = np.array([0, 1, -1, 2, 3, -1], dtype=np.int32)
    emap[2] = bad_entry
    ids = np.array([[0, 2], [5, 1]], dtype=np.int32)
    outs = plan_outputs(2, 2, 4)
    assert ctx.plan(ids, emap, 4, *outs, check=False) == mx.Status.OUT_OF_RANGE
    assert_untouched_after_data_error(ctx, *outs)


def test_id_beyond_map_length(ctx):
    emap = np.array([0, 1, 2], dtype=np.int32)  # E_global = 3
    ids = np.array([[0, 3]], dtype=np.int32)
    outs = plan_outputs(1, 2, 3)
    assert ctx.plan(ids, emap, 3, *outs, check=False) == mx.Status.OUT_OF_RANGE
    assert_untouched_after_data_error(ctx, *outs)
