"""Output level and compressed-spectrum loss of models on a paired set: catches level errors
that PESQ, STOI and SI-SDR cannot see (all three ignore the output's scale).

    python benchmarks/output_level.py --devset data/devset --files 12 runs/gpu/teacher/best.safetensors ...

Prints, per checkpoint, the mean of 20 log10(rms(output) / rms(clean)) and the
mean compressed-spectrum loss (``losses.CompressedSpectralLoss``, the training loss's base
term) of the output and of the noisy input against the clean reference.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from mtakd.checkpoint import load_checkpoint
from mtakd.data import PairedDataset
from mtakd.inference import enhance_waveform
from mtakd.losses import CompressedSpectralLoss
from mtakd.stft import STFT


def level_and_loss(checkpoint, devset, files: int = 12) -> tuple[float, float]:
    """``(mean output/clean level in dB, mean compressed-spectrum loss)`` of ``checkpoint`` on
    ``files`` evenly spaced pairs of ``devset``; ``checkpoint=None`` measures the noisy input."""
    ds, stft, loss = PairedDataset(devset, max_files=files), STFT(), CompressedSpectralLoss()
    spec = lambda w: stft(w.reshape(1, -1))  # noqa: E731
    model = None if checkpoint is None else load_checkpoint(checkpoint)[0]
    gains, losses = [], []
    for i in range(len(ds)):
        item = ds[i]
        x, c = item["noisy"], item["clean"]
        with torch.no_grad():
            y = x if model is None else torch.as_tensor(enhance_waveform(model, x)).reshape(-1)[: c.numel()]
            gains.append(20 * np.log10(float(y.pow(2).mean().sqrt() / c.pow(2).mean().sqrt())))
            losses.append(float(loss(spec(y), spec(c))))
    return float(np.mean(gains)), float(np.mean(losses))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--files", type=int, default=12, help="evenly spaced files of the set")
    args = ap.parse_args()
    torch.set_num_threads(1)
    _, l_in = level_and_loss(None, args.devset, args.files)
    for ck in args.checkpoints:
        gain, l_out = level_and_loss(ck, args.devset, args.files)
        print(f"{ck}: output/clean level {gain:+.2f} dB, spectral loss {l_out:.4f} (noisy input {l_in:.4f})")


if __name__ == "__main__":
    main()
