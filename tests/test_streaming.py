"""Streaming == offline for any chunking, causality, reset, errors, and the numpy STFT mirror."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mtakd import stft, stft_np
from mtakd.checkpoint import save_checkpoint
from mtakd.inference import enhance_waveform
from mtakd.models import build_model
from mtakd.streaming import StreamingEnhancer

HOP = stft.HOP


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model("student", {"hidden": 12, "input_size": 10}).eval()


def _signal(n, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _stream(s, x, sizes):
    """Feed ``x`` in chunks cycling through ``sizes``; return the concatenated output."""
    outs, i, j = [], 0, 0
    while i < x.size:
        k = sizes[j % len(sizes)]
        outs.append(s.feed(x[i : i + k]))
        i, j = i + k, j + 1
    outs.append(s.flush())
    return np.concatenate(outs)


def _offline(model, x):
    return enhance_waveform(model, torch.from_numpy(x)).numpy()


# ----------------------------------------------------------------------------- numpy STFT
def test_stft_np_matches_stft():
    s = stft.STFT()
    assert (stft_np.SAMPLE_RATE, stft_np.N_FFT, stft_np.HOP, stft_np.N_FREQ) == (stft.SAMPLE_RATE, stft.N_FFT, stft.HOP, stft.N_FREQ)
    for name in ("fwd", "inv"):  # the torch buffers are built from stft_np's matrices
        np.testing.assert_array_equal(getattr(stft_np, name.upper()), getattr(s, name).numpy())
    frames = np.random.default_rng(1).standard_normal((5, stft.N_FFT)).astype(np.float32)
    spec_t = s.analyze_frame(torch.from_numpy(frames))
    np.testing.assert_allclose(stft_np.analyze_frame(frames), spec_t.numpy(), atol=1e-5, rtol=1e-6)
    # float32 matmuls sum in a different order per CPU (AVX2 vs AVX-512 kernels): outputs of
    # order 1 differ by ~1e-6 between numpy and torch on a Zen 4 host; a wrong window, scale
    # or sign would differ by orders of magnitude more
    np.testing.assert_allclose(stft_np.synthesize_frame(spec_t.numpy()), s.synthesize_frame(spec_t).numpy(), atol=5e-6, rtol=0)


# ----------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("sizes", [[1], [7], [160], [161], [1000], [3, 1000, 1, 160, 333, 2], [100000]])
def test_streaming_equals_offline(student, sizes):
    n = 3 * HOP * 7 + 37 if sizes == [1] else 16000 + 37  # not a multiple of the hop
    x = _signal(n)
    y = _stream(StreamingEnhancer(student), x, sizes)
    ref = _offline(student, x)
    assert y.shape == ref.shape
    assert np.abs(y - ref).max() <= 1e-5


@settings(max_examples=15, deadline=None)
@given(n=st.integers(1, 3000), sizes=st.lists(st.integers(1, 700), min_size=1, max_size=6),
       cell=st.sampled_from(["gru", "lstm"]))
def test_streaming_equals_offline_any_chunking(n, sizes, cell):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model("student", {"hidden": 8, "input_size": 6, "cell": cell}).eval()
    x = _signal(n, seed=n)
    y = _stream(StreamingEnhancer(model), x, sizes)
    ref = _offline(model, x)
    assert y.shape == ref.shape and np.abs(y - ref).max() <= 1e-5


def test_small_batches_of_frames_equal_one_batch(student):
    x = _signal(5000)
    a = _stream(StreamingEnhancer(student, max_frames=3), x, [5000])
    b = _stream(StreamingEnhancer(student), x, [5000])
    assert np.abs(a - b).max() <= 1e-6


def test_a_long_chunk_runs_the_gru_once_and_one_hop_runs_step(student):
    """The speed path: many frames in one ``steps`` call (not a loop of ``step``), the
    real-time hop through ``step``; both give the offline output (tests above)."""
    calls = {"step": 0, "steps": 0}

    class Counting(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def initial_state(self, b=1):
            return self.m.initial_state(b)

        def step(self, *a):
            calls["step"] += 1
            return self.m.step(*a)

        def steps(self, *a):
            calls["steps"] += 1
            return self.m.steps(*a)

    s = StreamingEnhancer(Counting(student))
    s.feed(_signal(16000))  # 100 complete frames in one chunk
    assert calls == {"step": 0, "steps": 1}
    s.feed(_signal(HOP, seed=1))  # one more hop: one frame
    assert calls == {"step": 1, "steps": 1}

    # a causal model without steps (only step/initial_state) still streams, a step per frame,
    # and gives the same output as the student it wraps
    class StepOnly(Counting):
        steps = None

    calls.update(step=0, steps=0)
    x = _signal(5000, seed=2)
    assert np.abs(_stream(StreamingEnhancer(StepOnly(student)), x, [5000]) - _offline(student, x)).max() <= 1e-5
    assert calls["steps"] == 0 and calls["step"] == stft.STFT().num_frames(x.size)


def test_output_count_and_delay(student):
    s = StreamingEnhancer(student)
    assert s.delay_samples == stft.ALGORITHMIC_LATENCY_SAMPLES == 320
    n = 0
    for k in (1, 158, 1, 1, 160, 500, 7):
        s.feed(_signal(k))
        n += k
        assert s.samples_out == max(0, (n // HOP - 1) * HOP)
    assert s.flush().size == n - max(0, (n // HOP - 1) * HOP)


def test_accepts_tensors_and_checkpoint_path(student, tmp_path):
    ckpt = tmp_path / "s.safetensors"
    save_checkpoint(ckpt, student)
    x = _signal(2000)
    s = StreamingEnhancer(str(ckpt))
    y = np.concatenate((s.feed(torch.from_numpy(x).double()), s.flush()))
    assert y.dtype == np.float32 and np.abs(y - _offline(student, x)).max() <= 1e-5


# ----------------------------------------------------------------------------- causality, reset
def test_future_input_never_changes_emitted_output(student):
    x = _signal(4000)
    x2 = x.copy()
    s1, s2 = StreamingEnhancer(student), StreamingEnhancer(student)
    emitted1, emitted2 = [], []
    for i in range(0, 2000, 250):
        emitted1.append(s1.feed(x[i : i + 250]))
        emitted2.append(s2.feed(x2[i : i + 250]))
    before = np.concatenate(emitted1)
    np.testing.assert_array_equal(before, np.concatenate(emitted2))
    x2[2000:] = _signal(2000, seed=9) * 10  # a very different future
    y1 = np.concatenate((before, s1.feed(x[2000:]), s1.flush()))
    y2 = np.concatenate((np.concatenate(emitted2), s2.feed(x2[2000:]), s2.flush()))
    assert before.size == (2000 // HOP - 1) * HOP
    np.testing.assert_array_equal(y1[: before.size], y2[: before.size])
    assert np.abs(y1[2000:] - y2[2000:]).max() > 1e-3  # the future did change the rest


def test_reset_and_flush_start_a_new_utterance(student):
    x = _signal(3000)
    s = StreamingEnhancer(student)
    a = _stream(s, x, [500])  # flush() resets
    b = _stream(s, x, [500])
    s.feed(_signal(1234, seed=5))
    s.reset()
    c = _stream(s, x, [500])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    assert s.flush().size == 0  # nothing fed since the last flush


# ----------------------------------------------------------------------------- errors
def test_wrong_input_raises_clear_errors(student):
    s = StreamingEnhancer(student)
    with pytest.raises(ValueError, match="1-D mono"):
        s.feed(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="1-D mono"):
        s.feed(torch.zeros(2, 100))
    with pytest.raises(ValueError, match="int16"):
        s.feed(np.zeros(100, np.int16))
    with pytest.raises(ValueError, match="NaN"):
        s.feed(np.array([0.0, np.nan], np.float32))
    teacher = build_model("teacher", {"hidden": 8, "input_size": 8, "layers": 1})
    with pytest.raises(ValueError, match="Teacher cannot stream.*not causal"):
        StreamingEnhancer(teacher)
    with pytest.raises(ValueError, match="unknown backend"):
        StreamingEnhancer(student, backend="tensorflow")
    with pytest.raises(ValueError, match="onnxruntime"):
        StreamingEnhancer("model.onnx", backend="torch")


def test_ort_runtime_imports_without_torch():
    src = str(Path(__file__).resolve().parents[1] / "src")
    code = "import sys, mtakd.ort_runtime, mtakd.stream_cli; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": src}, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_nan_hop_on_the_fast_path_leaves_the_stream_intact(student):
    x = _signal(3200)
    clean, s = StreamingEnhancer(student), StreamingEnhancer(student)
    ya, yb = [], []
    for i in range(0, x.size, HOP):  # one float32 hop per feed: HopFramer._feed_hop
        ya.append(clean.feed(x[i : i + HOP]))
        if i == 8 * HOP:
            bad = x[i : i + HOP].copy()
            bad[5] = np.nan
            with pytest.raises(ValueError, match="NaN"):
                s.feed(bad)
        yb.append(s.feed(x[i : i + HOP]))
    np.testing.assert_array_equal(np.concatenate(ya + [clean.flush()]), np.concatenate(yb + [s.flush()]))
