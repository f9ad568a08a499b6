"""oracle_act.py — the fused activations of mxmoe_act_and_quantize, in float64.

The contract as implemented and as the lead's brief states it: the activation is evaluated in
FP64, rounded to FP32, then rounded to act_dtype (two roundings: mxmoe.h's comment says "rounds
once to act_dtype", which differs exactly when the FP32 value lands on an act_dtype midpoint —
raised as a contract question), then quantized. Two FP64 evaluations that use different libm builds
(numpy's SIMD exp/tanh here, glibc in C) can differ by an ulp, which matters only when the
exact value sits on a rounding midpoint of act_dtype. `activation` therefore also returns an
error bracket per element: the values obtained with every libm result nudged by a few ulps.
Rounding the bracket's ends gives [lo, hi] per element (almost always a single value). The tests
accept a block that differs from the nominal value only if its bytes are what some choice
inside the brackets produces (`within_bracket`), and count such blocks.
"""
import numpy as np

from oracle_mx import BLOCK, E2M1_VALUE, F32, block_exponents, encode_elements, round_to, to_f64

ACTIVATIONS = ("SILU_MUL", "GELU_TANH_MUL", "SWIGLU_OAI", "SILU", "GELU_TANH", "RELU2")
MUL_ACTIVATIONS = ("SILU_MUL", "GELU_TANH_MUL", "SWIGLU_OAI")

# A libm result is trusted to 4 ulps (glibc and numpy promise <= 1-4); the final value to 32
# ulps more for differently associated arithmetic. Both far below any float32 ulp (2^29 ulps).
LIBM_ULPS = 4.0
ARITH_ULPS = 32.0
U64 = 2.0 ** -53
SQRT_2_OVER_PI = np.sqrt(2.0 / np.pi)


def split_gate_up(h, layout):
    """h [R, 2I] -> (gate, up) [R, I] each."""
    if layout == "CONCAT":
        i = h.shape[-1] // 2
        return h[..., :i], h[..., i:]
    if layout == "INTERLEAVED":
        return h[..., 0::2], h[..., 1::2]
    raise ValueError(layout)


def _sigmoid(z, nudge):
    with np.errstate(over="ignore"):
        e = np.exp(-z) * (1.0 + nudge * LIBM_ULPS * U64)
    return 1.0 / (1.0 + e)


def _silu(g, nudge):
    return g * _sigmoid(g, nudge)


def _gelu_tanh(g, nudge):
    t = np.tanh(SQRT_2_OVER_PI * (g + 0.044715 * g * g * g))
    # tanh's error is absolute (near +-1 where 1 + tanh cancels): nudge by ulps of 1
    t = t + nudge * LIBM_ULPS * U64 * np.maximum(np.abs(t), 2.0 ** -1022)
    t = np.clip(t, -1.0, 1.0)
    return 0.5 * g * (1.0 + t)


def _evaluate(h, activation, layout, alpha, limit, nudge):
    if activation in MUL_ACTIVATIONS:
        gate, up = split_gate_up(h, layout)
        if activation == "SILU_MUL":
            return _silu(gate, nudge) * up
        if activation == "GELU_TANH_MUL":
            return _gelu_tanh(gate, nudge) * up
        # gpt-oss: no lower clamp on the gate; +1 on the (clamped) up half. NaN propagates.
        g = np.where(gate > limit, limit, gate)
        u = np.where(up > limit, limit, np.where(up < -limit, -limit, up))
        return g * _sigmoid(alpha * g, nudge) * (u + 1.0)
    if activation == "SILU":
        return _silu(h, nudge)
    if activation == "GELU_TANH":
        return _gelu_tanh(h, nudge)
    if activation == "RELU2":
        r = np.maximum(h, 0.0)  # np.maximum propagates NaN
        return r * r
    raise ValueError(activation)


def round_act(v64, act_dtype):
    """FP64 activation value -> FP32 -> act_dtype, each step round-to-nearest-even."""
    return round_to(round_to(v64, F32).astype(np.float64), act_dtype)


def activation(h, activation, layout="CONCAT", alpha=np.float32(1.702), limit=np.float32(7.0),
               act_dtype=np.float32):
    """h: float64 (exact values of the F32/BF16/F16 input) -> (value, lo, hi), act_dtype arrays.

    value: the activation rounded to FP32 and then to act_dtype (round_act).
    lo, hi: the rounded ends of the libm error bracket (lo <= value <= hi; equal to value almost
    everywhere). alpha and limit are the float32 parameters, widened exactly as C widens them.
    """
    alpha, limit = float(np.float32(alpha)), float(np.float32(limit))
    with np.errstate(invalid="ignore", over="ignore"):
        exact = _evaluate(h, activation, layout, alpha, limit, 0.0)
        down = _evaluate(h, activation, layout, alpha, limit, -1.0)
        up = _evaluate(h, activation, layout, alpha, limit, +1.0)
        widen = ARITH_ULPS * U64 * np.abs(exact)
        # (a zero bracket stays one signed zero: -0 + 0 would turn into +0)
        bracket_lo = np.where(widen > 0, np.minimum(np.minimum(down, up), exact) - widen, down)
        bracket_hi = np.where(widen > 0, np.maximum(np.maximum(down, up), exact) + widen, up)
    finite = np.isfinite(exact)
    value = round_act(exact, act_dtype)
    lo = np.where(finite, round_act(bracket_lo, act_dtype), value)
    hi = np.where(finite, round_act(bracket_hi, act_dtype), value)
    return value, lo, hi


# --- which quantized blocks the bracket can change ------------------------------------------------
# Quantization is monotone: the scale grows with amax, and for a fixed scale each code's value
# grows with its element. So over every choice of elements inside [lo, hi], a block's scale
# ranges between the scales of its smallest and largest possible amax, and for a given scale
# each code's value ranges between the codes of lo and hi.

def _bracket_blocks(lo, hi):
    lo64 = to_f64(lo).reshape(-1, BLOCK)
    hi64 = to_f64(hi).reshape(-1, BLOCK)
    straddles = (lo64 < 0) & (hi64 > 0)
    min_mag = np.where(straddles, 0.0, np.minimum(np.abs(lo64), np.abs(hi64)))
    max_mag = np.maximum(np.abs(lo64), np.abs(hi64))
    return lo64, hi64, min_mag, max_mag


def unstable_blocks(lo, hi, rule):
    """[n_blocks] True where some choice inside the bracket changes the quantized bytes."""
    lo64, hi64, min_mag, max_mag = _bracket_blocks(lo, hi)
    s_min, bad = block_exponents(min_mag, rule)
    s_max, _ = block_exponents(max_mag, rule)
    codes_differ = (encode_elements(lo64, s_min) != encode_elements(hi64, s_min)).any(axis=1)
    return ~bad & ((s_min != s_max) | codes_differ)


def within_bracket(lo, hi, rule, got_codes, got_scales):
    """[n_blocks] True where the library's bytes are what some choice inside the bracket gives.
    Elements whose bracket is a single value must match their code exactly."""
    lo64, hi64, min_mag, max_mag = _bracket_blocks(lo, hi)
    s_min, bad = block_exponents(min_mag, rule)
    s_max, _ = block_exponents(max_mag, rule)
    byte = np.asarray(got_scales).reshape(-1).astype(np.int64)
    codes = np.asarray(got_codes).reshape(-1, BLOCK)
    s_got = np.clip(byte - 127, -127, 127)
    scale_ok = (byte != 0xFF) & (s_got >= s_min) & (s_got <= s_max)
    c_lo, c_hi = encode_elements(lo64, s_got), encode_elements(hi64, s_got)
    v, v_lo, v_hi = E2M1_VALUE[codes], E2M1_VALUE[c_lo], E2M1_VALUE[c_hi]
    exact_elem = lo64 == hi64
    elem_ok = np.where(exact_elem, codes == c_lo,
                       (v >= np.minimum(v_lo, v_hi)) & (v <= np.maximum(v_lo, v_hi)))
    ok = scale_ok & elem_ok.all(axis=1)
    nan_ok = (byte == 0xFF) & (codes == 0).all(axis=1)
    return np.where(bad, nan_ok, ok)
