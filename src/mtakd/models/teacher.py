"""The high-capacity teacher: compressed complex + magnitude features -> deep (Bi)LSTM -> mask.

It may look ahead (bidirectional by default): it runs offline, once per training batch, to
give the student a target that is easier to imitate than the clean speech and that
carries the teacher's knowledge of which units can be recovered. Default ~4.6 M parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..stft import N_FREQ
from .common import FEATURE_POWER, bounded_mask, check_spec, compressed_magnitude


@dataclass
class TeacherConfig:
    n_freq: int = N_FREQ
    input_size: int = 256
    hidden: int = 256
    layers: int = 3
    bidirectional: bool = True
    dropout: float = 0.0
    mask_bound: float = 1.0


class Teacher(nn.Module):
    """``forward(spec (B,2,T,F)) -> mask (B,2,T,F)`` (and hidden ``(B,T,H*dirs)`` on request)."""

    def __init__(self, cfg: TeacherConfig):
        super().__init__()
        self.cfg = cfg
        self.fc_in = nn.Linear(3 * cfg.n_freq, cfg.input_size)
        self.norm = nn.LayerNorm(cfg.input_size)
        self.act = nn.PReLU()
        self.lstm = nn.LSTM(
            cfg.input_size, cfg.hidden, num_layers=cfg.layers, batch_first=True,
            bidirectional=cfg.bidirectional, dropout=cfg.dropout if cfg.layers > 1 else 0.0,
        )
        out = cfg.hidden * (2 if cfg.bidirectional else 1)
        self.fc_out = nn.Linear(out, 2 * cfg.n_freq)
        self.hidden_size = out

    def forward(self, spec: torch.Tensor, return_hidden: bool = False):
        check_spec(spec, self.cfg.n_freq, "Teacher")
        mag = compressed_magnitude(spec)  # (B, T, F)
        # compressed complex spectrum: lets the teacher see phase, which the student does not need
        cplx = spec * (mag ** ((FEATURE_POWER - 1.0) / FEATURE_POWER)).unsqueeze(1)  # (B, 2, T, F)
        feats = torch.cat((mag, cplx[:, 0], cplx[:, 1]), dim=-1)  # (B, T, 3F)
        x = self.act(self.norm(self.fc_in(feats)))
        h, _ = self.lstm(x)  # (B, T, H*dirs)
        raw = self.fc_out(h).unflatten(-1, (2, self.cfg.n_freq)).transpose(1, 2)  # (B, 2, T, F)
        mask = bounded_mask(raw, self.cfg.mask_bound, ch=1)
        return (mask, h) if return_hidden else mask
