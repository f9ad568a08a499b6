"""checks.py — comparison and poisoning helpers shared by the tests.

Failures name the first mismatching indices with both values, so a report can be written from
the message alone.
"""
import numpy as np

POISON = 0xA5


def poison(*arrays):
    """Fills every byte with 0xA5: anything a call leaves unwritten stays recognisable."""
    for a in arrays:
        if a is not None:
            a.view(np.uint8).fill(POISON)


def poisoned_like(shape, dtype):
    a = np.empty(shape, dtype=dtype)
    poison(a)
    return a


def _describe(got, want, bad, what, limit=8):
    idx = np.argwhere(bad)[:limit]
    lines = [f"{what}: {int(bad.sum())} of {bad.size} differ; first:"]
    for i in idx:
        i = tuple(int(v) for v in i)
        lines.append(f"  at {i}: got {got[i]!r} want {want[i]!r}")
    return "\n".join(lines)


def assert_bytes_equal(got, want, what="bytes"):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    bad = got != want
    if bad.any():
        g = got.astype(np.int64)
        w = want.astype(np.int64)
        raise AssertionError(_describe(np.vectorize(hex)(g), np.vectorize(hex)(w), bad, what))


def bits(a):
    a = np.asarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def assert_same_floats(got, want, what="values"):
    """Bit-identical floats, except that any NaN matches any NaN (payloads are not contract)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    g64, w64 = got.astype(np.float64), want.astype(np.float64)
    both_nan = np.isnan(g64) & np.isnan(w64)
    bad = (bits(got) != bits(want)) & ~both_nan
    if bad.any():
        raise AssertionError(_describe(g64, w64, bad, what))


def assert_untouched(a, what="output"):
    """Every byte still holds the poison."""
    b = a.view(np.uint8)
    bad = b != POISON
    if bad.any():
        raise AssertionError(f"{what}: {int(bad.sum())} bytes were written, first at byte "
                             f"{int(np.argmax(bad.reshape(-1)))}")


def assert_untouched_after_data_error(ctx, *arrays):
    """After an error only the data could reveal: outputs untouched on the CPU. The CUDA backend
    finds such errors on the device, skips the offending items (never follows them) and reports
    them at synchronize (mxmoe.h), so the rest of its outputs may have been written."""
    if getattr(ctx, "cudart", None) is not None:
        return
    for a in arrays:
        assert_untouched(a)


def normalised_error(got, ref):
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    denom = np.linalg.norm(ref)
    return np.linalg.norm(got - ref) / (denom if denom > 0 else 1.0)
