"""Sanity of the quality metrics on generated audio (no files, no network)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.linalg import solve_toeplitz, toeplitz
from scipy.signal import lfilter

from mtakd import composite as loizou
from mtakd import metrics

SR = 16000


def speech_like(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Source-filter "speech": a pitch-varying pulse train through four formant resonators,
    syllable-rate envelope, plus a -30 dB white floor (as any recording has), so that LPC
    and critical-band measures behave as on real speech (a pure harmonic signal gives
    absurd LLR values because its all-pole fit is nearly singular)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.5 * t) + 8 * np.sin(2 * np.pi * 3.1 * t)
    excitation = np.diff(np.floor(np.cumsum(f0) / sr), prepend=0.0) + 0.05 * rng.standard_normal(n)
    a = np.array([1.0])
    for freq, bw in [(600, 150), (1400, 200), (2600, 300), (3500, 400)]:
        r = math.exp(-math.pi * bw / sr)
        a = np.convolve(a, [1.0, -2 * r * math.cos(2 * math.pi * freq / sr), r * r])
    x = lfilter([1.0, -0.9], [1.0], lfilter([1.0], a, excitation))
    x = x / np.std(x) * (0.1 + np.clip(np.sin(2 * np.pi * 2.5 * t), 0, None))
    x = x + 10 ** (-30 / 20) * rng.standard_normal(n)
    return 0.05 * x / np.std(x)


def add_noise(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    return x + noise * math.sqrt(np.mean(x**2) / np.mean(noise**2) / 10 ** (snr_db / 10))


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return speech_like(3.0)


@pytest.fixture(scope="module")
def by_snr(clean) -> dict[float, dict[str, float]]:
    return {snr: metrics.evaluate_pair(clean, add_noise(clean, snr), SR) for snr in (20.0, 5.0, -5.0)}


# ----------------------------------------------------------------------------- optimum
def test_identical_inputs_give_the_optimum(clean):
    r = metrics.evaluate_pair(clean, clean, SR)
    assert r["si_sdr"] > 80.0 and math.isfinite(r["si_sdr"])
    assert r["seg_snr"] == pytest.approx(35.0)
    assert r["stoi"] > 0.999 and r["estoi"] > 0.999
    assert r["pesq"] == pytest.approx(4.64, abs=0.02)
    for k in ("csig", "cbak", "covl"):
        assert 4.9 <= r[k] <= 5.0  # raw regressions exceed 5 here: the clip must hold
    assert metrics.pesq_nb(clean, clean, SR) > 4.4


def test_more_noise_scores_lower(by_snr):
    hi, mid, lo = by_snr[20.0], by_snr[5.0], by_snr[-5.0]
    for k in ("pesq", "stoi", "estoi", "si_sdr", "seg_snr", "csig", "cbak", "covl"):
        assert hi[k] > mid[k] > lo[k], (k, hi[k], mid[k], lo[k])
    for r in by_snr.values():
        for k in ("csig", "cbak", "covl"):
            assert 1.0 <= r[k] <= 5.0
    # white noise at a known SNR: SI-SDR recovers it
    for snr, r in by_snr.items():
        assert r["si_sdr"] == pytest.approx(snr, abs=0.3)


# ----------------------------------------------------------------------------- SI-SDR / segSNR
def test_si_sdr_scale_and_offset_invariant(clean):
    y = add_noise(clean, 5.0)
    base = metrics.si_sdr(clean, y)
    assert metrics.si_sdr(clean, 3.0 * y) == pytest.approx(base, abs=1e-6)
    assert metrics.si_sdr(10.0 * clean, y) == pytest.approx(base, abs=1e-6)
    assert metrics.si_sdr(clean, y + 0.2) == pytest.approx(base, abs=1e-6)  # zero-mean
    assert metrics.si_sdr(np.zeros(1000), np.zeros(1000)) == 0.0  # silence: finite, no NaN


def test_seg_snr_closed_forms(clean):
    # deg = -ref: error = 2 ref in every frame -> 10 log10(1/4) = -6.02 dB each
    assert metrics.seg_snr(clean, -clean, SR) == pytest.approx(-6.0206, abs=1e-3)
    # deg = 0: error = ref -> 0 dB each
    assert metrics.seg_snr(clean, np.zeros_like(clean), SR) == pytest.approx(0.0, abs=1e-6)
    # silent reference frames clamp at -10 dB (Loizou counts them)
    assert metrics.seg_snr(np.zeros(SR), np.zeros(SR), SR) == pytest.approx(-10.0)


def test_frame_count_follows_composite_m():
    # floor(len/hop - win/hop): 64000/120 - 4 = 529.33 -> 529 (one fewer than would fit)
    assert loizou.frames(np.ones(64000), 16000).shape == (529, 480)
    assert loizou.frames(np.ones(32000), 8000).shape == (529, 240)
    assert loizou.frames(np.ones(100), 16000).shape[0] == 0


# ----------------------------------------------------------------------------- LLR / WSS
def test_llr_and_wss_are_zero_for_identical_or_scaled(clean):
    assert np.all(loizou.llr_frames(clean, clean, SR) == 0.0)
    assert np.all(loizou.wss_frames(clean, clean, SR) == 0.0)
    # LPC and spectral slopes in dB do not see a gain
    assert np.max(np.abs(loizou.llr_frames(clean, 0.3 * clean, SR))) < 1e-8
    assert np.max(np.abs(loizou.wss_frames(clean, 0.3 * clean, SR))) < 1e-8


def test_lpc_and_llr_match_direct_solution(clean):
    y = add_noise(clean, 5.0)
    fc = loizou.frames(clean + loizou._EPS, SR)[100:110]
    fd = loizou.frames(y + loizou._EPS, SR)[100:110]
    r_c, a_c = loizou.lpc(fc, 16)
    expected = []
    for i in range(len(fc)):
        # normal equations solved independently of our Levinson recursion
        rc = np.array([fc[i, : 480 - k] @ fc[i, k:] for k in range(17)])
        rd = np.array([fd[i, : 480 - k] @ fd[i, k:] for k in range(17)])
        ac = np.concatenate([[1.0], -solve_toeplitz(rc[:16], rc[1:])])
        ad = np.concatenate([[1.0], -solve_toeplitz(rd[:16], rd[1:])])
        np.testing.assert_allclose(r_c[i], rc, rtol=1e-10)
        np.testing.assert_allclose(a_c[i], ac, rtol=1e-5, atol=1e-6)
        t = toeplitz(rc)
        expected.append(math.log((ad @ t @ ad) / (ac @ t @ ac)))
    got = loizou.llr_frames(clean, y, SR)[100:110]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)
    assert np.all(got > 0)


def _loc_peaks_loop(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Literal transcription of the peak search loop of composite.m (0-based)."""
    out = np.empty_like(slope)
    for f in range(slope.shape[0]):
        for i in range(slope.shape[1]):
            n = i
            if slope[f, i] > 0:
                while n < slope.shape[1] and slope[f, n] > 0:
                    n += 1
                out[f, i] = energy[f, n - 1]
            else:
                while n >= 0 and slope[f, n] <= 0:
                    n -= 1
                out[f, i] = energy[f, n + 1]
    return out


def test_wss_peak_search_matches_reference_loop():
    rng = np.random.default_rng(3)
    energy = np.cumsum(rng.standard_normal((300, 25)) * 3, axis=1)
    energy[:5] = np.arange(25)  # monotone up: the search runs off the right end
    energy[5:10] = -np.arange(25)  # monotone down
    energy[10:12] = 7.0  # flat: slope 0 counts as "not rising"
    slope = np.diff(energy, axis=1)
    np.testing.assert_array_equal(loizou._loc_peaks(energy, slope), _loc_peaks_loop(energy, slope))


def test_composite_formula_and_clip():
    out = loizou.composite_from_measures(pesq=2.0, llr=0.8, wss=40.0, seg_snr=3.0)
    assert out["csig"] == pytest.approx(3.093 - 1.029 * 0.8 + 0.603 * 2.0 - 0.009 * 40.0)
    assert out["cbak"] == pytest.approx(1.634 + 0.478 * 2.0 - 0.007 * 40.0 + 0.063 * 3.0)
    assert out["covl"] == pytest.approx(1.594 + 0.805 * 2.0 - 0.512 * 0.8 - 0.007 * 40.0)
    lo = loizou.composite_from_measures(pesq=1.0, llr=3.0, wss=150.0, seg_snr=-10.0)
    assert lo == {"csig": 1.0, "cbak": 1.0, "covl": 1.0}
    assert all(math.isnan(v) for v in loizou.composite_from_measures(float("nan"), 0.5, 30.0, 5.0).values())


# ----------------------------------------------------------------------------- robustness
def test_silence_gives_nan_without_raising(clean):
    z = np.zeros(2 * SR)
    assert math.isnan(metrics.pesq_wb(z, z))
    assert math.isnan(metrics.pesq_wb(z, np.random.default_rng(0).standard_normal(2 * SR)))
    assert math.isnan(metrics.pesq_nb(z, z, 8000))
    # a silent output against real speech (a model that mutes everything) is no score, not a crash
    assert math.isnan(metrics.pesq_wb(clean[: 2 * SR], np.zeros(2 * SR)))
    assert math.isnan(metrics.pesq_wb(clean[:1600], clean[:1600]))  # < 0.25 s buffer
    r = metrics.evaluate_pair(z, z, SR)
    for k in ("pesq", "stoi", "estoi", "csig", "cbak", "covl"):
        assert math.isnan(r[k]), k
    assert r["si_sdr"] == 0.0


@pytest.mark.parametrize("sr", [16000, 8000, 44100])
def test_too_short_for_stoi_gives_nan_and_the_rest_is_scored(sr):
    rng = np.random.default_rng(0)
    # pystoi needs more than one 256-sample frame at 10 kHz: > 409.6 samples at 16 kHz
    for n in (1, 100, int(256 * sr / 10000), int(256 * sr / 10000) + 1):
        ref = rng.standard_normal(n)
        deg = ref + 0.1 * rng.standard_normal(n)
        assert math.isnan(metrics.stoi(ref, deg, sr)) and math.isnan(metrics.estoi(ref, deg, sr)), n
        if sr in (8000, 16000):
            r = metrics.evaluate_pair(ref, deg, sr, noisy=deg)
            assert math.isnan(r["stoi"]) and math.isfinite(r["si_sdr"]) and r["si_sdr_i"] == 0.0, n


def test_evaluate_pair_keys_and_si_sdr_improvement(clean):
    noisy = add_noise(clean, 0.0)
    enhanced = add_noise(clean, 10.0, seed=2)
    r = metrics.evaluate_pair(clean, enhanced, SR)
    assert list(r) == ["pesq", "stoi", "estoi", "si_sdr", "seg_snr", "csig", "cbak", "covl"]
    r2 = metrics.evaluate_pair(clean, enhanced, SR, noisy=noisy)
    assert list(r2) == list(metrics.METRIC_KEYS)
    assert r2["si_sdr_i"] == pytest.approx(metrics.si_sdr(clean, enhanced) - metrics.si_sdr(clean, noisy))
    assert r2["si_sdr_i"] == pytest.approx(10.0, abs=0.5)
    assert all(isinstance(v, float) for v in r2.values())


def test_lengths_are_trimmed_to_the_shorter(clean):
    y = add_noise(clean, 5.0)
    assert metrics.si_sdr(clean, y[:-500]) == pytest.approx(metrics.si_sdr(clean[:-500], y[:-500]))
    assert metrics.composite(clean[:-321], y, SR) == metrics.composite(clean[:-321], y[:-321], SR)


def test_sample_rate_checks_and_8k(clean):
    with pytest.raises(ValueError):
        metrics.pesq_wb(clean, clean, 8000)
    with pytest.raises(ValueError):
        metrics.evaluate_pair(clean, clean, 22050)
    x8 = speech_like(2.0, sr=8000)
    r = metrics.evaluate_pair(x8, add_noise(x8, 5.0), 8000)
    assert 1.0 <= r["pesq"] <= 4.6 and 0.0 < r["stoi"] < 1.0
    assert metrics.evaluate_pair(x8, x8, 8000)["pesq"] > metrics.evaluate_pair(x8, add_noise(x8, 5.0), 8000)["pesq"]
