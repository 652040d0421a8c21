"""Signal-level building blocks of data simulation: SNR mixing, level, looping, reverberation.

All functions take and return float32 numpy arrays shaped ``(N,)``; energies are computed in
float64 so that the requested SNR holds to ~1e-5 dB after the float32 cast.
"""
from __future__ import annotations

import numpy as np
from scipy import signal

from .stft import SAMPLE_RATE

#: energy below this counts as silence (avoids dividing by zero; ~ -300 dB)
_TINY = 1e-30
#: peak that the final mix may reach after level scaling (headroom below 16-bit full scale)
PEAK_LIMIT = 0.99
#: early-reflection window kept in the reverberant training target (after the direct path)
EARLY_MS = 50.0


def energy(x: np.ndarray) -> float:
    """Sum of squares in float64."""
    y = np.asarray(x, dtype=np.float64)
    # einsum, not np.dot: dot goes through multithreaded BLAS, which on a busy 2-core box
    # was ~100x slower (12 ms vs 0.1 ms for 4 s of audio)
    return float(np.einsum("i,i->", y, y))


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level of ``x`` in dB relative to full scale (-inf is clamped to -300)."""
    return 10.0 * np.log10(max(energy(x) / max(x.size, 1), _TINY))


def mix_at_snr(clean: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, np.ndarray]:
    """Scale ``noise`` so that ``10*log10(sum clean^2 / sum noise^2) == snr_db`` and add it.

    ``clean``, ``noise``: ``(N,)``, same length. Returns ``(noisy, scaled_noise)`` float32.
    Edge cases (no division by zero): digitally silent noise gives ``scaled_noise = 0`` and
    ``noisy = clean``; silent clean leaves the noise unscaled (any SNR is -inf there).
    """
    clean = np.asarray(clean, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if clean.shape != noise.shape:
        raise ValueError(f"mix_at_snr: clean {clean.shape} and noise {noise.shape} must have the same shape")
    ec, en = energy(clean), energy(noise)
    if en <= _TINY:
        scaled = np.zeros_like(noise)
    elif ec <= _TINY:
        scaled = noise.copy()
    else:
        gain = np.sqrt(ec / (en * 10.0 ** (snr_db / 10.0)))
        scaled = (noise.astype(np.float64) * gain).astype(np.float32)
    return (clean + scaled).astype(np.float32), scaled


def set_level(clean: np.ndarray, noisy: np.ndarray, level_dbfs: float, peak: float = PEAK_LIMIT) -> tuple[np.ndarray, np.ndarray, float]:
    """Scale ``clean`` and ``noisy`` by one gain so that ``noisy`` has RMS ``level_dbfs``.

    The same gain keeps the pair consistent (the model learns level-equivariant enhancement);
    if either signal would then peak above ``peak`` the gain is lowered until it does not, so
    the level is a target, not a guarantee. Returns ``(clean, noisy, gain)``.
    """
    e = energy(noisy) / max(noisy.size, 1)
    gain = 10.0 ** (level_dbfs / 20.0) / np.sqrt(e) if e > _TINY else 1.0
    top = max(float(np.abs(noisy).max(initial=0.0)), float(np.abs(clean).max(initial=0.0))) * gain
    if top > peak:
        gain *= peak / top
    return (clean * np.float32(gain)).astype(np.float32), (noisy * np.float32(gain)).astype(np.float32), float(gain)


def fit_length(x: np.ndarray, n: int, rng: np.random.Generator, xfade: int = 160) -> np.ndarray:
    """Random crop of ``x`` to ``n`` samples, or loop it (from a random phase) if shorter.

    Loop joins are crossfaded over ``xfade`` samples (10 ms) with equal-power fades, so a
    looped noise has no click at the seam, which a model would otherwise learn to remove.
    """
    n = int(n)
    if x.size == 0:
        return np.zeros(n, np.float32)
    if x.size >= n:
        s = int(rng.integers(0, x.size - n + 1))
        return x[s : s + n].astype(np.float32, copy=True)
    xf = int(min(xfade, x.size // 4))
    step = x.size - xf
    reps = int(np.ceil((n + x.size) / max(step, 1))) + 1
    out = np.zeros(step * reps + xf, np.float32)
    if xf > 0:
        t = np.linspace(0.0, np.pi / 2, xf, dtype=np.float32)
        fade_in, fade_out = np.sin(t), np.cos(t)
    for r in range(reps):
        seg = x.astype(np.float32, copy=True)
        if xf > 0:
            if r > 0:
                seg[:xf] *= fade_in
            seg[-xf:] *= fade_out
        out[r * step : r * step + x.size] += seg
    s = int(rng.integers(0, x.size))  # random phase, away from the faded-in very start
    return out[s : s + n].copy()


def reverberate(speech: np.ndarray, rir: np.ndarray, early_ms: float = EARLY_MS, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Convolve ``speech (N,)`` with ``rir (L,)``; returns ``(reverberant (N,), early (N,))``.

    ``early`` is the training target for reverberant inputs: speech convolved with the direct
    path plus the first ``early_ms`` (50 ms) of the RIR. Early reflections are perceptually
    part of the direct sound and help intelligibility, and asking a small causal model to
    remove them too costs quality, so (as in DNS-Challenge style simulation) only the late tail
    is treated as interference. The RIR is aligned so that its direct path (largest |h|) is at
    lag 0 (keeping 1 ms before it for a band-limited onset) and scaled to a direct path of 1,
    so both outputs stay time-aligned with, and about as loud as, the dry ``speech``.
    Callers give ``speech`` some leading context (up to the RIR length) and drop it afterwards
    so the first samples also carry the tail of earlier speech.
    """
    h = np.asarray(rir, dtype=np.float64)
    if h.size == 0 or not np.any(h):
        return speech.astype(np.float32, copy=True), speech.astype(np.float32, copy=True)
    d = int(np.argmax(np.abs(h)))
    pre = min(d, int(round(0.001 * sr)))
    h = h[d - pre :] / abs(h[d])
    early = h[: pre + int(round(early_ms * sr / 1000.0))]
    n = speech.size
    x = speech.astype(np.float64)
    rev = signal.oaconvolve(x, h)[pre : pre + n]
    tgt = signal.oaconvolve(x, early)[pre : pre + n]
    return rev.astype(np.float32), tgt.astype(np.float32)
