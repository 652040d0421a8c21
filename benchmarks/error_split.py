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
in SD over-suppresses. Means per input SNR over the dev set, models scored on the same files::

    PYTHONPATH=src python benchmarks/error_split.py --devset data/devset \
        --model teacher=src/mtakd/pretrained/teacher.safetensors \
        --model student=src/mtakd/pretrained/student.safetensors [--out docs/error_split.md]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from bench_common import devset_snrs, emit, model_args
from mtakd.checkpoint import load_model
from mtakd.data import PairedDataset
from mtakd.stft import STFT, apply_mask


def _db(num: float, den: float) -> float:
    return float(10.0 * np.log10((num + 1e-12) / (den + 1e-12)))


@torch.inference_mode()
def split(model: torch.nn.Module, stft: STFT, clean: np.ndarray, noisy: np.ndarray) -> tuple[float, float]:
    """``(SD dB, NR dB)`` for one file: the mask from ``noisy`` applied to its two parts."""
    s = torch.from_numpy(clean).float()[None]
    y = torch.from_numpy(noisy).float()[None]
    n = y - s
    mask = model(stft(y))  # (1, 2, T, F)
    s_hat = stft.inverse(apply_mask(stft(s), mask), s.shape[-1])[0].numpy()
    n_hat = stft.inverse(apply_mask(stft(n), mask), s.shape[-1])[0].numpy()
    s0, n0 = clean.astype(np.float64), n[0].numpy().astype(np.float64)
    sd = _db(float(np.sum((s0 - s_hat) ** 2)), float(np.sum(s0 ** 2)))
    nr = _db(float(np.sum(n0 ** 2)), float(np.sum(n_hat.astype(np.float64) ** 2)))
    return sd, nr


def run(devset: Path, models: dict[str, Path], max_files: int | None = None) -> dict[str, dict[float | None, list[tuple[float, float]]]]:
    """``{model name: {input snr: [(SD, NR) per file]}}``; the input SNR per file is the
    manifest's (``mtakd build-devset`` writes it). A set without a manifest (recorded pairs
    such as VoiceBank-DEMAND's) is one group, keyed None, shown as "all"."""
    snr = devset_snrs(devset)
    pairs = PairedDataset(devset, max_files)  # evenly spaced files, read once for all models
    items = [pairs[i] for i in range(len(pairs))]
    stft = STFT()
    out: dict[str, dict[float, list[tuple[float, float]]]] = {}
    for name, path in models.items():
        model = load_model(path).eval()
        per: dict[float, list[tuple[float, float]]] = defaultdict(list)
        for it in items:
            per[snr[it["name"]]].append(split(model, stft, np.asarray(it["clean"]), np.asarray(it["noisy"])))
        out[name] = dict(per)
    return out


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
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    models = model_args(ap, a.model, a.devset)
    text = table(run(a.devset, models, a.max_files))
    emit(text, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
