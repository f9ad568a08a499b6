"""gen_values.py — input generators for the quantization tests: random blocks over a wide range of
magnitudes, and the edge sets of SPEC §2 (rounding ties, rule thresholds, saturation, extreme
magnitudes, signed zeros, NaN/Inf).

Every generator returns float64 blocks [n, 32] whose values are exactly representable in the
requested input dtype (checked by `as_dtype`), so the test quantizes exactly the values meant.
"""
import ml_dtypes
import numpy as np

from oracle_mx import BF16, BLOCK, F16, F32

MIDPOINTS = (0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0)  # E2M1 rounding ties (times 2^s)
GRID = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def finfo(dtype):
    dtype = np.dtype(dtype)
    if dtype == BF16:
        return ml_dtypes.finfo(ml_dtypes.bfloat16)
    return np.finfo(dtype)


def exponent_range(dtype):
    """(smallest subnormal exponent, largest normal exponent) of dtype."""
    fi = finfo(dtype)
    return int(np.log2(float(fi.smallest_subnormal))), int(fi.maxexp) - 1


def as_dtype(blocks64, dtype):
    """float64 -> dtype, asserting every value is exact (NaN allowed)."""
    out = np.asarray(blocks64, dtype=np.float64).astype(np.float32).astype(dtype)
    back = out.astype(np.float64)
    same = (back == blocks64) | (np.isnan(back) & np.isnan(blocks64))
    same &= np.signbit(back) == np.signbit(blocks64)
    assert same.all(), f"generator produced values not representable in {dtype}"
    return out


def representable(v64, dtype):
    """True where float64 v is exactly representable in dtype."""
    with np.errstate(over="ignore"):
        back = np.asarray(v64).astype(np.float32).astype(dtype).astype(np.float64)
    return back == v64


def step(x, dtype, direction):
    """Next representable values of dtype from positive finite x (array), up (+1) or down (-1):
    for positive floats that is the neighbouring bit pattern."""
    arr = np.atleast_1d(np.asarray(x, dtype=np.float64)).astype(np.float32).astype(dtype)
    u = {2: np.uint16, 4: np.uint32}[arr.dtype.itemsize]
    moved = (arr.view(u).astype(np.int64) + direction).astype(u)
    return moved.view(arr.dtype).astype(np.float64)


def _fill_below(rng, amax, n, dtype):
    """Random values of magnitude below amax (per row), random signs, representable in dtype."""
    frac = rng.random((len(amax), n)) ** 2
    v = np.asarray(amax)[:, None] * frac * rng.choice([-1.0, 1.0], size=(len(amax), n))
    with np.errstate(over="ignore", under="ignore"):
        v = v.astype(np.float32).astype(dtype).astype(np.float64)
    # casting may round up to amax's magnitude, never above it: fine for the block's max
    return np.where(np.abs(v) > np.asarray(amax)[:, None], 0.0, v)


def _place(rng, rest, special):
    """Blocks [n, 32]: `rest` [n, 32] with special[i] put at a random column of row i."""
    out = rest.copy()
    cols = rng.integers(0, BLOCK, size=len(special))
    out[np.arange(len(special)), cols] = special
    return out


def random_blocks(rng, n, dtype):
    """Wide-magnitude random blocks: each block its own base exponent over dtype's whole range,
    elements spread over 12 binades below it (so every E2M1 code appears). A quarter of the blocks
    are 'grid' blocks, multiples of 2^(s-2), to make exact rounding ties common."""
    dtype = np.dtype(dtype)
    lo, hi = exponent_range(dtype)
    base = rng.integers(lo, hi + 1, size=(n, 1))
    spread = rng.integers(0, 13, size=(n, BLOCK))
    significand = 1.0 + rng.random((n, BLOCK))
    sign = rng.choice([-1.0, 1.0], size=(n, BLOCK))
    v = sign * np.ldexp(significand, base - spread)
    grid = rng.random(n) < 0.25
    quarter_steps = rng.integers(-32, 33, size=(n, BLOCK)).astype(np.float64)
    s = rng.integers(max(lo + 2, -127), min(hi - 3, 125) + 1, size=(n, 1))
    v = np.where(grid[:, None], np.ldexp(quarter_steps, s - 2), v)
    fmax = float(finfo(dtype).max)
    v = np.clip(v, -fmax, fmax)
    with np.errstate(over="ignore", under="ignore"):
        v = v.astype(np.float32).astype(dtype).astype(np.float64)
    return v


def tie_blocks(rng, dtype, rule):
    """For every usable s: a block whose scale under `rule` is 2^s, holding +-m*2^s for every
    E2M1 midpoint m below the block max, plus grid values. amax = 6*2^s (4*2^s for CEIL, whose
    scale is 2^s only for amax in (2, 4]*2^s)."""
    lo, hi = exponent_range(dtype)
    top = 4.0 if rule == "CEIL" else 6.0
    mids = [m for m in MIDPOINTS if m < top] + [g for g in GRID if g < top]
    rows = []
    for s in range(max(-127, lo + 2), min(125, hi - 3) + 1):
        vals = [top] + mids + [-m for m in mids]
        vals = vals + [0.0] * (BLOCK - len(vals))
        row = np.ldexp(np.array(vals), s)
        if representable(row, dtype).all():
            rows.append(rng.permutation(row))
    return np.array(rows)


def threshold_blocks(rng, dtype):
    """Blocks whose amax sits on, or one ulp (of dtype) either side of, each rule's exponent
    threshold: 2^e (FLOOR, CEIL), 1.75*2^e (EVEN), 6*2^e (RCEIL), for every e of dtype."""
    lo, hi = exponent_range(dtype)
    fmax = float(finfo(dtype).max)
    points = []
    for e in range(lo, hi + 1):
        for t in (1.0, 1.75, 6.0):
            v = np.ldexp(t, e)
            if v <= fmax and representable(v, dtype):
                points.append(v)
    points = np.array(points)
    amax = np.concatenate([points, step(points, dtype, -1),
                           step(points[points < fmax], dtype, +1)])
    amax = amax[(amax > 0) & np.isfinite(amax)]
    sign = rng.choice([-1.0, 1.0], size=len(amax))
    rest = _fill_below(rng, amax, BLOCK, dtype)
    return _place(rng, rest, sign * amax)


def saturation_blocks(rng, dtype):
    """Block maxima in (6, 8)*2^e and exactly +-6*2^e: FLOOR clips them to +-6."""
    lo, hi = exponent_range(dtype)
    rows = []
    for e in range(max(lo + 3, -127), min(hi - 3, 125) + 1):
        vals = np.ldexp(np.array([6.0, -6.0, 6.5, -7.0, 7.5, -7.75, 7.9375, 5.5]), e)
        vals = vals[representable(vals, dtype)]
        row = np.concatenate([vals, np.zeros(BLOCK - len(vals))])
        rows.append(rng.permutation(row))
    return np.array(rows)


def extreme_blocks(rng, dtype):
    """Near the largest finite value, and tiny magnitudes down to the smallest subnormal
    (the scale clamps at 2^-127 and everything small quantizes to +-0)."""
    fi = finfo(dtype)
    fmax, tiny, sub = float(fi.max), float(fi.tiny), float(fi.smallest_subnormal)
    big = np.array([fmax, -fmax, step(fmax, dtype, -1)[0], fmax / 2, fmax / 3])
    small = np.array([sub, -sub, 2 * sub, 3 * sub, tiny, -tiny, step(tiny, dtype, -1)[0],
                      tiny / 2, tiny * 1.5])
    small = small[representable(small, dtype)]
    big = big[representable(big, dtype)]
    rows = []
    for _ in range(64):
        rows.append(rng.permutation(np.resize(rng.permutation(big), BLOCK)))
        rows.append(rng.permutation(np.resize(rng.permutation(small), BLOCK)))
        mixed = np.concatenate([rng.choice(big, 4), rng.choice(small, BLOCK - 4)])
        rows.append(rng.permutation(mixed))
    subnormals = np.ldexp(rng.integers(-1023, 1024, size=(64, BLOCK)).astype(np.float64),
                          int(np.log2(sub)))
    subnormals = subnormals.astype(np.float32).astype(dtype).astype(np.float64)
    return np.concatenate([np.array(rows), subnormals])


def zero_blocks(rng, dtype):
    """All +0, all -0, mixed signed zeros, and signed zeros beside one nonzero value."""
    rows = [np.zeros(BLOCK), -np.zeros(BLOCK)]
    for _ in range(16):
        rows.append(rng.choice([0.0, -0.0], size=BLOCK))
        row = rng.choice([0.0, -0.0], size=BLOCK)
        row[rng.integers(BLOCK)] = rng.choice([-3.0, 1.0, 100.0])
        rows.append(row)
    return np.array(rows)


def nonfinite_blocks(rng, dtype, n=256):
    """Random blocks with one or a few NaN/+-Inf (NaN of both sign bits)."""
    rest = random_blocks(rng, n, dtype)
    specials = np.array([np.nan, -np.nan, np.inf, -np.inf])
    out = _place(rng, rest, rng.choice(specials, size=n))
    many = rng.random((n, BLOCK)) < 0.1
    out[: n // 2] = np.where(many[: n // 2], rng.choice(specials, size=(n // 2, BLOCK)),
                             out[: n // 2])
    return out


# §2.8 of formats.md: (values, {rule: (byte, codes)}), rules with RNE elements only. Blocks are
# padded to 32 with +0 (codes 0).
WORKED_EXAMPLES = [
    ([6, 5, 3.5, 2.5, 1.75, 0.75, 0.25, -0.25],
     {"FLOOR": (0x7F, [7, 6, 6, 4, 4, 2, 0, 8]), "CEIL": (0x80, [5, 4, 4, 2, 2, 1, 0, 8]),
      "RCEIL": (0x7F, [7, 6, 6, 4, 4, 2, 0, 8]), "EVEN": (0x7F, [7, 6, 6, 4, 4, 2, 0, 8])}),
    ([7, 3.5, -1.25, 0],
     {"FLOOR": (0x7F, [7, 6, 0xA, 0]), "RCEIL": (0x80, [6, 4, 9, 0]),
      "CEIL": (0x80, [6, 4, 9, 0]), "EVEN": (0x80, [6, 4, 9, 0])}),
    ([1.6, 0.8, -0.4, 0.1],
     {"FLOOR": (0x7D, [7, 5, 0xB, 1]), "EVEN": (0x7D, [7, 5, 0xB, 1]),
      "RCEIL": (0x7E, [5, 3, 0xA, 0]), "CEIL": (0x7E, [5, 3, 0xA, 0])}),
    ([1.8, 0.9, -0.45, 0.1],
     {"FLOOR": (0x7D, [7, 6, 0xC, 1]), "RCEIL": (0x7E, [6, 4, 0xA, 0]),
      "CEIL": (0x7E, [6, 4, 0xA, 0]), "EVEN": (0x7E, [6, 4, 0xA, 0])}),
    ([3, 1.5, 0.75, -3],
     {"FLOOR": (0x7E, [7, 5, 3, 0xF]), "RCEIL": (0x7E, [7, 5, 3, 0xF]),
      "EVEN": (0x7E, [7, 5, 3, 0xF]), "CEIL": (0x7F, [5, 3, 2, 0xD])}),
    ([0, 0, 0, 0],
     {r: (0x00, [0, 0, 0, 0]) for r in ("FLOOR", "CEIL", "RCEIL", "EVEN")}),
]


def worked_example_blocks(rule):
    """-> (blocks float32 [n, 32], expected scale bytes [n], expected codes [n, 32])."""
    blocks, scales, codes = [], [], []
    for values, by_rule in WORKED_EXAMPLES:
        byte, c = by_rule[rule]
        pad = BLOCK - len(values)
        blocks.append(np.array(values + [0.0] * pad, dtype=np.float32))
        scales.append(byte)
        codes.append(c + [0] * pad)
    return np.array(blocks), np.array(scales, dtype=np.uint8), np.array(codes, dtype=np.uint8)


INPUT_DTYPES = {"F32": F32, "BF16": BF16, "F16": F16}
