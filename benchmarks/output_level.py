"""Output level and compressed-spectrum loss of models on a paired set: catches level errors
that PESQ, STOI and SI-SDR cannot see (all three ignore the output's scale).

    python benchmarks/output_level.py --devset data/devset --files 12 runs/gpu/teacher/best.safetensors ...

Prints, per checkpoint, the mean and spread of 20 log10(rms(output) / rms(clean)) and the
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--files", type=int, default=12, help="evenly spaced files of the set")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ds, stft, loss = PairedDataset(args.devset, max_files=args.files), STFT(), CompressedSpectralLoss()
    spec = lambda w: stft(w.reshape(1, -1))  # noqa: E731
    for ck in args.checkpoints:
        model = load_checkpoint(ck)[0]
        gains, l_out, l_in = [], [], []
        for i in range(len(ds)):
            item = ds[i]
            x, c = item["noisy"], item["clean"]
            with torch.no_grad():
                y = torch.as_tensor(enhance_waveform(model, x)).reshape(-1)[: c.numel()]
                gains.append(20 * np.log10(float(y.pow(2).mean().sqrt() / c.pow(2).mean().sqrt())))
                l_out.append(float(loss(spec(y), spec(c))))
                l_in.append(float(loss(spec(x), spec(c))))
        print(f"{ck}: output/clean level {np.mean(gains):+.2f} dB (sd {np.std(gains):.2f}), "
              f"spectral loss {np.mean(l_out):.4f} (noisy input {np.mean(l_in):.4f})")


if __name__ == "__main__":
    main()
