"""Where does an enhancer lose: speech distortion or residual noise? Per input SNR, per model.

A mask model's output is linear in its input once the mask is fixed, so applying the mask
computed from the noisy mixture ``Y = S + N`` to ``S`` and to ``N`` separately splits the
output into a speech part ``S_hat = M S`` and a noise part ``N_hat = M N``
(``S_hat + N_hat`` is the output, exactly). Two numbers per file:

* **speech distortion** ``SD = 10 log10(|s - s_hat|^2 / |s|^2)`` dB (lower is better):
  how much of the speech the mask removes or alters;
* **noise reduction** ``NR = 10 log10(|n|^2 / |n_hat|^2)`` dB (higher is better):
  how much of the noise it removes.

A student that lags its teacher mostly in NR at low SNR under-suppresses there; one that lags
in SD over-suppresses. Means per input SNR over the dev set, models scored on the same files.
``--bands 0,1000,4000,8000`` adds the same two numbers per frequency band (Hz edges), from the
spectra's energy in each band's bins summed over the file: where in frequency a model removes
less noise or alters more speech::

    PYTHONPATH=src python benchmarks/error_split.py --devset data/devset \
        --model teacher=src/mtakd/pretrained/teacher.safetensors \
        --model student=src/mtakd/pretrained/student.safetensors [--bands 0,1000,4000,8000] \
        [--out docs/error_split.md]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from bench_common import devset_snrs, emit, model_args, models_on_files
from mtakd.stft import N_FFT, SAMPLE_RATE, STFT, apply_mask


def _db(num: float, den: float) -> float:
    return float(10.0 * np.log10((num + 1e-12) / (den + 1e-12)))


@torch.inference_mode()
def split(model: torch.nn.Module, stft: STFT, clean: np.ndarray, noisy: np.ndarray,
          edges: list[float] | None = None) -> tuple[float, float, list[tuple[float, float]]]:
    """``(SD dB, NR dB, bands)`` for one file: the mask from ``noisy`` applied to its two parts.
    ``bands``: with band ``edges`` (Hz), ``[(SD dB, NR dB)]`` per band ``[edges[i], edges[i+1])``
    (the last includes its upper edge), from the STFT-domain energies of the two parts and of
    what the mask leaves of them, summed over the band's bins and frames; else ``[]``. The mask
    is computed once for both."""
    s = torch.from_numpy(clean).float()[None]
    n = torch.from_numpy(noisy).float()[None] - s
    S, N = stft(s), stft(n)  # (1, 2, T, F)
    mask = model(stft(torch.from_numpy(noisy).float()[None]))
    S_hat, N_hat = apply_mask(S, mask), apply_mask(N, mask)
    s_hat = stft.inverse(S_hat, s.shape[-1])[0].numpy()
    n_hat = stft.inverse(N_hat, s.shape[-1])[0].numpy()
    s0, n0 = clean.astype(np.float64), n[0].numpy().astype(np.float64)
    sd = _db(float(np.sum((s0 - s_hat) ** 2)), float(np.sum(s0 ** 2)))
    nr = _db(float(np.sum(n0 ** 2)), float(np.sum(n_hat.astype(np.float64) ** 2)))
    bands = []
    if edges:
        power = lambda x: (x * x).sum(1)[0].double()  # noqa: E731  (T, F)
        err_s, ps, pn, pn_hat = power(S_hat - S), power(S), power(N), power(N_hat)
        freqs = np.arange(S.shape[-1]) * SAMPLE_RATE / N_FFT
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            last = i == len(edges) - 2
            sel = torch.from_numpy((freqs >= lo) & ((freqs <= hi) if last else (freqs < hi)))
            bands.append((_db(float(err_s[:, sel].sum()), float(ps[:, sel].sum())),
                          _db(float(pn[:, sel].sum()), float(pn_hat[:, sel].sum()))))
    return sd, nr, bands


def band_table(res: dict[str, np.ndarray], edges: list[float]) -> str:
    """One column per band: mean over files of SD / NR."""
    labels = [f"{lo / 1000:g}-{hi / 1000:g} kHz" for lo, hi in zip(edges[:-1], edges[1:])]
    lines = ["Per frequency band: speech distortion SD dB / noise reduction NR dB, mean over files:", "",
             "| model | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for name, a in res.items():
        lines.append(f"| {name} | " + " | ".join(f"{a[:, b, 0].mean():.1f} / {a[:, b, 1].mean():.1f}"
                                                 for b in range(a.shape[1])) + " |")
    return "\n".join(lines) + "\n"


def parse_edges(text: str) -> list[float]:
    """``"0,1000,8000"`` -> ascending band edges in Hz within 0..Nyquist (ValueError otherwise)."""
    try:
        edges = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--bands wants comma-separated frequencies in Hz, got {text!r}") from None
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 0 or edges[-1] > SAMPLE_RATE / 2:
        raise ValueError(f"--bands wants at least two ascending edges within 0..{SAMPLE_RATE // 2} Hz, got {text!r}")
    return edges


def run(devset: Path, models: dict[str, Path], max_files: int | None = None, edges: list[float] | None = None
        ) -> tuple[dict[str, dict[float | None, list[tuple[float, float]]]], dict[str, np.ndarray]]:
    """One pass over the set per model: ``({model name: {input snr: [(SD, NR) per file]}},
    {model name: (files, bands, 2) array of (SD, NR)})`` (the second empty without band
    ``edges``). The input SNR per file is the manifest's (``mtakd build-devset`` writes it); a
    set without a manifest (recorded pairs such as VoiceBank-DEMAND's) is one group, keyed None,
    shown as "all"."""
    snr = devset_snrs(devset)
    items, stft, loaded = models_on_files(devset, models, max_files)
    out: dict[str, dict[float, list[tuple[float, float]]]] = {}
    bands: dict[str, np.ndarray] = {}
    for name, model in loaded:
        per: dict[float, list[tuple[float, float]]] = defaultdict(list)
        per_band = []
        for it in items:
            sd, nr, b = split(model, stft, np.asarray(it["clean"]), np.asarray(it["noisy"]), edges)
            per[snr[it["name"]]].append((sd, nr))
            per_band.append(b)
        out[name] = dict(per)
        if edges:
            bands[name] = np.asarray(per_band)
    return out, bands


def table(res: dict[str, dict[float | None, list[tuple[float, float]]]]) -> str:
    """One column per input SNR, then "all"; a set without a manifest (key None) has "all" only."""
    snrs = sorted(k for k in next(iter(res.values())) if k is not None)
    head = "| model | " + "".join(f"{s:+g} dB | " for s in snrs) + "all |"
    what = "per input SNR" if snrs else "(no manifest: input SNRs unknown)"
    lines = ["Speech distortion SD dB (lower is better) / noise reduction NR dB (higher is better), "
             f"mean over files {what}:", "", head, "|---" * (len(snrs) + 2) + "|"]
    for name, per in res.items():
        groups = [per[s] for s in snrs] + [[x for v in per.values() for x in v]]  # ..., all files
        cells = [f"{np.array(g)[:, 0].mean():.1f} / {np.array(g)[:, 1].mean():.1f}" for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", type=Path, required=True, help="folder with clean/ and noisy/ (and manifest.csv for the "
                    "per-SNR columns, as mtakd build-devset writes it)")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=CKPT", help="a checkpoint to score (repeat)")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--bands", metavar="HZ,HZ,...", help="also split by frequency band, e.g. 0,1000,4000,8000")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        edges = parse_edges(a.bands) if a.bands else None
    except ValueError as e:
        ap.error(str(e))
    models = model_args(ap, a.model, a.devset)
    per_snr, bands = run(a.devset, models, a.max_files, edges)
    text = table(per_snr)
    if edges:
        text += "\n" + band_table(bands, edges)
    emit(text, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
