"""oracle_route.py — routing (mxmoe_route) and planning (mxmoe_plan) oracles.

Routing selects on scores computed in float64 and breaks exact ties by the lower expert id
(stable sorts). The library computes in FP32, so two scores closer than FP32 can resolve
can be ordered differently there: `route` reports, per token, whether any selection decision
had such a near-tie, and the tests draw fresh logits for those tokens rather than loosen the
comparison. Exact ties (equal inputs) are kept: they are equal in every precision.
"""
import numpy as np

from oracle_mx import to_f64

ROUTINGS = ("SOFTMAX_TOPK", "TOPK_SOFTMAX", "SIGMOID_GROUPED")
NEAR_TIE = 1e-5  # relative gap below which FP32 and FP64 may order two scores differently


def _stable_desc(scores):
    """Indices sorting each row by descending score, equal scores by ascending index."""
    return np.argsort(-scores, axis=-1, kind="stable")


def _near_tie(sorted_scores, upto):
    """True where any gap between consecutive sorted scores among the first `upto` is nonzero
    but smaller than NEAR_TIE relative to the scores."""
    s = sorted_scores[..., :upto]
    gap = np.abs(s[..., :-1] - s[..., 1:])
    scale = np.maximum(np.abs(s[..., :-1]), np.abs(s[..., 1:]))
    return ((gap > 0) & (gap < NEAR_TIE * np.maximum(scale, 1e-30))).any(axis=-1)


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def route(logits, method, top_k, renormalize=False, num_groups=1, topk_groups=1,
          scaling_factor=1.0, correction_bias=None):
    """logits F32/BF16/F16 [T, E] -> (ids int32 [T, k], weights float64 [T, k], near_tie [T])."""
    lg = to_f64(logits)
    t_count, e_count = lg.shape
    k = top_k
    rows = np.arange(t_count)[:, None]
    if method == "SOFTMAX_TOPK":
        p = _softmax(lg)
        order = _stable_desc(p)
        ids = order[:, :k]
        w = p[rows, ids]
        if renormalize:
            w = w / w.sum(axis=1, keepdims=True)
        near = _near_tie(p[rows, order], min(k + 1, e_count))
    elif method == "TOPK_SOFTMAX":
        order = _stable_desc(lg)
        ids = order[:, :k]
        w = _softmax(lg[rows, ids])
        near = _near_tie(lg[rows, order], min(k + 1, e_count))
    elif method == "SIGMOID_GROUPED":
        s = 1.0 / (1.0 + np.exp(-lg))
        biased = s + (to_f64(correction_bias)[None, :] if correction_bias is not None else 0.0)
        group_size = e_count // num_groups
        grouped = biased.reshape(t_count, num_groups, group_size)
        top2 = -np.sort(-grouped, axis=2)[:, :, :2]
        group_score = top2.sum(axis=2)
        group_order = _stable_desc(group_score)
        kept = np.zeros((t_count, num_groups), dtype=bool)
        kept[rows, group_order[:, :topk_groups]] = True
        candidate = np.where(np.repeat(kept, group_size, axis=1), biased, -np.inf)
        order = _stable_desc(candidate)
        ids = order[:, :k]
        w = s[rows, ids]
        if renormalize:
            w = w / w.sum(axis=1, keepdims=True)
        w = w * float(np.float32(scaling_factor))
        near = _near_tie(candidate[rows, order], min(k + 1, topk_groups * group_size))
        if topk_groups < num_groups:
            near |= _near_tie(group_score[rows, group_order][:, topk_groups - 1:], 2)
    else:
        raise ValueError(method)
    return ids.astype(np.int32), w, near


def plan(topk_ids, expert_map, num_experts):
    """-> counts [E], offsets [E+1], sorted [T*k], row_of [T*k] (int32), as mxmoe_plan.

    Built with a stable sort of the flat (token, slot) indices by local expert id, dropped
    pairs sorted last: within an expert, rows come out in ascending flat index.
    """
    flat = np.asarray(topk_ids, dtype=np.int64).reshape(-1)
    if expert_map is not None:
        m = np.asarray(expert_map, dtype=np.int64)
        local = np.where(flat >= 0, m[np.clip(flat, 0, None)], -1)
    else:
        local = flat
    kept = local >= 0
    counts = np.bincount(local[kept], minlength=num_experts)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    key = np.where(kept, local, num_experts)
    order = np.argsort(key, kind="stable")
    n_kept = int(offsets[-1])
    sorted_rows = np.full(flat.size, -1, dtype=np.int64)
    sorted_rows[:n_kept] = order[:n_kept]
    row_of = np.full(flat.size, -1, dtype=np.int64)
    row_of[order[:n_kept]] = np.arange(n_kept)
    return tuple(np.asarray(a, dtype=np.int32) for a in (counts, offsets, sorted_rows, row_of))
