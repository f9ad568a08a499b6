"""conftest.py — fixtures for the oracle suite: the library, one context per session, and a fresh
random generator per test whose seed is printed (pytest shows it with any failure) and can be
replayed with MXMOE_TEST_SEED."""
import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mxmoe_ctypes as mx  # noqa: E402


@pytest.fixture(scope="session")
def lib():
    path = mx.library_path()
    if not os.path.exists(path):
        pytest.fail(f"libmxmoe not found at {path}: build it, or point MXMOE_LIB at it")
    return mx.load_library(path)


@pytest.fixture(scope="session")
def ctx(lib):
    context = mx.Context(lib)
    yield context
    context.close()


@pytest.fixture
def rng():
    env = os.environ.get("MXMOE_TEST_SEED")
    seed = int(env) if env else int.from_bytes(os.urandom(8), "little")
    print(f"random seed {seed} (replay: MXMOE_TEST_SEED={seed})")
    return np.random.default_rng(seed)
