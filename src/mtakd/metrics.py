"""Intrusive speech-quality metrics: PESQ, STOI/ESTOI, SI-SDR, segmental SNR, CSIG/CBAK/COVL.

All functions take 1-D numpy float arrays (a CPU torch tensor also works): the clean
reference ``ref`` and the degraded or enhanced ``deg``, time-aligned by the caller. If their
lengths differ, both are trimmed to the shorter one (the tail of the longer is ignored; no
alignment search is done). Computations run in float64.

Degenerate input never raises inside a batch: PESQ on silence / no detected utterance / a
buffer shorter than 0.25 s, and STOI with fewer than 30 non-silent frames (or a signal
shorter than one 25.6 ms STOI frame, ~410 samples at 16 kHz) return ``float('nan')``
(aggregate with ``np.nanmean`` and report the count of NaNs). A sample
rate a metric cannot handle is a programming error and raises ``ValueError``.

``evaluate_pair`` is the one entry point used by evaluation scripts; it computes PESQ once
and reuses it for the composite measures.
"""
from __future__ import annotations

import warnings

import numpy as np

from mtakd import composite as _loizou

__all__ = [
    "pesq_wb",
    "pesq_nb",
    "stoi",
    "estoi",
    "si_sdr",
    "seg_snr",
    "composite",
    "evaluate_pair",
    "METRIC_KEYS",
]

#: keys of :func:`evaluate_pair` (``si_sdr_i`` only when ``noisy`` is given)
METRIC_KEYS = ("pesq", "stoi", "estoi", "si_sdr", "si_sdr_i", "seg_snr", "csig", "cbak", "covl")

_SI_SDR_EPS = 1e-8


def _pair(ref, deg) -> tuple[np.ndarray, np.ndarray]:
    """Flatten-check, cast to float64 and trim both to the shorter length."""
    ref = np.asarray(ref, dtype=np.float64)
    deg = np.asarray(deg, dtype=np.float64)
    if ref.ndim != 1 or deg.ndim != 1:
        raise ValueError(f"metrics expect 1-D signals, got shapes {ref.shape} and {deg.shape}")
    n = min(len(ref), len(deg))
    return ref[:n], deg[:n]


# ----------------------------------------------------------------------------- PESQ
def _pesq(ref: np.ndarray, deg: np.ndarray, sr: int, mode: str) -> float:
    from pesq import BufferTooShortError, NoUtterancesError, pesq

    ref, deg = _pair(ref, deg)
    # the pesq package divides by max(|ref|, |deg|): all-zero input would give 0/0 and
    # a garbage run, and NaN/inf would propagate into the C code; both are "no score"
    if not (np.all(np.isfinite(ref)) and np.all(np.isfinite(deg))):
        return float("nan")
    # either side all zeros: no score (an all-zero output makes the package raise deep inside
    # its level alignment, 'cannot convert float NaN to integer')
    if min(np.max(np.abs(ref), initial=0.0), np.max(np.abs(deg), initial=0.0)) == 0.0:
        return float("nan")
    try:
        return float(pesq(sr, ref, deg, mode))
    except (NoUtterancesError, BufferTooShortError):
        return float("nan")


def pesq_wb(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO, ~1.04..4.64). Needs ``sr == 16000``.

    Parameters
    ----------
    ref, deg : np.ndarray, shape (N,)
    sr : int, must be 16000

    Returns
    -------
    float, NaN if PESQ finds no utterance (silence) or the input is < 0.25 s.
    """
    if sr != 16000:
        raise ValueError(f"PESQ-WB needs 16 kHz audio, got sr={sr}")
    return _pesq(ref, deg, sr, "wb")


def pesq_nb(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Narrow-band PESQ (P.862 with the P.862.1 MOS-LQO mapping, as the ``pesq`` package
    returns it), at 8000 or 16000 Hz. NaN on silence / too-short input."""
    if sr not in (8000, 16000):
        raise ValueError(f"PESQ-NB needs 8 or 16 kHz audio, got sr={sr}")
    return _pesq(ref, deg, sr, "nb")


# ----------------------------------------------------------------------------- STOI
def _stoi(ref, deg, sr: int, extended: bool) -> float:
    from pystoi import stoi as _pystoi
    from pystoi.stoi import FS, N_FRAME

    ref, deg = _pair(ref, deg)
    # silent reference: pystoi keeps every (equally silent) frame and returns 0, but
    # intelligibility of nothing is undefined, not "unintelligible"
    if not np.any(ref) or not (np.all(np.isfinite(ref)) and np.all(np.isfinite(deg))):
        return float("nan")
    # pystoi resamples to FS (10 kHz) and needs more than one N_FRAME (256) frame there, i.e.
    # more than 409.6 samples at 16 kHz; a shorter signal makes it raise (numpy AxisError)
    if len(ref) * FS <= N_FRAME * sr:
        return float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(_pystoi(ref, deg, sr, extended=extended))
    # pystoi returns a dummy 1e-5 (with a warning) when fewer than 30 frames survive its
    # silence removal: the score is undefined, and 1e-5 would silently bias a mean
    if any("Not enough STFT frames" in str(w.message) for w in caught):
        return float("nan")
    for w in caught:  # re-emit anything else
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return value


def stoi(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """STOI (Taal et al. 2011) via pystoi (resamples to 10 kHz internally), in [0, 1]-ish.

    Returns NaN when fewer than 30 non-silent 25.6 ms frames remain (< ~0.4 s of speech),
    also for signals too short for a single frame (pystoi itself would raise)."""
    return _stoi(ref, deg, sr, extended=False)


def estoi(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Extended STOI (Jensen & Taal 2016) via pystoi ``extended=True``; NaN as :func:`stoi`."""
    return _stoi(ref, deg, sr, extended=True)


# ----------------------------------------------------------------------------- SNRs
def si_sdr(ref: np.ndarray, deg: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean.

    ``target = <deg, ref> / |ref|^2 * ref``, ``SI-SDR = 10 log10(|target|^2 / |deg - target|^2)``
    with ``eps = 1e-8`` added to both energies: identical input gives a large finite value
    (~80-100 dB for normal levels, limited by float64 rounding), silence gives 0 dB, never NaN.
    """
    ref, deg = _pair(ref, deg)
    ref = ref - ref.mean() if len(ref) else ref
    deg = deg - deg.mean() if len(deg) else deg
    alpha = np.dot(deg, ref) / (np.dot(ref, ref) + _SI_SDR_EPS)
    target = alpha * ref
    noise = deg - target
    return float(10.0 * np.log10((np.dot(target, target) + _SI_SDR_EPS) / (np.dot(noise, noise) + _SI_SDR_EPS)))


def seg_snr(ref: np.ndarray, deg: np.ndarray, sr: int = 16000) -> float:
    """Segmental SNR in dB as in Loizou's ``composite.m``: 30 ms Hanning frames, 75 % overlap,
    each frame clamped to [-10, 35] dB, mean over ALL frames (silent reference frames count,
    at -10 dB). NaN if shorter than one frame."""
    ref, deg = _pair(ref, deg)
    v = _loizou.seg_snr_frames(ref, deg, sr)
    return float(np.mean(v)) if len(v) else float("nan")


# ----------------------------------------------------------------------------- composite
def _pesq_for_composite(ref, deg, sr: int) -> float:
    if sr == 16000:
        return pesq_wb(ref, deg, sr)
    if sr == 8000:
        return pesq_nb(ref, deg, sr)
    raise ValueError(f"PESQ (and so composite/evaluate_pair) needs 8 or 16 kHz audio, got sr={sr}")


def composite(ref: np.ndarray, deg: np.ndarray, sr: int = 16000, pesq_score: float | None = None) -> dict[str, float]:
    """CSIG / CBAK / COVL of Hu & Loizou (2008), re-implemented after Loizou's ``composite.m``.

    ``Csig = 3.093 - 1.029 LLR + 0.603 PESQ - 0.009 WSS``,
    ``Cbak = 1.634 + 0.478 PESQ - 0.007 WSS + 0.063 segSNR``,
    ``Covl = 1.594 + 0.805 PESQ - 0.512 LLR - 0.007 WSS``, each clipped to [1, 5];
    LLR and WSS are means of the lowest 95 % of frames, segSNR the mean of all frames
    (see :mod:`mtakd.composite`).

    PESQ: at 16 kHz this uses **PESQ-WB** (P.862.2 MOS-LQO), as most recent SE papers and
    the common Python ports do; ``composite.m`` used raw narrow-band P.862 PESQ (the model
    was fitted on that), so absolute values are not strictly comparable with the 2008 paper.
    At 8 kHz it uses PESQ-NB (MOS-LQO as returned by the ``pesq`` package).

    Parameters
    ----------
    ref, deg : np.ndarray, shape (N,)
    sr : int, 8000 or 16000
    pesq_score : float, optional, a PESQ value already computed for this pair (skips PESQ)

    Returns
    -------
    dict with ``csig``, ``cbak``, ``covl`` (NaN if PESQ is NaN, e.g. silent input).
    """
    ref, deg = _pair(ref, deg)
    p = _pesq_for_composite(ref, deg, sr) if pesq_score is None else float(pesq_score)
    m = _loizou.loizou_measures(ref, deg, sr)
    return _loizou.composite_from_measures(p, m["llr"], m["wss"], m["seg_snr"])


# ----------------------------------------------------------------------------- all at once
def evaluate_pair(ref: np.ndarray, deg: np.ndarray, sr: int = 16000, noisy: np.ndarray | None = None) -> dict[str, float]:
    """All metrics for one (reference, enhanced) pair.

    Parameters
    ----------
    ref : np.ndarray, shape (N,), clean reference
    deg : np.ndarray, shape (N,), enhanced (or any degraded) signal
    sr : int, 16000 (PESQ-WB) or 8000 (PESQ-NB)
    noisy : np.ndarray, shape (N,), optional, the unprocessed mixture; adds
        ``si_sdr_i = si_sdr(ref, deg) - si_sdr(ref, noisy)``

    Returns
    -------
    dict[str, float] with keys ``pesq, stoi, estoi, si_sdr, [si_sdr_i], seg_snr, csig,
    cbak, covl`` in that order (see :data:`METRIC_KEYS`). All three signals are trimmed to
    the shortest length.
    """
    ref, deg = _pair(ref, deg)
    if noisy is not None:
        noisy = np.asarray(noisy, dtype=np.float64)
        if noisy.ndim != 1:
            raise ValueError(f"noisy must be 1-D, got shape {noisy.shape}")
        n = min(len(ref), len(noisy))
        ref, deg, noisy = ref[:n], deg[:n], noisy[:n]
    p = _pesq_for_composite(ref, deg, sr)
    m = _loizou.loizou_measures(ref, deg, sr)
    out = {
        "pesq": p,
        "stoi": stoi(ref, deg, sr),
        "estoi": estoi(ref, deg, sr),
        "si_sdr": si_sdr(ref, deg),
    }
    if noisy is not None:
        out["si_sdr_i"] = out["si_sdr"] - si_sdr(ref, noisy)
    out["seg_snr"] = m["seg_snr"]
    out.update(_loizou.composite_from_measures(p, m["llr"], m["wss"], m["seg_snr"]))
    return out
