"""Offline whole-utterance enhancement with any registry model: STFT -> mask -> iSTFT.

This is the one offline path; validation, ``evaluate``, ``enhance`` and the whole-utterance
ONNX export all go through ``MaskEnhancer``.
"""
from __future__ import annotations

import torch
from torch import nn

from .stft import STFT, apply_mask


class MaskEnhancer(nn.Module):
    """Wrap a mask model with the STFT: ``forward(wav (B, N)) -> enhanced wav (B, N)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.stft = STFT()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        spec = self.stft(wav)  # (B, 2, T, F)
        return self.stft.inverse(apply_mask(spec, self.model(spec)), wav.shape[-1])


@torch.inference_mode()
def enhance_waveform(model: nn.Module, wav: torch.Tensor) -> torch.Tensor:
    """Enhance ``wav`` ``(N,)`` or ``(B, N)`` at 16 kHz; returns the same shape."""
    squeeze = wav.dim() == 1
    x = wav.unsqueeze(0) if squeeze else wav
    if x.dim() != 2:
        raise ValueError(f"expected a waveform (samples,) or (batch, samples), got shape {tuple(wav.shape)}")
    was_training = model.training
    model.eval()
    y = MaskEnhancer(model).to(x.device)(x.float())
    model.train(was_training)
    return y[0] if squeeze else y
