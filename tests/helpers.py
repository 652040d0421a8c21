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


def warm_started_trainer(init, run_dir, model_args: str, *extra: str):
    """A tiny synthetic-data student run warm-started from checkpoint ``init`` (not yet fitted);
    ``model_args`` is the YAML of ``model.args``, e.g. ``{input_size: 8, hidden: 8, layers: 1}``."""
    from mtakd.config import TrainConfig, load_config
    from mtakd.train import Trainer

    cfg = load_config(TrainConfig, None, [
        "data.source=synthetic", "data.segment_s=1.0", "data.items_per_epoch=16", "optim.batch_size=8",
        "optim.epochs=1", "valid.synthetic_items=2", "threads=1", "device=cpu", f"run_dir={run_dir}",
        "model.name=student", f"model.args={model_args}", f"init={init}", *extra])
    return Trainer(cfg, progress=False)
