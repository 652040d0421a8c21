"""What does a complex mask's phase do? Per checkpoint: its cost in SI-SDR and the worst bin.

A student that reads magnitudes only cannot estimate the phase of the clean speech, so the
phase of its complex mask should stay near 0. This diagnostic checks that on real files:

* **phase gain** (dB): SI-SDR of the output with the full complex mask minus SI-SDR with the
  mask's magnitude alone (phase set to 0), mean and worst over files. Near 0 for a healthy
  magnitude-input student; strongly negative when the mask is stuck rotated;
* **worst bin**: the bin where the rotation costs most output energy, ``sum_t |M X|^2 (1 -
  cos angle M)`` (a low bin with little speech may have large angles that cost nothing), its
  mean ``|angle M|`` weighted by that output energy, in degrees, and the share of its frames
  where ``|M| > 0.99`` (saturated: the bounded mask's tanh is flat there, so the magnitude
  loss has no gradient).

A student with ``model.args.mask=real`` has no phase: its rows say so. Files are evenly spaced
over the set (``--max-files``)::

    PYTHONPATH=src python benchmarks/mask_phase.py --devset data/devset --max-files 20 \
        runs/cpu12/a_none_s*/best.safetensors src/mtakd/pretrained/student.safetensors [--out FILE.md]
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from bench_common import emit
from mtakd.checkpoint import load_model
from mtakd.data import PairedDataset
from mtakd.metrics import si_sdr
from mtakd.stft import STFT, apply_mask

SATURATED = 0.99  # |M| above this: tanh(|raw|) with |raw| > 2.6, its slope below 0.02


@dataclass
class PhaseReport:
    name: str
    mask: str  # "complex", or "real" / "tanh" (one real gain per bin, no phase)
    si_sdr_i: float  # mean SI-SDRi of the output (complex mask as trained), dB
    phase_gain: float  # mean SI-SDR(complex mask) - SI-SDR(|mask|), dB
    worst_file_gain: float  # the smallest of those, dB
    worst_bin: int  # -1 for a real mask
    worst_bin_deg: float  # its mean |angle|, weighted by output energy, degrees
    worst_bin_saturated: float  # share of its frames with |M| > SATURATED


def _magnitude_only(mask: torch.Tensor) -> torch.Tensor:
    """``(B, 2, T, F)`` complex mask -> the real mask of its magnitude (phase 0)."""
    mag = mask.pow(2).sum(1, keepdim=True).sqrt()
    return torch.cat((mag, torch.zeros_like(mag)), dim=1)


@torch.inference_mode()
def inspect(name: str, model: torch.nn.Module, items: list[dict], stft: STFT) -> PhaseReport:
    """Score one model on ``items`` (``{"clean", "noisy"}`` waveforms, same length). A student
    with look-ahead works too: its ``forward`` pads the last frames' look-ahead."""
    kind = getattr(getattr(model, "cfg", None), "mask", "complex")
    gains, improvements = [], []
    cost = ang_num = ang_den = sat_per_bin = 0.0
    frames = 0
    for it in items:
        clean, noisy = np.asarray(it["clean"], np.float32), np.asarray(it["noisy"], np.float32)
        spec = stft(torch.from_numpy(noisy)[None])  # (1, 2, T, F)
        mask = model(spec)
        out = stft.inverse(apply_mask(spec, mask), noisy.size)[0].numpy()
        full = si_sdr(clean, out)
        improvements.append(full - si_sdr(clean, noisy))
        if kind != "complex":
            continue
        mag_only = stft.inverse(apply_mask(spec, _magnitude_only(mask)), noisy.size)[0].numpy()
        gains.append(full - si_sdr(clean, mag_only))
        gain2 = mask[0].pow(2).sum(0)  # (T, F) |M|^2
        energy = spec.pow(2).sum(1)[0] * gain2  # (T, F) output power |M X|^2
        angle = torch.atan2(mask[0, 1], mask[0, 0]).abs()  # (T, F)
        cost = cost + (energy * (1 - torch.cos(angle))).sum(0)
        ang_num = ang_num + (angle * energy).sum(0)
        ang_den = ang_den + energy.sum(0)
        sat_per_bin = sat_per_bin + (gain2.sqrt() > SATURATED).float().sum(0)
        frames += spec.shape[2]
    if kind != "complex":
        return PhaseReport(name, kind, float(np.mean(improvements)), 0.0, 0.0, -1, 0.0, 0.0)
    # DC and Nyquist are real in every spectrum: a rotation there is discarded by the iSTFT
    b = int(cost[1:-1].argmax()) + 1
    angle_b = (ang_num[b] / ang_den[b].clamp_min(1e-12)).item()
    return PhaseReport(name, kind, float(np.mean(improvements)), float(np.mean(gains)), float(np.min(gains)), b,
                       float(np.degrees(angle_b)), sat_per_bin[b].item() / frames)


def table(reports: list[PhaseReport], hz_per_bin: float) -> str:
    lines = ["| checkpoint | mask | SI-SDRi dB | phase gain dB (mean / worst file) | worst bin | its angle | "
             "its frames saturated |", "|---|---|---|---|---|---|---|"]
    for r in reports:
        if r.mask != "complex":
            lines.append(f"| {r.name} | {r.mask} | {r.si_sdr_i:.2f} | 0 (no phase) | - | - | - |")
        else:
            lines.append(f"| {r.name} | complex | {r.si_sdr_i:.2f} | {r.phase_gain:+.2f} / {r.worst_file_gain:+.2f} | "
                         f"{r.worst_bin} ({r.worst_bin * hz_per_bin:.0f} Hz) | {r.worst_bin_deg:.0f} deg | "
                         f"{100 * r.worst_bin_saturated:.0f} % |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path, help="student checkpoints (.safetensors)")
    ap.add_argument("--devset", type=Path, required=True, help="folder with clean/ and noisy/ (mtakd build-devset)")
    ap.add_argument("--max-files", type=int, default=20, help="evenly spaced files of the set (default 20)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    for c in a.checkpoints:
        if not c.is_file():
            ap.error(f"{c}: checkpoint not found")
    if not (a.devset / "clean").is_dir() or not (a.devset / "noisy").is_dir():
        ap.error(f"{a.devset}: no clean/ and noisy/ folders of paired files")
    pairs = PairedDataset(a.devset, a.max_files)
    items = [pairs[i] for i in range(len(pairs))]
    stft = STFT()
    reports = []
    for c in a.checkpoints:
        model = load_model(c).eval()
        if type(model).__name__ != "Student":
            ap.error(f"{c}: a {type(model).__name__}, not a student; this diagnostic reads a student's mask")
        name = str(c.parent if c.name == "best.safetensors" else c.with_suffix(""))  # run folders share run names
        reports.append(inspect(name, model, items, stft))
    text = (f"{len(items)} files of {a.devset}; phase gain = SI-SDR with the complex mask minus with its "
            f"magnitude alone\n\n" + table(reports, 16000 / (2 * (stft.n_freq - 1))))
    emit(text, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
