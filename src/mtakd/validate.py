"""Per-epoch validation: enhance a fixed set of utterances, report PESQ-WB and SI-SDR.

The set is fixed for the whole run (a paired folder, or mixtures drawn at epoch 0 with
their own seed), so epochs are compared on identical inputs.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .data import MixingDataset, PairedDataset
from .inference import enhance_waveform
from .metrics import pesq_wb, si_sdr


def validation_items(cfg: TrainConfig) -> list[dict[str, Any]]:
    """The fixed validation utterances ``[{"noisy": (N,), "clean": (N,)}, ...]``."""
    if cfg.valid.dir:
        ds = PairedDataset(cfg.valid.dir, max_files=cfg.valid.max_files)
    elif cfg.data.source == "paired":  # the dev rows of the corpus's pairs.csv
        from .training_data import PairedManifestDataset

        ds = PairedManifestDataset(cfg.data.root, "dev", max_files=cfg.valid.max_files)
    else:
        ds = MixingDataset(cfg.data, "dev", seed=cfg.seed + 1000, length=cfg.valid.synthetic_items)
        ds.set_epoch(0)
    return [ds[i] for i in range(len(ds))]


def validate(model: nn.Module, items: list[dict[str, Any]]) -> dict[str, float]:
    """Mean PESQ-WB (NaN-robust) and SI-SDR of ``model`` over ``items``."""
    pesqs, sdrs = [], []
    for item in items:
        est = enhance_waveform(model, item["noisy"]).numpy()
        ref = item["clean"].numpy() if isinstance(item["clean"], torch.Tensor) else np.asarray(item["clean"])
        pesqs.append(pesq_wb(ref, est))
        sdrs.append(si_sdr(ref, est))
    finite = [p for p in pesqs if math.isfinite(p)]
    return {
        "val_pesq": float(np.mean(finite)) if finite else float("nan"),
        "val_si_sdr": float(np.mean(sdrs)) if sdrs else float("nan"),
    }


#: values of ``valid.select``: which epoch ``best.safetensors`` keeps
SELECT_MODES = ("pesq", "si_sdr", "last")


def selection_score(val: dict[str, float], select: str, epoch: int) -> float:
    """The number ``best.safetensors`` maximises over epochs (higher is better).

    ``val`` is one epoch's ``validate`` result; ``epoch`` counts from 1, so ``last`` makes every
    epoch the new best. ``pesq`` falls back to SI-SDR / 10 where PESQ is not finite (e.g. silent
    validation audio), as before ``select`` existed."""
    if select == "last":
        return float(epoch)
    if select == "si_sdr":
        return val["val_si_sdr"]
    if select == "pesq":
        return val["val_pesq"] if math.isfinite(val["val_pesq"]) else val["val_si_sdr"] / 10
    raise ValueError(f"valid.select must be one of {', '.join(SELECT_MODES)}, got '{select}'")
