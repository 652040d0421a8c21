"""Pieces shared by the teacher and the student: input features and the bounded mask.

Both models see the same spectrum ``(B, 2, T, F)`` and emit the same complex ratio mask
``(B, 2, T, F)``, so the student's output can be distilled from the teacher's directly.
"""
from __future__ import annotations

import torch

#: power-law compression of magnitudes used as model input (level-robust, cheap)
FEATURE_POWER = 0.3
#: added to |X|^2 before compression (finite gradient, and silence maps to a fixed feature)
FEATURE_EPS = 1e-10
#: added to |raw|^2 inside the mask's magnitude (no 0/0 when the raw mask is exactly zero)
MASK_EPS = 1e-10


def compressed_magnitude(spec: torch.Tensor, power: float = FEATURE_POWER) -> torch.Tensor:
    """``(..., 2, F)`` or ``(B, 2, T, F)`` -> compressed magnitude with the channel dim removed."""
    ch = -3 if spec.dim() == 4 else -2
    return ((spec * spec).sum(ch) + FEATURE_EPS) ** (0.5 * power)  # one Mul + ReduceSum in ONNX


def compressed_complex(spec: torch.Tensor, power: float = FEATURE_POWER) -> torch.Tensor:
    """``(..., 2, F)`` or ``(B, 2, T, F)`` -> ``|X|^power e^{j angle X}`` as real/imag, same shape.

    The phase-carrying input of a student with ``phase_input``: the magnitude alone says
    nothing about the phase its complex mask has to correct.
    """
    ch = -3 if spec.dim() == 4 else -2
    return spec * ((spec * spec).sum(ch, keepdim=True) + FEATURE_EPS) ** (0.5 * (power - 1.0))


def bounded_mask(raw: torch.Tensor, bound: float = 1.0, ch: int = -3) -> torch.Tensor:
    """Complex mask whose magnitude is ``bound * tanh(|raw|)``, direction of ``raw`` kept.

    Bounding the magnitude (DCCRN's "E" mask) keeps the estimate stable early in training
    and makes the mask a suppressor (|M| < bound) as denoising needs.
    """
    mag = torch.sqrt((raw * raw).sum(ch, keepdim=True) + MASK_EPS)
    return raw * (bound * torch.tanh(mag) / mag)


def check_spec(spec: torch.Tensor, n_freq: int, who: str) -> None:
    if spec.dim() != 4 or spec.shape[1] != 2 or spec.shape[-1] != n_freq:
        raise ValueError(f"{who} expects a spectrum (batch, 2, frames, {n_freq}), got shape {tuple(spec.shape)}")
