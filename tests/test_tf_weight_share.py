"""benchmarks/tf_weight_share.py: uniform weights give the units' own share; the default
weighting gives noise-dominated units less than their share; per-SNR grouping by manifest."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import tf_weight_share  # noqa: E402

from mtakd.config import DataConfig
from mtakd.data import build_devset


def _pair(seed: int = 0, n: int = 16000) -> tuple[np.ndarray, np.ndarray]:
    """Speech-like bursts (half the time silent) in white noise: both kinds of unit occur."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    clean = (0.2 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)
    return clean, clean + 0.02 * rng.standard_normal(n).astype(np.float32)


def test_uniform_weights_give_the_units_own_share_and_the_default_gives_noise_less():
    clean, noisy = _pair()
    n, tot, (uniform, default, flat) = tf_weight_share.shares(clean, noisy, [(0.0, 1.0), (0.5, 0.1), (0.5, 0.5)])
    assert 0 < n < tot
    assert uniform == pytest.approx(n, rel=1e-5)  # every weight is 1
    assert default < flat < uniform  # a lower floor moves weight off the noise-dominated units


def test_cli_groups_by_the_manifest_snr(tmp_path, capsys):
    dev = tmp_path / "dev"
    build_devset(DataConfig(source="synthetic"), dev, snrs=(-5, 15), per_snr=2, segment_s=1.0)
    acc = tf_weight_share.run(dev, [(0.5, 0.1)])
    assert sorted(acc) == [-5.0, 15.0]
    assert acc[-5.0][0] / acc[-5.0][1] > acc[15.0][0] / acc[15.0][1]  # more noise units at -5 dB
    out = tmp_path / "share.md"
    assert tf_weight_share.main(["--devset", str(dev), "--weighting", "0.5,0.1", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| -5 dB |") or line.startswith("| +15 dB |")]
    assert len(rows) == 2
    with pytest.raises(SystemExit):
        tf_weight_share.main(["--devset", str(dev), "--weighting", "half"])
    assert "GAMMA,FLOOR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tf_weight_share.main(["--devset", str(dev), "--weighting", "0.5,2"])
    assert "tf_floor must be in [0, 1]" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tf_weight_share.main(["--devset", str(dev), "--weighting", "0.5,0.1,10,0"])
    assert "tf_snr_ramp must be [lo, hi]" in capsys.readouterr().err


def test_the_snr_ramp_gives_low_snr_files_their_units_share():
    """With a ramp whose lower end is above the file's SNR the weights are uniform; with one far
    below it they are the plain weighting's."""
    clean, noisy = _pair()  # about +14 dB: the sine's power over 0.02-std white noise
    w_up = tf_weight_share._weighting("0.5,0.1,30,40")
    w_down = tf_weight_share._weighting("0.5,0.1,-40,-30")
    n, _, (up, down, plain) = tf_weight_share.shares(clean, noisy, [w_up, w_down, (0.5, 0.1)])
    assert up == pytest.approx(n, rel=1e-5)
    assert down == pytest.approx(plain, rel=1e-5) and plain < n
    assert tf_weight_share._label(w_up) == "gamma 0.5 floor 0.1 ramp 30..40 dB"
