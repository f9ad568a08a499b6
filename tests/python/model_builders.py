"""model_builders.py — small synthetic MoE models, written in each checkpoint format with the
ecosystem's own writers (the `safetensors` package for Hugging Face folders, the `gguf` package
for GGUF), and the oracle case that says what a loaded layer must compute.

A `MoeModel` is the truth, independent of any file format: per-expert MXFP4 codes and scale bytes
for gate [E, I, H], up [E, I, H] and down [E, H, I], an FP32 router (values exactly
representable in the dtype it is stored in), optional biases, and the routing rule. The writers
lay it out as each format does (formats.md §4): compressed-tensors per-expert weight_packed +
weight_scale, gpt-oss interleaved gate/up blocks, GGUF block_mxfp4 with gate and up separate.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

import oracle as orc


@dataclass
class MoeModel:
    experts: int
    top_k: int
    hidden: int
    inter: int
    gate: tuple                 # (codes [E, I, H], scales [E, I, H/32])
    up: tuple
    down: tuple                 # (codes [E, H, I], scales [E, H, I/32])
    router: np.ndarray          # float32 [E, H]
    router_bias: Optional[np.ndarray] = None       # float32 [E]
    correction: Optional[np.ndarray] = None        # float32 [E] (sigmoid routing)
    b_gate: Optional[np.ndarray] = None             # float32 [E, I]
    b_up: Optional[np.ndarray] = None
    b_down: Optional[np.ndarray] = None             # float32 [E, H]
    route: dict = field(default_factory=lambda: {"method": "SOFTMAX_TOPK", "renormalize": True})
    activation: str = "SILU_MUL"
    limit: float = 7.0


def random_model(rng, experts=4, top_k=2, hidden=64, inter=32, biases=False, router_bias=False,
                 router_dtype=orc.BF16, route=None, activation="SILU_MUL"):
    def weights(rows, k):
        codes = rng.integers(0, 16, size=(experts, rows, k), dtype=np.uint8)
        scales = rng.integers(116, 128, size=(experts, rows, k // 32), dtype=np.uint8)
        return codes, scales

    def stored(shape, scale=1.0):
        v = (rng.standard_normal(shape) * scale).astype(np.float32)
        return v.astype(router_dtype).astype(np.float32)  # exactly what the file will hold

    m = MoeModel(experts, top_k, hidden, inter, weights(inter, hidden), weights(inter, hidden),
                 weights(hidden, inter), stored((experts, hidden), 0.2), activation=activation)
    if route is not None:
        m.route = route
    if router_bias:
        m.router_bias = stored((experts,))
    if biases:
        m.b_gate, m.b_up = stored((experts, inter)), stored((experts, inter))
        m.b_down = stored((experts, hidden))
    return m


# --- oracle ---------------------------------------------------------------------------------------

def w13(m, layout):
    """(codes, scales) of w13 [E, 2I, H]: gate‖up, or interleaved rows for gpt-oss."""
    if layout == "CONCAT":
        return (np.concatenate([m.gate[0], m.up[0]], axis=1),
                np.concatenate([m.gate[1], m.up[1]], axis=1))
    codes = np.empty((m.experts, 2 * m.inter, m.hidden), dtype=np.uint8)
    scales = np.empty((m.experts, 2 * m.inter, m.hidden // 32), dtype=np.uint8)
    codes[:, 0::2], codes[:, 1::2] = m.gate[0], m.up[0]
    scales[:, 0::2], scales[:, 1::2] = m.gate[1], m.up[1]
    return codes, scales


def b13(m, layout):
    if m.b_gate is None:
        return None
    if layout == "CONCAT":
        return np.concatenate([m.b_gate, m.b_up], axis=1)
    b = np.empty((m.experts, 2 * m.inter), dtype=np.float32)
    b[:, 0::2], b[:, 1::2] = m.b_gate, m.b_up
    return b


def reference_route(m, x):
    """Routing from float64 logits rounded to float32, as the layer's router defines them:
    -> (ids, weights float64, near-tie flags)."""
    logits = orc.to_f64(x) @ m.router.astype(np.float64).T
    if m.router_bias is not None:
        logits = logits + m.router_bias.astype(np.float64)
    logits32 = logits.astype(np.float32)
    r = m.route
    return orc.route(logits32, r["method"], m.top_k, renormalize=r.get("renormalize", False),
                     num_groups=r.get("num_groups", 1), topk_groups=r.get("topk_groups", 1),
                     scaling_factor=r.get("scaling_factor", 1.0), correction_bias=m.correction)


def oracle_case(m, x, ids, weights, layout, out_dtype, act_dtype=orc.BF16, rule="EVEN",
                gemm_dtype=orc.F32):
    return orc.MoeCase(x=x, topk_ids=ids, topk_weights=weights, w13=w13(m, layout),
                       w2=m.down, b13=b13(m, layout), b2=m.b_down, num_experts=m.experts,
                       activation=m.activation, layout=layout,
                       alpha=float(np.float32(1.702)), limit=m.limit, act_dtype=act_dtype,
                       rule=rule, out_dtype=np.dtype(out_dtype), gemm_dtype=np.dtype(gemm_dtype))


# --- writers --------------------------------------------------------------------------------------

def _save(path, tensors, metadata=None):
    from safetensors.numpy import save_file
    save_file(tensors, str(path), metadata=metadata)


def write_folder(folder, tensors, config, shards=1):
    """Writes tensors over `shards` files (+ index when more than one) and config.json."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    if shards == 1:
        _save(folder / "model.safetensors", tensors, {"format": "pt"})
    else:
        weight_map = {}
        for s in range(shards):
            file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[s::shards]}
            _save(folder / file, part, {"format": "pt"})
            weight_map.update({n: file for n in part})
        total = sum(t.nbytes for t in tensors.values())
        (folder / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "generation_config.json").write_text('{"do_sample": true}\n')
    return folder


def filler_tensors(rng, hidden, layers):
    """Non-MoE tensors a real checkpoint has around the experts (copied, never read)."""
    t = {"model.embed_tokens.weight": rng.standard_normal((8, hidden)).astype(orc.BF16),
         "lm_head.weight": rng.standard_normal((8, hidden)).astype(orc.BF16)}
    for layer in range(layers):
        t[f"model.layers.{layer}.self_attn.q_proj.weight"] = (
            rng.standard_normal((hidden, hidden)).astype(orc.BF16))
        t[f"model.layers.{layer}.input_layernorm.weight"] = np.ones(hidden, dtype=orc.BF16)
    return t


CT_QUANTIZATION_CONFIG = {
    "config_groups": {"group_0": {
        "format": "mxfp4-pack-quantized", "output_activations": None, "targets": ["Linear"],
        "input_activations": {"num_bits": 4, "type": "float", "strategy": "group",
                              "group_size": 32, "symmetric": True, "dynamic": True,
                              "scale_dtype": "torch.uint8", "zp_dtype": None, "observer": None},
        "weights": {"num_bits": 4, "type": "float", "strategy": "group", "group_size": 32,
                    "symmetric": True, "dynamic": False, "scale_dtype": "torch.uint8",
                    "zp_dtype": None, "observer": "memoryless_minmax"}}},
    "format": "mxfp4-pack-quantized", "ignore": ["lm_head", "re:.*mlp.gate$"],
    "quant_method": "compressed-tensors", "quantization_status": "compressed",
    "kv_cache_scheme": None, "sparsity_config": {}, "transform_config": {},
    "version": "0.12.2"}


def base_config(m, model_type, layers):
    return {"architectures": ["X"], "model_type": model_type, "hidden_size": m.hidden,
            "num_hidden_layers": layers, "num_experts_per_tok": m.top_k, "hidden_act": "silu",
            "rms_norm_eps": 1e-06, "torch_dtype": "bfloat16"}


def write_compressed_tensors(m, folder, rng, layer=1, layers=2, naming="qwen", shards=2,
                             unquantized=False, extra_config=None, router_dtype=orc.BF16):
    """A compressed-tensors folder (or, unquantized=True, the BF16 model it was made from:
    weights are then the dequantized MXFP4 values, exact in BF16 only when scales allow, so use
    it with write_unquantized_float instead)."""
    prefix, projs = {"qwen": (f"model.layers.{layer}.mlp", ("gate_proj", "up_proj", "down_proj")),
                     "mixtral": (f"model.layers.{layer}.block_sparse_moe", ("w1", "w3", "w2"))}[naming]
    t = filler_tensors(rng, m.hidden, layers)
    for e in range(m.experts):
        for proj, (codes, scales) in zip(projs, (m.gate, m.up, m.down)):
            base = f"{prefix}.experts.{e}.{proj}"
            t[base + ".weight_packed"] = orc.pack(codes[e])
            t[base + ".weight_scale"] = np.ascontiguousarray(scales[e])
    t[f"{prefix}.gate.weight"] = m.router.astype(router_dtype)
    if m.correction is not None:
        t[f"{prefix}.gate.e_score_correction_bias"] = m.correction.astype(np.float32)
    config = base_config(m, {"qwen": "qwen3_moe", "mixtral": "mixtral"}[naming], layers)
    config.update({"num_experts" if naming == "qwen" else "num_local_experts": m.experts,
                   "moe_intermediate_size" if naming == "qwen" else "intermediate_size": m.inter,
                   "norm_topk_prob": bool(m.route.get("renormalize", False)),
                   "quantization_config": CT_QUANTIZATION_CONFIG})
    config.update(extra_config or {})
    return write_folder(folder, t, config, shards)


def write_unquantized(folder, rng, experts, top_k, hidden, inter, layer=0, layers=1, shards=2):
    """A BF16 Qwen3-MoE-style folder (random weights): -> (folder, {name: float32 weights})."""
    t = filler_tensors(rng, hidden, layers)
    weights = {}
    for e in range(experts):
        for proj, shape in (("gate_proj", (inter, hidden)), ("up_proj", (inter, hidden)),
                            ("down_proj", (hidden, inter))):
            name = f"model.layers.{layer}.mlp.experts.{e}.{proj}.weight"
            w = (rng.standard_normal(shape) * 0.05).astype(orc.BF16)
            t[name] = w
            weights[name] = w
    router = (rng.standard_normal((experts, hidden)) * 0.2).astype(orc.BF16)
    t[f"model.layers.{layer}.mlp.gate.weight"] = router
    weights["router"] = router
    config = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
              "hidden_size": hidden, "num_hidden_layers": layers, "num_experts": experts,
              "num_experts_per_tok": top_k, "moe_intermediate_size": inter,
              "norm_topk_prob": True, "hidden_act": "silu", "rms_norm_eps": 1e-06,
              "rope_theta": 1000000.0, "torch_dtype": "bfloat16", "decoder_sparse_step": 1,
              "mlp_only_layers": []}
    return write_folder(folder, t, config, shards), weights


def write_gpt_oss(m, folder, rng, layer=0, layers=1, shards=1):
    """A gpt-oss MXFP4 folder: interleaved gate/up blocks [E, 2I, H/32, 16], biases, router."""
    codes13, scales13 = w13(m, "INTERLEAVED")
    prefix = f"model.layers.{layer}.mlp"
    t = filler_tensors(rng, m.hidden, layers)
    t[f"{prefix}.experts.gate_up_proj_blocks"] = orc.pack(codes13).reshape(
        m.experts, 2 * m.inter, m.hidden // 32, 16)
    t[f"{prefix}.experts.gate_up_proj_scales"] = scales13
    t[f"{prefix}.experts.gate_up_proj_bias"] = b13(m, "INTERLEAVED").astype(orc.BF16)
    t[f"{prefix}.experts.down_proj_blocks"] = orc.pack(m.down[0]).reshape(
        m.experts, m.hidden, m.inter // 32, 16)
    t[f"{prefix}.experts.down_proj_scales"] = m.down[1]
    t[f"{prefix}.experts.down_proj_bias"] = m.b_down.astype(orc.BF16)
    t[f"{prefix}.router.weight"] = m.router.astype(orc.BF16)
    t[f"{prefix}.router.bias"] = m.router_bias.astype(orc.BF16)
    config = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
              "hidden_size": m.hidden, "intermediate_size": m.inter,
              "num_hidden_layers": layers, "num_local_experts": m.experts,
              "num_experts_per_tok": m.top_k, "experts_per_token": m.top_k,
              "swiglu_limit": m.limit, "hidden_act": "silu",
              "quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": [
                  "model.layers.*.self_attn", "model.layers.*.mlp.router",
                  "model.embed_tokens", "lm_head"]}}
    return write_folder(folder, t, config, shards)


def write_gguf(m, path, arch="gpt-oss", layer=0, layers=1, expert_type="MXFP4",
               router_dtype=np.float32):
    """A GGUF file from gguf-py's writer: experts as block_mxfp4 (raw MXFP4 bytes) or any type
    gguf-py can quantize to (e.g. Q8_0), router F32/F16."""
    import gguf
    w = gguf.GGUFWriter(str(path), arch)
    w.add_block_count(layers)
    w.add_embedding_length(m.hidden)
    w.add_expert_count(m.experts)
    w.add_expert_used_count(m.top_k)
    w.add_expert_feed_forward_length(m.inter)
    w.add_array("tokenizer.ggml.tokens", ["<s>", "</s>", "a"])
    w.add_tensor("token_embd.weight", np.zeros((8, m.hidden), dtype=np.float32))
    for name, (codes, scales) in (("gate", m.gate), ("up", m.up), ("down", m.down)):
        tname = f"blk.{layer}.ffn_{name}_exps.weight"
        if expert_type == "MXFP4":
            w.add_tensor(tname, orc.to_gguf(codes, scales),
                         raw_dtype=gguf.GGMLQuantizationType.MXFP4)
        else:
            qtype = gguf.GGMLQuantizationType[expert_type]
            values = orc.dequantize_values(codes, scales).astype(np.float32)
            w.add_tensor(tname, gguf.quants.quantize(values, qtype), raw_dtype=qtype)
    w.add_tensor(f"blk.{layer}.ffn_gate_inp.weight", m.router.astype(router_dtype))
    if m.router_bias is not None:
        w.add_tensor(f"blk.{layer}.ffn_gate_inp.bias", m.router_bias.astype(np.float32))
    if m.b_gate is not None:
        w.add_tensor(f"blk.{layer}.ffn_gate_exps.bias", m.b_gate.astype(np.float32))
        w.add_tensor(f"blk.{layer}.ffn_up_exps.bias", m.b_up.astype(np.float32))
        w.add_tensor(f"blk.{layer}.ffn_down_exps.bias", m.b_down.astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
