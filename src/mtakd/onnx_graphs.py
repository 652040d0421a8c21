"""The graphs that ``mtakd.export`` hands to the ONNX exporter (torch at import time; the
export module imports this lazily so that ``mtakd --help`` does not load torch)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F_

from .models import model_lookahead
from .stft import HOP, N_FFT, STFT, apply_mask


class StepGraph(nn.Module):
    """Per-hop pipeline, ``hops`` (K) consecutive frames per call:
    ``forward(frame (K, N_FFT), state (L,1,H)) -> (out (K, N_FFT), state)``; a model with
    look-ahead (``cfg.lookahead = A > 0``) also takes and returns the last ``A`` spectra
    ``ahead (A, 2, F)`` (a stream's first ``A`` spectra to begin with: the runtime's
    ``prefill``), and ``out`` holds the synthesis frames of the
    frames ``A`` hops earlier (see ``streaming.TorchStepProcessor``).

    The reference every step export is verified against, and the graph traced for causal
    models that ``onnx_step`` does not write by hand (the K steps are unrolled in the trace).
    """

    def __init__(self, model: nn.Module, hops: int = 1):
        super().__init__()
        self.model, self.stft, self.hops = model, STFT(), int(hops)
        self.lookahead = model_lookahead(model)

    def initial_states(self) -> tuple[torch.Tensor, ...]:
        """The zero states ``forward`` starts from: ``(state,)`` or ``(state, ahead)``."""
        st = self.model.initial_state(1)
        A = self.lookahead
        return (st, torch.zeros(A, 2, self.stft.n_freq)) if A else (st,)

    def forward(self, frame: torch.Tensor, state: torch.Tensor, ahead: torch.Tensor | None = None):
        spec = self.stft.analyze_frame(frame)  # (K, 2, F)
        A = self.lookahead
        if A:
            spec = torch.cat((ahead, spec))  # (A + K, 2, F): frame k is masked with k+1..k+A
        if self.hops == 1 and not A:  # (the graph traced before multi-hop graphs existed, unchanged)
            mask, state = self.model.step(spec, state)
        else:
            masks = []
            for k in range(self.hops):  # the recurrence is sequential; the DFTs are batched
                window = spec[k : k + A + 1].transpose(0, 1).unsqueeze(0) if A else spec[k : k + 1]
                m, state = self.model.step(window, state)
                masks.append(m)
            mask = torch.cat(masks)
        out = self.stft.synthesize_frame(apply_mask(spec[: self.hops], mask))
        return (out, state, spec[self.hops :]) if A else (out, state)


class OfflineGraph(nn.Module):
    """Export-friendly ``MaskEnhancer``: ``forward(wav (B, N)) -> (B, N)``, same numbers."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.stft = model, STFT()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        n = wav.shape[-1]
        t = (n + HOP - 1) // HOP + 1  # STFT.num_frames
        x = F_.pad(wav, (N_FFT - HOP, t * HOP - n))  # (B, (t+1)*HOP)
        hops = x.reshape(x.shape[0], t + 1, HOP)
        frames = torch.cat((hops[:, :-1], hops[:, 1:]), dim=-1)  # (B, t, N_FFT)
        spec = self.stft.analyze_frame(frames).transpose(1, 2)  # (B, 2, t, F)
        return self.stft.inverse(apply_mask(spec, self.model(spec)), n)
