"""test_model_cli.py — the CLI over real checkpoints, as a user runs it: `mxmoe quantize
MODEL_DIR OUT_DIR` (progress bar on a terminal), `mxmoe run MODEL --layer L` from a tokens file
or random tokens, `--help` on every command, and errors that name the file and the tensor.

The CLI is found at $MXMOE_CLI (ctest sets it); the tests skip without it. Results are checked
against the library through ctypes: `mxmoe run` must write what mxmoe_layer_forward computes.
"""
import os
import pty
import subprocess

import numpy as np
import pytest

import model_builders as mb
import model_ctypes as mc
import mxmoe_ctypes as mx
import oracle as orc

CLI = os.environ.get("MXMOE_CLI")
pytestmark = pytest.mark.skipif(not CLI or not os.path.exists(CLI or ""),
                                reason="set MXMOE_CLI to the mxmoe binary")


def mxmoe(*args, check=True):
    r = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True,
                       env={**os.environ, "MXMOE_BACKEND": os.environ.get("MXMOE_BACKEND", "cpu")})
    if check:
        assert r.returncode == 0, f"mxmoe {' '.join(map(str, args))}: {r.stderr}"
    return r


@pytest.fixture(scope="module")
def mlib(lib):
    return mc.declare(lib)


def test_help_on_every_command():
    """`mxmoe --help` lists the commands; each answers --help with its usage."""
    text = mxmoe("--help").stdout
    commands = [line.split()[0] for line in text.split("commands:\n")[1].split("\n\n")[0]
                .splitlines() if line.strip()]
    assert "run" in commands and "quantize" in commands
    for command in commands:
        r = mxmoe(command, "--help")
        assert r.stdout.startswith("usage: mxmoe"), f"{command}: {r.stdout[:200]}"


def test_quantize_folder_then_run(ctx, mlib, rng, tmp_path):
    from safetensors.numpy import load_file, save_file
    folder, _ = mb.write_unquantized(tmp_path / "bf16", rng, 4, 2, 64, 32, layer=1, layers=2,
                                     shards=2)
    out = tmp_path / "q"
    r = mxmoe("quantize", folder, out, "--backend", "cpu")
    assert "done: 12 expert Linears quantized" in r.stdout, r.stdout
    assert "model-00001-of-00002.safetensors" in r.stdout  # one line per shard off a terminal
    # The same as the library call.
    ref = tmp_path / "ref"
    mc.quantize_folder(ctx, folder, ref)
    for shard in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        a, b = load_file(str(out / shard)), load_file(str(ref / shard))
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert (out / "config.json").read_text() == (ref / "config.json").read_text()

    # run from a tokens file, with the output written; the same as mxmoe_layer_forward.
    x = rng.standard_normal((2, 5, 64)).astype(orc.BF16)  # [..., H]: flattened to 10 tokens
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    r = mxmoe("run", out, "--layer", "1", "--input", tmp_path / "x.safetensors", "--output",
              tmp_path / "y.safetensors")
    assert "layer 1 of 2: qwen3_moe (compressed-tensors checkpoint), 4 experts, top-2" in r.stdout, r.stdout
    assert "input: 10 tokens" in r.stdout and "wrote" in r.stdout
    y = load_file(str(tmp_path / "y.safetensors"))
    assert "GEMM results in BF16" in r.stdout, r.stdout  # the library's default
    with mc.Layer(ctx, out, layer=1, gemm_dtype=mx.DType.BF16) as layer:
        x2 = np.ascontiguousarray(x.reshape(10, 64))
        ids, w = layer.route(x2)
        want = layer.forward(x2, orc.BF16)
    assert y["out"].dtype == orc.BF16 and y["out"].shape == (10, 64)
    assert y["out"].tobytes() == want.tobytes()
    assert np.array_equal(y["topk_ids"], ids) and np.array_equal(y["topk_weights"], w)

    # random tokens, repeated; and on the unquantized folder directly
    r = mxmoe("run", out, "--layer", "1", "--tokens", "33", "--repeat", "3", "--dtype", "f16")
    assert "33 random tokens" in r.stdout and "(median)" in r.stdout
    r = mxmoe("run", folder, "--layer", "1", "--tokens", "4")
    assert "quantized at load" in r.stdout

    # the GEMM results kept in FP32: the same as the library's layer loaded so
    r = mxmoe("run", out, "--layer", "1", "--input", tmp_path / "x.safetensors", "--output",
              tmp_path / "y32.safetensors", "--gemm-dtype", "f32")
    assert "GEMM results in FP32" in r.stdout, r.stdout
    with mc.Layer(ctx, out, layer=1, gemm_dtype=mx.DType.F32) as layer:
        want32 = layer.forward(np.ascontiguousarray(x.reshape(10, 64)), orc.BF16)
    assert load_file(str(tmp_path / "y32.safetensors"))["out"].tobytes() == want32.tobytes()
    r = mxmoe("run", out, "--gemm-dtype", "f16", check=False)
    assert r.returncode == 2 and "f32 or bf16" in r.stderr, r.stderr


def test_quantize_progress_bar_on_a_terminal(rng, tmp_path):
    folder, _ = mb.write_unquantized(tmp_path / "bf16", rng, 2, 1, 64, 32, shards=1)
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(CLI, [CLI, "quantize", str(folder), str(tmp_path / "q"), "--backend", "cpu"])
    chunks = []
    while True:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "\r[" in text and "100%" in text and "#" in text, text


def test_gguf_run(rng, tmp_path):
    m = mb.random_model(rng, experts=4, top_k=2, hidden=64, inter=32, biases=True,
                        router_bias=True, route={"method": "TOPK_SOFTMAX"},
                        activation="SWIGLU_OAI")
    path = mb.write_gguf(m, tmp_path / "m.gguf", arch="gpt-oss")
    r = mxmoe("run", path, "--layer", "0", "--tokens", "8", "--dtype", "f32")
    assert "gpt-oss (gguf checkpoint), 4 experts, top-2" in r.stdout, r.stdout
    assert "router bias" in r.stdout and "expert biases" in r.stdout


def test_errors_name_file_and_tensor(rng, tmp_path):
    from safetensors.numpy import save_file
    r = mxmoe("run", tmp_path / "missing", check=False)
    assert r.returncode == 1 and f"{tmp_path}/missing: cannot open" in r.stderr
    m = mb.random_model(rng, experts=4, top_k=2, hidden=64, inter=32)
    folder = mb.write_compressed_tensors(m, tmp_path / "ct", rng, layer=0, layers=1, shards=1)
    save_file({"tokens": np.zeros((3, 48), np.float32)}, str(tmp_path / "bad.safetensors"))
    r = mxmoe("run", folder, "--input", tmp_path / "bad.safetensors", check=False)
    assert r.returncode == 1
    assert "bad.safetensors: tensor 'tokens'" in r.stderr and "[..., 64]" in r.stderr, r.stderr
    r = mxmoe("run", folder, "--layer", "3", check=False)
    assert r.returncode == 1 and "layer 3 is out of range" in r.stderr
    r = mxmoe("run", folder, "--tokens", "2", "--input", "x", check=False)
    assert r.returncode == 2
    r = mxmoe("quantize", folder, tmp_path / "again", check=False)
    assert r.returncode == 1 and "already quantized" in r.stderr and "config.json" in r.stderr


def test_single_file_quantize_unchanged(rng, tmp_path):
    """Given a .safetensors file, quantize keeps its tensor-by-tensor behaviour."""
    from safetensors.numpy import load_file, save_file
    save_file({"w": rng.standard_normal((4, 64)).astype(np.float32),
               "n": np.arange(3, dtype=np.int32)}, str(tmp_path / "a.safetensors"))
    mxmoe("quantize", tmp_path / "a.safetensors", tmp_path / "b.safetensors")
    b = load_file(str(tmp_path / "b.safetensors"))
    assert set(b) == {"w_packed", "w_scale", "n"}
    codes, scales = orc.quantize(load_file(str(tmp_path / "a.safetensors"))["w"], "EVEN")
    assert np.array_equal(b["w_packed"], orc.pack(codes)) and np.array_equal(b["w_scale"], scales)
