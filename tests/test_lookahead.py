"""A student with look-ahead (``StudentConfig.lookahead = L``): the mask of frame t sees frames up
to t + L and no further; offline, torch streaming and onnxruntime streaming are the same numbers
for any chunking; the stream's delay grows by L hops and its output count follows; a student
grown with ``--lookahead`` starts as the one it came from (with L zero frames in front), learns
to use the new frames, and fine-tunes from its file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import noise, stream_chunks, warm_started_trainer
from mtakd import stft
from mtakd.checkpoint import load_checkpoint, save_checkpoint
from mtakd.cli import main
from mtakd.config import ConfigError
from mtakd.inference import enhance_waveform
from mtakd.models import Student, StudentConfig, build_model
from mtakd.models.grow import grow_student
from mtakd.streaming import StreamingEnhancer

HOP = stft.HOP


def _student(seed=0, **args):
    torch.manual_seed(seed)
    m = build_model("student", {"hidden": 12, "input_size": 10, "lookahead": 1, **args}).eval()
    with torch.no_grad():  # weights off torch's init (the look-ahead columns matter as much as the rest)
        for p in m.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return m


_signal, _stream = noise, stream_chunks  # tests/helpers.py


def _spec(seconds=0.5, seed=1, batch=2):
    g = torch.Generator().manual_seed(seed)
    return stft.STFT()(0.1 * torch.randn(batch, int(16000 * seconds), generator=g))


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize("L", [1, 2])
def test_mask_of_frame_t_sees_frames_up_to_t_plus_L_and_no_further(L):
    model, spec = _student(lookahead=L), _spec()
    t = 20
    later = spec.clone()
    later[:, :, t + L + 1 :] = 5 * torch.randn_like(later[:, :, t + L + 1 :])  # beyond the look-ahead
    ahead = spec.clone()
    ahead[:, :, t + L] *= 10  # frame t + L itself
    with torch.no_grad():
        m, m_later, m_ahead = model(spec), model(later), model(ahead)
    assert m.shape == spec.shape
    torch.testing.assert_close(m_later[:, :, : t + 1], m[:, :, : t + 1], atol=0, rtol=0)
    assert (m_ahead[:, :, t] - m[:, :, t]).abs().max() > 1e-3  # frame t does read frame t + L
    torch.testing.assert_close(m_ahead[:, :, : t - L + 1], m[:, :, : t - L + 1], atol=0, rtol=0)


@pytest.mark.parametrize("args", [{}, {"cell": "lstm"}, {"phase_input": True}, {"lookahead": 2}])
def test_step_and_steps_over_a_stream_equal_forward(args):
    model, spec = _student(**args), _spec()
    L, T = model.cfg.lookahead, spec.shape[2]
    padded = torch.nn.functional.pad(spec, (0, 0, 0, L))  # what a stream's flush adds: L zero frames
    with torch.no_grad():
        ref = model(spec)
        state, masks = model.initial_state(2), []
        for t in range(T):  # step t masks frame t with its L successors; the recurrence starts at frame 0
            m, state = model.step(padded[:, :, t : t + L + 1], state)
            masks.append(m)
        torch.testing.assert_close(torch.stack(masks, 2), ref, atol=1e-5, rtol=0)
        # steps: a chunk of T frames plus its L successors -> the T masks, any split
        state, out = model.initial_state(2), []
        for a, b in ((0, 5), (5, 6), (6, T)):
            m, state = model.steps(padded[:, :, a : b + L], state)
            out.append(m)
        torch.testing.assert_close(torch.cat(out, 2), ref, atol=1e-5, rtol=0)


def test_wrong_shapes_and_values_raise():
    model = _student()
    with pytest.raises(ValueError, match=r"Student.step expects a frame \(batch, 2, 2, 161\)"):
        model.step(torch.zeros(1, 2, 161), model.initial_state(1))  # no look-ahead frame given
    with pytest.raises(ValueError, match="needs more than 1 frames, got 1"):
        model.steps(torch.zeros(1, 2, 1, 161), model.initial_state(1))
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(ConfigError, match="lookahead"):
            StudentConfig(lookahead=bad)
    assert model.fc_in.in_features == 161 and model.fc_ahead.in_features == 161 and model.fc_ahead.bias is None
    wide = build_model("student", {"hidden": 12, "input_size": 10, "lookahead": 2, "phase_input": True})
    assert wide.fc_in.in_features == 3 * 161 and wide.fc_ahead.in_features == 2 * 3 * 161
    assert not hasattr(build_model("student", {"hidden": 12, "input_size": 10}), "fc_ahead")


# ----------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("args", [{}, {"cell": "lstm"}, {"lookahead": 2}])
def test_torch_streaming_equals_offline_for_any_chunking(args):
    model = _student(**args)
    x = _signal(7001, seed=2)
    ref = enhance_waveform(model, torch.from_numpy(x)).numpy()
    for sizes in ([160], [1], [7, 500, 161, 160, 160], [7001], [3000, 37]):
        y = _stream(StreamingEnhancer(model), x, sizes)
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, atol=1e-5, rtol=0)
    for n in (1, 100, 159, 160, 161, 320, 481):  # shorter than the look-ahead's delay
        y = _stream(StreamingEnhancer(model), x[:n], [160])
        np.testing.assert_allclose(y, enhance_waveform(model, torch.from_numpy(x[:n])).numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("L", [1, 2])
def test_delay_output_count_and_causality_of_the_stream(L):
    model = _student(lookahead=L)
    s = StreamingEnhancer(model)
    assert s.lookahead == L and s.delay_samples == stft.N_FFT + L * HOP
    n = 0
    for k in (1, 158, 1, 1, 160, 500, 7, 960):
        s.feed(_signal(k))
        n += k
        assert s.samples_out == max(0, (n // HOP - 1 - L) * HOP)
    s.reset()
    # what has been emitted never depends on what comes later
    x = _signal(4000)
    x2 = x.copy()
    x2[2000:] = 10 * _signal(2000, seed=9)
    s1, s2 = StreamingEnhancer(model), StreamingEnhancer(model)
    a, b = s1.feed(x[:2000]), s2.feed(x2[:2000])
    assert a.size == (2000 // HOP - 1 - L) * HOP
    np.testing.assert_array_equal(a, b)
    y1 = np.concatenate((a, s1.feed(x[2000:]), s1.flush()))
    y2 = np.concatenate((b, s2.feed(x2[2000:]), s2.flush()))
    assert np.abs(y1[2000:] - y2[2000:]).max() > 1e-3


def test_a_processor_needs_its_look_ahead_filled_first():
    from mtakd.streaming import TorchStepProcessor

    proc = TorchStepProcessor(_student(lookahead=2))
    frames = _signal(3 * 320, seed=3).reshape(3, 320)
    with pytest.raises(ValueError, match="starts with prefill"):
        proc(frames[:1])
    assert not proc.prefill(frames[:2]).any()
    with pytest.raises(ValueError, match="first 2 frame"):
        proc.prefill(frames[2:])
    assert proc(frames[2:]).shape == (1, 320)


# ----------------------------------------------------------------------------- ONNX
@pytest.mark.parametrize("args,hops", [({}, 1), ({}, 3), ({"cell": "lstm"}, 1), ({"lookahead": 2}, 2),
                                       ({"phase_input": True}, 1), ({"mask": "real", "lookahead": 1}, 2),
                                       ({"mask": "tanh", "lookahead": 2}, 1)])
def test_onnx_step_graph_streams_the_same_as_torch(args, hops):
    onnx = pytest.importorskip("onnx")
    from mtakd.export import onnx_bytes
    from mtakd.ort_runtime import OrtStepProcessor, OrtStreamingEnhancer

    model = _student(**args)
    L = model.cfg.lookahead
    data, diff = onnx_bytes(model, kind="step", hops=hops)  # verified against the torch StepGraph
    assert diff <= 1e-4
    proto = onnx.load_from_string(data)
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["mtakd_lookahead"] == str(L) and OrtStepProcessor(data).lookahead == L
    names = [i.name for i in proto.graph.input]
    assert names[0] == "frame" and names[-1] == "ahead"
    x = _signal(6000, seed=1)
    for sizes in ([160], [7, 500, 161]):
        ort = OrtStreamingEnhancer(data)
        assert ort.delay_samples == stft.N_FFT + (hops - 1 + L) * HOP
        y = _stream(ort, x, sizes)
        assert np.abs(y - _stream(StreamingEnhancer(model), x, sizes)).max() <= 1e-4


def test_hand_written_graph_stays_small_and_int8_keeps_the_dft_float():
    onnx = pytest.importorskip("onnx")
    from mtakd.export import onnx_bytes, quantize_bytes

    plain = onnx.load_from_string(onnx_bytes(_student(lookahead=0), kind="step", verify=False)[0])
    ahead = onnx.load_from_string(onnx_bytes(_student(), kind="step", verify=False)[0])
    assert "Transpose" not in {n.op_type for n in ahead.graph.node}
    # Concat of kept and new spectra, Slices for the kept and the masked rows, a Reshape for the
    # features of all rows, a Slice per window frame and their Concat
    assert len(ahead.graph.node) - len(plain.graph.node) == 7
    q = onnx.load_from_string(quantize_bytes(ahead.SerializeToString()))
    ops = {n.name: n.op_type for n in q.graph.node}
    assert all(ops[n] == "MatMul" for n in ("dft_analysis", "dft_mask_mix", "dft_synthesis"))


# ----------------------------------------------------------------------------- growing
def test_grown_look_ahead_starts_as_its_source_and_learns_to_use_the_new_frame():
    small = _student(lookahead=0)
    big = grow_student(small, lookahead=1)
    assert big.cfg.lookahead == 1 and torch.count_nonzero(big.fc_ahead.weight) == 0
    spec = _spec()
    with torch.no_grad():  # the same masks, offline and streamed (the stream is one hop later)
        torch.testing.assert_close(big(spec), small(spec), atol=1e-6, rtol=0)
        x = _signal(5000, seed=5)
        np.testing.assert_allclose(_stream(StreamingEnhancer(big), x, [160]), _stream(StreamingEnhancer(small), x, [160]),
                                   atol=1e-5, rtol=0)
        # growing more look-ahead, and more input features, keeps it so
        bigger = grow_student(big, lookahead=2, input_size=12)
        torch.testing.assert_close(bigger(spec), small(spec), atol=1e-6, rtol=0)
    big.train()
    big(spec).square().mean().backward()
    assert big.fc_ahead.weight.grad.abs().sum() > 0  # the new frame's weights get gradients
    with pytest.raises(ValueError, match="lookahead 1 -> 0 must not shrink"):
        grow_student(big, lookahead=0)


def test_grow_cli_writes_a_look_ahead_checkpoint_that_fine_tunes(tmp_path, capsys):
    small = _student(lookahead=0)
    src, out = tmp_path / "small.safetensors", tmp_path / "la.safetensors"
    save_checkpoint(src, small, config={"model": {"name": "student", "args": dict(small.cfg.__dict__)}})
    assert main(["grow", str(src), "--lookahead", "1", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "look-ahead 1 frame(s)" in said and "model.args.lookahead=1" in said
    assert main(["info", str(out)]) == 0 and "algorithmic latency: 30 ms" in capsys.readouterr().out
    big, meta, _ = load_checkpoint(out)
    assert isinstance(big, Student) and meta["model"]["args"]["lookahead"] == 1
    assert meta["config"]["model"]["args"]["lookahead"] == 1
    tr = warm_started_trainer(out, tmp_path / "ft", "{input_size: 10, hidden: 12, lookahead: 1}",
                              "optim.lr=1e-3", "optim.lr_scale.fc_ahead=10")
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in big.state_dict().items())
    # the look-ahead weights, and only they, learn at 10x the rate (after warm-up: the initial lr)
    (group,) = [g for g in tr.opt.param_groups if any(p is tr.model.fc_ahead.weight for p in g["params"])]
    assert group["initial_lr"] == pytest.approx(1e-2) and len(group["params"]) == 1
    assert all(g["initial_lr"] == pytest.approx(1e-3) for g in tr.opt.param_groups if g is not group and
               not any("log_var" in n for n, p in tr.objective.named_parameters() if any(p is q for q in g["params"])))
    tr.fit()
    tuned, _, _ = load_checkpoint(tmp_path / "ft" / "last.safetensors")
    assert tuned.cfg.lookahead == 1 and torch.count_nonzero(tuned.fc_ahead.weight) > 0


def test_lr_scale_matches_by_prefix_and_rejects_what_matches_nothing():
    from mtakd.train import lr_scales

    names = ["fc_in.weight", "fc_in.bias", "fc_ahead.weight", "gru.weight_ih_l0"]
    assert lr_scales({"fc_ahead": 10}, names) == {"fc_ahead.weight": 10.0}
    assert lr_scales({"fc_in": 2, "fc_in.bias": 0.5}, names) == {"fc_in.weight": 2.0, "fc_in.bias": 0.5}
    # a prefix is a whole part of the name, not a substring: "fc" is no parameter's
    with pytest.raises(ConfigError, match="optim.lr_scale.fc matches no parameter of the model; .*: fc_ahead, fc_in, gru$"):
        lr_scales({"fc": 3}, names)
    with pytest.raises(ConfigError, match="must be a number > 0"):
        lr_scales({"fc_in": 0}, names)
