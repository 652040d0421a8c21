"""``mtakd stream``: stdin -> stdout PCM pipeline (in-process and as a real subprocess)."""
from __future__ import annotations

import io
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mtakd.checkpoint import save_checkpoint
from mtakd.cli import main
from mtakd.inference import enhance_waveform
from mtakd.models import build_model
from mtakd.stream_cli import StreamFormatError, run_pipe, wav_stream_header
from mtakd.streaming import StreamingEnhancer

SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="module")
def student():
    torch.manual_seed(0)
    return build_model("student", {"hidden": 12, "input_size": 10}).eval()


def _pcm(n, seed=0) -> np.ndarray:
    t = np.arange(n) / 16000
    x = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * np.random.default_rng(seed).standard_normal(n)
    return np.round(x * 32767).astype("<i2")


def _expected(model, pcm: np.ndarray) -> np.ndarray:
    y = enhance_waveform(model, torch.from_numpy(pcm.astype(np.float32) / 32768)).numpy()
    return np.clip(np.round(y.astype(np.float64) * 32768), -32768, 32767).astype(np.int64)


def test_pipe_equals_offline_within_int16_rounding(student):
    pcm = _pcm(8011)
    out = io.BytesIO()
    n = run_pipe(StreamingEnhancer(student), io.BufferedReader(io.BytesIO(pcm.tobytes())), out)
    y = np.frombuffer(out.getvalue(), "<i2")
    assert n == y.size == pcm.size
    assert np.abs(y - _expected(student, pcm)).max() <= 1


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_pipe_of_a_look_ahead_student_equals_offline(backend):
    torch.manual_seed(1)
    model = build_model("student", {"hidden": 12, "input_size": 10, "lookahead": 1}).eval()
    pcm = _pcm(8011)
    out = io.BytesIO()
    n = run_pipe(StreamingEnhancer(model, backend=backend), io.BufferedReader(io.BytesIO(pcm.tobytes())), out)
    y = np.frombuffer(out.getvalue(), "<i2")
    assert n == y.size == pcm.size
    assert np.abs(y - _expected(model, pcm)).max() <= 1


def test_wav_format_round_trip(student):
    pcm = _pcm(3000)
    out = io.BytesIO()
    run_pipe(StreamingEnhancer(student), io.BytesIO(wav_stream_header() + pcm.tobytes()), out, fmt="wav")
    data = out.getvalue()
    assert data[:4] == b"RIFF" and data[36:40] == b"data"
    assert np.abs(np.frombuffer(data[44:], "<i2") - _expected(student, pcm)).max() <= 1
    with pytest.raises(StreamFormatError, match="not a WAV stream"):
        run_pipe(StreamingEnhancer(student), io.BytesIO(pcm.tobytes()), io.BytesIO(), fmt="wav")
    bad = bytearray(wav_stream_header())
    bad[24:28] = (44100).to_bytes(4, "little")
    with pytest.raises(StreamFormatError, match="44100 Hz"):
        run_pipe(StreamingEnhancer(student), io.BytesIO(bytes(bad)), io.BytesIO(), fmt="wav")


def test_cli_verb_in_process(student, tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "s.safetensors"
    save_checkpoint(ckpt, student)
    pcm = _pcm(1601)
    stdout = io.TextIOWrapper(io.BytesIO())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(pcm.tobytes()))))
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["stream", "--model", str(ckpt)]) == 0
    y = np.frombuffer(stdout.buffer.getvalue(), "<i2")
    assert y.size == pcm.size and np.abs(y - _expected(student, pcm)).max() <= 1
    monkeypatch.undo()
    teacher = tmp_path / "t.safetensors"
    save_checkpoint(teacher, build_model("teacher", {"hidden": 8, "input_size": 8, "layers": 1}))
    assert main(["stream", "--model", str(teacher)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not causal" in err and "\n" not in err


def test_mic_without_sounddevice_is_a_clear_error(student, tmp_path, capsys):
    try:
        import sounddevice  # noqa: F401
        pytest.skip("sounddevice is installed")
    except (ImportError, OSError):
        pass
    ckpt = tmp_path / "s.safetensors"
    save_checkpoint(ckpt, student)
    assert main(["stream", "--model", str(ckpt), "--mic"]) == 2
    assert "sounddevice" in capsys.readouterr().err


def test_subprocess_pipeline_streams_in_real_time(student, tmp_path):
    """A real shell-pipeline process (torch-free ONNX path): output arrives before EOF, and
    the total output has the input's length and equals the offline enhancement."""
    pytest.importorskip("onnxruntime")
    from mtakd.export import export_onnx

    onnx = export_onnx(student, tmp_path / "s.onnx").path
    pcm = _pcm(16000 // 2 + 37)
    cmd = [sys.executable, "-m", "mtakd.stream_cli", "--backend", "onnxruntime", "--model", str(onnx)]
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": SRC})
    try:
        first = pcm[: 10 * 160].tobytes()
        p.stdin.write(first)
        p.stdin.flush()
        got, deadline = b"", time.monotonic() + 20
        while len(got) < 9 * 160 * 2 and time.monotonic() < deadline:  # 10 hops in -> 9 hops out
            if select.select([p.stdout], [], [], 0.5)[0]:
                got += os.read(p.stdout.fileno(), 65536)
        assert len(got) == 9 * 160 * 2, "no output before EOF: the pipe does not stream"
        rest, err = p.communicate(pcm[10 * 160 :].tobytes(), timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 0, err.decode()
    y = np.frombuffer(got + rest, "<i2")
    assert y.size == pcm.size
    assert np.abs(y - _expected(student, pcm)).max() <= 1

