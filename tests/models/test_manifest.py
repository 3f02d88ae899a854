"""Tests of artsy.models.manifest beyond those in test_bundle.py: importing skops."""

import importlib.util
import subprocess
import sys
import textwrap

import pytest

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch is not installed (train extra): nothing to keep out")

_LOAD_AND_PREDICT = textwrap.dedent("""
    import importlib, sys
    import numpy as np
    from artsy.models.bundle import load_bundle
    from artsy.models.manifest import ARRAY_API_SHIMS

    bundle = load_bundle()
    heads = bundle.embedding_models
    width = next(iter(heads.values())).n_features_in_
    probs = bundle.predict_embedding(np.zeros((2, width), dtype=np.float32))
    assert all(p.shape == (2,) and np.isfinite(p).all() for p in probs.values()), probs
    print("torch" in sys.modules, any(name in sys.modules for name in ARRAY_API_SHIMS))
    shim = importlib.import_module(ARRAY_API_SHIMS[0])
    print(hasattr(shim, "asarray"))
""")


@needs_torch
def test_loading_a_bundle_imports_no_torch():
    result = subprocess.run([sys.executable, "-c", _LOAD_AND_PREDICT], capture_output=True,
                            text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    held, shim_works = result.stdout.split("\n")[:2]
    assert held == "False False"  # neither torch nor a placeholder shim left behind
    assert shim_works == "True"  # the real shim still imports afterwards
