"""benchmarks/mask_power.py: beta 1 is the enhancer's own output, the power acts on the magnitude
only, and the CLI reports per SNR and refuses bad arguments in one line."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mask_power  # noqa: E402

from mtakd.inference import enhance_waveform
from mtakd.metrics import si_sdr
from mtakd.models import build_model
from mtakd.stft import STFT


def test_power_keeps_the_phase_and_raises_the_magnitude():
    torch.manual_seed(0)
    mask = torch.randn(2, 2, 5, 161)
    mag = torch.sqrt(mask[:, 0] ** 2 + mask[:, 1] ** 2)
    for beta in (0.5, 1.0, 2.0):
        p = mask_power.powered(mask, beta)
        assert torch.allclose(torch.sqrt(p[:, 0] ** 2 + p[:, 1] ** 2), mag ** beta, rtol=1e-4, atol=1e-6)
        assert torch.allclose(torch.atan2(p[:, 1], p[:, 0]), torch.atan2(mask[:, 1], mask[:, 0]), atol=1e-4)
    assert torch.equal(mask_power.powered(mask, 1.0), mask)


def test_beta_one_scores_the_enhancers_own_output_and_a_higher_beta_suppresses_more():
    torch.manual_seed(0)
    model = build_model("student", {"input_size": 8, "hidden": 8, "layers": 1}).eval()
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 16000
    clean = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noisy = clean + 0.05 * rng.standard_normal(16000).astype(np.float32)
    (one, _), (two, _) = mask_power.scores(model, STFT(), clean, noisy, [1.0, 2.0], with_pesq=False)
    out = enhance_waveform(model, torch.from_numpy(noisy)).numpy()
    assert one == pytest.approx(si_sdr(clean, out) - si_sdr(clean, noisy), abs=1e-4)
    assert two != pytest.approx(one, abs=1e-3)


def test_cli_writes_a_row_per_model_and_beta(tmp_path, capsys, tiny_devset, ckpt):
    dev = tiny_devset
    out = tmp_path / "power.md"
    assert mask_power.main(["--devset", str(dev), "--model", f"tiny={ckpt}", "--beta", "1", "--beta", "2",
                            "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| tiny |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "2"] and all(r.count("/") == 3 for r in rows)
    with pytest.raises(SystemExit):
        mask_power.main(["--devset", str(dev), "--model", f"tiny={ckpt}", "--beta", "0"])
    assert "--beta must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        mask_power.main(["--devset", str(dev), "--model", str(ckpt)])
    assert "NAME=CKPT" in capsys.readouterr().err


def test_adaptive_beta_follows_the_snr_the_mask_implies():
    torch.manual_seed(0)
    spec = torch.randn(3, 2, 6, 161)
    mask = torch.zeros_like(spec)
    mask[0, 0] = 1.0  # keeps everything: no removed power, a very high implied SNR -> beta 1
    mask[1, 0] = 0.1  # keeps 1 %, removes 81 %: -19 dB -> beta_max
    g = 1.0 / (1.0 + 10 ** -0.25)  # kept / removed power = (g / (1 - g))^2 = 10^0.5: +5 dB, the ramp's middle
    mask[2, 0] = g
    beta = mask_power.adaptive_beta(spec, mask, 2.0, 0.0, 10.0)
    assert beta.tolist() == pytest.approx([1.0, 2.0, 1.5], abs=1e-3)
    p = mask_power.powered(mask, beta)  # one beta per utterance
    assert torch.allclose(p[0], mask[0]) and torch.allclose(p[1, 0], torch.full_like(p[1, 0], 0.01))
    assert mask_power.label((2.0, 0.0, 10.0)) == "adaptive 2 at <= 0 dB, 1 at >= 10 dB"


def test_cli_adaptive_rows_and_errors(tmp_path, capsys, tiny_devset, ckpt):
    out = tmp_path / "power.md"
    assert mask_power.main(["--devset", str(tiny_devset), "--model", f"tiny={ckpt}", "--beta", "1",
                            "--adaptive", "2,0,10", "--no-pesq", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| tiny |")]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "adaptive 2 at <= 0 dB, 1 at >= 10 dB"]
    for bad, msg in (("2,10", "BMAX,LO,HI"), ("2,10,0", "LO < HI")):
        with pytest.raises(SystemExit):
            mask_power.main(["--devset", str(tiny_devset), "--model", f"tiny={ckpt}", "--adaptive", bad])
        assert msg in capsys.readouterr().err
