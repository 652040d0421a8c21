"""Synthetic speech, noise and room impulse responses, for demos and tests without a corpus.

Nothing here sounds like real speech to a listener, but the signals have the statistics an
enhancement model keys on: harmonic voiced segments with a moving f0 and formants, unvoiced
noise bursts, 3-6 Hz syllabic modulation and pauses (so a model must track onsets and gaps),
against stationary, coloured, hum, tonal and babble-like noise. Every function is
deterministic given the ``numpy.random.Generator`` it receives; all return float32 ``(N,)``.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

from .stft import SAMPLE_RATE

NOISE_KINDS = ("white", "pink", "brown", "babble-like", "hum", "tonal-bursts")

#: control rate of the speech synthesiser: f0, formants and envelopes are set every 5 ms
_HOP = 80
#: samples per synthesis chunk, bounds the (chunk, harmonics) work array (~5 MB)
_CHUNK = 32000


def _normalize(x: np.ndarray, rms: float) -> np.ndarray:
    r = float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0
    return (x * (rms / r)).astype(np.float32) if r > 0 else x.astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Zero-mean, unit-std low-pass noise of length ``n`` (moving average over ``width``)."""
    w = rng.standard_normal(n + width)
    y = np.convolve(w, np.ones(width) / width, mode="valid")[:n]
    s = y.std()
    return y / s if s > 0 else y


def _formant_gain(f: np.ndarray, fc: np.ndarray, bw: np.ndarray) -> np.ndarray:
    """Magnitude of a cascade of 2nd-order resonators (unit gain at DC) at frequencies ``f``.

    ``f (T, K)``, ``fc``/``bw`` ``(T, 3)`` -> ``(T, K)``. A cascade (product) rather than a sum
    gives the natural relative formant levels of a vowel without per-formant gains.
    """
    g = np.ones_like(f)
    for i in range(fc.shape[1]):
        c, b = fc[:, i : i + 1], bw[:, i : i + 1] / 2
        g *= (c * c + b * b) / np.sqrt(((f - c) ** 2 + b * b) * ((f + c) ** 2 + b * b))
    return g


def synth_speech(n_samples: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Speech-like signal ``(n_samples,)`` float32 at about -25 dBFS RMS.

    One random "speaker" (base f0 80-250 Hz) reads phrases of 1-5 syllables at 3-6
    syllables/s separated by 0.1-0.5 s pauses. Each syllable is an optional unvoiced noise
    burst (band-passed, 30-90 ms) followed by a voiced nucleus: 20-40 harmonics of an f0
    contour (80-300 Hz, declining per phrase) shaped by 3 formant resonances that glide between
    per-syllable targets, under a raised-sine envelope (the syllabic amplitude modulation).
    """
    n = int(n_samples)
    if n <= 0:
        return np.zeros(0, np.float32)
    T = n // _HOP + 2
    voiced = np.zeros(T)
    unvoiced = np.zeros(T)
    fc_knots_t: list[float] = []
    fc_knots: list[np.ndarray] = []
    decl = np.zeros(T)  # per-phrase f0 declination (log domain)
    fps = sr / _HOP
    t = rng.uniform(0.0, 0.3) * fps
    while t < T:
        rate = rng.uniform(3.0, 6.0)
        n_syl = int(rng.integers(1, 6))
        start = t
        for _ in range(n_syl):
            dur = fps / rate * rng.uniform(0.75, 1.25)
            a, b = int(t), min(int(t + dur), T)
            if b <= a:
                break
            v0 = a
            if rng.random() < 0.35:  # unvoiced onset: a consonant-like noise burst
                nb = max(1, int(rng.uniform(0.03, 0.09) * fps))
                v0 = min(a + nb, b)
                unvoiced[a:v0] = np.maximum(unvoiced[a:v0], np.hanning(v0 - a + 2)[1:-1] * rng.uniform(0.3, 0.8))
            if b - v0 > 1:
                voiced[v0:b] = np.sin(np.linspace(0, np.pi, b - v0)) ** 2 * rng.uniform(0.6, 1.0)
            # one formant target per syllable; interpolating between them makes formants glide
            fc_knots_t.append((v0 + b) / 2)
            fc_knots.append(np.array([rng.uniform(300, 850), rng.uniform(850, 2300), rng.uniform(2300, 3300)]))
            t += dur
        a, b = int(start), min(int(t), T)
        if b > a:
            decl[a:b] = np.linspace(0.08, -0.12, b - a)
        t += rng.uniform(0.1, 0.5) * fps
    frames = np.arange(T, dtype=np.float64)
    if not fc_knots:
        fc_knots_t, fc_knots = [0.0], [np.array([500.0, 1500.0, 2500.0])]
    kt, kv = np.asarray(fc_knots_t), np.stack(fc_knots)
    fc = np.stack([np.interp(frames, kt, kv[:, i]) for i in range(3)], axis=1)  # (T, 3)
    bw = np.array([60.0, 90.0, 130.0]) * rng.uniform(0.8, 1.5, size=3)
    bw = np.broadcast_to(bw, fc.shape)
    base = np.exp(rng.uniform(np.log(85.0), np.log(250.0)))
    f0 = np.clip(base * np.exp(decl + 0.12 * _smooth_noise(rng, T, 20)), 80.0, 300.0)  # (T,)
    K = int(rng.integers(20, 41))
    k = np.arange(1, K + 1, dtype=np.float64)
    fk = f0[:, None] * k[None, :]  # (T, K)
    # source tilt ~1/k (glottal -12 dB/oct + lip radiation +6 dB/oct), no harmonic above 0.47*sr
    amp = _formant_gain(fk, fc, bw) / k[None, :] * (fk < 0.47 * sr)
    # normalise each frame's harmonic sum to unit RMS: with narrow formants a harmonic that
    # hits a resonance would otherwise make one syllable 20 dB louder than the next; the
    # level contour then comes from the syllable envelope alone
    amp *= voiced[:, None] / np.sqrt(np.maximum(0.5 * np.sum(amp * amp, axis=1, keepdims=True), 1e-12))
    phase0 = rng.uniform(0, 2 * np.pi, size=K)

    pos = np.arange(n, dtype=np.float64) / _HOP
    f0_s = np.interp(pos, frames, f0)
    # running f0 phase: accumulated in float64, wrapped to [0, 2pi) so that k*phi stays small
    # enough for float32 sin (the hot loop) to be exact to ~1e-5 rad however long the signal
    phi = np.mod(2 * np.pi * np.cumsum(f0_s) / sr, 2 * np.pi).astype(np.float32)
    # work frame by frame (rows of _HOP samples): amplitudes are linear between control
    # frames t and t+1, so sum_k a_k(t) sin_k = (1-w) sum_k A[t,k] sin_k + w sum_k A[t+1,k] sin_k
    # (two small matmuls, no (N, K) interpolation), and silent frames are skipped entirely
    n_fr = -(-n // _HOP)
    phi_r = np.zeros(n_fr * _HOP, np.float32)
    phi_r[:n] = phi
    phi_r = phi_r.reshape(n_fr, _HOP)
    amp32, k32, ph32 = amp.astype(np.float32), k.astype(np.float32), phase0.astype(np.float32)
    w = (np.arange(_HOP, dtype=np.float32) / _HOP)[None, :]
    active = np.flatnonzero(voiced[:n_fr] + voiced[1 : n_fr + 1] > 0)
    out_r = np.zeros((n_fr, _HOP), np.float32)
    step = _CHUNK // _HOP  # bounds the (rows, _HOP, K) work array for long signals
    for c in range(0, active.size, step):
        rows = active[c : c + step]
        ph = phi_r[rows][:, :, None] * k32
        ph += ph32
        np.sin(ph, out=ph)
        e0 = np.einsum("rhk,rk->rh", ph, amp32[rows])
        e1 = np.einsum("rhk,rk->rh", ph, amp32[rows + 1])
        out_r[rows] = e0 + (e1 - e0) * w
    out = out_r.reshape(-1)[:n].copy()
    # unvoiced: band-passed noise (fricative-like, random band inside 1.5-7 kHz)
    lo = rng.uniform(1500, 3500)
    hi = min(rng.uniform(lo + 1500, lo + 4000), 0.45 * sr)
    sos = signal.butter(4, [lo, hi], btype="band", fs=sr, output="sos")
    burst = signal.sosfilt(sos, rng.standard_normal(n))
    burst /= max(float(burst.std()), 1e-12)
    env_u = np.interp(pos, frames, unvoiced)
    out += (0.4 * burst * env_u).astype(np.float32)  # bursts ~8 dB below a voiced nucleus
    # -25 dBFS RMS over the whole segment, but never above 0.9 peak
    out = _normalize(out, 10 ** (-25 / 20))
    peak = float(np.abs(out).max()) if n else 0.0
    return out * (0.9 / peak) if peak > 0.9 else out


def synth_babble(n_samples: int, rng: np.random.Generator, n_voices: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Sum of ``n_voices`` independent synthetic speakers, each at equal RMS +-3 dB."""
    out = np.zeros(int(n_samples), np.float32)
    for _ in range(int(n_voices)):
        v = synth_speech(n_samples, rng, sr)
        out += _normalize(v, 0.05) * np.float32(10 ** (rng.uniform(-3, 3) / 20))
    return _normalize(out, 0.05)


def colored_noise(n_samples: int, rng: np.random.Generator, exponent: float, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Stationary Gaussian noise with power spectrum ~ f**-exponent, RMS 0.05.

    ``exponent`` 0 is white, 1 pink, 2 brown, negative tilts towards high frequencies. Shaped
    in the frequency domain; bins below 20 Hz are held at the 20 Hz value (DC zeroed) so brown
    noise does not drift.
    """
    n = int(n_samples)
    if n <= 0:
        return np.zeros(0, np.float32)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    shape = np.maximum(f, 20.0) ** (-exponent / 2.0)
    shape[0] = 0.0
    y = np.fft.irfft(spec * shape, n)
    return _normalize(y, 0.05)


def _hum(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    f = float(rng.choice([50.0, 60.0])) * (1 + rng.uniform(-0.002, 0.002))
    H = min(int(rng.integers(8, 31)), int(0.45 * sr / f))
    t = np.arange(n) / sr
    y = np.zeros(n)
    decay = rng.uniform(0.5, 1.5)
    for h in range(1, H + 1):
        y += h ** (-decay) * rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * f * h * t + rng.uniform(0, 2 * np.pi))
    wobble = 1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t + rng.uniform(0, 2 * np.pi))
    y = y * wobble + 0.01 * rng.standard_normal(n)  # small floor: mains hum is never alone
    return _normalize(y, 0.05)


def _tonal_bursts(n: int, rng: np.random.Generator, sr: int) -> np.ndarray:
    y = 0.003 * rng.standard_normal(n)  # faint floor so gaps are not digital silence
    pos = int(rng.uniform(0, 0.3) * sr)
    while pos < n:
        d = int(rng.uniform(0.05, 0.4) * sr)
        f = rng.uniform(300, 4000)
        t = np.arange(d) / sr
        tone = sum(rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * f * h * t) for h in range(1, int(rng.integers(1, 4)) + 1) if f * h < 0.45 * sr)
        ramp = min(int(0.01 * sr), d // 2)
        env = np.ones(d)
        if ramp > 0:  # 10 ms raised-cosine ramps: bursts start abruptly but without clicks
            r = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
            env[:ramp], env[d - ramp :] = r, r[::-1]
        seg = (tone * env * rng.uniform(0.3, 1.0))[: n - pos]
        y[pos : pos + seg.size] += seg
        pos += d + int(rng.uniform(0.05, 0.6) * sr)
    return _normalize(y, 0.05)


def synth_noise(n_samples: int, rng: np.random.Generator, kind: str, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Synthetic noise ``(n_samples,)`` float32 at RMS 0.05 (-26 dBFS); ``kind`` in ``NOISE_KINDS``."""
    n = int(n_samples)
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind '{kind}'; choose one of {', '.join(NOISE_KINDS)}")
    if n <= 0:
        return np.zeros(0, np.float32)
    if kind == "white":
        return _normalize(rng.standard_normal(n), 0.05)
    if kind == "pink":
        return colored_noise(n, rng, 1.0, sr)
    if kind == "brown":
        return colored_noise(n, rng, 2.0, sr)
    if kind == "babble-like":
        return synth_babble(n, rng, int(rng.integers(4, 8)), sr)
    if kind == "hum":
        return _hum(n, rng, sr)
    return _tonal_bursts(n, rng, sr)


def synth_rir(rng: np.random.Generator, sr: int = SAMPLE_RATE, rt60: float | None = None) -> np.ndarray:
    """Toy room impulse response ``(L,)``: direct path at index 0, sparse early reflections
    within 3-30 ms, exponentially decaying Gaussian tail (RT60 0.2-0.8 s unless given).
    Used when no recorded RIR is available (synthetic source, or a split without RIRs)."""
    rt60 = float(rng.uniform(0.2, 0.8)) if rt60 is None else float(rt60)
    L = max(int(1.2 * rt60 * sr), int(0.06 * sr))
    t = np.arange(L) / sr
    h = rng.standard_normal(L) * np.exp(-6.908 * t / rt60) * rng.uniform(0.05, 0.2)
    h[: int(0.003 * sr)] = 0.0  # the diffuse tail starts after the first reflections
    for _ in range(int(rng.integers(4, 11))):
        h[int(rng.uniform(0.003, 0.03) * sr)] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)
    h[0] = 1.0
    return h.astype(np.float32)
