"""What a run trains on: ``training_set(cfg.data, ...)`` gives on-the-fly mixtures
(``data.MixingDataset``) or cropped paired files listed in a ``pairs.csv`` that ``mtakd
make-manifest paired`` wrote (``PairedManifestDataset``).

Kept apart from ``manifests`` (which writes the manifests and needs no torch) so that the
CLI can import ``manifests`` without loading torch.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import load_audio
from .config import DataConfig
from .data import DataError, MixingDataset
from .stft import SAMPLE_RATE


class PairedManifestDataset(Dataset):
    """Noisy/clean pairs of one split of ``root/pairs.csv`` (no directory walk at start).

    ``segment_s`` set (training): item ``i`` is pair ``i``, cropped to ``segment_s`` at an
    offset drawn from ``default_rng([seed, epoch, i])`` (zero-padded if shorter), so items are
    reproducible per (seed, epoch, index) like ``MixingDataset``'s and batch. ``segment_s``
    None (validation): whole files, plus ``"name"``.
    """

    def __init__(self, root: str | os.PathLike, split: str, segment_s: float | None = None, seed: int = 0,
                 max_files: int | None = None):
        self.root, self.split, self.seed, self.epoch = Path(root), split, int(seed), 0
        path = self.root / "pairs.csv"
        if not path.is_file():
            raise DataError(path, "manifest not found", "write it with 'mtakd make-manifest paired'")
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("split") == split]
        if not rows:
            raise DataError(path, f"no pairs for split '{split}'", "re-run make-manifest with --dev-fraction, or set valid.dir")
        self.rows = rows[:max_files] if max_files else rows
        self.n = None if segment_s is None else int(round(segment_s * SAMPLE_RATE))

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict:
        r = self.rows[i]
        noisy, _ = load_audio(self.root / r["noisy"])
        clean, _ = load_audio(self.root / r["clean"])
        if abs(noisy.size - clean.size) > SAMPLE_RATE // 100:
            raise DataError(self.root / r["noisy"], f"{noisy.size} samples but its clean file has {clean.size}", "pairs must have equal length")
        m = min(noisy.size, clean.size)
        noisy, clean = noisy[:m], clean[:m]
        if self.n is None:
            return {"noisy": torch.from_numpy(noisy.copy()), "clean": torch.from_numpy(clean.copy()), "name": Path(r["noisy"]).name}
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        out_n, out_c = np.zeros(self.n, np.float32), np.zeros(self.n, np.float32)
        if m >= self.n:
            s = int(rng.integers(0, m - self.n + 1))
            out_n[:], out_c[:] = noisy[s : s + self.n], clean[s : s + self.n]
        else:
            s = int(rng.integers(0, self.n - m + 1))
            out_n[s : s + m], out_c[s : s + m] = noisy, clean
        return {"noisy": torch.from_numpy(out_n), "clean": torch.from_numpy(out_c)}


def training_set(cfg: DataConfig, split: str, seed: int, length: int | None = None) -> Dataset:
    """The training data of ``cfg.source``: on-the-fly mixtures, or cropped paired files."""
    if cfg.source == "paired":
        if not cfg.root:
            raise DataError("data.root", "data.source=paired needs data.root (a folder with pairs.csv)", "set data.root")
        return PairedManifestDataset(cfg.root, split, segment_s=cfg.segment_s, seed=seed)
    return MixingDataset(cfg, split, seed=seed, length=length, cache_mb=cfg.cache_mb, preload=cfg.preload)
