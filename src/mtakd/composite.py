"""Loizou's frame-based quality measures (LLR, WSS, segmental SNR) and the composite scores.

This is a vectorised re-implementation of ``composite.m`` by Yi Hu and Philipos C. Loizou
(the measures inside it follow Pellom & Hansen), used in

    Y. Hu and P. C. Loizou, "Evaluation of objective quality measures for speech
    enhancement", IEEE Trans. Audio, Speech, Lang. Process. 16(1), 229-238, 2008.

Everything here works on 1-D ``float64`` numpy arrays of equal length and is PESQ-free: the
composite formulas take the PESQ score as an argument, so that :mod:`mtakd.metrics` can
compute PESQ once and share it between the ``pesq`` and the ``csig/cbak/covl`` columns.

Framing is the one of ``composite.m``, reproduced on purpose (including its quirks) so the
numbers are comparable with published tables:

* 30 ms frames (``round(0.03 * sr)``), hop = a quarter frame (``floor(win / 4)``);
* window ``0.5 * (1 - cos(2 pi n / (N + 1)))``, ``n = 1..N`` (MATLAB ``hanning``, no zeros);
* ``floor(len / hop - win / hop)`` frames, which is one frame fewer than would fit;
* ``eps`` (2.2e-16) is added to both signals first (keeps log/LPC of digital silence finite);
* "mean of the lowest 95 %" keeps ``round(0.95 * n_frames)`` sorted values (MATLAB rounding).
"""
from __future__ import annotations

import math

import numpy as np

_EPS = float(np.finfo(np.float64).eps)  # MATLAB's eps, used exactly where composite.m uses it
ALPHA = 0.95  # fraction of (best) frames kept for LLR and WSS
SEG_SNR_MIN, SEG_SNR_MAX = -10.0, 35.0

# Klatt's 25 critical bands (centre frequency, bandwidth) in Hz, as in composite.m / wss.m
_CENT_FREQ = np.array([
    50.0, 120.0, 190.0, 260.0, 330.0, 400.0, 470.0, 540.0, 617.372, 703.378,
    798.717, 904.128, 1020.38, 1148.30, 1288.72, 1442.54, 1610.70, 1794.16, 1993.93, 2211.08,
    2446.71, 2701.97, 2978.04, 3276.17, 3597.63])
_BANDWIDTH = np.array([
    70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 70.0, 77.3724, 86.0056, 95.3398,
    105.411, 116.256, 127.914, 140.423, 153.823, 168.154, 183.457, 199.776, 217.153, 235.631,
    255.255, 276.072, 298.126, 321.465, 346.136])
_K_MAX, _K_LOCMAX = 20.0, 1.0  # Klatt (1982), p. 1280


def _matlab_round(x: float) -> int:
    """Round half away from zero (MATLAB), not half to even (numpy/python)."""
    return int(math.floor(x + 0.5))


def frames(x: np.ndarray, sr: int) -> np.ndarray:
    """Hanning-windowed 30 ms frames with a 7.5 ms hop, exactly as ``composite.m`` cuts them.

    Parameters
    ----------
    x : np.ndarray, shape (N,), float64
    sr : int, sample rate in Hz

    Returns
    -------
    np.ndarray, shape (n_frames, win)
        ``n_frames = floor(N / hop - win / hop)`` (may be 0 for very short input).
    """
    win = _matlab_round(30 * sr / 1000)
    hop = win // 4
    n_frames = max(int(math.floor(len(x) / hop - win / hop)), 0)
    if n_frames == 0:
        return np.zeros((0, win))
    idx = np.arange(n_frames)[:, None] * hop + np.arange(win)[None, :]
    window = 0.5 * (1.0 - np.cos(2.0 * np.pi * np.arange(1, win + 1) / (win + 1)))
    return x[idx] * window


def _prep(ref: np.ndarray, deg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    deg = np.asarray(deg, dtype=np.float64).reshape(-1)
    n = min(len(ref), len(deg))
    return ref[:n] + _EPS, deg[:n] + _EPS


# ----------------------------------------------------------------------------- segSNR
def seg_snr_frames(ref: np.ndarray, deg: np.ndarray, sr: int) -> np.ndarray:
    """Per-frame segmental SNR in dB, clamped to ``[-10, 35]`` (Loizou's ``snr`` function).

    Every frame counts, silent ones included (they clamp to -10 dB): that is Loizou's
    handling, not the VAD-gated variant some papers use.

    Returns
    -------
    np.ndarray, shape (n_frames,)
    """
    ref, deg = _prep(ref, deg)
    return _seg_snr(frames(ref, sr), frames(deg, sr))


def _seg_snr(fr: np.ndarray, fd: np.ndarray) -> np.ndarray:
    signal = np.sum(fr**2, axis=1)
    noise = np.sum((fr - fd) ** 2, axis=1)
    snr = 10.0 * np.log10(signal / (noise + _EPS) + _EPS)
    return np.clip(snr, SEG_SNR_MIN, SEG_SNR_MAX)


# ----------------------------------------------------------------------------- LLR
def lpc(frames_: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation-method LPC by Levinson-Durbin, vectorised over frames.

    Parameters
    ----------
    frames_ : np.ndarray, shape (n, L), windowed frames
    order : int, LPC order P

    Returns
    -------
    r : np.ndarray, shape (n, P + 1), autocorrelation lags 0..P
    a : np.ndarray, shape (n, P + 1), inverse-filter polynomial ``[1, -a_1, ..., -a_P]``
        (the ``lpparams`` of Loizou's ``lpcoeff``)
    """
    n, length = frames_.shape
    r = np.stack([np.sum(frames_[:, : length - k] * frames_[:, k:], axis=1) for k in range(order + 1)], axis=1)
    a = np.zeros((n, order))  # predictor coefficients a_1..a_P
    err = r[:, 0].copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(order):
            # reflection coefficient k_{i+1} = (r[i+1] - sum_j a_j r[i+1-j]) / E_i
            acc = np.sum(a[:, :i] * r[:, i:0:-1], axis=1) if i else 0.0
            k = (r[:, i + 1] - acc) / err
            prev = a[:, :i].copy()
            a[:, :i] = prev - k[:, None] * prev[:, ::-1]
            a[:, i] = k
            err = (1.0 - k * k) * err
    return r, np.concatenate([np.ones((n, 1)), -a], axis=1)


def llr_frames(ref: np.ndarray, deg: np.ndarray, sr: int) -> np.ndarray:
    """Per-frame log-likelihood ratio ``log(a_d R_c a_d^T / a_c R_c a_c^T)``.

    LPC order 10 below 10 kHz and 16 above, as in ``composite.m``. Identical (or merely
    scaled) signals give exactly 0; values are >= 0 up to rounding.

    Returns
    -------
    np.ndarray, shape (n_frames,)
    """
    ref, deg = _prep(ref, deg)
    return _llr(frames(ref, sr), frames(deg, sr), sr)


def _llr(fr: np.ndarray, fd: np.ndarray, sr: int) -> np.ndarray:
    order = 10 if sr < 10000 else 16
    r_c, a_c = lpc(fr, order)
    _, a_d = lpc(fd, order)
    lag = np.abs(np.arange(order + 1)[:, None] - np.arange(order + 1)[None, :])
    toe = r_c[:, lag]  # (n, P+1, P+1) Toeplitz autocorrelation matrix of the clean frame
    num = np.einsum("ni,nij,nj->n", a_d, toe, a_d)
    den = np.einsum("ni,nij,nj->n", a_c, toe, a_c)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(num / den)


# ----------------------------------------------------------------------------- WSS
def _crit_filters(sr: int, n_fft: int) -> np.ndarray:
    """Gaussian critical-band filters, shape (25, n_fft // 2), zeroed below -30 dB."""
    half = n_fft // 2
    max_freq = sr / 2
    j = np.arange(half)[None, :]
    f0 = np.floor(_CENT_FREQ / max_freq * half)[:, None]
    bw = (_BANDWIDTH / max_freq * half)[:, None]
    # equal filter area: wider bands get a lower peak gain (log(bw_min) - log(bw_i) <= 0)
    norm = (np.log(_BANDWIDTH[0]) - np.log(_BANDWIDTH))[:, None]
    filt = np.exp(-11.0 * ((j - f0) / bw) ** 2 + norm)
    min_factor = math.exp(-30.0 / (2.0 * 2.303))  # -30 dB point
    return filt * (filt > min_factor)


def _loc_peaks(energy: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """Nearest spectral peak per band, reproducing ``composite.m``'s search exactly.

    Positive slope: walk right to the first band ``n`` with slope <= 0 (or the last band)
    and take ``energy[n - 1]`` -- one band short of the true peak; that off-by-one is in
    the reference code and kept so that WSS matches published numbers. Non-positive
    slope: walk left to the last band ``n`` with slope > 0 and take ``energy[n + 1]``.
    """
    n, nb = slope.shape  # nb = 24
    nxt = np.empty((n, nb), dtype=np.int64)  # first index >= i with slope <= 0, else nb
    cur = np.full(n, nb, dtype=np.int64)
    for i in range(nb - 1, -1, -1):
        cur = np.where(slope[:, i] <= 0, i, cur)
        nxt[:, i] = cur
    prv = np.empty((n, nb), dtype=np.int64)  # last index <= i with slope > 0, else -1
    cur = np.full(n, -1, dtype=np.int64)
    for i in range(nb):
        cur = np.where(slope[:, i] > 0, i, cur)
        prv[:, i] = cur
    idx = np.where(slope > 0, nxt - 1, prv + 1)
    return np.take_along_axis(energy, idx, axis=1)


def wss_frames(ref: np.ndarray, deg: np.ndarray, sr: int) -> np.ndarray:
    """Per-frame weighted spectral slope distance (Klatt 1982, normalised by sum of weights).

    FFT power spectrum of size ``2 ** nextpow2(2 * win)``, 25 critical bands (they stop at
    ~3.8 kHz, also at 16 kHz, as in the reference code).

    Returns
    -------
    np.ndarray, shape (n_frames,)
    """
    ref, deg = _prep(ref, deg)
    return _wss(frames(ref, sr), frames(deg, sr), sr)


def _wss(fr: np.ndarray, fd: np.ndarray, sr: int) -> np.ndarray:
    win = fr.shape[1]
    n_fft = 2 ** int(math.ceil(math.log2(2 * win)))
    filt = _crit_filters(sr, n_fft)  # (25, n_fft/2)
    half = n_fft // 2

    def band_db(f: np.ndarray) -> np.ndarray:
        spec = np.abs(np.fft.rfft(f, n_fft, axis=1)[:, :half]) ** 2
        return 10.0 * np.log10(np.maximum(spec @ filt.T, 1e-10))  # (n, 25)

    ec, ed = band_db(fr), band_db(fd)
    sc, sd = np.diff(ec, axis=1), np.diff(ed, axis=1)  # (n, 24) spectral slopes
    pc, pd = _loc_peaks(ec, sc), _loc_peaks(ed, sd)
    # weights favour bands near the global max and near a local peak (Klatt's W)
    wc = _K_MAX / (_K_MAX + ec.max(axis=1, keepdims=True) - ec[:, :-1]) * (
        _K_LOCMAX / (_K_LOCMAX + pc - ec[:, :-1]))
    wd = _K_MAX / (_K_MAX + ed.max(axis=1, keepdims=True) - ed[:, :-1]) * (
        _K_LOCMAX / (_K_LOCMAX + pd - ed[:, :-1]))
    w = 0.5 * (wc + wd)
    return np.sum(w * (sc - sd) ** 2, axis=1) / np.sum(w, axis=1)


# ----------------------------------------------------------------------------- composite
def mean_lowest(values: np.ndarray, alpha: float = ALPHA) -> float:
    """Mean of the lowest ``round(alpha * n)`` values (NaN/inf sort last, as in MATLAB)."""
    if len(values) == 0:
        return float("nan")
    v = np.sort(values)
    return float(np.mean(v[: max(_matlab_round(len(v) * alpha), 1)]))


def loizou_measures(ref: np.ndarray, deg: np.ndarray, sr: int) -> dict[str, float]:
    """The PESQ-free inputs of the composite measures.

    Returns
    -------
    dict with ``llr`` (mean of lowest 95 % of frames), ``wss`` (same), ``seg_snr`` (mean of
    all frames, clamped per frame to [-10, 35] dB). NaN if the signal is shorter than
    ~37.5 ms (no whole frame).
    """
    ref, deg = _prep(ref, deg)
    fr, fd = frames(ref, sr), frames(deg, sr)  # shared by the three measures
    segsnr = _seg_snr(fr, fd)
    return {
        "llr": mean_lowest(_llr(fr, fd, sr)),
        "wss": mean_lowest(_wss(fr, fd, sr)),
        "seg_snr": float(np.mean(segsnr)) if len(segsnr) else float("nan"),
    }


def composite_from_measures(pesq: float, llr: float, wss: float, seg_snr: float) -> dict[str, float]:
    """Hu & Loizou (2008) regression: ``csig``, ``cbak``, ``covl``, each clipped to [1, 5].

    NaN in any input (e.g. PESQ on silence) gives NaN outputs.
    """
    csig = 3.093 - 1.029 * llr + 0.603 * pesq - 0.009 * wss
    cbak = 1.634 + 0.478 * pesq - 0.007 * wss + 0.063 * seg_snr
    covl = 1.594 + 0.805 * pesq - 0.512 * llr - 0.007 * wss
    return {k: float(np.clip(v, 1.0, 5.0)) for k, v in (("csig", csig), ("cbak", cbak), ("covl", covl))}
