"""oracle_mx.py — MXFP4 formats (SPEC §2-3) written independently of the C side.

The C library computes scale exponents with FP32 bit tricks; this file uses float64 math
instead (math.frexp-style decomposition and exact comparisons against powers of two), converts
through ml_dtypes' float8_e8m0fnu / float4_e2m1fn types, and never shares code with src/.
Every array function is vectorised with numpy so a million values take well under a second.

Conventions: `codes` are uint8 E2M1 codes (0..15), one per element; `scales` are E8M0 bytes,
one per 32 elements along the last axis; `packed` holds two codes per byte, element 2i in the
low nibble.
"""
import ml_dtypes
import numpy as np

BLOCK = 32
E2M1 = ml_dtypes.float4_e2m1fn
E8M0 = ml_dtypes.float8_e8m0fnu
BF16 = np.dtype(ml_dtypes.bfloat16)
F16 = np.dtype(np.float16)
F32 = np.dtype(np.float32)

RULES = ("EVEN", "FLOOR", "CEIL", "RCEIL")

# value of each of the 16 codes, decoded by ml_dtypes (not by a table of our own)
E2M1_VALUE = np.arange(16, dtype=np.uint8).view(E2M1).astype(np.float64)


# --- rounding float64 to a narrower IEEE format, once ---------------------------------------------
# (significand bits incl. the implicit one, minimum normal exponent, largest finite value)
_FORMAT = {
    F32: (24, -126, float(np.finfo(np.float32).max)),
    BF16: (8, -126, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)),
    F16: (11, -14, 65504.0),
}


def round_to(x64, dtype):
    """Rounds float64 values to `dtype` (F32/BF16/F16) with a single round-to-nearest-even.

    Not a numpy cast: ml_dtypes converts float64 -> bfloat16 through float32 (two roundings), and
    the contract asks for one. The value is snapped to the format's grid with np.rint (ties to
    even) after an exact power-of-two scaling, then overflow becomes +-Inf as IEEE says.
    """
    dtype = np.dtype(dtype)
    p, emin, fmax = _FORMAT[dtype]
    x = np.asarray(x64, dtype=np.float64)
    finite = np.isfinite(x)
    xf = np.where(finite, x, 0.0)
    _, e = np.frexp(xf)  # xf = m * 2^e, m in [0.5, 1): the leading bit is 2^(e-1)
    quantum_exp = np.maximum(e - 1, emin) - (p - 1)
    r = np.ldexp(np.rint(np.ldexp(xf, -quantum_exp)), quantum_exp)
    r = np.where(np.abs(r) > fmax, np.copysign(np.inf, r), r)
    r = np.where(finite, r, x)
    return r.astype(dtype)  # exact: r is on dtype's grid (or +-Inf / NaN)


def to_f64(x):
    """Exact float64 value of an F32/BF16/F16 array."""
    return np.asarray(x).astype(np.float32).astype(np.float64)


# --- scale exponents ------------------------------------------------------------------------------

def scale_exponent(amax, rule):
    """Unclamped scale exponent of each finite, positive amax (float64 array) under `rule`.

    Written from the rule's definition, not from its bit trick:
      FLOOR  floor(log2 amax) - 2
      CEIL   ceil(log2 amax) - 2
      EVEN   floor(log2 amax) + [significand >= 1.75] - 2
      RCEIL  the smallest s with 6 * 2^s >= amax
    """
    mant, exp = np.frexp(amax)  # amax = mant * 2^exp, mant in [0.5, 1)
    floor_log2 = exp.astype(np.int64) - 1
    significand = 2.0 * mant  # in [1, 2)
    if rule == "FLOOR":
        return floor_log2 - 2
    if rule == "CEIL":
        return floor_log2 + (significand != 1.0) - 2
    if rule == "EVEN":
        return floor_log2 + (significand >= 1.75) - 2
    if rule == "RCEIL":
        # 6*2^s >= amax is monotone in s. Start at f-3 (6*2^(f-3) < 2^f <= amax) and step up
        # while the candidate does not fit; f always fits (6*2^f > 2^(f+1) > amax), so at most
        # three steps reach the smallest fitting s.
        s = floor_log2 - 3
        for _ in range(3):
            s = np.where(np.ldexp(6.0, s) >= amax, s, s + 1)
        return s
    raise ValueError(rule)


def e8m0_byte(s):
    """E8M0 byte of 2^s (s already clamped to [-127, 127]), via ml_dtypes."""
    return np.ldexp(1.0, s).astype(np.float32).astype(E8M0).view(np.uint8)


# --- quantize / dequantize ------------------------------------------------------------------------

def block_exponents(blocks64, rule):
    """Clamped scale exponents [n] of float64 blocks [n, 32], and which blocks hold NaN/Inf."""
    bad = ~np.isfinite(blocks64).all(axis=1)
    amax = np.where(bad, 0.0, np.abs(np.where(np.isfinite(blocks64), blocks64, 0.0)).max(axis=1))
    zero = amax == 0.0
    s = scale_exponent(np.where(zero, 1.0, amax), rule)
    return np.clip(np.where(zero, -127, s), -127, 127), bad


def encode_elements(blocks64, s):
    """E2M1 codes of float64 blocks [n, 32] under scale exponents s [n] (no NaN handling).

    y = x * 2^-s is exact in float64; casting to float32 only rounds values far below any E2M1
    rounding threshold (FP32 subnormals), and keeps their sign; ml_dtypes then rounds to
    nearest-even and saturates."""
    with np.errstate(over="ignore", invalid="ignore"):
        y = (blocks64 * np.ldexp(1.0, -np.asarray(s))[:, None]).astype(np.float32)
    return y.astype(E2M1).view(np.uint8) & 0x0F


def quantize(x, rule):
    """x: F32/BF16/F16 [..., K] -> (codes uint8 [..., K], scales uint8 [..., K/32])."""
    x64 = to_f64(x)
    if x64.shape[-1] % BLOCK:
        raise ValueError("K must be a multiple of 32")
    blocks = x64.reshape(-1, BLOCK)
    s, bad = block_exponents(blocks, rule)
    scales = e8m0_byte(s)
    scales[bad] = 0xFF
    codes = encode_elements(np.where(bad[:, None], 0.0, blocks), s)
    return codes.reshape(x64.shape), scales.reshape(x64.shape[:-1] + (x64.shape[-1] // BLOCK,))


def dequantize(codes, scales, out_dtype):
    """value = e2m1(code) * 2^(scale - 127), rounded once to out_dtype; scale 0xFF -> NaN."""
    return round_to(dequantize_values(codes, scales), out_dtype)


def pack(codes):
    """codes [..., K] -> bytes [..., K/2], element 2i in the low nibble."""
    c = np.asarray(codes, dtype=np.uint8)
    return (c[..., 0::2] | (c[..., 1::2] << 4)).astype(np.uint8)


def unpack(packed):
    p = np.asarray(packed, dtype=np.uint8)
    out = np.empty(p.shape[:-1] + (p.shape[-1] * 2,), dtype=np.uint8)
    out[..., 0::2] = p & 0x0F
    out[..., 1::2] = p >> 4
    return out


def dequantize_values(codes, scales):
    """Exact float64 values of MXFP4 data (codes [..., K], linear scales [..., K/32])."""
    c = codes.reshape(-1, BLOCK)
    scale64 = np.asarray(scales).reshape(-1).view(E8M0).astype(np.float32).astype(np.float64)
    return (E2M1_VALUE[c] * scale64[:, None]).reshape(codes.shape)  # exact in float64


# --- GGUF block_mxfp4 -----------------------------------------------------------------------------

def to_gguf(codes, scales):
    """-> U8 [..., K/32 * 17]: per block the scale byte, then qs[j] = code j | code (j+16) << 4."""
    lead = codes.shape[:-1]
    c = codes.reshape(-1, BLOCK)
    qs = c[:, :16] | (c[:, 16:] << 4)
    blocks = np.concatenate([np.asarray(scales).reshape(-1, 1), qs], axis=1).astype(np.uint8)
    return blocks.reshape(lead + (codes.shape[-1] // BLOCK * 17,))


def from_gguf(gguf):
    lead = gguf.shape[:-1]
    b = np.asarray(gguf, dtype=np.uint8).reshape(-1, 17)
    qs = b[:, 1:]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=1)
    nb = gguf.shape[-1] // 17
    return codes.reshape(lead + (nb * BLOCK,)), b[:, 0].reshape(lead + (nb,))


# --- swizzled scale layout (SPEC §3) --------------------------------------------------------------

def ceil_div(a, b):
    return -(-a // b)


def swizzled_bytes(rows, k):
    return ceil_div(rows, 128) * 128 * 4 * ceil_div(k // BLOCK, 4)


def swizzle_offsets(rows, k, row_base=0):
    """Byte offset of scale (r, j) for r < rows, j < K/32: the SPEC §3 formula, applied to row
    r + row_base (grouped data starts each expert at a fresh 128-row atom)."""
    kb = k // BLOCK
    r = np.arange(rows, dtype=np.int64)[:, None] + row_base
    j = np.arange(kb, dtype=np.int64)[None, :]
    atom = (r // 128) * ceil_div(kb, 4) + j // 4
    return atom * 512 + (r % 32) * 16 + ((r // 32) % 4) * 4 + j % 4


def swizzle(linear, k):
    rows = linear.shape[0]
    out = np.zeros(swizzled_bytes(rows, k), dtype=np.uint8)
    out[swizzle_offsets(rows, k)] = linear
    return out


def unswizzle(swizzled, rows, k):
    return np.asarray(swizzled)[swizzle_offsets(rows, k)].astype(np.uint8)


def group_row_bases(offsets):
    """First atom row of each expert in grouped-swizzled data: sum_{e'<e} round_up(m_e', 128)."""
    m = np.diff(np.asarray(offsets, dtype=np.int64))
    padded = ceil_div(m, 128) * 128
    return np.concatenate([[0], np.cumsum(padded)]).astype(np.int64)


def grouped_swizzle(linear, offsets, k):
    """Rows grouped by expert offsets -> U8 [sum_e round_up(m_e,128) * 4 * ceil(K/128)]."""
    bases = group_row_bases(offsets)
    out = np.zeros(int(bases[-1]) * 4 * ceil_div(k // BLOCK, 4), dtype=np.uint8)
    for e in range(len(offsets) - 1):
        lo, hi = offsets[e], offsets[e + 1]
        if hi > lo:
            out[swizzle_offsets(hi - lo, k, bases[e])] = linear[lo:hi]
    return out


def grouped_unswizzle(swizzled, offsets, k, rows):
    """Inverse of grouped_swizzle for the rows below offsets[E]; rows beyond are returned 0."""
    bases = group_row_bases(offsets)
    out = np.zeros((rows, k // BLOCK), dtype=np.uint8)
    for e in range(len(offsets) - 1):
        lo, hi = offsets[e], offsets[e + 1]
        if hi > lo:
            out[lo:hi] = np.asarray(swizzled)[swizzle_offsets(hi - lo, k, bases[e])]
    return out
