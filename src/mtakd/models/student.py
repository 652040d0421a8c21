"""The compact causal student: compressed magnitude -> 2 GRU layers -> complex ratio mask.

With ``phase_input`` the input is the compressed magnitude *and* the compressed complex
spectrum (real, imag) of each bin, ``3F`` features instead of ``F`` (about +21 k parameters
and +2 M MAC/s at the default size): the mask is complex, and its phase part cannot be
learned from magnitudes alone.

Causal by construction (GRUs run forward in time, every other layer is per frame), so it
streams frame by frame with ``step(frame, state)``; ``forward`` over a whole utterance and
``step`` over its frames are the same computation (tested). The default size is ~143 k
parameters and ~14 M MAC/s, a small fraction of the teacher.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..stft import N_FREQ
from .common import bounded_mask, check_spec, compressed_complex, compressed_magnitude


@dataclass
class StudentConfig:
    n_freq: int = N_FREQ
    input_size: int = 64
    hidden: int = 96
    layers: int = 2
    mask_bound: float = 1.0
    #: also feed the compressed complex spectrum (real, imag), not only the magnitude
    phase_input: bool = False


class Student(nn.Module):
    """``forward(spec (B,2,T,F)) -> mask (B,2,T,F)``; ``step(frame (B,2,F), state (L,B,H))``;
    ``steps(spec (B,2,T,F), state)`` for several frames of a stream at once."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.cfg = cfg
        self.fc_in = nn.Linear((3 if cfg.phase_input else 1) * cfg.n_freq, cfg.input_size)
        self.act = nn.PReLU()
        self.gru = nn.GRU(cfg.input_size, cfg.hidden, num_layers=cfg.layers, batch_first=True)
        self.fc_out = nn.Linear(cfg.hidden, 2 * cfg.n_freq)
        self.hidden_size = cfg.hidden

    def initial_state(self, batch: int = 1) -> torch.Tensor:
        """Zero recurrent state ``(layers, batch, hidden)``."""
        return torch.zeros(self.cfg.layers, batch, self.cfg.hidden)

    def _features(self, spec: torch.Tensor) -> torch.Tensor:
        """``(B, 2, T, F)`` -> ``(B, T, F or 3F)``; ``(B, 2, F)`` -> ``(B, F or 3F)``."""
        mag = compressed_magnitude(spec)
        if not self.cfg.phase_input:
            return mag
        c = compressed_complex(spec)
        if spec.dim() == 4:  # (B, 2, T, F) -> (B, T, 2F): real bins, then imag bins
            c = c.transpose(1, 2).flatten(2)
        else:
            c = c.flatten(1)
        return torch.cat([mag, c], dim=-1)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        # h (..., H) -> mask (..., 2, F)
        raw = self.fc_out(h).unflatten(-1, (2, self.cfg.n_freq))
        return bounded_mask(raw, self.cfg.mask_bound, ch=-2)

    def _run(self, spec: torch.Tensor, state: torch.Tensor | None):
        """``spec (B,2,T,F)``, ``state (L,B,H)`` or None (zeros) -> mask ``(B,2,T,F)``,
        hidden ``(B,T,H)``, new state ``(L,B,H)``."""
        check_spec(spec, self.cfg.n_freq, "Student")
        x = self.act(self.fc_in(self._features(spec)))  # (B, T, I)
        h, state = self.gru(x, state)  # (B, T, H), (L, B, H)
        return self._head(h).transpose(1, 2), h, state  # (B, T, 2, F) -> (B, 2, T, F)

    def forward(self, spec: torch.Tensor, return_hidden: bool = False):
        """``spec (B,2,T,F)`` -> ``mask (B,2,T,F)`` (and hidden ``(B,T,H)`` if asked)."""
        mask, h, _ = self._run(spec, None)
        return (mask, h) if return_hidden else mask

    def steps(self, spec: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``T`` consecutive frames at once: ``spec (B,2,T,F)``, ``state (L,B,H)`` -> ``mask
        (B,2,T,F)``, new state. The same arithmetic as ``T`` calls of ``step``, but the GRU runs
        its own loop over the frames: a streamer handed a long chunk pays one call, not ``T``
        (per call, not arithmetic, is what a frame costs in PyTorch)."""
        if state.shape != (self.cfg.layers, spec.shape[0], self.cfg.hidden):
            raise ValueError(f"Student.steps expects a state ({self.cfg.layers}, batch, {self.cfg.hidden}), got {tuple(state.shape)}")
        mask, _, state = self._run(spec, state)
        return mask, state

    def step(self, frame: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One frame: ``frame (B,2,F)``, ``state (L,B,H)`` -> ``mask (B,2,F)``, new state."""
        if frame.dim() != 3 or frame.shape[1] != 2 or frame.shape[-1] != self.cfg.n_freq:
            raise ValueError(f"Student.step expects a frame (batch, 2, {self.cfg.n_freq}), got {tuple(frame.shape)}")
        x = self.act(self.fc_in(self._features(frame)))  # (B, I)
        h, state = self.gru(x.unsqueeze(1), state)  # (B, 1, H)
        return self._head(h[:, 0]), state
