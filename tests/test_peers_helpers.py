"""Pure helpers of benchmarks/peers.py (no peer package needed): delay estimation and alignment,
the per-system summary, per-SNR means and the argument parsing."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import peer_systems as ps  # noqa: E402
import peers  # noqa: E402
from peer_models import align, xcorr_lag  # noqa: E402


@pytest.mark.parametrize("shift", [0, 1, 96, 160, 384, 480, 1000, -7])
def test_xcorr_lag_recovers_a_known_shift(rng, shift):
    ref = rng.standard_normal(8000).astype(np.float32)
    # a delayed, scaled, low-passed and noisy copy, as an enhancer's output would be
    y = np.convolve(ref, [0.25, 0.5, 0.25])[: ref.size]
    y = np.roll(y, shift) * 0.3 + 0.02 * rng.standard_normal(ref.size)
    if shift > 0:
        y[:shift] = 0.0
    elif shift < 0:
        y[shift:] = 0.0
    assert xcorr_lag(ref, y) in (shift, shift + 1)  # the 3-tap filter itself delays by one sample
    assert xcorr_lag(ref, np.roll(ref, shift)) == shift


def test_xcorr_lag_longer_output_and_max_lag(rng):
    ref = rng.standard_normal(4000)
    y = np.concatenate((np.zeros(300), ref, np.zeros(500)))  # flushed output: longer than the input
    assert xcorr_lag(ref, y) == 300
    assert abs(xcorr_lag(ref, y, max_lag=100)) <= 100  # the search window is respected


def test_align_undoes_the_delay_and_pads(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    raw = np.concatenate((np.zeros(384, np.float32), x, np.zeros(128, np.float32)))
    np.testing.assert_array_equal(align(raw, 384, x.size), x)
    short = align(raw[:1200], 384, x.size)  # too short: zero-padded at the end
    np.testing.assert_array_equal(short[:816], x[:816])
    assert short.size == x.size and not short[816:].any()
    early = align(x[5:], -5, x.size)  # output ahead of the input: padded at the start
    np.testing.assert_array_equal(early[5:], x[5:])
    assert not early[:5].any() and early.dtype == np.float32


def test_summarize_counts_nan_and_failures():
    rows = [
        {"name": "a", "snr": 0.0, "duration_s": 2.0, "proc_s": 0.2, "cpu_share": 1.0, "pesq": 2.0, "si_sdr_i": 4.0},
        {"name": "b", "snr": 0.0, "duration_s": 2.0, "proc_s": 0.6, "cpu_share": 0.5, "pesq": float("nan"), "si_sdr_i": 6.0},
        {"name": "c", "snr": 5.0, "duration_s": 4.0, "proc_s": float("nan"), "cpu_share": float("nan"),
         "error": "RuntimeError: boom"},
    ]
    s = peers.summarize(rows)
    assert s["n_files"] == 3 and s["n_scored"] == 2 and s["failed"] == [("c", "RuntimeError: boom")]
    assert s["pesq"] == 2.0 and s["pesq_nan"] == 1 and s["si_sdr_i"] == 5.0
    assert math.isclose(s["rtf"], 0.8 / 4.0) and math.isclose(s["rtf_cpu"], 0.5 / 4.0)
    assert math.isnan(s["stoi"])  # a metric no row has
    assert peers.by_snr(rows, "si_sdr_i") == {0.0: 5.0}  # the failed 5 dB file is left out
    assert peers.by_snr(rows, "pesq") == {0.0: 2.0}


def test_parse_student_and_paired_files(tmp_path):
    assert peers.parse_student("kd=runs/a/best.safetensors") == ("kd", "runs/a/best.safetensors")
    for bad in ("runs/a/best.safetensors", "=x", "kd="):
        with pytest.raises(argparse.ArgumentTypeError):
            peers.parse_student(bad)
    for sub in ("noisy", "clean"):
        (tmp_path / sub).mkdir()
    for i in range(10):
        (tmp_path / "noisy" / f"f{i}.wav").touch()
        if i != 3:
            (tmp_path / "clean" / f"f{i}.wav").touch()
    (tmp_path / "manifest.csv").write_text("name,snr\nf0.wav,-5.0\nf1.wav,\n")
    assert len(peers.paired_files(tmp_path, None)) == 9  # f3 has no clean reference
    assert peers.paired_files(tmp_path, 3) == ["f0.wav", "f5.wav", "f9.wav"]  # evenly spread
    assert peers.read_manifest_snr(tmp_path) == {"f0.wav": -5.0}


def test_peer_constants_are_consistent():
    # block-causal systems: latency = output delay + one hop (16 kHz samples)
    for cls in (ps.DeepFilterNet3, ps.RNNoise, ps.SpeexNS, ps.WebRTCNS):
        assert math.isclose(cls.latency_ms, 1000.0 * (cls.delay + cls.hop * 16000 // cls.native_sr) / 16000)
    for cls in (ps.DeepFilterNet3, ps.RNNoise):  # 48 kHz delays convert to whole 16 kHz samples
        assert cls.delay48 % 3 == 0 and cls.delay == cls.delay48 // 3
    assert set(peers.KEYS) >= {"pesq", "stoi", "estoi", "si_sdr", "si_sdr_i", "csig", "cbak", "covl"}
    q = ps._to_int16(np.array([0.0, 0.5, 1.5, -2.0]))
    assert q.dtype == np.int16 and q.tolist() == [0, 16384, 32767, -32768]
    assert ps._pad(np.ones(10, np.float32), 4, 3).size == 16


def test_run_system_reports_failures_and_silence(speech_noise):
    clean, noise = speech_noise
    noisy = clean + 0.1 * noise

    class Broken(ps.System):
        name = "broken"

        def process(self, x):
            raise RuntimeError("boom")

    class Silent(ps.System):
        name, delay = "silent", 40

        def process(self, x):
            return np.zeros(x.size + self.delay, np.float32)

    class Delayed(ps.System):
        name, delay = "delayed", 40

        def process(self, x):
            return np.concatenate((np.zeros(self.delay, np.float32), x))

    row = peers.run_system(Broken(), noisy, clean, 0)
    assert row["error"] == "RuntimeError: boom" and math.isnan(row["proc_s"])
    row = peers.run_system(Silent(), noisy, clean, 40)
    # an all-zero output never ends the run: a NaN PESQ, or (pesq 0.0.4 raises ValueError on a silent
    # degraded signal against a non-silent reference, which mtakd.metrics does not catch) a failed row
    assert row["proc_s"] >= 0 and (row["error"] or math.isnan(row["pesq"]))
    row = peers.run_system(Delayed(), noisy, clean, 40)  # aligned by its delay it scores as the noisy input
    assert not row["error"] and row["xcorr_lag"] == 40 and abs(row["si_sdr_i"]) < 1e-6
