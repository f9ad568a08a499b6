"""model_ctypes.py — ctypes binding of include/mxmoe_model.h (MoE layers of real checkpoints and
model-folder quantization), in the style of mxmoe_ctypes.py: struct layouts and enum values
mirror the header, nothing here computes anything.

`declare(lib)` adds the signatures to a library loaded by mxmoe_ctypes.load_library; `Layer`
wraps an mxmoe_layer for a Context, staging arrays through the Context's poisoned-guard buffers
(host or CUDA memory), so out-of-bounds writes are caught as in the other tests.
"""
import ctypes
import enum

import numpy as np

import mxmoe_ctypes as mx


class ModelFormat(enum.IntEnum):
    COMPRESSED_TENSORS = 0
    GPT_OSS = 1
    GGUF = 2
    UNQUANTIZED = 3


class IoError(ctypes.Structure):
    _fields_ = [("message", ctypes.c_char * 512)]


class LayerParams(ctypes.Structure):
    _fields_ = [
        ("layer", ctypes.c_int32),
        ("weight_rule", ctypes.c_int),
        ("act_rule", ctypes.c_int),
        ("act_dtype", ctypes.c_int),
        ("gemm_dtype", ctypes.c_int),
    ]


class LayerInfo(ctypes.Structure):
    _fields_ = [
        ("format", ctypes.c_int),
        ("model_type", ctypes.c_char * 64),
        ("layer", ctypes.c_int32),
        ("num_layers", ctypes.c_int32),
        ("num_experts", ctypes.c_int32),
        ("top_k", ctypes.c_int32),
        ("hidden", ctypes.c_int64),
        ("intermediate", ctypes.c_int64),
        ("route", mx.RouteParams),
        ("moe", mx.MoeParams),
        ("has_router_bias", ctypes.c_int32),
        ("has_expert_biases", ctypes.c_int32),
        ("num_shared_experts", ctypes.c_int32),
        ("quantized_at_load", ctypes.c_int32),
        ("zero_copy", ctypes.c_int32),
        ("weight_bytes", ctypes.c_size_t),
    ]


PROGRESS_FN = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_char_p,
                               ctypes.c_void_p)


class QuantizeParams(ctypes.Structure):
    _fields_ = [
        ("rule", ctypes.c_int),
        ("progress", PROGRESS_FN),
        ("progress_user_data", ctypes.c_void_p),
    ]


class QuantizeStats(ctypes.Structure):
    _fields_ = [
        ("tensors_quantized", ctypes.c_int64),
        ("tensors_copied", ctypes.c_int64),
        ("shards", ctypes.c_int64),
        ("files_copied", ctypes.c_int64),
        ("bytes_in", ctypes.c_uint64),
        ("bytes_out", ctypes.c_uint64),
    ]


_P = ctypes.POINTER
_T = _P(mx.Tensor)
_V = ctypes.c_void_p
_SIGNATURES = {
    "mxmoe_model_format_name": (ctypes.c_char_p, [ctypes.c_int]),
    "mxmoe_layer_params_default": (LayerParams, []),
    "mxmoe_layer_load": (ctypes.c_int, [_V, ctypes.c_char_p, _P(LayerParams), _P(_V),
                                        _P(IoError)]),
    "mxmoe_layer_free": (None, [_V]),
    "mxmoe_layer_get_info": (_P(LayerInfo), [_V]),
    "mxmoe_layer_weights": (ctypes.c_int, [_V, _P(mx.MoeWeights)]),
    "mxmoe_layer_workspace_size": (ctypes.c_int, [_V, _V, ctypes.c_int64, _P(ctypes.c_size_t)]),
    "mxmoe_layer_route": (ctypes.c_int, [_V, _V, _T, _T, _T]),
    "mxmoe_layer_forward": (ctypes.c_int, [_V, _V, _T, _T, _V, ctypes.c_size_t]),
    "mxmoe_model_quantize_params_default": (QuantizeParams, []),
    "mxmoe_model_quantize": (ctypes.c_int, [_V, ctypes.c_char_p, ctypes.c_char_p,
                                            _P(QuantizeParams), _P(QuantizeStats),
                                            _P(IoError)]),
}


def declare(lib):
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


class LoadError(RuntimeError):
    def __init__(self, status, message):
        self.status, self.message = status, message
        super().__init__(f"{status.name}: {message}")


class Layer:
    """A loaded mxmoe_layer on `ctx` (an mxmoe_ctypes.Context)."""

    def __init__(self, ctx, path, layer=0, weight_rule=mx.Rule.EVEN, act_rule=mx.Rule.EVEN,
                 act_dtype=mx.DType.BF16, gemm_dtype=mx.DType.F32):
        self.ctx, self.lib = ctx, ctx.lib
        params = self.lib.mxmoe_layer_params_default()
        params.layer, params.weight_rule = layer, int(weight_rule)
        params.act_rule, params.act_dtype = int(act_rule), int(act_dtype)
        params.gemm_dtype = int(gemm_dtype)
        handle, err = ctypes.c_void_p(), IoError()
        status = mx.Status(self.lib.mxmoe_layer_load(ctx.handle, str(path).encode(),
                                                     ctypes.byref(params), ctypes.byref(handle),
                                                     ctypes.byref(err)))
        if status != mx.Status.OK:
            raise LoadError(status, err.message.decode())
        self.handle = handle
        self.info = self.lib.mxmoe_layer_get_info(handle).contents

    def close(self):
        if self.handle:
            self.lib.mxmoe_layer_free(self.handle)
            self.handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def route(self, x):
        t, k = x.shape[0], self.info.top_k
        ids = np.full((t, k), -7, dtype=np.int32)
        weights = np.full((t, k), np.nan, dtype=np.float32)
        b = self.ctx._buffers("mxmoe_layer_route")
        self.ctx._run(True, "mxmoe_layer_route", b, self.handle, ctypes.byref(b.tensor(x)),
                      ctypes.byref(b.tensor(ids)), ctypes.byref(b.tensor(weights)))
        return ids, weights

    def workspace_size(self, tokens):
        size = ctypes.c_size_t()
        status = mx.Status(self.lib.mxmoe_layer_workspace_size(self.ctx.handle, self.handle,
                                                               tokens, ctypes.byref(size)))
        if status != mx.Status.OK:
            raise mx.MxmoeError("mxmoe_layer_workspace_size", status, self.ctx.last_error())
        return size.value

    def forward(self, x, out_dtype=np.float32, workspace_bytes=None, check=True):
        """Returns out (or the status with check=False); the workspace is poisoned."""
        out = np.full(x.shape, np.nan, dtype=out_dtype)
        size = self.workspace_size(x.shape[0]) if workspace_bytes is None else workspace_bytes
        ws = np.full(max(size, 1), 0xA5, dtype=np.uint8)
        b = self.ctx._buffers("mxmoe_layer_forward")
        status = self.ctx._run(check, "mxmoe_layer_forward", b, self.handle,
                               ctypes.byref(b.tensor(x)), ctypes.byref(b.tensor(out)),
                               b.pointer(ws), size)
        return out if check else status


def quantize_folder(ctx, in_dir, out_dir, rule=mx.Rule.EVEN, progress=None):
    """mxmoe_model_quantize; returns the stats, raises LoadError on failure. `progress` is a
    list that collects (done, total, what) calls."""
    lib = ctx.lib
    params = lib.mxmoe_model_quantize_params_default()
    params.rule = int(rule)
    if progress is not None:
        def record(done, total, what, _user):
            progress.append((done, total, what.decode()))
        callback = PROGRESS_FN(record)
        params.progress = callback
    stats, err = QuantizeStats(), IoError()
    status = mx.Status(lib.mxmoe_model_quantize(ctx.handle, str(in_dir).encode(),
                                                str(out_dir).encode(), ctypes.byref(params),
                                                ctypes.byref(stats), ctypes.byref(err)))
    if status != mx.Status.OK:
        raise LoadError(status, err.message.decode())
    return stats
