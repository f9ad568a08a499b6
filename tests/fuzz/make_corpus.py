"""make_corpus.py — writes the seed corpora of the fuzz targets (tests/fuzz/corpus/*).

The seeds are committed, so CI fuzzes without Python; rerun this after changing it:
    python3 tests/fuzz/make_corpus.py        (needs numpy, safetensors, gguf)
safetensors seeds come from the reference writer (the `safetensors` package) plus hand-made
edge cases; GGUF seeds from the `gguf` package's writer; JSON seeds are model configs and
indexes shaped like the ones mxmoe reads.
"""
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent / "corpus"


def st_seeds(out):
    from safetensors.numpy import save
    rng = np.random.default_rng(0)
    files = {
        "empty": ({}, None),
        "one_f32": ({"w": rng.standard_normal((2, 3)).astype(np.float32)}, None),
        "metadata": ({"a.weight": np.arange(6, dtype=np.uint8).reshape(2, 3)},
                     {"format": "pt", "mxmoe.scale_rule": "even"}),
        "dtypes": ({f"t_{np.dtype(d).name}": np.ones((2, 2), dtype=d)
                    for d in (np.float16, np.float32, np.float64, np.int8, np.int16, np.int32,
                              np.int64, np.uint8, np.uint16, np.uint32, np.uint64, np.bool_)},
                   None),
        "scalar_and_empty": ({"s": np.array(3.0, dtype=np.float32),
                              "e": np.zeros((0, 4), dtype=np.float32)}, None),
        "mxfp4_pair": ({"model.layers.0.mlp.experts.0.up_proj.weight_packed":
                        rng.integers(0, 256, (4, 16), dtype=np.uint8),
                        "model.layers.0.mlp.experts.0.up_proj.weight_scale":
                        rng.integers(118, 130, (4, 1), dtype=np.uint8)}, None),
    }
    for name, (tensors, meta) in files.items():
        (out / f"{name}.safetensors").write_bytes(save(tensors, metadata=meta))
    # Hand-made: escapes in names, unpadded header, bf16 via raw header.
    header = json.dumps({"w\u00e9\\n": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]},
                         "__metadata__": {"k": "v"}}).encode()
    (out / "escaped_bf16.safetensors").write_bytes(
        struct.pack("<Q", len(header)) + header + b"\x80\x3f\x00\x40")


def json_seeds(out):
    config = {
        "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
        "hidden_size": 64, "moe_intermediate_size": 32, "num_experts": 4,
        "num_experts_per_tok": 2, "norm_topk_prob": True, "hidden_act": "silu",
        "num_hidden_layers": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "torch_dtype": "bfloat16", "tie_word_embeddings": False, "mlp_only_layers": [],
        "quantization_config": {
            "quant_method": "compressed-tensors", "format": "mxfp4-pack-quantized",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
                "num_bits": 4, "type": "float", "strategy": "group", "group_size": 32,
                "symmetric": True, "dynamic": False, "scale_dtype": "torch.uint8",
                "zp_dtype": None}, "input_activations": None, "output_activations": None}},
            "ignore": ["lm_head", "re:.*mlp.gate$"]}}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    index = {"metadata": {"total_size": 123456},
             "weight_map": {"model.layers.0.mlp.gate.weight": "model-00001-of-00002.safetensors",
                            "lm_head.weight": "model-00002-of-00002.safetensors"}}
    (out / "index.json").write_text(json.dumps(index))
    (out / "numbers.json").write_text('[0, -0, 1.5e-3, 2E+10, 123456789012345678901234, -1.0, '
                                      '"\\ud83d\\ude00\\u00e9", true, false, null, {}, []]')


def gguf_seeds(out):
    import gguf
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.gguf")
        w = gguf.GGUFWriter(path, "gpt-oss")
        w.add_uint32("gpt-oss.expert_count", 2)
        w.add_uint32("gpt-oss.expert_used_count", 1)
        w.add_uint32("gpt-oss.embedding_length", 32)
        w.add_uint32("gpt-oss.expert_feed_forward_length", 32)
        w.add_array("tokenizer.ggml.tokens", ["a", "b", "c"])
        w.add_float32("f", 0.5)
        w.add_bool("b", True)
        w.add_tensor("blk.0.ffn_gate_inp.weight", rng.standard_normal((2, 32)).astype(np.float32))
        w.add_tensor("blk.0.ffn_up_exps.weight", rng.integers(0, 256, (2, 32, 17), dtype=np.uint8),
                     raw_dtype=gguf.GGMLQuantizationType.MXFP4)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        (out / "gpt_oss_small.gguf").write_bytes(Path(path).read_bytes())
        w = gguf.GGUFWriter(path, "llama")
        w.add_tensor("t", np.arange(8, dtype=np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        (out / "f16.gguf").write_bytes(Path(path).read_bytes())


if __name__ == "__main__":
    for sub, fn in (("safetensors", st_seeds), ("json", json_seeds), ("gguf", gguf_seeds)):
        d = HERE / sub
        d.mkdir(parents=True, exist_ok=True)
        fn(d)
        print(f"{d}: {len(list(d.iterdir()))} seeds")
