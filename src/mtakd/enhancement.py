"""Enhance paths, arrays and tensors at any sample rate, and single files.

* ``enhance(x, model=None, sr=None, backend="torch")``: ``x`` is a path (-> numpy at the
  file's rate), a numpy array ``(N,)`` or ``(N, C)`` (soundfile layout) at ``sr`` (default
  16 kHz; -> numpy at ``sr``), or a tensor ``(N,)`` or ``(C, N)`` (torchaudio layout; ->
  tensor). Multichannel input is averaged to mono (with an ``EnhanceWarning``); other rates
  are resampled to 16 kHz and back (``audio.resample``, soxr HQ); the output always has the
  input's length and is mono ``(N,)``.
* ``enhance_file(src, dst, ...)``: one file -> a 16-bit WAV, written atomically.
* ``enhance_files(inputs, out_dir, ...)``: files/folders -> 16-bit WAVs under ``out_dir``; it
  lives in ``mtakd.batch`` (with ``EnhanceSummary``, ``plan_outputs``, ``check_output_folder``
  and ``run_pairs``) and is public as ``mtakd.enhance_files``.

Long inputs never go through the model in one piece:

* causal models (students) run through ``StreamingEnhancer`` in bounded batches of frames:
  the result is *exactly* the whole-utterance result, whatever the chunking;
* non-causal models (the bidirectional teacher) see ``OFFLINE_CHUNK_S`` chunks overlapping by
  ``OFFLINE_OVERLAP_S``, joined by a linear crossfade (``OverlapChunker``): *close* to, not
  equal to, the whole-utterance result, since no chunk sees context beyond its edges.

Files are read with ``audio.iter_blocks`` (``BLOCK_S`` blocks), resampled back with one soxr
stream and written block by block to a temporary file that is renamed at the end, so an
hour-long file costs a few blocks of memory.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import soxr
import torch
from torch import nn

from .audio import (_CLIP_LEVEL as CLIP_LEVEL, RESAMPLE_QUALITY, AtomicWavWriter, AudioError, audio_info, iter_blocks, resample,
                    write_error)
from .checkpoint import PRETRAINED_DIR, CheckpointError
from .config import ConfigError
from .inference import enhance_waveform
from .stft import SAMPLE_RATE
from .stft_np import as_mono_float32
from .streaming import BACKENDS

DEFAULT_MODEL = PRETRAINED_DIR / "student.safetensors"
BLOCK_S = 30.0  # file read block
OFFLINE_CHUNK_S = 30.0  # non-causal models: chunk length ...
OFFLINE_OVERLAP_S = 1.0  # ... and crossfade overlap
#: hops per onnxruntime run when a student checkpoint is exported in memory for files and
#: arrays: their latency does not matter, and a run of 16 frames costs little more than one
#: of 1 (a 10 min file: RTF 0.0016 against 0.0047, docs/benchmarks.md; same output samples).
#: An ``.onnx`` file keeps its own; streams (``mtakd stream``) default to 1 (20 ms latency)
FILE_HOPS = 16


class EnhanceWarning(UserWarning):
    """Not an error, but worth telling: downmixed input, digital silence."""


# ----------------------------------------------------------------------------- chunking
class OverlapChunker:
    """``feed``/``flush`` for a whole-utterance function ``fn(wav (n,)) -> (n,)``.

    Chunk ``k`` covers input ``[k (C-O), k (C-O) + C)``; in each overlap of ``O`` samples the
    output fades linearly from the earlier chunk to the later one. Memory: ~2 chunks.
    """

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], chunk: int | None = None, overlap: int | None = None):
        self.fn = fn
        self.chunk = int(OFFLINE_CHUNK_S * SAMPLE_RATE) if chunk is None else int(chunk)
        self.overlap = int(OFFLINE_OVERLAP_S * SAMPLE_RATE) if overlap is None else int(overlap)
        if not 0 < 2 * self.overlap < self.chunk:
            raise ValueError(f"need 0 < 2*overlap < chunk, got chunk={self.chunk} overlap={self.overlap}")
        self._fade_in = ((np.arange(self.overlap) + 0.5) / self.overlap).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        self._pending: list[np.ndarray] = []
        self._n = 0
        self._tail: np.ndarray | None = None  # last O output samples of the previous chunk

    def _join(self, y: np.ndarray, last: bool) -> np.ndarray:
        o = self.overlap
        head = y[:o] if self._tail is None else self._tail + (y[:o] - self._tail) * self._fade_in
        body, self._tail = (y[o:], None) if last else (y[o:-o], y[-o:].copy())
        return np.concatenate((head, body))

    def feed(self, samples) -> np.ndarray:
        x = as_mono_float32(samples)
        self._pending.append(x)
        self._n += x.size
        outs = []
        while self._n >= self.chunk:
            buf = np.concatenate(self._pending)
            outs.append(self._join(np.asarray(self.fn(buf[: self.chunk]), np.float32), last=False))
            rest = buf[self.chunk - self.overlap :]  # the next chunk starts with this overlap
            self._pending, self._n = [rest], rest.size
        return np.concatenate(outs) if outs else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        buf = np.concatenate(self._pending) if self._pending else np.zeros(0, np.float32)
        if self._tail is None:
            out = np.asarray(self.fn(buf), np.float32) if buf.size else buf
        elif buf.size <= self.overlap:  # nothing beyond the overlap: the previous chunk covered it
            out = self._tail[: buf.size]
        else:
            out = self._join(np.asarray(self.fn(buf), np.float32), last=True)
        self.reset()
        return out


# ----------------------------------------------------------------------------- models
class Engine:
    """A loaded model on a backend; ``stream()`` gives a fresh ``feed``/``flush`` processor.

    ``hops``: when a causal torch model is exported for onnxruntime here, the step graph's hops
    per run (``export.onnx_bytes``; K > 1 adds ``(K - 1) * 10 ms`` of stream latency). An
    ``.onnx`` file keeps its own.
    """

    def __init__(self, model, backend: str = "torch", hops: int = 1):
        from .ort_runtime import OrtOfflineEnhancer, OrtStreamingEnhancer, model_kind, open_session
        from .streaming import StreamingEnhancer, resolve_torch_model

        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}")
        self.backend = backend
        try:
            if backend == "onnxruntime" and isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == ".onnx":
                session = open_onnx(open_session, model)
                self.causal = model_kind(session) == "step"
            else:
                net = resolve_torch_model(model)
                self.causal = callable(getattr(net, "step", None))
                if backend == "torch":
                    if self.causal:
                        self._make = lambda: StreamingEnhancer(net)
                    else:
                        fn = lambda x: enhance_waveform(net, torch.from_numpy(x)).numpy()  # noqa: E731
                        self._make = lambda: OverlapChunker(fn)
                    return
                from .export import onnx_bytes

                kind = "step" if self.causal else "offline"
                session = open_session(onnx_bytes(net, kind, hops=hops if self.causal else 1)[0])
        except ImportError as e:
            raise ConfigError(str(e)) from None
        except (ValueError, FileNotFoundError) as e:
            if isinstance(e, (CheckpointError, ConfigError)):
                raise
            raise CheckpointError(" ".join(str(e).split())) from None
        if self.causal:
            self._make = lambda: OrtStreamingEnhancer(session)
        else:
            offline = OrtOfflineEnhancer(session)
            self._make = lambda: OverlapChunker(offline)

    def stream(self):
        return self._make()


def open_onnx(open_session, path):
    """``open_session(path)``; onnxruntime's own errors (they are not ``ValueError``s) for a
    file that is not a valid ONNX model become a one-line ``CheckpointError``."""
    try:
        return open_session(path)
    except (ImportError, FileNotFoundError):
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime.capi...InvalidProtobuf, Fail, InvalidGraph...
        first = (str(e).strip().splitlines() or [type(e).__name__])[-1]
        raise CheckpointError(f"{path}: not a loadable ONNX model ({first}); export one with 'mtakd export'") from None


_PATH_CACHE: dict[tuple, Engine] = {}


def get_engine(model=None, backend: str = "torch", hops: int = 1) -> Engine:
    """Engine for a model, a checkpoint/ONNX path, or None (the shipped default).

    Paths are cached (the key includes mtime and size, so a rewritten file is reloaded).
    Model objects are not (the engine would keep them alive); with ``backend="onnxruntime"``
    each call exports the model in memory, so for repeated calls pass ``get_engine(model,
    "onnxruntime")`` itself as ``model``.
    """
    if isinstance(model, Engine):
        return model
    if isinstance(model, nn.Module):
        return Engine(model, backend, hops)
    if model is None:
        if not DEFAULT_MODEL.is_file():
            raise CheckpointError("no model is shipped with mtakd yet (mtakd/pretrained/student.safetensors is missing); "
                                  "pass a checkpoint with --model (Python: model=...)")
        model = DEFAULT_MODEL
    if isinstance(model, str) and model.startswith("pretrained:"):  # a shipped model by name
        from .checkpoint import resolve_checkpoint
        from .config import ConfigError

        try:
            model = resolve_checkpoint(model, key="model")
        except ConfigError as e:
            raise CheckpointError(str(e)) from None
    path = Path(model)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such model file; check the path")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size, backend, hops)
    if key not in _PATH_CACHE:
        _PATH_CACHE[key] = Engine(path, backend, hops)
    return _PATH_CACHE[key]


# ----------------------------------------------------------------------------- arrays
def _fit(y: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad to ``n`` (rate conversions may be off by a sample)."""
    return y[:n] if y.size >= n else np.concatenate((y, np.zeros(n - y.size, np.float32)))


def _downmix(x: np.ndarray, channel_axis: int, what: str) -> np.ndarray:
    if x.ndim == 1:
        return x
    if x.ndim != 2:
        raise ValueError(f"expected {what}, got shape {x.shape}")
    if x.shape[channel_axis] > 1:
        warnings.warn(f"{x.shape[channel_axis]} channels averaged to mono", EnhanceWarning, stacklevel=3)
    return x.mean(axis=channel_axis)


def _enhance_mono(x: np.ndarray, sr: int, engine: Engine) -> np.ndarray:
    x = as_mono_float32(x)
    if x.size == 0:
        raise ValueError("cannot enhance an empty signal (0 samples)")
    if not np.any(x):
        warnings.warn("input is digital silence; the output is silence too", EnhanceWarning, stacklevel=3)
    x16 = x if sr == SAMPLE_RATE else resample(x, sr, SAMPLE_RATE)
    s = engine.stream()
    y16 = np.concatenate((s.feed(x16), s.flush()))
    y = y16 if sr == SAMPLE_RATE else resample(y16, SAMPLE_RATE, sr)
    return _fit(y, x.size)


def enhance(x, model=None, sr: int | None = None, backend: str = "torch"):
    """Enhance a path, numpy array or tensor; see the module docstring for layouts and rates."""
    engine = get_engine(model, backend, FILE_HOPS)
    if isinstance(x, (str, os.PathLike)):
        if sr is not None:
            raise ValueError("sr is read from the file; pass sr only with arrays or tensors")
        return np.concatenate(list(enhance_file_blocks(Path(x), engine)))
    rate = SAMPLE_RATE if sr is None else int(sr)
    if isinstance(x, torch.Tensor):
        mono = _downmix(x.detach().cpu().float().numpy(), 0, "a tensor (samples,) or (channels, samples)")
        return torch.from_numpy(_enhance_mono(mono, rate, engine)).to(x.device)
    mono = _downmix(np.asarray(x, dtype=np.float32), 1, "an array (samples,) or (samples, channels)")
    return _enhance_mono(mono, rate, engine)


# ----------------------------------------------------------------------------- files
def enhance_file_blocks(path: Path, engine: Engine) -> Iterator[np.ndarray]:
    """Yield the enhanced file at its own rate, block by block; total length = the file's."""
    info = audio_info(path)
    if info.channels > 1:
        warnings.warn(f"{path}: {info.channels} channels averaged to mono", EnhanceWarning, stacklevel=2)
    if info.truncated:
        warnings.warn(f"{path}: the file is shorter than its header says (cut short?); the {info.frames} samples "
                      "present were enhanced", EnhanceWarning, stacklevel=2)
    back = None if info.orig_sr == SAMPLE_RATE else soxr.ResampleStream(SAMPLE_RATE, info.orig_sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    stream, left, heard, peak = engine.stream(), info.frames, False, 0.0
    blocks = iter_blocks(path, BLOCK_S)
    for last, b in _with_last(blocks):
        heard = heard or bool(np.any(b))
        peak = max(peak, float(np.abs(b).max(initial=0.0)))
        y = stream.feed(b)
        if last:
            y = np.concatenate((y, stream.flush()))
        if back is not None:
            y = back.resample_chunk(y, last=last)
        y = y[:left]
        left -= y.size
        if y.size:
            yield y
    if left > 0:
        yield np.zeros(left, np.float32)
    if not heard:
        warnings.warn(f"{path}: input is digital silence; the output is silence too", EnhanceWarning, stacklevel=2)
    elif peak >= CLIP_LEVEL:
        warnings.warn(f"{path}: input reaches full scale (clipped?); enhanced anyway, quality may suffer",
                      EnhanceWarning, stacklevel=2)


def _with_last(it):
    it = iter(it)
    prev = next(it, None)
    while prev is not None:
        nxt = next(it, None)
        yield nxt is None, prev
        prev = nxt


def enhance_file(src: str | os.PathLike, dst: str | os.PathLike, model=None, backend: str = "torch") -> None:
    """Enhance one file into ``dst`` (16-bit WAV at the input's rate, written atomically:
    block by block to a hidden temporary file, renamed at the end; removed on any failure)."""
    src, dst, engine = Path(src), Path(dst), get_engine(model, backend, FILE_HOPS)
    info = audio_info(src)
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise write_error(dst.parent, e) from None
    with AtomicWavWriter(dst, info.orig_sr) as out:
        for y in enhance_file_blocks(src, engine):
            if not np.isfinite(y).all():
                raise AudioError(dst, "the model produced NaN or Inf samples", "check the model")
            out.write(y)
        out.commit()

