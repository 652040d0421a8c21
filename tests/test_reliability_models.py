"""Reliability of model files: damaged, lying, pickled or garbage checkpoints and ONNX files
are refused with one line (nothing in them is executed), enhancement and evaluation never
change a checkpoint, and a full disk while saving one keeps the previous file. Audio inputs are
in tests/test_reliability_inputs.py; the shared helpers in tests/reliability_helpers.py and
the fixtures in tests/conftest.py.
"""
from __future__ import annotations

import errno
import hashlib
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
from reliability_helpers import SR, cli, fill_disk_after, one_error_line, sig

from mtakd import checkpoint
from mtakd import enhancement as enh
from mtakd.checkpoint import CheckpointError, load_model, read_checkpoint, save_checkpoint
from mtakd.enhancement import enhance


# ----------------------------------------------------------------------------- full disk
def test_disk_full_in_checkpoint_write_keeps_the_previous_file(tmp_path, student, monkeypatch):
    p = tmp_path / "last.safetensors"
    save_checkpoint(p, student, train={"step": 1})
    before = p.read_bytes()
    (tmp_path / ".last.safetensors.killed.tmp").write_bytes(b"left by a killed writer")
    fill_disk_after(monkeypatch, checkpoint, 100)
    with pytest.raises(OSError) as e:
        save_checkpoint(p, student, train={"step": 2})
    assert e.value.errno == errno.ENOSPC and "disk full" in str(e.value)
    assert sorted(os.listdir(tmp_path)) == ["last.safetensors"] and p.read_bytes() == before
    assert read_checkpoint(p)[1]["train"] == {"step": 1}


# ----------------------------------------------------------------------------- model files
class _Evil:
    marker = ""

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (self.marker, "w"))


def _evil_files(tmp_path):
    import torch

    marker = tmp_path / "PWNED"
    _Evil.marker = str(marker)
    raw = tmp_path / "evil.safetensors"
    raw.write_bytes(pickle.dumps(_Evil()))
    pt = tmp_path / "evil.pt"
    torch.save({"model": _Evil()}, pt)
    return marker, [raw, pt]


def test_pickles_are_refused_and_never_executed(tmp_path, capsys):
    marker, files = _evil_files(tmp_path)
    sf.write(tmp_path / "a.wav", sig(1000), SR)
    for f in files:
        with pytest.raises(CheckpointError, match="pickle|safetensors"):
            load_model(f)
        for argv in (["enhance", tmp_path / "a.wav", "-o", tmp_path / "out", "--model", f], ["info", f],
                     ["evaluate", f, tmp_path], ["export", f, "-o", tmp_path / "x.onnx"]):
            code, _, err = cli(capsys, *argv)
            assert code == 2 and str(f) in one_error_line(err), (argv, err)
    assert not marker.exists()


def _edited(src, dst, edit):
    from safetensors.torch import save_file

    tensors, meta = read_checkpoint(src)
    tensors, meta = edit(dict(tensors), meta)
    import json

    save_file(tensors, str(dst), metadata={"mtakd": json.dumps(meta)})
    return dst


def test_damaged_or_lying_checkpoints_are_refused(tmp_path, ckpt, capsys):
    import time

    import torch

    data = ckpt.read_bytes()
    n_head = int.from_bytes(data[:8], "little")
    for cut in (0, 5, 8, 9, 8 + n_head // 2, 8 + n_head, len(data) // 2, len(data) - 1):
        p = tmp_path / f"cut{cut}.safetensors"
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as e:
            load_model(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)

    def huge(t, m):  # metadata asking for a giant model: refused before any allocation
        m["model"]["args"]["hidden"] = 10**7
        return t, m

    def unknown(t, m):
        m["model"]["name"] = "resnet_from_the_internet"
        return t, m

    def nan(t, m):
        t["model.fc_out.weight"] = torch.full_like(t["model.fc_out.weight"], float("nan"))
        return t, m

    def wrong_dtype(t, m):
        t["model.fc_out.weight"] = t["model.fc_out.weight"].to(torch.int32)
        return t, m

    for edit, msg in ((huge, "shape"), (unknown, "does not build"), (nan, "NaN"), (wrong_dtype, "dtype")):
        p = _edited(ckpt, tmp_path / f"{edit.__name__}.safetensors", edit)
        t0 = time.perf_counter()
        with pytest.raises(CheckpointError, match=msg):
            load_model(p)
        assert time.perf_counter() - t0 < 2.0
        code, _, err = cli(capsys, "info", p)
        assert code == 2 and msg in one_error_line(err)


def test_garbage_onnx_is_a_one_line_error(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    bad = tmp_path / "model.onnx"
    bad.write_bytes(np.random.default_rng(0).bytes(3000))
    sf.write(tmp_path / "a.wav", sig(1000), SR)
    for backend in ("onnxruntime", "torch"):
        code, _, err = cli(capsys, "enhance", tmp_path / "a.wav", "-o", tmp_path / "out", "--model", bad, "--backend", backend)
        assert code == 2 and str(bad) in one_error_line(err)
    # mtakd stream: the torch-free onnxruntime path (the torch path refuses any .onnx file)
    for backend in ("onnxruntime", "torch"):
        code, _, err = cli(capsys, "stream", "--model", bad, "--backend", backend)
        assert code == 2 and str(bad) in one_error_line(err)
        assert ("not a loadable ONNX model" if backend == "onnxruntime" else "runs with backend='onnxruntime'") in err[0]
    from mtakd.streaming import StreamingEnhancer

    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        StreamingEnhancer(bad, backend="onnxruntime")


def _fingerprint(p):
    st = p.stat()
    return hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_size, st.st_mode


def test_enhancement_and_evaluation_never_change_the_checkpoint(tmp_path, ckpt, capsys):
    from mtakd.config import DataConfig
    from mtakd.data import build_devset
    from mtakd.streaming import StreamingEnhancer

    before = _fingerprint(ckpt)
    sf.write(tmp_path / "a.wav", sig(4000), 44100)
    build_devset(DataConfig(source="synthetic", segment_s=0.5), tmp_path / "dev", snrs=(5,), per_snr=1)
    enh._PATH_CACHE.clear()
    assert cli(capsys, "enhance", tmp_path / "a.wav", "-o", tmp_path / "out", "--model", ckpt)[0] == 0
    enhance(tmp_path / "a.wav", model=ckpt)
    StreamingEnhancer(ckpt).feed(sig(1000))
    assert cli(capsys, "evaluate", ckpt, tmp_path / "dev", "--no-efficiency")[0] == 0
    assert cli(capsys, "info", ckpt)[0] == 0
    assert _fingerprint(ckpt) == before
    assert sorted(os.listdir(ckpt.parent)) == [ckpt.name]  # nothing written beside it either
