"""ONNX export: step and offline graphs equal PyTorch, the onnxruntime streamer equals the torch
one, atomic writes that never overwrite by accident, int8 copy, CLI."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from mtakd import export as export_mod  # noqa: E402
from mtakd.checkpoint import save_checkpoint  # noqa: E402
from mtakd.cli import main  # noqa: E402
from mtakd.export import ExportError, StepGraph, export_onnx, quantized_path  # noqa: E402
from mtakd.inference import enhance_waveform  # noqa: E402
from mtakd.models import build_model  # noqa: E402
from mtakd.ort_runtime import OrtOfflineEnhancer, OrtStreamingEnhancer, model_kind, open_session  # noqa: E402
from mtakd.streaming import StreamingEnhancer  # noqa: E402


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model("student", {"hidden": 12, "input_size": 10}).eval()


@pytest.fixture(scope="module")
def step_onnx(student, tmp_path_factory):
    return export_onnx(student, tmp_path_factory.mktemp("onnx") / "student.onnx", kind="step").path


def _signal(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_step_export_equals_torch_step_over_50_frames(student, step_onnx):
    sess = open_session(step_onnx)
    assert model_kind(sess) == "step"
    meta = sess.get_modelmeta().custom_metadata_map
    assert meta["model_name"] == "student" and meta["sample_rate"] == "16000"
    # the student's graph (onnx_step) carries one (1, 1, H) state per GRU layer
    assert [i.name for i in sess.get_inputs()] == ["frame", "state0", "state1"]
    assert [o.name for o in sess.get_outputs()] == ["out", "state_out0", "state_out1"]
    graph = StepGraph(student).eval()
    state_t = student.initial_state(1)
    state_o = list(state_t.numpy())  # L arrays (1, H) -> reshaped below
    frames = _signal(50 * 320, seed=3).reshape(50, 1, 320)
    with torch.inference_mode():
        for f in frames:
            y_t, state_t = graph(torch.from_numpy(f), state_t)
            y_o, *state_o = sess.run(None, {"frame": f, **{f"state{l}": s.reshape(1, 1, -1) for l, s in enumerate(state_o)}})
            assert np.abs(y_o - y_t.numpy()).max() <= 1e-4
            assert np.abs(np.concatenate(state_o) - state_t.numpy()).max() <= 1e-4


@pytest.mark.parametrize("name,args", [("student", {"hidden": 12, "input_size": 10}),
                                       ("teacher", {"hidden": 8, "input_size": 8, "layers": 2})])
def test_offline_export_equals_enhance_waveform_for_two_lengths(tmp_path, name, args):
    model = build_model(name, args).eval()
    r = export_onnx(model, tmp_path / f"{name}.onnx", kind="offline")
    assert r.max_abs_diff <= 1e-4 and r.size_bytes == r.path.stat().st_size
    off = OrtOfflineEnhancer(r.path)
    for n in (4000, 7321):  # the time axis is dynamic
        x = _signal(n, seed=n)
        y = off(x)
        assert y.shape == (n,)
        assert np.abs(y - enhance_waveform(model, torch.from_numpy(x)).numpy()).max() <= 1e-4


def test_ort_streamer_equals_torch_streamer(student, step_onnx):
    x = _signal(9001)
    sizes = [1, 160, 7, 1000, 161, 333]

    def run(s):
        outs, i, j = [], 0, 0
        while i < x.size:
            outs.append(s.feed(x[i : i + sizes[j % len(sizes)]]))
            i, j = i + sizes[j % len(sizes)], j + 1
        return np.concatenate(outs + [s.flush()])

    y_torch = run(StreamingEnhancer(student))
    y_ort = run(OrtStreamingEnhancer(step_onnx))
    y_via = run(StreamingEnhancer(step_onnx, backend="onnxruntime"))
    y_mem = run(StreamingEnhancer(student, backend="onnxruntime"))  # exported in memory
    assert y_torch.shape == y_ort.shape == (x.size,)
    for y in (y_ort, y_via, y_mem):
        assert np.abs(y - y_torch).max() <= 1e-4


def test_refuses_to_overwrite(student, tmp_path):
    out = tmp_path / "s.onnx"
    out.write_bytes(b"precious")
    with pytest.raises(FileExistsError, match="overwrite"):
        export_onnx(student, out)
    assert out.read_bytes() == b"precious"
    export_onnx(student, out, overwrite=True)
    assert model_kind(open_session(out)) == "step"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.onnx"]  # no temp files left


def test_failed_verification_writes_nothing(student, tmp_path, monkeypatch):
    monkeypatch.setattr(export_mod, "VERIFY_ATOL", -1.0)
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export_onnx(student, tmp_path / "s.onnx")
    assert list(tmp_path.iterdir()) == []


def test_teacher_has_no_step_export(tmp_path):
    teacher = build_model("teacher", {"hidden": 8, "input_size": 8, "layers": 1})
    with pytest.raises(ValueError, match="cannot stream"):
        export_onnx(teacher, tmp_path / "t.onnx", kind="step")


def test_quantized_copy(student, tmp_path):
    r = export_onnx(student, tmp_path / "s.onnx", quantize=True)
    assert r.quantized_path == quantized_path(r.path) == tmp_path / "s.int8.onnx"
    assert r.quantized_size_bytes == r.quantized_path.stat().st_size
    assert np.isfinite(r.quantized_snr_db)
    sess = open_session(r.quantized_path)
    assert sess.get_modelmeta().custom_metadata_map["mtakd_quantized"] == "int8-dynamic"
    s = OrtStreamingEnhancer(sess)
    y = np.concatenate((s.feed(_signal(1000)), s.flush()))
    assert y.shape == (1000,) and np.isfinite(y).all()


def test_cli_export(student, tmp_path, capsys):
    ckpt = tmp_path / "s.safetensors"
    save_checkpoint(ckpt, student)
    out = tmp_path / "s.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--kind", "offline"]) == 0
    assert "verified" in capsys.readouterr().out
    assert model_kind(open_session(out)) == "offline"
    assert main(["export", str(ckpt), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mtakd: error:") and "already exists" in err and "\n" not in err
    assert main(["export", str(tmp_path / "missing.safetensors"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_minimal_runtime_main(student, step_onnx, tmp_path, capsys):
    import soundfile as sf

    from mtakd import ort_runtime

    x = _signal(5000)
    sf.write(tmp_path / "in.wav", x, 16000, subtype="FLOAT")
    assert ort_runtime.main([str(step_onnx), str(tmp_path / "in.wav"), str(tmp_path / "out.wav")]) == 0
    y, sr = sf.read(tmp_path / "out.wav", dtype="float32")
    ref = enhance_waveform(student, torch.from_numpy(x)).numpy()
    assert sr == 16000 and y.shape == x.shape and np.abs(y - ref).max() <= 1 / 32768 + 1e-4
    sf.write(tmp_path / "in44.wav", x, 44100, subtype="FLOAT")
    assert ort_runtime.main([str(step_onnx), str(tmp_path / "in44.wav"), str(tmp_path / "o.wav")]) == 2
    assert "16000 Hz" in capsys.readouterr().err


@pytest.mark.parametrize("hops", [1, 2])
def test_phase_input_student_exports_traced_and_streams_the_same(tmp_path, hops):
    """A student with phase_input is not the graph onnx_step writes: the traced step graph is
    exported instead, verified on export, and streams on onnxruntime like the torch streamer."""
    torch.manual_seed(1)
    model = build_model("student", {"hidden": 12, "input_size": 10, "phase_input": True}).eval()
    r = export_onnx(model, tmp_path / "phase.onnx", kind="step", hops=hops)
    assert r.max_abs_diff <= 1e-4
    x = _signal(4321, seed=5)
    s_t, s_o = StreamingEnhancer(model), OrtStreamingEnhancer(r.path)
    y_t = np.concatenate([s_t.feed(x[:1000]), s_t.feed(x[1000:]), s_t.flush()])
    y_o = np.concatenate([s_o.feed(x[:1000]), s_o.feed(x[1000:]), s_o.flush()])
    assert y_t.shape == y_o.shape == (x.size,)
    assert np.abs(y_o - y_t).max() <= 1e-4
