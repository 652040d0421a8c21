"""Figures of ``benchmarks/results.py``: the learned uncertainty weights over training and a
spectrogram comparison (noisy / teacher / student / clean) of one dev file.

Both write a PNG and return True, or return False (nothing written) when there is nothing to
plot. matplotlib runs headless (Agg).
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_weights(steps_csv: Path) -> dict[str, np.ndarray] | None:
    """``step``, ``w_sup``, ``w_kd`` columns of a run's steps.csv, or None (no such columns:
    not an mtakd run)."""
    if not steps_csv.is_file():
        return None
    with open(steps_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "w_sup" not in rows[0] or "w_kd" not in rows[0]:
        return None

    def col(k: str) -> np.ndarray:
        return np.asarray([float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows])

    return {"step": col("step"), "w_sup": col("w_sup"), "w_kd": col("w_kd")}


def weights_figure(variants: dict[str, dict[int | None, Path]], out_png: Path) -> dict[str, dict]:
    """One panel per variant whose runs log uncertainty weights; per seed one colour, w_sup
    solid and w_kd dashed, over training steps (log scale). Returns ``{variant: {seed: last
    (w_sup, w_kd)}}`` of what was plotted (empty: no figure written)."""
    data = {v: {s: w for s, run in seeds.items() if (w := read_weights(run / "steps.csv")) is not None}
            for v, seeds in variants.items()}
    data = {v: d for v, d in data.items() if d}
    if not data:
        return {}
    plt = _plt()
    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 3.6), squeeze=False, sharey=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    last: dict[str, dict] = {}
    for ax, (v, seeds) in zip(axes[0], data.items()):
        last[v] = {}
        for i, (s, w) in enumerate(seeds.items()):
            c = colours[i % len(colours)]
            tag = "run" if s is None else f"seed {s}"
            ax.plot(w["step"], w["w_sup"], color=c, lw=1.3, label=f"w_sup ({tag})")
            ax.plot(w["step"], w["w_kd"], color=c, lw=1.3, ls="--", label=f"w_kd ({tag})")
            last[v][s] = (float(w["w_sup"][-1]), float(w["w_kd"][-1]))
        ax.set_yscale("log")
        ax.set_title(v)
        ax.set_xlabel("training step")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    axes[0][0].set_ylabel("task weight  w = 0.5 exp(-log sigma^2)")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return last


def _db_spectrogram(stft, wav) -> np.ndarray:
    """|STFT|^2 in dB, ``(F, T)``, with mtakd's own STFT module."""
    import torch

    from mtakd.stft import magnitude

    with torch.no_grad():
        spec = stft(wav.reshape(1, -1).float())
    return (20.0 * torch.log10(magnitude(spec, eps=1e-12)[0])).T.numpy()


def spectrogram_figure(devset: Path, name: str, teacher_ckpt: Path, student_ckpt: Path, out_png: Path,
                       labels: tuple[str, str] = ("teacher", "student"), scores: dict[str, str] | None = None) -> None:
    """Noisy / teacher / student / clean spectrograms of ``devset/{noisy,clean}/name``.

    ``scores``: optional per-panel caption suffix (e.g. "PESQ 1.52, SI-SDR 6.1 dB") keyed by
    ``noisy``, ``teacher``, ``student``.
    """
    import torch

    from mtakd.audio import load_audio
    from mtakd.checkpoint import load_model
    from mtakd.inference import enhance_waveform
    from mtakd.stft import HOP, SAMPLE_RATE, STFT

    noisy = torch.from_numpy(load_audio(devset / "noisy" / name)[0].copy())
    clean = torch.from_numpy(load_audio(devset / "clean" / name)[0].copy())
    m = min(noisy.numel(), clean.numel())
    noisy, clean = noisy[:m], clean[:m]
    panels = [("noisy", noisy),
              (labels[0], enhance_waveform(load_model(teacher_ckpt), noisy)),
              (labels[1], enhance_waveform(load_model(student_ckpt), noisy)),
              ("clean", clean)]
    keys = ["noisy", "teacher", "student", "clean"]
    stft = STFT()
    specs = [_db_spectrogram(stft, w) for _, w in panels]
    top = max(float(np.max(s)) for s in specs)
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.0 * len(panels)), sharex=True)
    extent = (0.0, specs[0].shape[1] * HOP / SAMPLE_RATE, 0.0, SAMPLE_RATE / 2000.0)
    for ax, key, (label, _), s in zip(axes, keys, panels, specs):
        im = ax.imshow(s, origin="lower", aspect="auto", extent=extent, vmin=top - 80.0, vmax=top, cmap="magma")
        extra = (scores or {}).get(key)
        ax.set_title(f"{label}" + (f"  ({extra})" if extra else ""), fontsize=9, loc="left")
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("time s")
    fig.colorbar(im, ax=list(axes), label="dB", shrink=0.6)
    fig.suptitle(f"dev file {name}", fontsize=10)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=80, bbox_inches="tight")  # 80 dpi: noise-like images compress badly
    plt.close(fig)
