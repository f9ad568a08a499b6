"""test_model_load.py — MoE layers loaded from real checkpoint formats (mxmoe_model.h).

Each test writes a small synthetic model with the ecosystem's own writer (`safetensors` for
Hugging Face folders, `gguf` for GGUF), loads layer L through mxmoe_layer_load, and checks:
  - the routing: ids equal to the oracle's (FP64 logits rounded to FP32, oracle_route) except
    where a near-tie makes FP32 and FP64 disagree, weights within FP32 rounding;
  - the layer output: bit for bit the oracle's FP32-order emulation (oracle_moe) run on the
    weights the test wrote (known independently of any loader) with the routing the library
    chose — so layout mistakes (nibble order, gate/up order, interleaving, biases, transposes,
    GGUF block order) show up as wrong bits.
Then the ways a checkpoint can be refused: each must give the right status and a message that
names the file and the tensor or key.
"""
import json

import numpy as np
import pytest

import model_builders as mb
import model_ctypes as mc
import mxmoe_ctypes as mx
import oracle as orc
from checks import assert_same_floats


@pytest.fixture(scope="module")
def mlib(lib):
    return mc.declare(lib)


def check_layer(ctx, layer, m, rng, layout, tokens=9, x_dtype=orc.BF16, out_dtype=np.float32,
                gemm_dtype=orc.F32):
    """Routes and runs `layer` on fresh inputs; compares with the oracle. Returns the output."""
    for _ in range(10):
        x = (rng.standard_normal((tokens, m.hidden))).astype(np.float32).astype(x_dtype)
        ids_ref, w_ref, near = mb.reference_route(m, x)
        ids, w = layer.route(x)
        keep = ~near
        assert np.array_equal(ids[keep], ids_ref[keep]), "routing: expert ids differ"
        np.testing.assert_allclose(w[keep], w_ref[keep], rtol=2e-6, atol=1e-7,
                                   err_msg="routing: weights differ")
        case = mb.oracle_case(m, x, ids, w, layout, out_dtype, gemm_dtype=gemm_dtype)
        emulated = orc.moe_forward_emulated(case)
        if emulated.ambiguous:
            continue  # a libm-sensitive activation value: draw other tokens
        out = layer.forward(x, out_dtype)
        assert_same_floats(out, emulated.out, "layer output vs the oracle's FP32 emulation")
        return out
    raise RuntimeError("every draw was libm-ambiguous")


def expect_refused(ctx, path, status, *needles, layer=0):
    with pytest.raises(mc.LoadError) as e:
        mc.Layer(ctx, path, layer=layer)
    assert e.value.status == status, e.value
    for n in needles:
        assert n in e.value.message, f"'{n}' not in: {e.value.message}"
    return e.value.message


# --- compressed-tensors ----------------------------------------------------------------------------

def test_compressed_tensors_qwen(ctx, mlib, rng, tmp_path):
    m = mb.random_model(rng, experts=6, top_k=2, hidden=96, inter=64,
                        route={"method": "SOFTMAX_TOPK", "renormalize": True})
    folder = mb.write_compressed_tensors(m, tmp_path / "ct", rng, layer=1, layers=2, shards=3)
    with mc.Layer(ctx, folder, layer=1) as layer:
        info = layer.info
        assert info.format == mc.ModelFormat.COMPRESSED_TENSORS
        assert info.model_type == b"qwen3_moe"
        assert (info.num_experts, info.top_k, info.hidden, info.intermediate) == (6, 2, 96, 64)
        assert (info.num_layers, info.layer) == (2, 1)
        assert info.route.method == mx.Routing.SOFTMAX_TOPK and info.route.renormalize == 1
        assert info.moe.act.activation == mx.Activation.SILU_MUL
        assert info.quantized_at_load == 0 and info.has_expert_biases == 0
        check_layer(ctx, layer, m, rng, "CONCAT", out_dtype=orc.BF16)
        check_layer(ctx, layer, m, rng, "CONCAT", tokens=1, x_dtype=np.float32)
    # the library's default keeps the GEMM results in BF16, as vLLM (Layer here asks for F32
    # unless told otherwise)
    assert mlib.mxmoe_layer_params_default().gemm_dtype == mx.DType.BF16
    with mc.Layer(ctx, folder, layer=1, gemm_dtype=mx.DType.BF16) as layer:
        assert layer.info.moe.gemm_dtype == mx.DType.BF16
        check_layer(ctx, layer, m, rng, "CONCAT", gemm_dtype=orc.BF16)
    with pytest.raises(mc.LoadError) as e:
        mc.Layer(ctx, folder, layer=1, gemm_dtype=mx.DType.F16)
    assert e.value.status == mx.Status.INVALID_ARGUMENT and "gemm_dtype" in e.value.message


def test_compressed_tensors_mixtral_naming(ctx, mlib, rng, tmp_path):
    """block_sparse_moe.experts.<e>.{w1,w3,w2}; Mixtral always renormalizes; one shard, no
    index; F16 router."""
    m = mb.random_model(rng, experts=4, top_k=2, hidden=64, inter=96, router_dtype=orc.F16,
                        route={"method": "SOFTMAX_TOPK", "renormalize": True})
    folder = mb.write_compressed_tensors(m, tmp_path / "mx", rng, layer=0, layers=1,
                                         naming="mixtral", shards=1, router_dtype=orc.F16)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("norm_topk_prob")
    (folder / "config.json").write_text(json.dumps(cfg))
    with mc.Layer(ctx, folder / "model.safetensors", layer=0) as layer:  # a shard path works
        assert layer.info.route.renormalize == 1
        check_layer(ctx, layer, m, rng, "CONCAT")


def test_compressed_tensors_deepseek_sigmoid(ctx, mlib, rng, tmp_path):
    """scoring_func sigmoid, grouped top-k, correction bias, routed_scaling_factor."""
    route = {"method": "SIGMOID_GROUPED", "renormalize": True, "num_groups": 4,
             "topk_groups": 2, "scaling_factor": 2.5}
    m = mb.random_model(rng, experts=8, top_k=3, hidden=64, inter=32, route=route)
    m.correction = (rng.standard_normal(8) * 0.1).astype(np.float32)
    extra = {"model_type": "deepseek_v3", "scoring_func": "sigmoid", "n_group": 4,
             "topk_group": 2, "routed_scaling_factor": 2.5, "topk_method": "noaux_tc",
             "n_routed_experts": 8, "n_shared_experts": 1}
    folder = mb.write_compressed_tensors(m, tmp_path / "ds", rng, layer=1, layers=2,
                                         extra_config=extra)
    with mc.Layer(ctx, folder, layer=1) as layer:
        info = layer.info
        assert info.route.method == mx.Routing.SIGMOID_GROUPED
        assert (info.route.num_groups, info.route.topk_groups) == (4, 2)
        assert info.route.scaling_factor == np.float32(2.5)
        assert info.num_shared_experts == 1
        check_layer(ctx, layer, m, rng, "CONCAT")


# --- gpt-oss ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mapped", [True, False])
def test_gpt_oss(ctx, mlib, rng, tmp_path, monkeypatch, mapped):
    """Interleaved gate/up blocks used in place (zero-copy) on the CPU when the shards are
    mapped, copied otherwise; biases; top-k then softmax with the router bias; SwiGLU."""
    if not mapped:
        monkeypatch.setenv("MXMOE_NO_MMAP", "1")
    m = mb.random_model(rng, experts=4, top_k=2, hidden=96, inter=64, biases=True,
                        router_bias=True, route={"method": "TOPK_SOFTMAX"},
                        activation="SWIGLU_OAI")
    folder = mb.write_gpt_oss(m, tmp_path / "oss", rng, layer=0, layers=1)
    with mc.Layer(ctx, folder) as layer:
        info = layer.info
        assert info.format == mc.ModelFormat.GPT_OSS
        assert info.route.method == mx.Routing.TOPK_SOFTMAX
        assert info.moe.act.activation == mx.Activation.SWIGLU_OAI
        assert info.moe.act.layout == mx.GateUpLayout.INTERLEAVED
        assert info.moe.act.swiglu_limit == 7.0
        assert info.has_router_bias == 1 and info.has_expert_biases == 1
        on_cpu = ctx.backend == mx.Backend.CPU
        assert info.zero_copy == int(mapped and on_cpu)
        check_layer(ctx, layer, m, rng, "INTERLEAVED", out_dtype=orc.BF16)


def test_gpt_oss_unquantized(ctx, mlib, rng, tmp_path):
    """BF16 gpt-oss (experts stored [E, in, out], gate/up columns interleaved): transposed and
    quantized at load with the EVEN rule, as the oracle quantizes them."""
    E, k, H, I = 4, 2, 64, 32
    gate_up = (rng.standard_normal((E, H, 2 * I)) * 0.05).astype(orc.BF16)
    down = (rng.standard_normal((E, I, H)) * 0.05).astype(orc.BF16)
    q13 = [orc.quantize(np.ascontiguousarray(gate_up[e].T), "EVEN") for e in range(E)]
    q2 = [orc.quantize(np.ascontiguousarray(down[e].T), "EVEN") for e in range(E)]
    codes13, scales13 = np.stack([q[0] for q in q13]), np.stack([q[1] for q in q13])
    m = mb.MoeModel(E, k, H, I, (codes13[:, 0::2], scales13[:, 0::2]),
                    (codes13[:, 1::2], scales13[:, 1::2]),
                    (np.stack([q[0] for q in q2]), np.stack([q[1] for q in q2])),
                    (rng.standard_normal((E, H)) * 0.2).astype(orc.BF16).astype(np.float32),
                    route={"method": "TOPK_SOFTMAX"}, activation="SWIGLU_OAI")
    m.router_bias = rng.standard_normal(E).astype(orc.BF16).astype(np.float32)
    m.b_gate = rng.standard_normal((E, I)).astype(orc.BF16).astype(np.float32)
    m.b_up = rng.standard_normal((E, I)).astype(orc.BF16).astype(np.float32)
    m.b_down = rng.standard_normal((E, H)).astype(orc.BF16).astype(np.float32)
    p = "model.layers.0.mlp"
    t = {f"{p}.experts.gate_up_proj": gate_up, f"{p}.experts.down_proj": down,
         f"{p}.experts.gate_up_proj_bias": mb.b13(m, "INTERLEAVED").astype(orc.BF16),
         f"{p}.experts.down_proj_bias": m.b_down.astype(orc.BF16),
         f"{p}.router.weight": m.router.astype(orc.BF16),
         f"{p}.router.bias": m.router_bias.astype(orc.BF16)}
    config = {"model_type": "gpt_oss", "hidden_size": H, "intermediate_size": I,
              "num_hidden_layers": 1, "num_local_experts": E, "num_experts_per_tok": k,
              "swiglu_limit": 7.0}
    folder = mb.write_folder(tmp_path / "oss_bf16", t, config)
    with mc.Layer(ctx, folder) as layer:
        assert layer.info.format == mc.ModelFormat.UNQUANTIZED
        assert layer.info.quantized_at_load == 1
        check_layer(ctx, layer, m, rng, "INTERLEAVED")


# --- GGUF ------------------------------------------------------------------------------------------

def test_gguf_gpt_oss(ctx, mlib, rng, tmp_path):
    import gguf
    m = mb.random_model(rng, experts=4, top_k=2, hidden=64, inter=96, biases=True,
                        router_bias=True, route={"method": "TOPK_SOFTMAX"},
                        activation="SWIGLU_OAI")
    path = mb.write_gguf(m, tmp_path / "oss.gguf", arch="gpt-oss", layer=1, layers=2)
    # The file as gguf-py reads it back: its MXFP4 decoding agrees with the oracle's.
    reader = gguf.GGUFReader(str(path))
    t = next(t for t in reader.tensors if t.name == "blk.1.ffn_up_exps.weight")
    assert t.tensor_type == gguf.GGMLQuantizationType.MXFP4
    values = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
    np.testing.assert_array_equal(values.reshape(m.up[0].shape),
                                  orc.dequantize_values(*m.up).astype(np.float32))
    with mc.Layer(ctx, path, layer=1) as layer:
        info = layer.info
        assert info.format == mc.ModelFormat.GGUF and info.model_type == b"gpt-oss"
        assert info.num_layers == 2 and info.route.method == mx.Routing.TOPK_SOFTMAX
        assert info.moe.act.layout == mx.GateUpLayout.CONCAT  # llama.cpp splits gate and up
        check_layer(ctx, layer, m, rng, "CONCAT")


def test_gguf_qwen3moe(ctx, mlib, rng, tmp_path):
    m = mb.random_model(rng, experts=8, top_k=2, hidden=128, inter=32,
                        route={"method": "SOFTMAX_TOPK", "renormalize": True})
    path = mb.write_gguf(m, tmp_path / "q.gguf", arch="qwen3moe", router_dtype=np.float16)
    with mc.Layer(ctx, path) as layer:
        assert layer.info.route.renormalize == 1
        assert layer.info.moe.act.activation == mx.Activation.SILU_MUL
        check_layer(ctx, layer, m, rng, "CONCAT", x_dtype=np.float16)


# --- quantize -> load -> run -----------------------------------------------------------------------

def quantized_reference(weights, name):
    """The oracle's EVEN quantization of a BF16 weight [N, K]: (codes, scales)."""
    return orc.quantize(weights[name], "EVEN")


def test_quantize_round_trip(ctx, mlib, rng, tmp_path):
    experts, top_k, hidden, inter = 4, 2, 64, 32
    folder, weights = mb.write_unquantized(tmp_path / "bf16", rng, experts, top_k, hidden, inter,
                                           layer=0, layers=1, shards=2)
    (folder / "tokenizer.json").write_text('{"model": {}}')
    out = tmp_path / "mxfp4"
    progress = []
    stats = mc.quantize_folder(ctx, folder, out, progress=progress)
    assert stats.tensors_quantized == 3 * experts and stats.shards == 2
    assert stats.files_copied == 2  # generation_config.json, tokenizer.json
    assert progress and progress[-1][0] == progress[-1][1]
    # The folder: config with compressed-tensors' quantization_config, index, shards, files.
    cfg = json.loads((out / "config.json").read_text())
    qc = cfg["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors"
    assert qc["format"] == "mxfp4-pack-quantized" and qc["quantization_status"] == "compressed"
    group = qc["config_groups"]["group_0"]
    assert group["weights"]["num_bits"] == 4 and group["weights"]["group_size"] == 32
    assert group["weights"]["type"] == "float" and group["input_activations"]["dynamic"] is True
    assert cfg["rms_norm_eps"] == 1e-06 and cfg["model_type"] == "qwen3_moe"
    assert (out / "tokenizer.json").read_text() == '{"model": {}}'
    assert (out / "generation_config.json").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    wm = index["weight_map"]
    name = "model.layers.0.mlp.experts.1.up_proj"
    assert name + ".weight_packed" in wm and name + ".weight_scale" in wm
    assert name + ".weight" not in wm and "lm_head.weight" in wm
    from safetensors.numpy import load_file
    tensors = {}
    for shard in sorted(set(wm.values())):
        tensors.update(load_file(str(out / shard)))
    assert set(tensors) == set(wm)
    assert index["metadata"]["total_size"] == sum(t.nbytes for t in tensors.values())
    # Bytes: the oracle's quantization of the BF16 weights.
    for e in range(experts):
        for proj in ("gate_proj", "up_proj", "down_proj"):
            base = f"model.layers.0.mlp.experts.{e}.{proj}"
            codes, scales = quantized_reference(weights, base + ".weight")
            np.testing.assert_array_equal(tensors[base + ".weight_packed"], orc.pack(codes))
            np.testing.assert_array_equal(tensors[base + ".weight_scale"], scales)
    # Load the result and run it: the oracle with the same weights.
    def q(proj):
        pairs = [quantized_reference(weights, f"model.layers.0.mlp.experts.{e}.{proj}.weight")
                 for e in range(experts)]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    m = mb.MoeModel(experts, top_k, hidden, inter, q("gate_proj"), q("up_proj"), q("down_proj"),
                    weights["router"].astype(np.float32),
                    route={"method": "SOFTMAX_TOPK", "renormalize": True})
    with mc.Layer(ctx, out) as layer:
        assert layer.info.format == mc.ModelFormat.COMPRESSED_TENSORS
        got = check_layer(ctx, layer, m, np.random.default_rng(7), "CONCAT")
    # The BF16 folder itself loads too (quantized at load) and computes the same bits.
    with mc.Layer(ctx, folder) as layer:
        assert layer.info.format == mc.ModelFormat.UNQUANTIZED
        assert layer.info.quantized_at_load == 1
        again = check_layer(ctx, layer, m, np.random.default_rng(7), "CONCAT")
    assert_same_floats(again, got, "unquantized folder vs its quantized copy")


def test_quantize_refusals(ctx, mlib, rng, tmp_path):
    m = mb.random_model(rng)
    ct = mb.write_compressed_tensors(m, tmp_path / "ct", rng, layer=0, layers=1, shards=1)
    with pytest.raises(mc.LoadError) as e:
        mc.quantize_folder(ctx, ct, tmp_path / "out")
    assert e.value.status == mx.Status.UNSUPPORTED and "already quantized" in e.value.message
    folder, _ = mb.write_unquantized(tmp_path / "bf16", rng, 2, 1, 64, 32, shards=1)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("x")
    with pytest.raises(mc.LoadError) as e:
        mc.quantize_folder(ctx, folder, busy)
    assert "not empty" in e.value.message


# --- refusals --------------------------------------------------------------------------------------

def test_refusals_hf(ctx, mlib, rng, tmp_path):
    m = mb.random_model(rng, experts=4, top_k=2, hidden=64, inter=32)
    good = mb.write_compressed_tensors(m, tmp_path / "good", rng, layer=1, layers=2, shards=2)

    def variant(name, edit_config=None, drop=None, replace=None):
        import shutil
        from safetensors.numpy import load_file, save_file
        d = tmp_path / name
        shutil.copytree(good, d)
        if edit_config:
            cfg = json.loads((d / "config.json").read_text())
            edit_config(cfg)
            (d / "config.json").write_text(json.dumps(cfg))
        if drop or replace:
            index = json.loads((d / "model.safetensors.index.json").read_text())
            for shard in set(index["weight_map"].values()):
                t = load_file(str(d / shard))
                for k in list(t):
                    if drop and k == drop:
                        del t[k]
                    if replace and k in replace:
                        t[k] = replace[k]
                save_file(t, str(d / shard))
            if drop:
                del index["weight_map"][drop]
            (d / "model.safetensors.index.json").write_text(json.dumps(index))
        return d

    def refused(path, status, *needles):
        return expect_refused(ctx, path, status, *needles, layer=1)

    up = "model.layers.1.mlp.experts.2.up_proj"
    refused(variant("missing", drop=up + ".weight_scale"), mx.Status.FORMAT,
                   up + ".weight_scale", "model.safetensors.index.json")
    refused(variant("shape", replace={up + ".weight_packed": np.zeros(
        (32, 16), np.uint8)}), mx.Status.FORMAT, up + ".weight_packed", "[32, 16]",
        "expected U8 [32, 32]", ".safetensors")
    refused(variant("nvfp4", edit_config=lambda c: c["quantization_config"].update(
        format="nvfp4-pack-quantized", config_groups={})), mx.Status.UNSUPPORTED,
        "nvfp4-pack-quantized", "config.json")
    refused(variant("fp8", edit_config=lambda c: c.update(
        quantization_config={"quant_method": "fp8"})), mx.Status.UNSUPPORTED, '"fp8"')
    refused(variant("noexp", edit_config=lambda c: c.pop("num_experts")),
                   mx.Status.FORMAT, "config.json", "num_local_experts")
    refused(variant("act", edit_config=lambda c: c.update(hidden_act="relu")),
                   mx.Status.UNSUPPORTED, "relu")
    refused(variant("v2", edit_config=lambda c: c.update(
        topk_method="group_limited_greedy")), mx.Status.UNSUPPORTED, "group_limited_greedy")
    expect_refused(ctx, good, mx.Status.INVALID_ARGUMENT, "layer 5", "2 layers", layer=5)
    expect_refused(ctx, good, mx.Status.FORMAT, "layer 0 has no routed experts", layer=0)
    broken = variant("badjson")
    (broken / "config.json").write_text('{"hidden_size": 64,}')
    refused(broken, mx.Status.FORMAT, "config.json", "trailing comma")
    escape = variant("escape")
    index = json.loads((escape / "model.safetensors.index.json").read_text())
    index["weight_map"][up + ".weight_scale"] = "../elsewhere.safetensors"
    (escape / "model.safetensors.index.json").write_text(json.dumps(index))
    refused(escape, mx.Status.FORMAT, "a file name in the folder")
    expect_refused(ctx, tmp_path / "nowhere", mx.Status.IO, "nowhere")


def test_refusals_gguf(ctx, mlib, rng, tmp_path):
    m = mb.random_model(rng, experts=4, top_k=2, hidden=64, inter=32)
    path = mb.write_gguf(m, tmp_path / "q8.gguf", arch="qwen3moe", expert_type="Q8_0")
    expect_refused(ctx, path, mx.Status.UNSUPPORTED, "blk.0.ffn_gate_exps.weight", "q8_0")
    path = mb.write_gguf(m, tmp_path / "arch.gguf", arch="mamba")
    expect_refused(ctx, path, mx.Status.UNSUPPORTED, "architecture 'mamba'")
    good = mb.write_gguf(m, tmp_path / "good.gguf", arch="qwen3moe")
    data = good.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 100])
    expect_refused(ctx, cut, mx.Status.FORMAT, "cut.gguf", "run past the end")
    expect_refused(ctx, good, mx.Status.INVALID_ARGUMENT, "layer 3", layer=3)


def test_forward_errors(ctx, mlib, rng, tmp_path):
    m = mb.random_model(rng, experts=4, top_k=2, hidden=64, inter=32)
    folder = mb.write_compressed_tensors(m, tmp_path / "ct", rng, layer=0, layers=1, shards=1)
    with mc.Layer(ctx, folder) as layer:
        x = rng.standard_normal((3, 96)).astype(np.float32)
        with pytest.raises(mx.MxmoeError) as e:
            layer.route(x)
        assert e.value.status == mx.Status.SHAPE and "hidden size is 64" in e.value.message
        x = rng.standard_normal((3, 64)).astype(np.float32)
        status = layer.forward(x, workspace_bytes=layer.workspace_size(3) - 1, check=False)
        assert status == mx.Status.WORKSPACE
        assert layer.forward(x[:0]).shape == (0, 64)
