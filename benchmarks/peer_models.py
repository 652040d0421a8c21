"""The streaming runners of ``peers_onnx.py``: GTCRN, DTLN and mtakd's student as ONNX models
streamed with onnxruntime hop by hop, plus finding the peers' ``.onnx`` files and counting
their weights. The loops re-implement the upstream ones:

* **GTCRN** (``gtcrn_simple.onnx``, Rong et al. 2024): 16 kHz, 512-point STFT, hop 256
  (16 ms), periodic sqrt-Hann analysis and synthesis windows (``torch.hann_window(512)
  .pow(0.5)`` upstream; the fasr wrapper uses numpy's symmetric ``np.hanning``), centred
  framing (frame ``t`` covers samples ``[256 t - 256, 256 t + 256)``, as ``stft(center=True)``).
  Per hop: ``rfft(window * last 512 samples)`` -> ``mix (1, 257, 1, 2)`` with the three caches
  ``conv_cache (2,1,16,16,33)``, ``tra_cache (2,3,1,1,16)``, ``inter_cache (2,1,33,16)`` ->
  ``enh`` (the enhanced spectrum) -> ``irfft * window`` -> overlap-add. Output aligned with
  the input (0 samples offset); algorithmic latency one window, 512 samples = 32 ms.
* **DTLN** (``model_1.onnx`` + ``model_2.onnx``, Westhausen & Meyer 2020): 16 kHz, block
  512, shift 128 (8 ms), no analysis window. Per shift: ``rfft(block)`` -> ``|X|`` ``(1,1,257)``
  + state ``(1,2,128,2)`` -> mask -> ``irfft(mask X)`` ``(1,1,512)`` + state ``(1,2,128,2)``
  -> time-domain block, overlap-added into a 512-sample output buffer whose first 128
  samples are emitted (upstream ``real_time_processing_onnx.py``, same as the fasr wrapper).
  The emitted stream lags the input by 512 - 128 = 384 samples (24 ms; algorithmic
  latency 512 samples = 32 ms).
* **mtakd** student: the exported step graph (``export_onnx(kind="step")``) through
  ``OrtStreamingEnhancer``: hop 160 (10 ms), offset 0, algorithmic latency 320 samples = 20 ms
  (+10 ms per frame of look-ahead: the stream's ``delay_samples``).

Also the pure alignment helpers of ``peers_onnx.py`` and ``peers.py``: ``xcorr_lag`` (lag of
an output behind a reference by cross-correlation) and ``align`` (cut a raw output to the
input's timeline by a fixed delay). The other peers are in ``peer_systems.py``.
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/torch load

import glob
from pathlib import Path

import numpy as np

SR = bc.SAMPLE_RATE


# ----------------------------------------------------------------------------- peers
class _Stream:
    """Hop-by-hop streamer: ``feed(samples) -> samples`` (any chunk size), ``flush()``.

    Subclasses implement ``_hop(hop (H,)) -> (H,)`` and ``_reset()``. The raw output lags the
    input by ``offset`` samples; ``flush`` zero-pads so that ``n_in + offset`` samples come
    out in total (then ``aligned = raw[offset : offset + n_in]``).
    """

    name = hop = offset = window = None
    hop_ms = property(lambda self: 1000.0 * self.hop / SR)
    latency_ms = property(lambda self: 1000.0 * self.window / SR)

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)
        self._n_in = 0
        self._n_out = 0
        self._reset()

    def feed(self, samples) -> np.ndarray:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self._n_in += x.size
        if self._pending.size:
            x = np.concatenate((self._pending, x))
        n = x.size // self.hop
        outs = [self._hop(x[i * self.hop : (i + 1) * self.hop]) for i in range(n)]
        self._pending = x[n * self.hop :].copy()
        y = np.concatenate(outs) if len(outs) > 1 else (outs[0].copy() if outs else np.zeros(0, np.float32))
        y = self._drop_head(y)
        self._n_out += y.size
        return y

    def _drop_head(self, y: np.ndarray) -> np.ndarray:
        return y

    def flush(self) -> np.ndarray:
        want = self._n_in + self.offset - self._n_out
        outs = []
        got = 0
        z = np.zeros(self.hop, np.float32)
        if self._pending.size:
            outs.append(self._drop_head(self._hop(np.concatenate((self._pending, z[: self.hop - self._pending.size])))))
            got += outs[-1].size
        while got < want:
            outs.append(self._drop_head(self._hop(z)))
            got += outs[-1].size
        y = np.concatenate(outs)[: max(want, 0)] if outs else np.zeros(0, np.float32)
        self.reset()
        return y


class GtcrnStream(_Stream):
    name, hop, offset, window = "GTCRN", 256, 0, 512
    n_fft = 512

    def __init__(self, onnx_path, threads: int = 1, window: str = "periodic"):
        self.sess = bc.onnx_session(onnx_path, threads)
        if window == "periodic":  # upstream: torch.hann_window(512).pow(0.5); overlap-add sums to exactly 1
            n = np.arange(self.n_fft, dtype=np.float64)
            self.win = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * n / self.n_fft)).astype(np.float32)
        elif window == "symmetric":  # the fasr wrapper: np.hanning(512) ** 0.5, librosa.istft normalises
            self.win = (np.hanning(self.n_fft).astype(np.float32) ** 0.5).astype(np.float32)
        else:
            raise ValueError(f"unknown GTCRN window '{window}'")
        self.window_kind = window
        # 1 / (sum of the squared windows at each position of a hop): exactly 1 for periodic
        self.norm = (1.0 / (self.win[: self.hop] ** 2 + self.win[self.hop :] ** 2)).astype(np.float32)
        self.outputs = [o.name for o in self.sess.get_outputs()]
        self.mix = np.zeros((1, self.n_fft // 2 + 1, 1, 2), np.float32)
        self.reset()

    def _reset(self) -> None:
        self.buf = np.zeros(self.n_fft, np.float32)
        self.tail = np.zeros(self.hop, np.float32)
        self.conv = np.zeros((2, 1, 16, 16, 33), np.float32)
        self.tra = np.zeros((2, 3, 1, 1, 16), np.float32)
        self.inter = np.zeros((2, 1, 33, 16), np.float32)
        self.first = True

    def _hop(self, h: np.ndarray) -> np.ndarray:
        buf, hop = self.buf, self.hop
        buf[:hop] = buf[hop:]
        buf[hop:] = h
        spec = np.fft.rfft(buf * self.win)
        self.mix[0, :, 0, 0] = spec.real
        self.mix[0, :, 0, 1] = spec.imag
        enh, self.conv, self.tra, self.inter = self.sess.run(
            self.outputs, {"mix": self.mix, "conv_cache": self.conv, "tra_cache": self.tra, "inter_cache": self.inter})
        y = np.fft.irfft(enh[0, :, 0, 0] + 1j * enh[0, :, 0, 1], self.n_fft).astype(np.float32) * self.win
        out = self.tail + y[:hop]
        self.tail = y[hop:]
        return out if self.window_kind == "periodic" else out * self.norm

    def _drop_head(self, y: np.ndarray) -> np.ndarray:
        # the first output hop covers samples [-256, 0) (centred framing's left padding)
        if self.first and y.size:
            self.first = False
            return y[self.hop :]
        return y


class DtlnStream(_Stream):
    name, hop, offset, window = "DTLN", 128, 384, 512
    block = 512

    def __init__(self, model_1, model_2, threads: int = 1):
        self.s1, self.s2 = bc.onnx_session(model_1, threads), bc.onnx_session(model_2, threads)
        (self.in1, self.st1), (self.in2, self.st2) = ([i.name for i in s.get_inputs()] for s in (self.s1, self.s2))
        self.shape1 = tuple(self.s1.get_inputs()[1].shape)
        self.shape2 = tuple(self.s2.get_inputs()[1].shape)
        self.reset()

    def _reset(self) -> None:
        self.in_buf = np.zeros(self.block, np.float32)
        self.out_buf = np.zeros(self.block, np.float32)
        self.state1 = np.zeros(self.shape1, np.float32)
        self.state2 = np.zeros(self.shape2, np.float32)

    def _hop(self, h: np.ndarray) -> np.ndarray:
        hop, ib, ob = self.hop, self.in_buf, self.out_buf
        ib[:-hop] = ib[hop:]
        ib[-hop:] = h
        spec = np.fft.rfft(ib)
        mag = np.abs(spec).astype(np.float32).reshape(1, 1, -1)
        mask, self.state1 = self.s1.run(None, {self.in1: mag, self.st1: self.state1})
        est = np.fft.irfft(spec * mask.reshape(-1), self.block).astype(np.float32).reshape(1, 1, -1)
        y, self.state2 = self.s2.run(None, {self.in2: est, self.st2: self.state2})
        ob[:-hop] = ob[hop:]
        ob[-hop:] = 0.0
        ob += y.reshape(-1)
        return ob[:hop].copy()


class MtakdStream:
    """mtakd's ``OrtStreamingEnhancer`` with the attributes the benchmark reads."""

    hop, offset, window = 160, 0, 320
    hop_ms = property(lambda self: 1000.0 * self.hop / SR)
    # the stream's own delay: one window, plus a hop per frame of look-ahead (or hop group)
    latency_ms = property(lambda self: 1000.0 * self.s.delay_samples / SR)

    def __init__(self, name, onnx_path, threads: int = 1):
        from mtakd.ort_runtime import OrtStreamingEnhancer

        self.name = name
        self.s = OrtStreamingEnhancer(bc.onnx_session(onnx_path, threads))
        self.feed, self.flush, self.reset = self.s.feed, self.s.flush, self.s.reset


def onnx_weights(*paths) -> int:
    import onnx

    n = 0
    for p in paths:
        m = onnx.load(p if hasattr(p, "read") else str(p))  # a path or an open binary file
        n += sum(int(np.prod(t.dims)) for t in m.graph.initializer)
        for node in m.graph.node:  # constants folded into Constant nodes count too
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                n += int(np.prod(node.attribute[0].t.dims))
    return n


# ----------------------------------------------------------------------------- alignment
def xcorr_lag(ref: np.ndarray, y: np.ndarray, max_lag: int = 1024) -> int:
    """Lag (samples) by which ``y`` trails ``ref``, by FFT cross-correlation within +-max_lag."""
    ref = np.asarray(ref, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    n = ref.size + y.size
    nfft = 1 << (n - 1).bit_length()
    c = np.fft.irfft(np.fft.rfft(y, nfft) * np.conj(np.fft.rfft(ref, nfft)), nfft)
    lags = np.concatenate((np.arange(0, max_lag + 1), np.arange(-max_lag, 0)))
    vals = np.concatenate((c[: max_lag + 1], c[-max_lag:]))
    return int(lags[int(np.argmax(vals))])


def align(raw: np.ndarray, delay: int, n: int) -> np.ndarray:
    """``raw[delay : delay + n]`` as float32, zero-padded at the end if ``raw`` is too short
    (a negative ``delay`` pads at the start): the output sample that belongs to input sample
    ``i`` lands at index ``i``."""
    raw = np.asarray(raw, np.float32).reshape(-1)
    out = np.zeros(n, np.float32)
    lo = max(delay, 0)
    seg = raw[lo : delay + n] if delay + n > 0 else raw[:0]
    start = lo - delay
    out[start : start + seg.size] = seg[: n - start]
    return out


def find_peer_onnx(venv: Path, package: str, name: str) -> Path | None:
    hits = sorted(glob.glob(str(venv / "lib" / "python*" / "site-packages" / package / "asset" / name)))
    return Path(hits[0]) if hits else None
