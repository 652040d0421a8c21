"""Torch-free half of the STFT: constants, the per-frame DFT in numpy, and streaming framing.

This module imports numpy only, so the onnxruntime runtime (``mtakd.ort_runtime``) runs
without PyTorch. It is the source of the DSP constants that ``mtakd.stft`` wraps (tested to 1e-6):

* ``SAMPLE_RATE``, ``N_FFT``, ``HOP``, ``N_FREQ``: the same constants;
* ``dft_matrices()``: THE DFT matrices (``mtakd.stft`` takes its buffers from here);
* ``analyze_frame(frame (..., N_FFT)) -> (..., 2, F)`` and
  ``synthesize_frame((..., 2, F)) -> (..., N_FFT)`` in numpy. The exported ONNX
  step graph already contains this DFT, so the runtime does not need it; it is here as the
  numpy reference of what that graph computes, and for code that runs a mask-only model;
* ``HopFramer``: the causal framing and overlap-add that turns "one 320-sample frame in,
  one windowed 320-sample synthesis frame out" into ``feed(any chunk) -> samples``. The torch
  and the onnxruntime streamers share it, so their bookkeeping cannot drift apart.
"""
from __future__ import annotations

import functools
import math
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 320
HOP = 160
N_FREQ = N_FFT // 2 + 1


@functools.lru_cache(maxsize=4)  # STFT() is built per enhance call; the trig is not free
def dft_matrices(n_fft: int = N_FFT) -> tuple[np.ndarray, np.ndarray]:
    """The analysis and synthesis matrices of the one STFT, float32:

    ``fwd (n_fft, 2F)``: sqrt-Hann window folded into the DFT, columns ``[real | imag]``;
    ``inv (2F, n_fft)``: inverse real DFT (Hermitian weights 1, 2, ..., 2, 1) times the
    synthesis window. One matmul each per frame: real and imaginary halves are fused so the
    per-frame graph (torch, ONNX) has as few nodes as possible. ``mtakd.stft`` builds its
    buffers from this function, so the constants exist once.
    """
    n_freq = n_fft // 2 + 1
    n = np.arange(n_fft, dtype=np.float64)
    # periodic sqrt-Hann, rounded to float32 first (as torch.hann_window would give it)
    win = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)).astype(np.float32).astype(np.float64)
    k = np.arange(n_freq, dtype=np.float64)
    ang = 2 * np.pi * n[:, None] * k[None, :] / n_fft  # (n_fft, F)
    fwd = np.concatenate((win[:, None] * np.cos(ang), -win[:, None] * np.sin(ang)), axis=1)
    scale = np.full(n_freq, 2.0)
    scale[0] = scale[-1] = 1.0
    inv = np.concatenate((scale[:, None] * np.cos(ang.T), -scale[:, None] * np.sin(ang.T)), axis=0) / n_fft * win[None, :]
    fwd, inv = fwd.astype(np.float32), inv.astype(np.float32)
    fwd.flags.writeable = inv.flags.writeable = False  # cached and shared: nobody may edit them
    return fwd, inv


FWD, INV = dft_matrices()


def analyze_frame(frame: np.ndarray) -> np.ndarray:
    """``frame (..., N_FFT)`` of raw samples -> spectrum ``(..., 2, F)`` (float32)."""
    return (frame @ FWD).reshape(frame.shape[:-1] + (2, N_FREQ))


def synthesize_frame(spec: np.ndarray) -> np.ndarray:
    """Spectrum ``(..., 2, F)`` -> windowed time frame ``(..., N_FFT)`` to overlap-add."""
    return spec.reshape(spec.shape[:-2] + (2 * N_FREQ,)) @ INV


class FrameProcessor(Protocol):
    """What ``HopFramer`` drives: frames ``(k, N_FFT)`` float32 -> synthesis frames
    ``(k, N_FFT)`` float32, in order, keeping any recurrent state inside; ``reset()``.
    The result may be a buffer that the next call overwrites (``HopFramer`` consumes it at once).
    An optional ``hops`` attribute (default 1) says that ``k`` must be a multiple of it
    (``ort_runtime.OrtStepProcessor`` on a multi-hop graph). An optional ``lookahead``
    attribute L (default 0) says that the processor masks a frame only once the L after it are
    in: it then has ``prefill(frames (j, N_FFT)) -> zeros (j, N_FFT)``, which ``HopFramer``
    calls for the first L frames of a stream (they only fill the look-ahead), and each later
    call returns the synthesis frames of the frames L earlier."""

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


def as_mono_float32(samples) -> np.ndarray:
    """1-D float samples (numpy or torch, any float dtype) -> contiguous float32 numpy.

    Called once per hop in real time, so the common case (a contiguous float32 array) does
    no conversion and checks finiteness through one sum (NaN/Inf make it non-finite; only
    if it is, the exact element-wise check runs, so a huge finite overflow is not rejected).
    """
    if hasattr(samples, "detach"):  # torch tensor, without importing torch
        samples = samples.detach().cpu().numpy()
    x = samples if type(samples) is np.ndarray else np.asarray(samples)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D mono samples, got shape {x.shape}; downmix (e.g. x.mean(axis=1)) and pass one channel")
    if x.dtype != np.float32:
        if x.size and x.dtype.kind != "f":
            raise ValueError(f"expected float samples in [-1, 1], got dtype {x.dtype}; convert int16 PCM with x / 32768")
        x = x.astype(np.float32)
    elif not x.flags.c_contiguous:
        x = np.ascontiguousarray(x)
    _check_finite(x)
    return x


def _check_finite(x: np.ndarray) -> None:
    """Raise on NaN/Inf: one would poison the recurrent state for good. ``x . x`` is non-finite
    if any sample is (and ~1 us cheaper than ``sum`` on a hop); only then, or on overflow of a
    huge but finite signal, does the exact element-wise check run."""
    if not math.isfinite(float(np.dot(x, x))) and not np.isfinite(x).all():
        raise ValueError("input contains NaN or Inf samples")


class HopFramer:
    """Causal framing + overlap-add around a ``FrameProcessor``; samples in, samples out.

    Output convention: the concatenation of all ``feed`` outputs and ``flush()`` equals the
    offline enhancement of the whole signal sample for sample (same length, no offset).
    A sample is emitted as soon as its overlap-add is complete: output hop ``j`` needs frames
    ``j`` and ``j+1``, and frame ``j+1`` needs the input up to the end of hop ``j+1``. So after
    ``n`` input samples, ``max(0, (n // HOP - 1) * HOP)`` output samples have been returned;
    with hop-sized I/O each output hop leaves one hop after its input hop arrived, i.e. the
    delay is ``delay_samples = N_FFT`` (20 ms = ``stft.ALGORITHMIC_LATENCY_MS``).

    Chunks of any size are accepted. All complete frames of a chunk go to the processor in
    one call (so the DFT runs batched), at most ``max_frames`` at a time to bound memory.
    The real-time case, one float32 hop per ``feed`` with nothing pending, takes a shorter
    path with the same result (``_feed_hop``): at ~0.1 ms per hop, ten numpy calls matter.

    Groups: a processor with ``hops = K > 1`` takes frames only in multiples of K, so frames
    wait until their group of K is complete (``flush`` zero-pads the last group; the padded
    frames only touch samples past the end, which are dropped). The output is the same
    samples, returned in bursts of K hops, and ``delay_samples`` grows by ``(K - 1) * HOP``.
    One-hop feeds take ``_feed_group_hop``: a copy into the buffer, and a run per K-th hop.

    Look-ahead: a processor with ``lookahead = L > 0`` masks frame ``t`` once frame ``t + L``
    is in. The first ``L`` frames of a stream go to its ``prefill`` (they fill its look-ahead
    and give zero frames; groups of K start after them); from then on it returns, for the
    frames it is given, the synthesis frames of the frames ``L`` earlier. So the first ``L``
    output hops are dropped, ``flush`` runs ``L`` more zero frames, and ``delay_samples``
    grows by ``L * HOP``; the output is the same samples.
    """

    def __init__(self, processor: FrameProcessor, max_frames: int = 1024):
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self._proc = processor
        self._group = k = int(getattr(processor, "hops", 1))
        if k < 1:
            raise ValueError(f"processor.hops must be >= 1, got {k}")
        self._ahead = int(getattr(processor, "lookahead", 0))
        if self._ahead < 0:
            raise ValueError(f"processor.lookahead must be >= 0, got {self._ahead}")
        # output hops that are not signal: hop -1 (frame 0's first half, in the left padding)
        # and, with look-ahead, the L hops of the prefill frames (zeros: nothing masked yet)
        self._lead = 1 + self._ahead
        self._max_new = max_frames * HOP
        # holds HOP samples of history + < K*HOP pending + one slice of new input, or at flush
        # up to 2K + L padded frames; preallocated so the hot path never grows it
        self._buf = np.zeros((2 * k + 1 + self._ahead) * HOP + self._max_new + N_FFT, dtype=np.float32)
        self._tail = np.zeros(HOP, dtype=np.float32)  # second half of the last synthesis frame
        # the K overlapping frames at the start of the buffer (the buffer is never reallocated,
        # so this view stays valid; as_strided per call costs more than a small matmul)
        self._group_frames = np.lib.stride_tricks.as_strided(
            self._buf, shape=(k, N_FFT), strides=(HOP * self._buf.itemsize, self._buf.itemsize))
        self._fast = self._feed_hop if k == 1 else self._feed_group_hop
        self.reset()

    def reset(self) -> None:
        """Forget everything (input history, overlap-add tail, recurrent state)."""
        self._buf[:HOP] = 0.0  # the causal left padding of N_FFT - HOP zeros
        self._fill = HOP
        self._tail[:] = 0.0
        self._frames = 0  # frames processed so far
        self._n_in = 0
        self._n_out = 0
        self._proc.reset()

    @property
    def hops(self) -> int:
        """Frames per processor call (K): 1, or the hops of a multi-hop ONNX step graph."""
        return self._group

    @property
    def delay_samples(self) -> int:
        """Latency of the stream in samples: ``N_FFT + (K - 1 + L) * HOP`` (K = ``hops``, L =
        ``lookahead``; 320 = 20 ms at 16 kHz for K = 1 and L = 0, 30 ms for K = 2 or L = 1, 50 ms
        for K = 4). With hop-sized I/O and
        K = 1, output hop ``j`` is returned by the feed of input hop ``j+1``; played out from
        then on, each sample comes exactly ``N_FFT`` samples after it was captured (plus
        compute time); this is ``stft.ALGORITHMIC_LATENCY_SAMPLES``. With K > 1 it comes with
        the feed that completes its group, up to ``K - 1`` hops later; a steady playout must
        wait for the worst case."""
        return N_FFT + (self._group - 1 + self._ahead) * HOP

    @property
    def lookahead(self) -> int:
        """Frames of look-ahead of the processor's model (L): each adds one hop to ``delay_samples``."""
        return self._ahead

    @property
    def samples_in(self) -> int:
        return self._n_in

    @property
    def samples_out(self) -> int:
        return self._n_out

    def feed(self, samples) -> np.ndarray:
        """Push 1-D float samples (numpy or torch, any length); return the newly completed
        enhanced samples (float32, possibly empty)."""
        if (type(samples) is np.ndarray and samples.shape == (HOP,) and samples.dtype == np.float32 and self._fill % HOP == 0
                and self._frames >= self._ahead):
            return self._fast(samples)  # hop-aligned buffer (K = 1: nothing pending), look-ahead filled
        x = as_mono_float32(samples)
        self._n_in += x.size
        outs = []
        for start in range(0, x.size, self._max_new):
            part = x[start : start + self._max_new]
            self._buf[self._fill : self._fill + part.size] = part
            self._fill += part.size
            complete = (self._fill - HOP) // HOP
            if self._frames < self._ahead and complete:  # the stream's first L frames fill the look-ahead
                j = min(self._ahead - self._frames, complete)
                outs.append(self._run(j, prefill=True))
                complete -= j
            k = complete // self._group * self._group  # complete groups of frames
            if k:
                outs.append(self._run(k))
        if not outs:
            return np.zeros(0, dtype=np.float32)
        y = outs[0] if len(outs) == 1 else np.concatenate(outs)
        self._n_out += y.size
        return y

    def _feed_hop(self, x: np.ndarray) -> np.ndarray:
        """``feed`` of exactly one hop when the buffer holds only the previous hop: the same
        steps as ``feed`` + ``_run(1)`` with the bookkeeping of the general case left out."""
        _check_finite(x)
        buf = self._buf
        buf[HOP:N_FFT] = x  # frame = previous hop + this hop
        synth = self._proc(buf[None, :N_FFT])
        buf[:HOP] = x  # this hop is the next frame's first half
        self._n_in += HOP
        self._frames += 1
        if self._frames <= self._lead:  # hop -1 (in the left padding) or a prefill frame's
            self._tail[:] = synth[0, HOP:]
            return np.zeros(0, dtype=np.float32)
        y = np.add(self._tail, synth[0, :HOP])
        self._tail[:] = synth[0, HOP:]
        self._n_out += HOP
        return y

    def _feed_group_hop(self, x: np.ndarray) -> np.ndarray:
        """``feed`` of exactly one hop with K > 1 and a hop-aligned buffer (history + < K
        pending hops): store it; only the hop that completes a group runs the processor."""
        _check_finite(x)
        fill = self._fill
        self._buf[fill : fill + HOP] = x
        self._fill = fill + HOP
        self._n_in += HOP
        if fill < self._group * HOP:  # the group's last hop is still to come
            return np.zeros(0, dtype=np.float32)
        y = self._run(self._group)
        self._n_out += y.size
        return y

    def flush(self) -> np.ndarray:
        """Zero-pad the last frames (up to a whole group), return the remaining samples, and
        ``reset()``: the total output length equals the total input length."""
        n = self._n_in
        if n == 0:
            self.reset()
            return np.zeros(0, dtype=np.float32)
        total_frames = -(-n // HOP) + 1 + self._ahead  # stft.STFT.num_frames, + the look-ahead's
        need, outs = total_frames - self._frames, []
        if self._frames < self._ahead:  # a stream shorter than its look-ahead: fill it first
            j = min(self._ahead - self._frames, need)
            self._pad_to(HOP + j * HOP)
            outs.append(self._run(j, prefill=True))
            need -= j
        if need > 0:
            k = -(-need // self._group) * self._group
            self._pad_to(HOP + k * HOP)
            outs.append(self._run(k))
        y = (outs[0] if len(outs) == 1 else np.concatenate(outs))[: n - self._n_out]
        self.reset()
        return y

    def _pad_to(self, end: int) -> None:
        """Zero-pad the buffer up to ``end`` samples (the frames that ``flush`` runs)."""
        if self._fill < end:
            self._buf[self._fill : end] = 0.0
            self._fill = end

    def _run(self, k: int, prefill: bool = False) -> np.ndarray:
        """Process the ``k`` complete frames in the buffer (``prefill``: hand them to the
        processor's look-ahead); return the samples that are signal, at most ``k * HOP``."""
        buf = self._buf
        if k == 1:  # the real-time case; as_strided costs more than a whole small matmul
            frames = buf[None, :N_FFT]
        elif k == self._group:  # one group (the real-time case with K > 1)
            frames = self._group_frames
        else:  # frame i = buf[i*HOP : i*HOP + N_FFT]: an overlapping strided view, no copy
            frames = np.lib.stride_tricks.as_strided(buf, shape=(k, N_FFT), strides=(HOP * buf.itemsize, buf.itemsize))
        synth = self._proc.prefill(frames) if prefill else self._proc(frames)  # (k, N_FFT)
        out = np.empty((k, HOP), dtype=np.float32)
        np.add(self._tail, synth[0, :HOP], out=out[0])
        if k > 1:
            np.add(synth[1:, :HOP], synth[:-1, HOP:], out=out[1:])
        self._tail[:] = synth[-1, HOP:]
        # keep the last HOP + pending samples (the next frame's first half onwards)
        used = k * HOP
        rest = self._fill - used
        buf[:rest] = buf[used : self._fill]
        self._fill = rest
        # hop -1 (frame 0's first half) lies in the left padding, and with look-ahead the next L
        # hops are those of the prefill frames (zeros): none of them is signal
        drop = min(k, max(0, self._lead - self._frames))
        self._frames += k
        return (out[drop:] if drop else out).reshape(-1)
