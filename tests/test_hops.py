"""Multi-hop step graphs (``mtakd export --hops K``): K frames per onnxruntime run give the same
samples as K = 1 and the offline path for any chunking, only later by exactly the documented
``(K - 1)`` hops; causality, flush, reset, errors and the CLI verbs."""
from __future__ import annotations

import io
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import noise, stream_chunks
from mtakd.checkpoint import save_checkpoint  # noqa: E402
from mtakd.cli import main  # noqa: E402
from mtakd.export import ExportError, export_onnx, onnx_bytes  # noqa: E402
from mtakd.inference import enhance_waveform  # noqa: E402
from mtakd.models import Student, build_model  # noqa: E402
from mtakd.onnx_step import DFT_PREFIX  # noqa: E402
from mtakd.ort_runtime import OrtStepProcessor, OrtStreamingEnhancer, open_session  # noqa: E402
from mtakd.stft_np import HOP, N_FFT  # noqa: E402
from mtakd.streaming import StreamingEnhancer  # noqa: E402

ATOL = 1e-4


def _student(seed=0, **args):
    torch.manual_seed(seed)
    model = build_model("student", {"hidden": 12, "input_size": 10, **args}).eval()
    with torch.no_grad():  # a non-trivial PReLU slope (LeakyRelu's alpha)
        model.act.weight.fill_(0.3)
    return model


@pytest.fixture(scope="module")
def student():
    return _student()


@pytest.fixture(scope="module")
def graphs(student):
    """Step graphs of the module's student for K = 1, 2, 4 (each verified against torch)."""
    out = {}
    for k in (1, 2, 4):
        data, diff = onnx_bytes(student, kind="step", hops=k)
        assert diff <= ATOL
        out[k] = data
    return out


_signal, _stream = noise, stream_chunks  # tests/helpers.py


def _offline(model, x):
    return enhance_waveform(model, torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("k", [2, 4])
def test_k_hops_equal_one_hop_and_offline_for_random_chunkings(student, graphs, k):
    x = _signal(7013, seed=k)
    ref = _offline(student, x)
    one, multi = OrtStreamingEnhancer(graphs[1]), OrtStreamingEnhancer(graphs[k])
    rng = np.random.default_rng(100 + k)
    chunkings = [[HOP], [1, HOP, 7, 3 * HOP, HOP + 1, 333]] + [rng.integers(1, 900, size=12) for _ in range(3)]
    for sizes in chunkings:
        y1, yk = _stream(one, x, sizes), _stream(multi, x, sizes)
        assert yk.shape == y1.shape == (x.size,)
        assert np.abs(yk - y1).max() <= ATOL and np.abs(yk - ref).max() <= ATOL


@pytest.mark.parametrize("args,k", [({"layers": 1}, 3), ({"layers": 3}, 2), ({"mask_bound": 0.7}, 5),
                                    ({"mask": "real", "mask_bound": 0.7}, 3), ({"mask": "tanh"}, 2)])
def test_k_hop_graph_shapes_metadata_and_other_sizes(args, k):
    model = _student(**args)
    data, diff = onnx_bytes(model, kind="step", hops=k)  # verified against StepGraph(model, k)
    assert diff <= ATOL
    proto = onnx.load_from_string(data)
    layers = model.cfg.layers
    ops = [n.op_type for n in proto.graph.node]
    assert not {"Transpose", "Squeeze", "Unsqueeze", "Split", "Concat", "Gather", "Constant"} & set(ops)
    assert ops.count("GRU") == layers and len(ops) <= 24 + layers  # one Reshape per inner layer
    mix = {"dft_mask_mix"} if model.cfg.mask == "complex" else set()  # a real gain needs no complex product
    assert {n.name for n in proto.graph.node if n.name.startswith(DFT_PREFIX)} == {"dft_analysis", "dft_synthesis"} | mix
    sess = open_session(data)
    assert sess.get_modelmeta().custom_metadata_map["mtakd_hops"] == str(k)
    assert sess.get_inputs()[0].shape == sess.get_outputs()[0].shape == [k, N_FFT]
    assert all(i.shape == [1, 1, model.cfg.hidden] for i in sess.get_inputs()[1:])
    x = _signal(3000, seed=7)
    assert np.abs(_stream(OrtStreamingEnhancer(data), x, [HOP, 517]) - _offline(model, x)).max() <= ATOL


def test_one_hop_graph_records_its_hops(graphs):
    sess = open_session(graphs[1])
    assert sess.get_modelmeta().custom_metadata_map["mtakd_hops"] == "1"
    assert sess.get_inputs()[0].shape == [1, N_FFT]


@pytest.mark.parametrize("k", [1, 2, 4])
def test_delay_is_exactly_the_documented_one(student, graphs, k):
    """Hop-sized I/O: what each feed returns, and a playout that starts with
    ``delay_samples - HOP`` of silence never runs dry and plays the offline output delayed by
    exactly that; one hop less of silence runs dry."""
    s = OrtStreamingEnhancer(graphs[k])
    assert s.hops == k and s.delay_samples == N_FFT + (k - 1) * HOP
    x = _signal(41 * HOP, seed=11)
    outs = []
    for i in range(0, x.size, HOP):
        outs.append(s.feed(x[i : i + HOP]))
        done = (i + HOP) // HOP // k * k  # frames run so far: whole groups only
        assert s.samples_out == max(0, (done - 1) * HOP)
    outs.append(s.flush())
    ref = _offline(student, x)
    for prefill, ok in ((s.delay_samples - HOP, True), (s.delay_samples - 2 * HOP, False)):
        queue, played, dry = np.zeros(prefill, np.float32), [], False
        for y in outs[:-1]:  # one hop played per hop captured
            queue = np.concatenate((queue, y))
            dry |= queue.size < HOP
            played.append(queue[:HOP])
            queue = queue[HOP:]
        assert dry is not ok
        if ok:
            want = np.concatenate((np.zeros(prefill, np.float32), ref))[: len(played) * HOP]
            assert np.abs(np.concatenate(played) - want).max() <= ATOL


def test_future_input_never_changes_emitted_output(graphs):
    x = _signal(4000)
    x2 = x.copy()
    s1, s2 = OrtStreamingEnhancer(graphs[2]), OrtStreamingEnhancer(graphs[2])
    before1 = np.concatenate([s1.feed(x[i : i + 250]) for i in range(0, 2000, 250)])
    before2 = np.concatenate([s2.feed(x2[i : i + 250]) for i in range(0, 2000, 250)])
    np.testing.assert_array_equal(before1, before2)
    assert before1.size == (2000 // HOP // 2 * 2 - 1) * HOP  # 12 complete frames = 6 groups -> 11 hops
    x2[2000:] = _signal(2000, seed=9) * 10
    y1 = np.concatenate((before1, s1.feed(x[2000:]), s1.flush()))
    y2 = np.concatenate((before2, s2.feed(x2[2000:]), s2.flush()))
    np.testing.assert_array_equal(y1[: before1.size], y2[: before1.size])
    assert np.abs(y1[2000:] - y2[2000:]).max() > 1e-3


@pytest.mark.parametrize("n", [1, HOP - 1, HOP, HOP + 1, 4 * HOP, 12 * HOP + 1, 2001])
def test_flush_emits_everything(student, graphs, n):
    x = _signal(n, seed=n)
    ref = _offline(student, x)
    for k in (2, 4):
        for sizes in ([HOP], [n]):
            y = _stream(OrtStreamingEnhancer(graphs[k]), x, sizes)
            assert y.shape == (n,) and np.abs(y - ref).max() <= ATOL


def test_reset_mid_group_and_small_max_frames(student, graphs):
    x = _signal(3000, seed=3)
    s = OrtStreamingEnhancer(graphs[4], max_frames=3)  # chunks of 3 frames, groups of 4
    a = _stream(s, x, [2999])
    for _ in range(3):  # 3 hops pending in an unfinished group
        s.feed(_signal(HOP, seed=5))
    s.reset()
    b = _stream(s, x, [HOP])
    assert np.abs(a - b).max() <= ATOL and np.abs(a - _offline(student, x)).max() <= ATOL


def test_traced_graph_of_other_causal_models_takes_k_hops():
    class MyStudent(Student):  # not exactly Student: traced from StepGraph(model, hops)
        pass

    base = _student()
    model = MyStudent(base.cfg).eval()
    model.load_state_dict(base.state_dict())
    data, diff = onnx_bytes(model, kind="step", hops=3)
    sess = open_session(data)
    assert diff <= ATOL and [i.name for i in sess.get_inputs()] == ["frame", "state"]
    assert sess.get_inputs()[0].shape == [3, N_FFT]
    x = _signal(2500, seed=2)
    assert np.abs(_stream(OrtStreamingEnhancer(sess), x, [HOP, 700]) - _offline(model, x)).max() <= ATOL


def test_int8_copy_of_a_k_hop_graph(student, tmp_path):
    r = export_onnx(student, tmp_path / "s.onnx", quantize=True, hops=2)
    assert np.isfinite(r.quantized_snr_db)
    s = OrtStreamingEnhancer(r.quantized_path)
    assert s.hops == 2
    y = _stream(s, _signal(1500), [HOP])
    assert y.shape == (1500,) and np.isfinite(y).all()


def test_wrong_hops_raise_clear_errors(student, graphs, tmp_path):
    proc = OrtStepProcessor(graphs[2])
    with pytest.raises(ValueError, match="groups of 2"):
        proc(np.zeros((3, N_FFT), np.float32))
    with pytest.raises(ValueError, match="backend='onnxruntime'"):
        StreamingEnhancer(student, backend="torch", hops=2)
    with pytest.raises(ValueError, match="integer >= 1"):
        StreamingEnhancer(student, backend="onnxruntime", hops=0)
    path = tmp_path / "k2.onnx"
    path.write_bytes(graphs[2])
    assert StreamingEnhancer(path, backend="onnxruntime").hops == 2  # the file's own K
    with pytest.raises(ValueError, match="2 hop.*not 4.*--hops 4"):
        StreamingEnhancer(path, backend="onnxruntime", hops=4)
    assert StreamingEnhancer(student, backend="onnxruntime", hops=4).delay_samples == N_FFT + 3 * HOP
    with pytest.raises(ExportError, match="step graphs only"):
        onnx_bytes(student, kind="offline", hops=2)
    with pytest.raises(ExportError, match="integer >= 1"):
        onnx_bytes(student, kind="step", hops=0)


def _pcm(n, seed=0):
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(seed).standard_normal(n)
    return np.round(x * 32767).astype("<i2")


def _run_stream(argv, pcm, monkeypatch):
    stdout = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(pcm.tobytes()))))
    monkeypatch.setattr(sys, "stdout", stdout)
    rc = main(argv)
    out = np.frombuffer(stdout.buffer.getvalue(), "<i2")
    monkeypatch.undo()
    return rc, out


def test_cli_export_and_stream_with_hops(student, tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "s.safetensors"
    save_checkpoint(ckpt, student)
    out = tmp_path / "s4.onnx"
    assert main(["export", str(ckpt), "-o", str(out), "--hops", "4"]) == 0
    assert "verified" in capsys.readouterr().out
    assert open_session(out).get_modelmeta().custom_metadata_map["mtakd_hops"] == "4"
    pcm = _pcm(3001)
    y = enhance_waveform(student, torch.from_numpy(pcm.astype(np.float32) / 32768)).numpy()
    want = np.clip(np.round(y.astype(np.float64) * 32768), -32768, 32767)
    for argv in (["stream", "--backend", "onnxruntime", "--model", str(out)],  # the file's K
                 ["stream", "--backend", "onnxruntime", "--model", str(ckpt), "--hops", "2"]):  # exported in memory
        rc, got = _run_stream(argv, pcm, monkeypatch)
        assert rc == 0 and got.size == pcm.size and np.abs(got - want).max() <= 1
    assert main(["stream", "--model", str(ckpt), "--hops", "2"]) == 2  # torch backend
    assert "--backend onnxruntime" in capsys.readouterr().err
    assert main(["stream", "--backend", "onnxruntime", "--model", str(out), "--hops", "2"]) == 2
    assert "re-export" in capsys.readouterr().err
    assert main(["export", str(ckpt), "-o", str(tmp_path / "o.onnx"), "--kind", "offline", "--hops", "2"]) == 2
    assert "--kind step" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", str(ckpt), "-o", str(tmp_path / "z.onnx"), "--hops", "0"])
    assert e.value.code == 2 and "integer >= 1" in capsys.readouterr().err
