"""The one STFT/iSTFT of mtakd, used by models, losses, enhancement, streaming and export.

Constants (16 kHz): 20 ms window (``N_FFT = 320``), 10 ms hop (``HOP = 160``), periodic
sqrt-Hann analysis and synthesis windows (their product sums to exactly 1 at 50 % overlap,
so overlap-add reconstructs perfectly without a normalisation step), ``N_FREQ = 161`` bins.

Why matrices instead of ``torch.stft``: the DFT is written as a matmul with fixed cosine/sine
matrices (buffers, not parameters) so that the very same code runs frame by frame in the
streaming ``step``, exports to ONNX (which has no complex tensors), and is bit-identical
between the offline and the streaming path.

Framing is causal: frame ``t`` covers input samples ``[t*HOP - (N_FFT-HOP), t*HOP + HOP)``
(the signal is left-padded with ``N_FFT - HOP`` zeros), so a frame never needs a sample
later than the end of its own hop. Algorithmic latency of a causal model on this STFT is one
window, 20 ms (the last sample of a hop must arrive, then one hop of overlap-add completes);
counted as window + hop + look-ahead it is 30 ms, within the 40 ms budget.

Spectra are real tensors shaped ``(B, 2, T, F)``: channel 0 real, channel 1 imaginary.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F_

from .stft_np import HOP, N_FFT, N_FREQ, SAMPLE_RATE, dft_matrices  # noqa: F401  (re-exported)


#: latency of a causal model on this STFT, in samples and milliseconds (see module docstring)
ALGORITHMIC_LATENCY_SAMPLES = N_FFT
ALGORITHMIC_LATENCY_MS = 1000.0 * N_FFT / SAMPLE_RATE


class STFT(nn.Module):
    """Causal STFT / iSTFT with fixed DFT matrices.

    ``forward(wav (B, N)) -> spec (B, 2, T, F)`` with ``T = ceil(N / HOP) + 1``;
    ``inverse(spec (B, 2, T, F), length) -> wav (B, length)``;
    ``analyze_frame(frame (B, N_FFT)) -> (B, 2, F)`` and
    ``synthesize_frame((B, 2, F)) -> (B, N_FFT)`` (windowed, ready to overlap-add) are the
    per-frame halves used by streaming.
    """

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP):
        super().__init__()
        if n_fft != 2 * hop:
            raise ValueError(f"STFT needs n_fft == 2*hop for sqrt-Hann perfect reconstruction, got {n_fft=} {hop=}")
        self.n_fft, self.hop, self.n_freq = n_fft, hop, n_fft // 2 + 1
        fwd, inv = dft_matrices(n_fft)  # the constants live in stft_np (torch-free runtime too)
        self.register_buffer("fwd", torch.tensor(fwd), persistent=False)  # (N_FFT, 2F), a copy
        self.register_buffer("inv", torch.tensor(inv), persistent=False)  # (2F, N_FFT)

    # ---- per-frame halves (streaming) -------------------------------------------------
    def analyze_frame(self, frame: torch.Tensor) -> torch.Tensor:
        """``frame (..., N_FFT)`` of raw samples -> spectrum ``(..., 2, F)``."""
        return (frame @ self.fwd).unflatten(-1, (2, self.n_freq))

    def synthesize_frame(self, spec: torch.Tensor) -> torch.Tensor:
        """Spectrum ``(..., 2, F)`` -> windowed time frame ``(..., N_FFT)`` to overlap-add."""
        return spec.flatten(-2) @ self.inv

    # ---- whole signals ---------------------------------------------------------------
    def num_frames(self, length: int) -> int:
        """Frames for ``length`` samples: one more than ``ceil(length/HOP)`` so that the
        overlap-add of the last hop is complete (every sample gets both window halves)."""
        return -(-length // self.hop) + 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav (B, N)`` -> ``spec (B, 2, T, F)``, ``T = ceil(N / HOP) + 1``."""
        if wav.dim() != 2:
            raise ValueError(f"STFT expects a (batch, samples) waveform, got shape {tuple(wav.shape)}")
        n = wav.shape[-1]
        t = self.num_frames(n)
        x = F_.pad(wav, (self.n_fft - self.hop, t * self.hop - n))
        frames = x.unfold(-1, self.n_fft, self.hop)  # (B, T, N_FFT)
        spec = self.analyze_frame(frames)  # (B, T, 2, F)
        return spec.transpose(1, 2)

    def inverse(self, spec: torch.Tensor, length: int) -> torch.Tensor:
        """``spec (B, 2, T, F)`` -> ``wav (B, length)`` by windowed overlap-add."""
        if spec.dim() != 4 or spec.shape[1] != 2 or spec.shape[-1] != self.n_freq:
            raise ValueError(f"iSTFT expects (batch, 2, frames, {self.n_freq}), got shape {tuple(spec.shape)}")
        frames = self.synthesize_frame(spec.transpose(1, 2))  # (B, T, N_FFT)
        # overlap-add with hop = N_FFT/2: each frame's two halves land on consecutive hops
        first, second = frames[..., : self.hop], frames[..., self.hop :]
        out = F_.pad(first, (0, 0, 0, 1)) + F_.pad(second, (0, 0, 1, 0))  # (B, T+1, HOP)
        out = out.flatten(1)  # (B, (T+1)*HOP); flatten keeps T symbolic in ONNX exports
        start = self.n_fft - self.hop
        return out[:, start : start + length]


def apply_mask(spec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Complex multiplication of ``spec`` and ``mask``, both ``(..., 2, T, F)`` or ``(..., 2, F)``.

    Written with ``narrow``/``cat`` rather than ``unbind``/``stack``: the same arithmetic, but
    fewer Split/Squeeze/Unsqueeze nodes in the per-hop ONNX graph, where node count, not
    arithmetic, sets the cost.
    """
    if spec.shape != mask.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match spectrum shape {tuple(spec.shape)}")
    dim = -3 if spec.dim() >= 4 else -2
    sr, si = spec.narrow(dim, 0, 1), spec.narrow(dim, 1, 1)
    mr, mi = mask.narrow(dim, 0, 1), mask.narrow(dim, 1, 1)
    return torch.cat((sr * mr - si * mi, sr * mi + si * mr), dim=dim)


def magnitude(spec: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``(B, 2, T, F) -> (B, T, F)``; ``eps`` keeps the gradient finite at zero."""
    return torch.sqrt(spec[:, 0] ** 2 + spec[:, 1] ** 2 + eps)


def compress(spec: torch.Tensor, power: float = 0.3, eps: float = 1e-8) -> torch.Tensor:
    """Power-law compressed complex spectrum ``|X|^p e^{j angle X}``, same shape as ``spec``.

    Compression evens out the huge dynamic range of speech spectra so that quiet but
    audible units count in a squared error (Braun & Tashev, 2021).
    """
    mag = torch.sqrt(spec[:, 0] ** 2 + spec[:, 1] ** 2 + eps)
    return spec * (mag ** (power - 1.0)).unsqueeze(1)
