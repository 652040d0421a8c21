"""benchmarks/mask_phase.py: a mask with no phase costs nothing, a rotated band is found and
priced, a real-mask student has no phase, and the CLI checks its inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mask_phase  # noqa: E402

from mtakd.checkpoint import save_checkpoint
from mtakd.config import DataConfig
from mtakd.data import build_devset
from mtakd.models import build_model
from mtakd.stft import STFT


def _items(n: int = 3) -> list[dict]:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    out = []
    for k in range(n):  # harmonics over the band the test rotates (bins 10-14: 500-700 Hz)
        clean = sum(0.05 * np.sin(2 * np.pi * f * t + k) for f in (220, 550, 600, 650, 1500))
        noisy = clean + 0.01 * rng.standard_normal(t.size)
        out.append({"clean": clean.astype(np.float32), "noisy": noisy.astype(np.float32)})
    return out


def _constant_mask_student(band=(), real=5.0, imag=5.0):
    """A student whose mask is the same in every frame: ``tanh(5) ~ 1`` real everywhere, and
    in ``band`` rotated by 90 degrees (raw = (0, imag))."""
    m = build_model("student", {"input_size": 8, "hidden": 8, "layers": 1}).eval()
    F = m.cfg.n_freq
    with torch.no_grad():
        m.fc_out.weight.zero_()
        m.fc_out.bias[:F] = real
        m.fc_out.bias[F:] = 0.0
        for b in band:
            m.fc_out.bias[b], m.fc_out.bias[F + b] = 0.0, imag
    return m


def test_a_mask_without_phase_costs_nothing_and_a_rotated_band_is_found():
    items, stft = _items(), STFT()
    flat = mask_phase.inspect("flat", _constant_mask_student(), items, stft)
    assert flat.mask == "complex" and abs(flat.phase_gain) < 1e-4 and flat.worst_bin_deg < 1e-3
    assert flat.worst_bin_saturated == 1.0  # |M| = tanh(5) > 0.99 everywhere
    rot = mask_phase.inspect("rot", _constant_mask_student(band=range(10, 15)), items, stft)
    assert rot.phase_gain < -3 and rot.worst_file_gain <= rot.phase_gain
    assert 10 <= rot.worst_bin <= 14 and rot.worst_bin_deg == pytest.approx(90, abs=0.5)
    assert rot.si_sdr_i < flat.si_sdr_i


def test_a_real_mask_student_has_no_phase():
    torch.manual_seed(0)
    m = build_model("student", {"input_size": 8, "hidden": 8, "layers": 1, "mask": "real"}).eval()
    r = mask_phase.inspect("real", m, _items(1), STFT())
    assert r.mask == "real" and r.phase_gain == 0.0 and r.worst_bin == -1 and np.isfinite(r.si_sdr_i)
    assert "| real | real |" in mask_phase.table([r], 50.0)


def test_cli_writes_a_row_per_checkpoint_and_rejects_what_it_cannot_read(tmp_path, capsys):
    dev = tmp_path / "dev"
    build_devset(DataConfig(source="synthetic"), dev, snrs=(0, 10), per_snr=1, segment_s=1.0)
    a, b = tmp_path / "a" / "best.safetensors", tmp_path / "b.safetensors"
    a.parent.mkdir()
    save_checkpoint(a, _constant_mask_student())
    save_checkpoint(b, _constant_mask_student(band=[7]))
    out = tmp_path / "phase.md"
    assert mask_phase.main([str(a), str(b), "--devset", str(dev), "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith(f"| {tmp_path}")]
    assert len(rows) == 2 and rows[0].startswith(f"| {a.parent} |") and rows[1].startswith(f"| {tmp_path / 'b'} |")
    assert "7 (350 Hz)" in rows[1]
    with pytest.raises(SystemExit):
        mask_phase.main([str(tmp_path / "missing.safetensors"), "--devset", str(dev)])
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mask_phase.main([str(a), "--devset", str(tmp_path)])
    assert "no clean/ and noisy/" in capsys.readouterr().err
    teacher = tmp_path / "t.safetensors"
    save_checkpoint(teacher, build_model("teacher", {"input_size": 8, "hidden": 8, "layers": 1}))
    with pytest.raises(SystemExit):
        mask_phase.main([str(teacher), "--devset", str(dev)])
    assert "not a student" in capsys.readouterr().err
