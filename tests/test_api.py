"""The public Python API: names resolve to the right objects whatever was imported before."""
import importlib

import numpy as np

import mtakd


def test_public_names_are_functions_even_after_submodule_imports(tmp_path):
    for mod in ("mtakd.enhancement", "mtakd.batch", "mtakd.shard", "mtakd.streaming", "mtakd.cli"):
        importlib.import_module(mod)
    assert callable(mtakd.enhance) and mtakd.enhance.__module__ == "mtakd.enhancement"
    assert mtakd.enhance_files.__module__ == "mtakd.batch"
    assert mtakd.load_model.__module__ == "mtakd.checkpoint"
    assert isinstance(mtakd.StreamingEnhancer, type)


def test_enhance_array_round_trip(tmp_path):
    from mtakd.checkpoint import save_checkpoint
    from mtakd.models import build_model

    ck = tmp_path / "s.safetensors"
    save_checkpoint(ck, build_model("student", {"hidden": 8, "input_size": 8}))
    x = (0.1 * np.random.default_rng(0).standard_normal(4410)).astype(np.float32)
    y = mtakd.enhance(x, model=str(ck), sr=44100)
    assert y.shape == x.shape and np.isfinite(y).all()
