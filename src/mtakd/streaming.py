"""Real-time enhancement with a causal model: ``feed(samples) -> samples`` / ``flush()``.

``StreamingEnhancer(model_or_path, backend="torch")`` wraps ``Student.step``: per frame it runs
``STFT.analyze_frame -> model.step -> apply_mask -> STFT.synthesize_frame`` and overlap-adds
(``stft_np.HopFramer``); a chunk of several frames goes through ``Student.steps`` instead (the
same arithmetic in one GRU call). There is no second copy of the model: the offline path
(``inference.enhance_waveform``) and this one run the same weights, and their outputs agree
sample for sample (<= 1e-5, tested) for any chunking of the input.

``backend="onnxruntime"`` runs the exported per-hop ONNX graph (``mtakd export --kind step``)
through ``mtakd.ort_runtime.OrtStepProcessor`` with the same framing; given a torch model or a
checkpoint instead of an ``.onnx`` file, the step graph is exported in memory first. Code that
must not import torch at all uses ``mtakd.ort_runtime.OrtStreamingEnhancer`` directly.

Latency: ``delay_samples`` (= ``N_FFT``, 320 samples, 20 ms) -- see ``HopFramer``. A multi-hop
ONNX step graph (``hops=K``, ``mtakd export --hops K``) runs K hops per onnxruntime call and
adds ``(K - 1) * 10 ms`` to that; the output samples are the same. A student with ``L`` frames
of look-ahead adds ``L * 10 ms``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .models import model_lookahead
from .stft import STFT, apply_mask
from .stft_np import HopFramer

BACKENDS = ("torch", "onnxruntime")


def check_streamable(model: nn.Module) -> None:
    """Raise ``ValueError`` unless ``model`` has ``step`` and ``initial_state`` (is causal)."""
    if not (callable(getattr(model, "step", None)) and callable(getattr(model, "initial_state", None))):
        raise ValueError(
            f"{type(model).__name__} cannot stream: it has no step()/initial_state() (it is not causal; "
            "the teacher looks ahead). Stream a student, or enhance whole files with mtakd.enhance"
        )


def resolve_torch_model(model_or_path) -> nn.Module:
    """An ``nn.Module`` is returned as is; a path is loaded with ``checkpoint.load_model``."""
    if isinstance(model_or_path, nn.Module):
        return model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        if Path(model_or_path).suffix.lower() == ".onnx":
            raise ValueError(f"{model_or_path}: an ONNX file runs with backend='onnxruntime', not 'torch'")
        from .checkpoint import load_model

        return load_model(model_or_path)
    raise ValueError(f"expected a model or a checkpoint path, got {type(model_or_path).__name__}")


class TorchStepProcessor:
    """Frames ``(k, N_FFT)`` -> synthesis frames ``(k, N_FFT)`` through ``model.step``.

    The DFT of all ``k`` frames is one batched matmul. One frame (the real-time case) goes
    through ``step``; several go through ``model.steps`` when the model has it (the student:
    one GRU call over the ``k`` frames: files ran 4.5x faster than with a loop of ``step``,
    docs/benchmarks.md), else through a loop of ``step`` calls (batch 1).

    A model with look-ahead (``model.cfg.lookahead = L > 0``) masks a frame once the ``L``
    after it are in: ``prefill`` keeps the spectra of a stream's first ``L`` frames (no model
    step: the recurrence starts at frame 0, as offline), and each call then hands the model
    every frame with its ``L`` successors and returns the synthesis frames of the frames ``L``
    earlier, keeping the last ``L`` spectra for the next call.
    """

    def __init__(self, model: nn.Module):
        check_streamable(model)
        self.model = model
        try:
            self.device = next(model.parameters()).device
        except StopIteration:
            self.device = torch.device("cpu")
        self.stft = STFT().to(self.device)
        self._steps = getattr(model, "steps", None)  # several frames in one call, if the model can
        #: frames of look-ahead (``HopFramer`` reads it: the output comes ``L`` frames later)
        self.lookahead = model_lookahead(model)
        self.state = self.ahead = None
        self.reset()

    def reset(self) -> None:
        self.state = self.model.initial_state(1).to(self.device)
        self.ahead = torch.zeros(0, 2, self.stft.n_freq, device=self.device)  # kept spectra (<= L, 2, F)

    @torch.inference_mode()
    def prefill(self, frames: np.ndarray) -> np.ndarray:
        """A stream's first frames (at most ``L`` in all): keep their spectra; zero frames out."""
        if self.ahead.shape[0] + frames.shape[0] > self.lookahead:
            raise ValueError(f"prefill takes a stream's first {self.lookahead} frame(s) only")
        spec = self.stft.analyze_frame(torch.from_numpy(frames).to(self.device))  # (j, 2, F)
        self.ahead = torch.cat((self.ahead, spec))
        return np.zeros_like(frames, dtype=np.float32)

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        spec = self.stft.analyze_frame(torch.from_numpy(frames).to(self.device))  # (k, 2, F)
        step, state, L, k = self.model.step, self.state, self.lookahead, spec.shape[0]
        if L:  # the L kept spectra, then the k new: frame i is masked with frames i+1..i+L
            if self.ahead.shape[0] != L:
                raise ValueError(f"a look-ahead model's stream starts with prefill() of its first {L} frame(s)")
            spec = torch.cat((self.ahead, spec))  # (L + k, 2, F)
        if k == 1:  # the real-time case: one hop in, one frame out
            mask, state = step(spec.transpose(0, 1).unsqueeze(0) if L else spec, state)
        elif self._steps is not None:  # (L+k, 2, F) -> one sequence (1, 2, L+k, F) and back
            mask, state = self._steps(spec.transpose(0, 1).unsqueeze(0), state)
            mask = mask[0].transpose(0, 1)
        else:
            mask = torch.empty_like(spec[:k])
            for i in range(k):
                m, state = step(spec[i : i + L + 1].transpose(0, 1).unsqueeze(0) if L else spec[i : i + 1], state)
                mask[i] = m[0]
        self.state = state
        if L:
            self.ahead = spec[k:].clone()  # the last L spectra
            spec = spec[:k]  # the frames masked now, L behind the newest
        return self.stft.synthesize_frame(apply_mask(spec, mask)).cpu().numpy()  # (k, N_FFT)


class StreamingEnhancer(HopFramer):
    """Causal streaming enhancement of 16 kHz mono audio.

    ``feed(samples (n,)) -> (m,)`` accepts numpy arrays or tensors of any length (1 sample to
    minutes) and returns float32 numpy; ``flush() -> (r,)`` ends the utterance (zero-pads the
    last frames, then resets); ``reset()`` starts a new utterance. The concatenated outputs
    equal ``enhance_waveform(model, whole_signal)`` (same length, no offset).

    ``model_or_path``: a causal model (with ``step``), an mtakd checkpoint path, or, for
    ``backend="onnxruntime"``, an ``.onnx`` step model from ``mtakd export``.
    ``threads``: onnxruntime intra-op threads (the torch backend uses torch's setting).
    ``hops``: onnxruntime only, hops per run (K). ``None``: an ``.onnx`` file's own K, or 1 when
    a model is exported in memory; an ``.onnx`` file must have been exported with the K asked
    for. K > 1 trades ``(K - 1) * 10 ms`` more latency (``delay_samples``) for less overhead.
    """

    def __init__(self, model_or_path, backend: str = "torch", max_frames: int = 1024, threads: int = 1,
                 hops: int | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
        if hops is not None and (isinstance(hops, bool) or not isinstance(hops, int) or hops < 1):
            raise ValueError(f"hops must be an integer >= 1, got {hops!r}")
        self.backend = backend
        if backend == "torch":
            if hops not in (None, 1):
                raise ValueError("hops > 1 needs backend='onnxruntime' (it groups onnxruntime runs; torch steps one hop at a time)")
            self.model = resolve_torch_model(model_or_path)
            proc = TorchStepProcessor(self.model)
        else:
            from .ort_runtime import OrtStepProcessor

            src = ort_step_source(model_or_path, hops or 1)
            name = src if isinstance(src, (str, os.PathLike)) else "the exported model"
            try:
                proc = OrtStepProcessor(src, threads=threads)
            except (ImportError, ValueError, FileNotFoundError):
                raise
            except Exception as e:  # noqa: BLE001 - onnxruntime's errors are not ValueErrors
                first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
                raise ValueError(f"{name}: not a loadable ONNX model ({first}); export one with 'mtakd export'") from None
            if hops is not None and proc.hops != hops:  # (only a given ONNX file can differ)
                raise ValueError(f"{name}: this step graph runs {proc.hops} hop(s) per call, not {hops}; "
                                 f"re-export it with 'mtakd export --hops {hops}'")
        super().__init__(proc, max_frames=max_frames)


def ort_step_source(model_or_path, hops: int = 1):
    """An ``.onnx`` path (or bytes) as is; a causal torch model or checkpoint -> step-graph ONNX
    bytes with ``hops`` frames per run."""
    if isinstance(model_or_path, (str, os.PathLike)) and Path(model_or_path).suffix.lower() == ".onnx":
        return model_or_path
    if isinstance(model_or_path, (bytes, bytearray)):
        return bytes(model_or_path)
    model = resolve_torch_model(model_or_path)
    check_streamable(model)
    from .export import onnx_bytes

    return onnx_bytes(model, kind="step", hops=hops)[0]
