"""mxmoe_ctypes.py — a thin ctypes binding over libmxmoe for the oracle tests.

Mirrors include/mxmoe.h exactly (struct layouts, enum values); nothing here computes anything.
The library is found at $MXMOE_LIB, else <repo>/build/libmxmoe.so. `Context` wrappers take
numpy arrays. Each array of a call is staged between 256 poisoned guard bytes, in host memory,
or in device memory for a CUDA context ($MXMOE_BACKEND=cuda; libcudart from $MXMOE_CUDART or
found by name), and copied back afterwards, inputs included: tests of "outputs untouched" and
"inputs not modified" read what the library left, and a write past either end of any buffer
raises OutOfBoundsWrite.
"""
import ctypes
import ctypes.util
import enum
import os
from pathlib import Path

import ml_dtypes
import numpy as np

REPO = Path(__file__).resolve().parents[2]
MAX_DIMS = 4


class Status(enum.IntEnum):
    OK = 0
    INVALID_ARGUMENT = 1
    DTYPE = 2
    SHAPE = 3
    OVERFLOW = 4
    OUT_OF_RANGE = 5
    WORKSPACE = 6
    UNSUPPORTED = 7
    NO_MEMORY = 8
    BACKEND = 9
    IO = 10
    FORMAT = 11


class DType(enum.IntEnum):
    F32 = 0
    BF16 = 1
    F16 = 2
    U8 = 3
    I32 = 4


class Device(enum.IntEnum):
    HOST = 0
    CUDA = 1


class ScaleLayout(enum.IntEnum):
    LINEAR = 0
    SWIZZLED = 1


class Rule(enum.IntEnum):
    EVEN = 0
    FLOOR = 1
    CEIL = 2
    RCEIL = 3


class Backend(enum.IntEnum):
    AUTO = 0
    CPU = 1
    CUDA = 2


class Routing(enum.IntEnum):
    SOFTMAX_TOPK = 0
    TOPK_SOFTMAX = 1
    SIGMOID_GROUPED = 2


class Activation(enum.IntEnum):
    SILU_MUL = 0
    GELU_TANH_MUL = 1
    SWIGLU_OAI = 2
    SILU = 3
    GELU_TANH = 4
    RELU2 = 5


class GateUpLayout(enum.IntEnum):
    CONCAT = 0
    INTERLEAVED = 1


# numpy dtype <-> mxmoe dtype. BF16 arrays use ml_dtypes.bfloat16.
NP_OF_DTYPE = {
    DType.F32: np.dtype(np.float32),
    DType.BF16: np.dtype(ml_dtypes.bfloat16),
    DType.F16: np.dtype(np.float16),
    DType.U8: np.dtype(np.uint8),
    DType.I32: np.dtype(np.int32),
}
DTYPE_OF_NP = {v: k for k, v in NP_OF_DTYPE.items()}


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("device", ctypes.c_int),
        ("ndim", ctypes.c_int32),
        ("dims", ctypes.c_int64 * MAX_DIMS),
    ]


class MxTensor(ctypes.Structure):
    _fields_ = [("packed", Tensor), ("scales", Tensor), ("scale_layout", ctypes.c_int)]


LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class CtxParams(ctypes.Structure):
    _fields_ = [
        ("backend", ctypes.c_int),
        ("num_threads", ctypes.c_int32),
        ("cuda_device", ctypes.c_int32),
        ("cuda_stream", ctypes.c_void_p),
        ("log", LOG_FN),
        ("log_user_data", ctypes.c_void_p),
        ("log_level", ctypes.c_int),
    ]


class RouteParams(ctypes.Structure):
    _fields_ = [
        ("method", ctypes.c_int),
        ("top_k", ctypes.c_int32),
        ("renormalize", ctypes.c_int32),
        ("num_groups", ctypes.c_int32),
        ("topk_groups", ctypes.c_int32),
        ("scaling_factor", ctypes.c_float),
        ("correction_bias", ctypes.POINTER(Tensor)),
    ]


class ActParams(ctypes.Structure):
    _fields_ = [
        ("activation", ctypes.c_int),
        ("layout", ctypes.c_int),
        ("swiglu_alpha", ctypes.c_float),
        ("swiglu_limit", ctypes.c_float),
        ("act_dtype", ctypes.c_int),
        ("rule", ctypes.c_int),
    ]


class MoeWeights(ctypes.Structure):
    _fields_ = [
        ("w13", MxTensor),
        ("w2", MxTensor),
        ("b13", ctypes.POINTER(Tensor)),
        ("b2", ctypes.POINTER(Tensor)),
    ]


class MoeParams(ctypes.Structure):
    _fields_ = [
        ("num_experts", ctypes.c_int32),
        ("act", ActParams),
        ("router_weight_on_input", ctypes.c_int32),
        ("expert_map", ctypes.POINTER(Tensor)),
        ("gemm_dtype", ctypes.c_int),
    ]


_P = ctypes.POINTER
_T, _MX = _P(Tensor), _P(MxTensor)
_CTX = ctypes.c_void_p
# name -> (restype, argtypes), transcribed from include/mxmoe.h
_SIGNATURES = {
    "mxmoe_version_number": (ctypes.c_uint, []),
    "mxmoe_version_string": (ctypes.c_char_p, []),
    "mxmoe_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "mxmoe_tensor_make": (
        Tensor, [ctypes.c_void_p, ctypes.c_int, ctypes.c_int32, _P(ctypes.c_int64)]),
    "mxmoe_tensor_numel": (ctypes.c_int64, [_T]),
    "mxmoe_dtype_size": (ctypes.c_size_t, [ctypes.c_int]),
    "mxmoe_dtype_name": (ctypes.c_char_p, [ctypes.c_int]),
    "mxmoe_scale_rule_name": (ctypes.c_char_p, [ctypes.c_int]),
    "mxmoe_ctx_params_default": (CtxParams, []),
    "mxmoe_ctx_init": (ctypes.c_int, [_P(_CTX), _P(CtxParams)]),
    "mxmoe_ctx_free": (None, [_CTX]),
    "mxmoe_ctx_backend": (ctypes.c_int, [_CTX]),
    "mxmoe_ctx_backend_detail": (ctypes.c_char_p, [_CTX]),
    "mxmoe_ctx_last_error": (ctypes.c_char_p, [_CTX]),
    "mxmoe_ctx_synchronize": (ctypes.c_int, [_CTX]),
    "mxmoe_backend_name": (ctypes.c_char_p, [ctypes.c_int]),
    "mxmoe_backend_available": (ctypes.c_int, [ctypes.c_int]),
    "mxmoe_quantize": (ctypes.c_int, [_CTX, _T, ctypes.c_int, _MX]),
    "mxmoe_dequantize": (ctypes.c_int, [_CTX, _MX, _T]),
    "mxmoe_gguf_from_mx": (ctypes.c_int, [_CTX, _MX, _T]),
    "mxmoe_mx_from_gguf": (ctypes.c_int, [_CTX, _T, _MX]),
    "mxmoe_swizzled_scale_bytes": (ctypes.c_size_t, [ctypes.c_int64, ctypes.c_int64]),
    "mxmoe_grouped_swizzled_scale_bytes": (
        ctypes.c_size_t, [ctypes.c_int64, ctypes.c_int64, ctypes.c_int64]),
    "mxmoe_swizzle_scales": (ctypes.c_int, [_CTX, _T, ctypes.c_int64, _T]),
    "mxmoe_unswizzle_scales": (ctypes.c_int, [_CTX, _T, ctypes.c_int64, _T]),
    "mxmoe_route_params_default": (RouteParams, []),
    "mxmoe_route": (ctypes.c_int, [_CTX, _T, _P(RouteParams), _T, _T]),
    "mxmoe_plan": (ctypes.c_int, [_CTX, _T, _T, ctypes.c_int32, _T, _T, _T, _T]),
    "mxmoe_experts_quantize": (ctypes.c_int, [_CTX, _T, _T, ctypes.c_int, _MX]),
    "mxmoe_act_params_default": (ActParams, []),
    "mxmoe_act_and_quantize": (ctypes.c_int, [_CTX, _T, _T, _P(ActParams), _MX]),
    "mxmoe_grouped_gemm": (ctypes.c_int, [_CTX, _MX, _MX, _T, _T, _T]),
    "mxmoe_grouped_projection": (ctypes.c_int, [_CTX, _T, _T, _T, _MX, _T, ctypes.c_int, _T]),
    "mxmoe_moe_params_default": (MoeParams, []),
    "mxmoe_moe_workspace_size": (
        ctypes.c_int,
        [_CTX, _P(MoeParams), ctypes.c_int64, ctypes.c_int32, ctypes.c_int64, ctypes.c_int64,
         _P(ctypes.c_size_t)]),
    "mxmoe_moe_forward": (
        ctypes.c_int,
        [_CTX, _T, _T, _T, _P(MoeWeights), _P(MoeParams), ctypes.c_void_p, ctypes.c_size_t, _T]),
}


def library_path():
    return os.environ.get("MXMOE_LIB", str(REPO / "build" / "libmxmoe.so"))


def load_library(path=None):
    """Loads libmxmoe and declares every public function's signature."""
    lib = ctypes.CDLL(path or library_path())
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


# --- tensors from numpy arrays --------------------------------------------------------------------

def tensor(arr):
    """A host mxmoe_tensor viewing `arr` (must be C-contiguous; the caller keeps it alive)."""
    if arr is None:
        return None
    if not arr.flags["C_CONTIGUOUS"]:
        raise ValueError("mxmoe tensors are dense row-major: pass a C-contiguous array")
    if not 1 <= arr.ndim <= MAX_DIMS:
        raise ValueError(f"rank {arr.ndim} is outside 1..{MAX_DIMS}")
    t = Tensor()
    t.data = arr.ctypes.data
    t.dtype = DTYPE_OF_NP[arr.dtype]
    t.device = Device.HOST
    t.ndim = arr.ndim
    for i in range(MAX_DIMS):
        t.dims[i] = arr.shape[i] if i < arr.ndim else 1
    return t


def ref(t):
    """ctypes pointer to an optional Tensor (None -> NULL)."""
    return ctypes.pointer(t) if t is not None else None


class MxmoeError(RuntimeError):
    def __init__(self, function, status, message):
        self.function, self.status, self.message = function, status, message
        super().__init__(f"{function} -> {status.name}: {message}")


def backend_from_env():
    name = os.environ.get("MXMOE_BACKEND", "cpu").strip().lower()
    return {"cpu": Backend.CPU, "cuda": Backend.CUDA, "auto": Backend.AUTO}[name]


class OutOfBoundsWrite(AssertionError):
    """A call wrote into the guard bytes around one of its arrays."""


GUARD_BYTES = 256  # poisoned bytes staged before and after every array of a call
GUARD_FILL = 0xA5


class _Cudart:
    """The few CUDA runtime calls needed to stage arrays in device memory."""
    H2D, D2H = 1, 2

    def __init__(self):
        path = os.environ.get("MXMOE_CUDART") or ctypes.util.find_library("cudart")
        self.lib = ctypes.CDLL(path or "libcudart.so")
        self.lib.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        self.lib.cudaFree.argtypes = [ctypes.c_void_p]
        self.lib.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                        ctypes.c_int]

    def _check(self, err, what):
        if err != 0:
            raise RuntimeError(f"{what} failed with cudaError {err}")

    def upload(self, host):
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), host.nbytes), "cudaMalloc")
        self._check(self.lib.cudaMemcpy(ptr, host.ctypes.data, host.nbytes, self.H2D), "H2D")
        return ptr.value

    def download_and_free(self, host, ptr):
        try:
            self._check(self.lib.cudaMemcpy(host.ctypes.data, ptr, host.nbytes, self.D2H), "D2H")
        finally:
            self.lib.cudaFree(ptr)


class _CallBuffers:
    """The arrays of one call, each staged as [guard | bytes | guard] in host memory or, for a
    CUDA context, device memory. `finish` copies every array back (inputs too, so changes to
    them show) and raises OutOfBoundsWrite if a guard byte changed: this catches writes past
    either end of a buffer on every backend, which poisoned outputs alone cannot."""

    def __init__(self, cudart, function):
        self.cudart, self.function = cudart, function
        self.staged = []  # (array, host staging buffer, device pointer or None)

    def pointer(self, arr):
        stage = np.full(arr.nbytes + 2 * GUARD_BYTES, GUARD_FILL, dtype=np.uint8)
        stage[GUARD_BYTES:GUARD_BYTES + arr.nbytes] = arr.reshape(-1).view(np.uint8)
        device = self.cudart.upload(stage) if self.cudart is not None else None
        self.staged.append((arr, stage, device))
        return (device if device is not None else stage.ctypes.data) + GUARD_BYTES

    def tensor(self, arr):
        t = tensor(arr)
        if t is not None:
            t.data = self.pointer(arr)
            t.device = Device.CUDA if self.cudart is not None else Device.HOST
        return t

    def mx(self, packed, scales, layout=ScaleLayout.LINEAR):
        m = MxTensor()
        m.packed, m.scales, m.scale_layout = self.tensor(packed), self.tensor(scales), int(layout)
        return m

    def finish(self):
        overruns = []
        for i, (arr, stage, device) in enumerate(self.staged):
            if device is not None:
                self.cudart.download_and_free(stage, device)
            n = arr.nbytes
            arr.reshape(-1).view(np.uint8)[:] = stage[GUARD_BYTES:GUARD_BYTES + n]
            before = np.flatnonzero(stage[:GUARD_BYTES] != GUARD_FILL)
            after = np.flatnonzero(stage[GUARD_BYTES + n:] != GUARD_FILL)
            if before.size or after.size:
                overruns.append(f"array #{i} {arr.dtype}{list(arr.shape)}: {before.size} bytes "
                                f"before its start, {after.size} bytes past its end")
        self.staged = []
        if overruns:
            raise OutOfBoundsWrite(f"{self.function} wrote outside its arrays: "
                                   + "; ".join(overruns))


class Context:
    """An mxmoe_ctx plus one wrapper per operation taking numpy arrays. Each wrapper raises
    MxmoeError (with mxmoe_ctx_last_error) on a non-OK status, or with check=False returns the
    status, for tests of the error paths."""

    def __init__(self, lib, backend=None, num_threads=0):
        self.lib = lib
        self.handle = None
        params = lib.mxmoe_ctx_params_default()
        params.backend = int(backend if backend is not None else backend_from_env())
        params.num_threads = num_threads
        handle = ctypes.c_void_p()
        status = Status(lib.mxmoe_ctx_init(ctypes.byref(handle), ctypes.byref(params)))
        if status != Status.OK:
            raise MxmoeError("mxmoe_ctx_init", status, "context creation failed")
        self.handle = handle
        self.backend = Backend(lib.mxmoe_ctx_backend(handle))
        self.cudart = _Cudart() if self.backend == Backend.CUDA else None

    def close(self):
        if self.handle:
            self.lib.mxmoe_ctx_free(self.handle)
            self.handle = None

    def last_error(self):
        return self.lib.mxmoe_ctx_last_error(self.handle).decode()

    def detail(self):
        return self.lib.mxmoe_ctx_backend_detail(self.handle).decode()

    def _run(self, check, function, buffers, *args):
        try:
            status = Status(getattr(self.lib, function)(self.handle, *args))
            if self.cudart is not None:
                sync = Status(self.lib.mxmoe_ctx_synchronize(self.handle))
                status = status if status != Status.OK else sync
        finally:
            buffers.finish()
        if check and status != Status.OK:
            raise MxmoeError(function, status, self.last_error())
        return status

    def _buffers(self, function):
        return _CallBuffers(self.cudart, function)

    # --- one wrapper per operation ----------------------------------------------------------

    def quantize(self, x, rule, packed, scales, check=True):
        b = self._buffers("mxmoe_quantize")
        return self._run(check, "mxmoe_quantize", b, ctypes.byref(b.tensor(x)), int(rule),
                         ctypes.byref(b.mx(packed, scales)))

    def dequantize(self, packed, scales, out, check=True):
        b = self._buffers("mxmoe_dequantize")
        return self._run(check, "mxmoe_dequantize", b, ctypes.byref(b.mx(packed, scales)),
                         ctypes.byref(b.tensor(out)))

    def gguf_from_mx(self, packed, scales, gguf, check=True):
        b = self._buffers("mxmoe_gguf_from_mx")
        return self._run(check, "mxmoe_gguf_from_mx", b, ctypes.byref(b.mx(packed, scales)),
                         ctypes.byref(b.tensor(gguf)))

    def mx_from_gguf(self, gguf, packed, scales, check=True):
        b = self._buffers("mxmoe_mx_from_gguf")
        return self._run(check, "mxmoe_mx_from_gguf", b, ctypes.byref(b.tensor(gguf)),
                         ctypes.byref(b.mx(packed, scales)))

    def swizzle_scales(self, linear, k, swizzled, check=True):
        b = self._buffers("mxmoe_swizzle_scales")
        return self._run(check, "mxmoe_swizzle_scales", b, ctypes.byref(b.tensor(linear)), k,
                         ctypes.byref(b.tensor(swizzled)))

    def unswizzle_scales(self, swizzled, k, linear, check=True):
        b = self._buffers("mxmoe_unswizzle_scales")
        return self._run(check, "mxmoe_unswizzle_scales", b, ctypes.byref(b.tensor(swizzled)), k,
                         ctypes.byref(b.tensor(linear)))

    def route(self, logits, params, ids, weights, correction_bias=None, check=True):
        b = self._buffers("mxmoe_route")
        bias_t = b.tensor(correction_bias)
        params.correction_bias = ref(bias_t)
        return self._run(check, "mxmoe_route", b, ctypes.byref(b.tensor(logits)),
                         ctypes.byref(params), ctypes.byref(b.tensor(ids)),
                         ctypes.byref(b.tensor(weights)))

    def plan(self, topk_ids, expert_map, num_experts, counts, offsets, sorted_rows, row_of,
             check=True):
        b = self._buffers("mxmoe_plan")
        map_t = b.tensor(expert_map)
        return self._run(check, "mxmoe_plan", b, ctypes.byref(b.tensor(topk_ids)), ref(map_t),
                         num_experts, ctypes.byref(b.tensor(counts)),
                         ctypes.byref(b.tensor(offsets)), ctypes.byref(b.tensor(sorted_rows)),
                         ctypes.byref(b.tensor(row_of)))

    def experts_quantize(self, x, offsets, rule, packed, scales, layout, check=True):
        b = self._buffers("mxmoe_experts_quantize")
        return self._run(check, "mxmoe_experts_quantize", b, ctypes.byref(b.tensor(x)),
                         ctypes.byref(b.tensor(offsets)), int(rule),
                         ctypes.byref(b.mx(packed, scales, layout)))

    def act_and_quantize(self, h, offsets, params, packed, scales, layout, check=True):
        b = self._buffers("mxmoe_act_and_quantize")
        off_t = b.tensor(offsets)
        return self._run(check, "mxmoe_act_and_quantize", b, ctypes.byref(b.tensor(h)),
                         ref(off_t), ctypes.byref(params),
                         ctypes.byref(b.mx(packed, scales, layout)))

    def grouped_gemm(self, a, w, offsets, bias, out, check=True):
        """a, w: (packed, scales, layout) triples."""
        b = self._buffers("mxmoe_grouped_gemm")
        bias_t = b.tensor(bias)
        return self._run(check, "mxmoe_grouped_gemm", b, ctypes.byref(b.mx(*a)),
                         ctypes.byref(b.mx(*w)), ctypes.byref(b.tensor(offsets)), ref(bias_t),
                         ctypes.byref(b.tensor(out)))

    def grouped_projection(self, x, topk_ids, expert_map, w, bias, rule, out, check=True):
        """w: a (packed, scales, layout) triple."""
        b = self._buffers("mxmoe_grouped_projection")
        map_t, bias_t = b.tensor(expert_map), b.tensor(bias)
        return self._run(check, "mxmoe_grouped_projection", b, ctypes.byref(b.tensor(x)),
                         ctypes.byref(b.tensor(topk_ids)), ref(map_t), ctypes.byref(b.mx(*w)),
                         ref(bias_t), int(rule), ctypes.byref(b.tensor(out)))

    def moe_workspace_size(self, params, tokens, top_k, hidden, intermediate):
        size = ctypes.c_size_t()
        status = Status(self.lib.mxmoe_moe_workspace_size(
            self.handle, ctypes.byref(params), tokens, top_k, hidden, intermediate,
            ctypes.byref(size)))
        if status != Status.OK:
            raise MxmoeError("mxmoe_moe_workspace_size", status, self.last_error())
        return size.value

    def moe_forward(self, x, topk_ids, topk_weights, w13, w2, b13, b2, params, workspace, out,
                    expert_map=None, check=True):
        """w13, w2: (packed, scales, layout) triples; workspace: a U8 array (its size is the
        workspace_bytes passed) or None (NULL)."""
        b = self._buffers("mxmoe_moe_forward")
        b13_t, b2_t, map_t = b.tensor(b13), b.tensor(b2), b.tensor(expert_map)
        weights = MoeWeights(b.mx(*w13), b.mx(*w2), ref(b13_t), ref(b2_t))
        params.expert_map = ref(map_t)
        ws_ptr = b.pointer(workspace) if workspace is not None else None
        ws_len = workspace.size if workspace is not None else 0
        return self._run(check, "mxmoe_moe_forward", b, ctypes.byref(b.tensor(x)),
                         ctypes.byref(b.tensor(topk_ids)), ctypes.byref(b.tensor(topk_weights)),
                         ctypes.byref(weights), ctypes.byref(params), ws_ptr, ws_len,
                         ctypes.byref(b.tensor(out)))
