"""test_api_basics.py — the small API and the binding itself: versions, names, sizes, tensor
descriptors and the params defaults. The struct layouts of mxmoe_ctypes are checked by round
trips through the library's own _make/_default functions (a misplaced field reads garbage)."""
import ctypes

import numpy as np

import mxmoe_ctypes as mx


def test_version_and_names(lib):
    assert lib.mxmoe_version_number() == 300  # 0.3.0: MAJOR*10000 + MINOR*100 + PATCH
    assert lib.mxmoe_version_string().decode().startswith("0.3.0")
    for s in mx.Status:
        assert lib.mxmoe_status_string(int(s)).decode()
    assert lib.mxmoe_status_string(12345)  # never NULL
    for rule in mx.Rule:
        assert rule.name.lower() in lib.mxmoe_scale_rule_name(int(rule)).decode().lower()


def test_dtype_sizes(lib):
    sizes = {mx.DType.F32: 4, mx.DType.BF16: 2, mx.DType.F16: 2, mx.DType.U8: 1, mx.DType.I32: 4}
    for dtype, size in sizes.items():
        assert lib.mxmoe_dtype_size(int(dtype)) == size
        assert lib.mxmoe_dtype_name(int(dtype))
    assert lib.mxmoe_dtype_size(99) == 0


def test_tensor_make_and_numel(lib):
    buf = np.zeros(24, dtype=np.float32)
    dims = (ctypes.c_int64 * 3)(2, 3, 4)
    t = lib.mxmoe_tensor_make(buf.ctypes.data, int(mx.DType.F32), 3, dims)
    assert t.data == buf.ctypes.data and t.dtype == mx.DType.F32 and t.device == mx.Device.HOST
    assert t.ndim == 3 and list(t.dims) == [2, 3, 4, 1]
    assert lib.mxmoe_tensor_numel(ctypes.byref(t)) == 24
    assert lib.mxmoe_tensor_numel(ctypes.byref(mx.tensor(np.zeros((5, 7), np.uint8)))) == 35
    bad = mx.tensor(np.zeros(3, np.uint8))
    bad.ndim = 0
    assert lib.mxmoe_tensor_numel(ctypes.byref(bad)) == -1
    huge = mx.tensor(np.zeros((1, 1), np.uint8))
    huge.dims[0] = huge.dims[1] = 1 << 40
    assert lib.mxmoe_tensor_numel(ctypes.byref(huge)) == -1  # overflows int64


def test_params_defaults(lib):
    act = lib.mxmoe_act_params_default()
    assert act.activation == mx.Activation.SILU_MUL and act.layout == mx.GateUpLayout.CONCAT
    assert np.float32(act.swiglu_alpha) == np.float32(1.702) and act.swiglu_limit == 7.0
    assert act.act_dtype == mx.DType.BF16 and act.rule == mx.Rule.EVEN
    moe = lib.mxmoe_moe_params_default()
    assert moe.act.act_dtype == mx.DType.BF16 and moe.act.rule == mx.Rule.EVEN
    assert np.float32(moe.act.swiglu_alpha) == np.float32(1.702)
    assert moe.router_weight_on_input == 0 and not moe.expert_map
    assert moe.gemm_dtype == mx.DType.BF16  # the GEMM results kept as vLLM keeps them
    route = lib.mxmoe_route_params_default()
    assert route.num_groups == 1 and route.topk_groups == 1 and route.scaling_factor == 1.0
    assert not route.correction_bias
    ctx_params = lib.mxmoe_ctx_params_default()
    assert ctx_params.backend == mx.Backend.AUTO and ctx_params.num_threads == 0


def test_context(lib, ctx):
    assert lib.mxmoe_backend_available(int(mx.Backend.CPU)) == 1
    wanted = mx.backend_from_env()
    assert wanted == mx.Backend.AUTO or lib.mxmoe_ctx_backend(ctx.handle) == wanted
    assert ctx.detail()
    assert lib.mxmoe_backend_name(int(mx.Backend.CPU)).decode().lower() == "cpu"
    lib.mxmoe_ctx_free(None)  # NULL is a no-op
