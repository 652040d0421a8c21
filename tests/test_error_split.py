"""benchmarks/error_split.py: the split is exact, and known masks give known figures."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import error_split  # noqa: E402

from mtakd.inference import enhance_waveform
from mtakd.models import build_model
from mtakd.stft import STFT


class ConstantMask(nn.Module):
    """A real mask of ``gain`` in every unit: ``(B, 2, T, F) -> (B, 2, T, F)``."""

    def __init__(self, gain: float):
        super().__init__()
        self.gain = gain

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        m = torch.zeros_like(spec)
        m[:, 0] = self.gain
        return m


def _pair(seed: int = 0, n: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    clean = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    return clean, clean + 0.05 * rng.standard_normal(n).astype(np.float32)


@pytest.mark.parametrize("gain", [1.0, 0.5, 0.1])
def test_a_constant_mask_gives_its_gain_as_distortion_and_reduction(gain):
    clean, noisy = _pair()
    sd, nr, bands = error_split.split(ConstantMask(gain), STFT(), clean, noisy)
    assert bands == []
    # |s - g s|^2 / |s|^2 = (1 - g)^2; |n|^2 / |g n|^2 = 1 / g^2 (the STFT reconstructs exactly)
    want_sd = 20 * np.log10(1 - gain) if gain < 1 else -np.inf
    assert nr == pytest.approx(-20 * np.log10(gain), abs=1e-3)
    if gain < 1:
        assert sd == pytest.approx(want_sd, abs=1e-3)
    else:
        assert sd < -60  # identity: only float error is left


def test_the_two_parts_add_up_to_the_enhanced_output():
    torch.manual_seed(0)
    model = build_model("student", {"input_size": 8, "hidden": 8, "layers": 1}).eval()
    clean, noisy = _pair(1)
    stft = STFT()
    with torch.inference_mode():
        mask = model(stft(torch.from_numpy(noisy)[None]))
        s_hat = stft.inverse(error_split.apply_mask(stft(torch.from_numpy(clean)[None]), mask), len(clean))[0]
        n_hat = stft.inverse(error_split.apply_mask(stft(torch.from_numpy(noisy - clean)[None]), mask), len(clean))[0]
    out = enhance_waveform(model, torch.from_numpy(noisy))
    assert torch.allclose(s_hat + n_hat, out, atol=1e-5)


def test_cli_writes_a_table_per_snr(tmp_path, capsys, tiny_devset, ckpt):
    dev = tiny_devset
    out = tmp_path / "split.md"
    assert error_split.main(["--devset", str(dev), "--model", f"tiny={ckpt}", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 1 and rows[0].count("/") == 3  # +0 dB, +10 dB and all
    with pytest.raises(SystemExit):
        error_split.main(["--devset", str(dev), "--model", str(ckpt)])
    assert "NAME=CKPT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        error_split.main(["--devset", str(dev), "--model", f"tiny={tmp_path / 'missing.safetensors'}"])
    assert "checkpoint" in capsys.readouterr().err
    (dev / "manifest.csv").unlink()  # recorded pairs have none: one "all" column
    assert error_split.main(["--devset", str(dev), "--model", f"tiny={ckpt}", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| tiny |")]
    assert len(rows) == 1 and rows[0].count("/") == 1 and "SNRs unknown" in out.read_text()
    with pytest.raises(SystemExit):
        error_split.main(["--devset", str(tmp_path), "--model", f"tiny={ckpt}"])
    assert "no clean/ and noisy/" in capsys.readouterr().err


class BandMask(nn.Module):
    """A real mask of ``low`` below ``cut`` Hz and ``high`` from it up."""

    def __init__(self, low: float, high: float, cut: float):
        super().__init__()
        self.low, self.high, self.cut = low, high, cut

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        from mtakd.stft import N_FFT, SAMPLE_RATE

        f = torch.arange(spec.shape[-1]) * SAMPLE_RATE / N_FFT
        m = torch.zeros_like(spec)
        m[:, 0] = torch.where(f < self.cut, self.low, self.high)
        return m


def test_bands_give_each_band_its_own_gain():
    clean, noisy = _pair()
    *_, ((sd_lo, nr_lo), (sd_hi, nr_hi)) = error_split.split(BandMask(0.5, 0.1, 2000), STFT(), clean, noisy,
                                                             [0, 2000, 8000])
    assert nr_lo == pytest.approx(-20 * np.log10(0.5), abs=1e-3) and nr_hi == pytest.approx(20.0, abs=1e-3)
    assert sd_lo == pytest.approx(20 * np.log10(0.5), abs=1e-3) and sd_hi == pytest.approx(20 * np.log10(0.9), abs=1e-3)


def test_band_edges_are_checked_in_one_line():
    assert error_split.parse_edges("0,1000,8000") == [0.0, 1000.0, 8000.0]
    for bad in ("0", "1000,500", "0,9000", "0,a"):
        with pytest.raises(ValueError, match="--bands"):
            error_split.parse_edges(bad)


def test_main_prints_the_band_table(tiny_devset, ckpt, capsys):
    assert error_split.main(["--devset", str(tiny_devset), "--model", f"s={ckpt}", "--bands", "0,4000,8000"]) == 0
    out = capsys.readouterr().out
    assert "0-4 kHz | 4-8 kHz" in out and out.count("| s | ") == 2  # the SNR table's row and the band table's
    with pytest.raises(SystemExit):
        error_split.main(["--devset", str(tiny_devset), "--model", f"s={ckpt}", "--bands", "0,9000"])
    assert "--bands" in capsys.readouterr().err
