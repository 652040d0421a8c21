"""Can the trade between speech distortion and residual noise be moved after training?

A mask model's trade is one operating point, set in training (docs/results_cpu_ramp_notes.md).
This raises each unit's mask magnitude to a power ``beta`` at inference, keeping its phase:
``M' = M |M|^(beta - 1)``. ``beta > 1`` suppresses more where the mask is already low
(noise-dominated units) and changes little where it is near 1; ``beta < 1`` suppresses less.
Per input SNR of a dev set (its manifest): the mean SI-SDRi (dB) and, unless ``--no-pesq``,
PESQ-WB of each model at each ``beta``. ``--adaptive BMAX,LO,HI`` chooses ``beta`` per utterance
instead, from the SNR the model's own output implies, ``10 log10(sum |M Y|^2 / sum |Y - M Y|^2)``
(what it keeps over what it removes): ``BMAX`` at or below ``LO`` dB, 1 at or above ``HI``, linear
between. It is not causal (one value per utterance): a test of whether a per-input choice pays::

    PYTHONPATH=src python benchmarks/mask_power.py --devset data/devset \
        --model h=runs/cpu23/complex/h_mtakd_tf_sisdr_s0/best.safetensors \
        --beta 1 --beta 1.3 --beta 1.6 --beta 2 [--adaptive 2,0,10] [--out docs/mask_power.md]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from bench_common import devset_snrs, emit, model_args, models_on_files
from mtakd.metrics import pesq_wb, si_sdr
from mtakd.stft import STFT, apply_mask


Setting = float | tuple  # a fixed beta, or (beta_max, lo dB, hi dB) for the per-utterance choice


def powered(mask: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """``mask (B, 2, T, F)`` with each unit's magnitude raised to ``beta`` (a number, or one per
    utterance ``(B,)``), its phase kept."""
    mag = torch.sqrt(mask[:, 0] ** 2 + mask[:, 1] ** 2).clamp_min(1e-12)
    b = torch.as_tensor(beta, dtype=mask.dtype).reshape(-1, 1, 1)
    return mask * (mag ** (b - 1.0)).unsqueeze(1)


def adaptive_beta(spec: torch.Tensor, mask: torch.Tensor, beta_max: float, lo: float, hi: float) -> torch.Tensor:
    """One beta per utterance ``(B,)`` from the SNR the mask implies: kept power over removed power."""
    est = apply_mask(spec, mask)
    kept = (est ** 2).sum(dim=(1, 2, 3))
    removed = ((spec - est) ** 2).sum(dim=(1, 2, 3))
    snr = 10.0 * torch.log10((kept + 1e-12) / (removed + 1e-12))
    return 1.0 + (beta_max - 1.0) * ((hi - snr) / (hi - lo)).clamp(0.0, 1.0)


def label(setting: Setting) -> str:
    return f"{setting:g}" if not isinstance(setting, tuple) else "adaptive {:g} at <= {:g} dB, 1 at >= {:g} dB".format(*setting)


@torch.inference_mode()
def scores(model: torch.nn.Module, stft: STFT, clean: np.ndarray, noisy: np.ndarray, betas: list[Setting],
           with_pesq: bool = True) -> list[tuple[float, float]]:
    """For one file: ``[(SI-SDRi dB, PESQ-WB or nan) per setting]``; the mask is computed once."""
    y = torch.from_numpy(np.asarray(noisy, dtype=np.float32))[None]
    spec = stft(y)
    mask = model(spec)
    base = si_sdr(clean, noisy)
    out = []
    for b in betas:
        beta = adaptive_beta(spec, mask, *b) if isinstance(b, tuple) else b
        est = stft.inverse(apply_mask(spec, powered(mask, beta)), y.shape[-1])[0].numpy()
        out.append((si_sdr(clean, est) - base, pesq_wb(clean, est) if with_pesq else float("nan")))
    return out


def run(devset: Path, models: dict[str, Path], betas: list[Setting], with_pesq: bool = True,
        max_files: int | None = None) -> dict[str, dict[float | None, list[list[tuple[float, float]]]]]:
    """``{model: {input snr: [per file: [(SI-SDRi, PESQ-WB) per beta]]}}``."""
    snr = devset_snrs(devset)
    items, stft, loaded = models_on_files(devset, models, max_files)
    out = {}
    for name, model in loaded:
        per: dict = defaultdict(list)
        for it in items:
            per[snr[it["name"]]].append(scores(model, stft, it["clean"], it["noisy"], betas, with_pesq))
        out[name] = dict(per)
    return out


def table(res: dict, betas: list[Setting], with_pesq: bool = True) -> str:
    snrs = sorted(k for k in next(iter(res.values())) if k is not None)
    cols = [f"{s:+g} dB" for s in snrs] + ["all"]
    what = "PESQ-WB / SI-SDRi dB" if with_pesq else "SI-SDRi dB"
    lines = [f"{what} with the mask magnitude raised to beta at inference, mean over files per input SNR:", "",
             "| model | beta | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for name, per in res.items():
        groups = [per[s] for s in snrs] + [[f for v in per.values() for f in v]]
        for j, b in enumerate(betas):
            cells = []
            for g in groups:
                a = np.array([f[j] for f in g])  # (files, 2)
                cells.append(f"{a[:, 1].mean():.3f} / {a[:, 0].mean():+.2f}" if with_pesq else f"{a[:, 0].mean():+.2f}")
            lines.append(f"| {name} | {label(b)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _adaptive(text: str) -> tuple[float, float, float]:
    try:
        bmax, lo, hi = (float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected BMAX,LO,HI such as 2,0,10, got '{text}'") from None
    if not (bmax > 0 and lo < hi):
        raise argparse.ArgumentTypeError(f"--adaptive {text}: needs BMAX > 0 and LO < HI")
    return bmax, lo, hi


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", type=Path, required=True, help="folder with clean/ and noisy/ (and manifest.csv)")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=CKPT", help="a checkpoint (repeat)")
    ap.add_argument("--beta", type=float, action="append", help="a mask power (repeat; default 1, 1.5, 2)")
    ap.add_argument("--adaptive", type=_adaptive, action="append", default=[], metavar="BMAX,LO,HI",
                    help="also a per-utterance beta from the output's implied SNR (repeat), e.g. 2,0,10")
    ap.add_argument("--no-pesq", action="store_true", help="SI-SDRi only (PESQ-WB takes most of the time)")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    a = ap.parse_args(argv)
    if any(not b > 0 for b in a.beta or []):
        ap.error(f"--beta must be > 0, got {', '.join(f'{b:g}' for b in a.beta)}")
    betas = (a.beta or [1.0, 1.5, 2.0]) + a.adaptive
    models = model_args(ap, a.model, a.devset)
    torch.set_num_threads(1)
    emit(table(run(a.devset, models, betas, not a.no_pesq, a.max_files), betas, not a.no_pesq), a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
