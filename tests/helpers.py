"""Small helpers shared by test modules (tests/ is on sys.path under pytest)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def read_csv_rows(path: str | Path) -> list[dict]:
    """All rows of a CSV log (steps.csv, epochs.csv, manifests) as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def noise(n: int, seed: int = 0) -> np.ndarray:
    """``n`` samples of seeded white noise at 0.1 rms, float32: a stream test's input."""
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def stream_chunks(streamer, x: np.ndarray, sizes) -> np.ndarray:
    """Feed ``x`` to a streamer in chunks cycling through ``sizes``, then flush; the whole output."""
    outs, i, j = [], 0, 0
    while i < x.size:
        k = int(sizes[j % len(sizes)])
        outs.append(streamer.feed(x[i : i + k]))
        i, j = i + k, j + 1
    return np.concatenate(outs + [streamer.flush()])
