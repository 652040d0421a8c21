"""Inference with exported ONNX models using only numpy + onnxruntime (no torch import).

Minimal inference-only install: the ``.onnx`` file from ``mtakd export`` plus numpy,
onnxruntime and soundfile suffice::

    pip install --no-deps mtakd            # the package without torch & co.
    pip install numpy onnxruntime soundfile
    python -m mtakd.ort_runtime student.onnx noisy.wav enhanced.wav

(``import mtakd.ort_runtime`` imports only ``mtakd.stft_np``, ``mtakd.atomic`` (standard
library), numpy and, when a model is opened, onnxruntime; ``import mtakd`` is lazy.) Input
files must already be 16 kHz: resampling needs soxr, which this minimal path leaves out;
multichannel files are averaged to mono.

Two kinds of ONNX file (``mtakd_kind`` in the model metadata, see ``mtakd.export``):

* ``step``: the per-hop pipeline ``frame (1, 320) raw samples, state (L, 1, H) ->
  out (1, 320) windowed synthesis frame, state_out (L, 1, H)`` (DFT, model step, mask and
  inverse DFT all inside the graph). ``OrtStreamingEnhancer`` adds the framing and
  overlap-add (``stft_np.HopFramer``), exactly as the torch streamer does.
* ``offline``: ``wav (1, N) -> enhanced (1, N)``, dynamic ``N`` (any model, teacher too):
  ``OrtOfflineEnhancer``.
"""
from __future__ import annotations

import io
import os
import sys

import numpy as np

from .atomic import os_error_reason, write_bytes_atomic
from .stft_np import N_FFT, SAMPLE_RATE, HopFramer, as_mono_float32

__all__ = ["open_session", "model_kind", "OrtStepProcessor", "OrtStreamingEnhancer", "OrtOfflineEnhancer", "enhance_array", "main"]


def open_session(model, threads: int = 1):
    """``model``: path to an ``.onnx`` file, its bytes, or an open ``InferenceSession``."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImportError("the onnxruntime backend needs the 'onnxruntime' package: pip install onnxruntime") from None
    if isinstance(model, ort.InferenceSession):
        return model
    so = ort.SessionOptions()
    # a per-hop graph is tiny: more threads only add synchronisation cost
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    if isinstance(model, (str, os.PathLike)) and not os.path.isfile(model):
        raise FileNotFoundError(f"{model}: no such ONNX file")
    src = bytes(model) if isinstance(model, (bytes, bytearray)) else os.fspath(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def model_kind(session) -> str:
    """``'step'`` or ``'offline'`` from the metadata (guessed from the inputs if absent)."""
    meta = session.get_modelmeta().custom_metadata_map
    if "mtakd_kind" in meta:
        return meta["mtakd_kind"]
    names = [i.name for i in session.get_inputs()]
    return "step" if names == ["frame", "state"] else "offline"


class OrtStepProcessor:
    """``HopFramer`` processor running the ``step`` graph, one ``session.run`` per frame."""

    def __init__(self, model, threads: int = 1):
        self.session = open_session(model, threads)
        if model_kind(self.session) != "step":
            raise ValueError("this ONNX file is not a step model; export one with 'mtakd export --kind step'")
        frame_in, state_in = self.session.get_inputs()
        if list(frame_in.shape) != [1, N_FFT]:
            raise ValueError(f"step model expects frames {frame_in.shape}, mtakd streams (1, {N_FFT})")
        self._state_shape = tuple(int(d) for d in state_in.shape)
        self._names = (frame_in.name, state_in.name)
        self._outputs = [o.name for o in self.session.get_outputs()]
        self.state = np.zeros(self._state_shape, np.float32)

    def reset(self) -> None:
        self.state = np.zeros(self._state_shape, np.float32)

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        run, (fname, sname), outs = self.session.run, self._names, self._outputs
        state = self.state
        if frames.shape[0] == 1:
            y, state = run(outs, {fname: np.ascontiguousarray(frames), sname: state})
        else:
            y = np.empty((frames.shape[0], N_FFT), np.float32)
            for i in range(frames.shape[0]):
                y[i : i + 1], state = run(outs, {fname: np.ascontiguousarray(frames[i : i + 1]), sname: state})
        self.state = state
        return y


class OrtStreamingEnhancer(HopFramer):
    """The streaming enhancer on onnxruntime (torch-free); same API and output convention as
    ``mtakd.streaming.StreamingEnhancer``: ``feed(samples) -> samples``, ``flush()``, ``reset()``."""

    def __init__(self, model, threads: int = 1, max_frames: int = 1024):
        super().__init__(OrtStepProcessor(model, threads), max_frames=max_frames)


class OrtOfflineEnhancer:
    """Whole-utterance ONNX model: ``__call__(wav (N,)) -> enhanced (N,)`` float32."""

    def __init__(self, model, threads: int = 1):
        self.session = open_session(model, threads)
        if model_kind(self.session) != "offline":
            raise ValueError("this ONNX file is not an offline model; export one with 'mtakd export --kind offline'")
        self._name = self.session.get_inputs()[0].name

    def __call__(self, wav) -> np.ndarray:
        x = as_mono_float32(wav)
        if x.size == 0:
            return x
        return self.session.run(None, {self._name: x[None, :]})[0][0]


def enhance_array(model, wav, threads: int = 1) -> np.ndarray:
    """Enhance 16 kHz mono ``wav (N,)`` with a step or offline ONNX model -> ``(N,)``."""
    session = open_session(model, threads)
    if model_kind(session) == "step":
        s = OrtStreamingEnhancer(session)
        return np.concatenate((s.feed(wav), s.flush()))
    return OrtOfflineEnhancer(session)(wav)


def main(argv: list[str] | None = None) -> int:
    """``python -m mtakd.ort_runtime MODEL.onnx IN.wav OUT.wav`` (16 kHz input)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python -m mtakd.ort_runtime MODEL.onnx IN.wav OUT.wav", file=sys.stderr)
        return 2
    import soundfile as sf

    model, src, dst = argv
    try:
        x, sr = sf.read(src, dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001 - any reader failure is one line for the user
        print(f"error: {src}: cannot be read as audio ({' '.join(str(e).split())})", file=sys.stderr)
        return 2
    if sr != SAMPLE_RATE:
        print(f"error: {src}: sample rate {sr} Hz; this minimal runtime needs {SAMPLE_RATE} Hz input (resample first, or use 'mtakd enhance')", file=sys.stderr)
        return 2
    y = enhance_array(model, x.mean(axis=1))
    pcm = np.clip(np.round(y.astype(np.float64) * 32768.0), -32768, 32767).astype(np.int16)
    buf = io.BytesIO()
    sf.write(buf, pcm, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    try:
        write_bytes_atomic(dst, buf.getbuffer())  # never a half-written output under the final name
    except OSError as e:
        print(f"error: {dst}: cannot write ({os_error_reason(e)})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
