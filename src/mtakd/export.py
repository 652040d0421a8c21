"""ONNX export of mtakd models, verified against PyTorch with onnxruntime.

Two kinds (stored as ``mtakd_kind`` in the ONNX metadata, with the model name/args):

* ``step`` (causal models only): the whole per-hop pipeline, not just ``model.step``::

      frame (1, 320) raw samples, state(s) -> out (1, 320), new state(s)

  i.e. ``analyze_frame -> model.step -> apply_mask -> synthesize_frame`` in one graph. Why:
  the runtime then needs no DFT of its own and makes one onnxruntime run per hop; framing and
  overlap-add stay in numpy (``stft_np.HopFramer``), shared with the torch streamer. The
  DFT matrices are graph constants (~0.8 MB, more than the default student's weights).
  For ``Student`` the graph is written node by node (``onnx_step``: 24 nodes instead of 61,
  one ``(1, 1, H)`` state per GRU layer); any other causal model is traced from
  ``onnx_graphs.StepGraph`` (one ``state (L, 1, H)``). Either way it is verified against the
  traced torch ``StepGraph``.

  ``hops=K`` (``mtakd export --hops K``, recorded as ``mtakd_hops``) makes the graph take K
  consecutive frames per run, ``frame (K, 320) -> out (K, 320)``: onnxruntime's fixed cost
  per run (and the Python around it, and reading the DFT matrices into cache) is then paid
  once per K hops. The price is latency: the runtime can only run a group once its last hop
  has arrived, so the stream's delay grows by ``(K - 1) * 10 ms`` (``HopFramer``). K = 1
  (the default) is the one-hop graph.
* ``offline`` (any model, teacher too): ``wav (1, N) -> enhanced (1, N)`` with dynamic ``N``,
  equal to ``inference.enhance_waveform``. ``STFT.forward`` frames with ``unfold``, which the
  exporter cannot handle for a dynamic length, so the graph frames by reshaping into hops
  (``N_FFT == 2 * HOP``: frame ``t`` = hops ``t`` and ``t+1``); the verification compares it
  with the real offline path, so any difference would be caught.

Export uses torch's TorchScript exporter (``dynamo=False``): the dynamo exporter needs the
``onnxscript`` package, which mtakd does not depend on. ``quantize=True`` adds a dynamic int8
copy (``<name>.int8.onnx``): MatMul/Gemm weights (fc_in/fc_out) become int8, one scale per
output unit (``quantize_bytes``); a GRU stays
float (onnxruntime has no dynamically quantised GRU), an LSTM student's recurrent weights become
int8 too (``DynamicQuantizeLSTM``), and the DFT is kept float on purpose.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import __version__
from .atomic import write_bytes_atomic
from .config import positive_int
from .stft_np import HOP, N_FFT, SAMPLE_RATE

if TYPE_CHECKING:  # torch is imported inside the functions: the CLI must start fast
    from torch import nn

KINDS = ("step", "offline")
#: torch is imported only when something is exported (``mtakd --help`` stays light);
#: the graphs live in ``onnx_graphs`` and stay importable from here
_GRAPHS = ("StepGraph", "OfflineGraph")
#: verification tolerance (max abs difference between PyTorch and onnxruntime outputs)
VERIFY_ATOL = 1e-4


class ExportError(ValueError):
    """Export failed or its verification did not match PyTorch."""


@dataclass
class ExportResult:
    path: Path
    kind: str
    size_bytes: int
    max_abs_diff: float | None  # PyTorch vs onnxruntime (None when verify=False)
    quantized_path: Path | None = None
    quantized_size_bytes: int | None = None
    quantized_snr_db: float | None = None  # agreement of int8 with float output on test audio


def _test_signal(n: int, seed: int = 0) -> np.ndarray:
    """Speech-like test audio: a gliding harmonic tone under a 3 Hz syllable envelope + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SAMPLE_RATE
    phase = 2 * np.pi * np.cumsum(140 + 20 * np.sin(2 * np.pi * 0.5 * t)) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 21))
    env = 0.5 - 0.5 * np.cos(2 * np.pi * 3 * t)
    return (0.05 * voiced * env + 0.01 * rng.standard_normal(n)).astype(np.float32)


def _metadata(model: nn.Module, kind: str, hops: int) -> dict[str, str]:
    from .models import model_args, model_lookahead, model_name

    try:
        name, args = model_name(model), model_args(model)
    except (ValueError, AttributeError, TypeError):
        name, args = type(model).__name__, {}
    meta = {
        "mtakd_kind": kind, "mtakd_version": __version__, "model_name": name, "model_args": json.dumps(args),
        "sample_rate": str(SAMPLE_RATE), "n_fft": str(N_FFT), "hop": str(HOP),
    }
    if kind == "step":  # frames per run; the runtime also reads it from the input shape
        meta["mtakd_hops"] = str(hops)
        # frames of look-ahead: the runtime's framing delays the output by as many hops
        meta["mtakd_lookahead"] = str(model_lookahead(model))
    return meta


def _with_metadata(data: bytes, meta: dict[str, str]) -> bytes:
    import onnx

    proto = onnx.load_from_string(data)
    old = {p.key: p.value for p in proto.metadata_props}
    old.update(meta)
    del proto.metadata_props[:]
    for k, v in old.items():
        proto.metadata_props.add(key=k, value=v)
    return proto.SerializeToString()


def _verify(data: bytes, graph: nn.Module, model: nn.Module, kind: str, hops: int = 1) -> float:
    """Max abs difference between onnxruntime and PyTorch on random audio (step: 50 runs of
    ``hops`` frames each, state carried)."""
    import torch

    from .inference import enhance_waveform
    from .ort_runtime import open_session

    sess = open_session(data)
    rng = np.random.default_rng(1234)
    diff = 0.0
    with torch.inference_mode():
        if kind == "step":
            frames = (0.1 * rng.standard_normal((50, hops, N_FFT))).astype(np.float32)
            st_t = graph.initial_states()  # (state (L, 1, H),) or with look-ahead (state, ahead (A, 2, F))
            names = [i.name for i in sess.get_inputs()][1:]
            shapes = [tuple(i.shape) for i in sess.get_inputs()][1:]
            # the same numbers in both, laid out differently: one packed state (traced graph) or one
            # (1, 1, H) state per layer (onnx_step), and the look-ahead spectra (A, 2, F) or (A, 2F)
            flat = np.concatenate([t.numpy().ravel() for t in st_t])
            st_o = np.split(flat, np.cumsum([int(np.prod(s)) for s in shapes])[:-1])
            st_o = [a.reshape(s) for a, s in zip(st_o, shapes)]
            for f in frames:  # 50 runs, each backend carrying its own state
                y_t, *st_t = graph(torch.from_numpy(f), *st_t)
                y_o, *st_o = sess.run(None, {"frame": f, **dict(zip(names, st_o))})
                diff = max(diff, float(np.abs(y_o - y_t.numpy()).max()),
                           float(np.abs(np.concatenate([a.ravel() for a in st_o])
                                        - np.concatenate([t.numpy().ravel() for t in st_t])).max()))
        else:
            for n in (SAMPLE_RATE + 37, SAMPLE_RATE // 4 + 3):  # two lengths: the axis is dynamic
                x = (0.1 * rng.standard_normal((1, n))).astype(np.float32)
                ref = enhance_waveform(model, torch.from_numpy(x)).numpy()
                out = sess.run(None, {"wav": x})[0]
                if out.shape != ref.shape:
                    raise ExportError(f"ONNX offline model returned shape {out.shape} for input {x.shape}")
                diff = max(diff, float(np.abs(out - ref).max()))
    return diff


def onnx_bytes(model: nn.Module, kind: str = "step", opset: int = 17, verify: bool = True,
               hops: int = 1) -> tuple[bytes, float | None]:
    """Export ``model`` to ONNX in memory: ``(bytes with mtakd metadata, max abs diff or None)``.
    ``hops``: frames per run of a step graph (see the module docstring); offline graphs: 1."""
    import torch

    from .models import Student
    from .onnx_graphs import OfflineGraph, StepGraph

    if kind not in KINDS:
        raise ExportError(f"unknown export kind '{kind}'; choose one of {', '.join(KINDS)}")
    if isinstance(hops, bool) or not isinstance(hops, int) or hops < 1:
        raise ExportError(f"hops must be an integer >= 1, got {hops!r}")
    if hops != 1 and kind != "step":
        raise ExportError("hops applies to step graphs only (an offline graph takes the whole waveform)")
    # a private CPU copy in eval mode: the caller's model keeps its device and mode
    model = copy.deepcopy(model).cpu().eval()
    if kind == "step":
        from .streaming import check_streamable

        check_streamable(model)
        graph = StepGraph(model, hops).eval()  # the reference the export is verified against
        args = (torch.zeros(hops, N_FFT), *graph.initial_states())
        extra = ["ahead"] if graph.lookahead else []  # a look-ahead model's kept spectra
        names = dict(input_names=["frame", "state"] + extra, output_names=["out", "state_out"] + [e + "_out" for e in extra])
        if type(model) is Student and not model.cfg.phase_input:  # exactly what onnx_step writes out
            from .onnx_step import student_step_bytes

            return _finish(student_step_bytes(model, opset, hops), graph, model, kind, verify, hops)
    else:
        graph = OfflineGraph(model).eval()
        args = (torch.zeros(1, SAMPLE_RATE // 10),)
        names = dict(input_names=["wav"], output_names=["enhanced"], dynamic_axes={"wav": {1: "samples"}, "enhanced": {1: "samples"}})
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation and tracer notes
        with torch.no_grad():
            torch.onnx.export(graph, args, buf, dynamo=False, opset_version=opset, do_constant_folding=True, **names)
    return _finish(buf.getvalue(), graph, model, kind, verify, hops)


def _finish(data: bytes, graph: nn.Module, model: nn.Module, kind: str, verify: bool,
            hops: int = 1) -> tuple[bytes, float | None]:
    """Add the mtakd metadata and (optionally) verify against PyTorch."""
    data = _with_metadata(data, _metadata(model, kind, hops))
    diff = None
    if verify:
        diff = _verify(data, graph, model, kind, hops)
        if not diff <= VERIFY_ATOL:
            raise ExportError(f"ONNX {kind} export does not match PyTorch: max abs diff {diff:.3g} > {VERIFY_ATOL:g}")
    return data, diff


def quantized_path(out_path: str | os.PathLike) -> Path:
    """``student.onnx`` -> ``student.int8.onnx``."""
    p = Path(out_path)
    return p.with_name(p.stem + ".int8" + (p.suffix or ".onnx"))


def quantize_bytes(data: bytes, per_channel: bool = True) -> bytes:
    """Dynamic int8 quantisation of MatMul/LSTM weights; the DFT MatMuls stay float.

    ``per_channel``: one int8 scale per output unit of each weight matrix, not one per matrix.
    Why: one scale is set by the largest weight of the matrix, and the output layer's rows
    (one per frequency bin) and the look-ahead student's input rows differ several-fold in
    range. Per channel, the int8 output of the shipped students is closer to the float one
    (docs/lookahead_speed.md: worst dev file 34.3 dB from float instead of 23.5 dB, for the
    look-ahead student)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from .onnx_step import DFT_PREFIX

    proto = onnx.load_from_string(data)
    # the DFT matrices: int8 would add audible noise. onnx_step names its DFT nodes dft_*; in a
    # traced graph they are the constants B of shape (N_FFT, 2F) or (2F, N_FFT)
    shapes = ((N_FFT, N_FFT + 2), (N_FFT + 2, N_FFT))
    consts = {n.output[0] for n in proto.graph.node if n.op_type == "Constant" and n.attribute
              and n.attribute[0].name == "value" and tuple(n.attribute[0].t.dims) in shapes}
    consts |= {i.name for i in proto.graph.initializer if tuple(i.dims) in shapes}
    dft = [n.name for n in proto.graph.node if n.name.startswith(DFT_PREFIX)
           or (n.op_type == "MatMul" and len(n.input) == 2 and n.input[1] in consts)]
    with tempfile.TemporaryDirectory() as d:
        src, dst = Path(d) / "f.onnx", Path(d) / "q.onnx"
        src.write_bytes(data)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # quantize_dynamic logs a pre-processing hint on every call
        try:
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, nodes_to_exclude=dft,
                             per_channel=per_channel)
        finally:
            root.setLevel(level)
        return _with_metadata(dst.read_bytes(), {"mtakd_quantized": "int8-dynamic"})


def _snr_db(ref: np.ndarray, est: np.ndarray) -> float:
    err = float(np.sum((ref.astype(np.float64) - est) ** 2))
    return float("inf") if err == 0 else float(10 * np.log10(float(np.sum(ref.astype(np.float64) ** 2)) / err))


def export_onnx(
    ckpt_or_model,
    out_path: str | os.PathLike,
    kind: str = "step",
    opset: int = 17,
    verify: bool = True,
    overwrite: bool = False,
    quantize: bool = False,
    hops: int = 1,
) -> ExportResult:
    """Export a checkpoint path or model to ``out_path`` (atomic; see the module docstring).

    Refuses (``FileExistsError``) to replace an existing file unless ``overwrite=True``;
    raises ``ExportError`` when the onnxruntime output differs from PyTorch by more than
    ``VERIFY_ATOL``. With ``quantize=True`` also writes ``quantized_path(out_path)``.
    ``hops``: frames per run of a step graph (adds ``(hops - 1) * 10 ms`` of stream latency).
    """
    out = Path(out_path)
    targets = [out] + ([quantized_path(out)] if quantize else [])
    for t in targets:
        if t.exists() and not overwrite:
            raise FileExistsError(f"{t}: already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise ExportError(f"{out}: output folder '{out.parent}' does not exist; create it first")
    if isinstance(ckpt_or_model, (str, os.PathLike)):
        from .checkpoint import load_model

        model = load_model(ckpt_or_model)
    else:
        model = ckpt_or_model
    data, diff = onnx_bytes(model, kind, opset, verify, hops)
    write_bytes_atomic(out, data)
    result = ExportResult(path=out, kind=kind, size_bytes=out.stat().st_size, max_abs_diff=diff)
    if quantize:
        qdata = quantize_bytes(data)
        from .ort_runtime import enhance_array

        x = _test_signal(2 * SAMPLE_RATE)
        result.quantized_snr_db = _snr_db(enhance_array(data, x), enhance_array(qdata, x))
        write_bytes_atomic(targets[1], qdata)
        result.quantized_path, result.quantized_size_bytes = targets[1], targets[1].stat().st_size
    return result


# ----------------------------------------------------------------------------- CLI
def cmd_export(args) -> int:
    import sys

    if args.hops != 1 and args.kind != "step":
        print("mtakd: error: --hops applies to --kind step only (an offline graph takes the whole waveform)", file=sys.stderr)
        return 2
    try:
        r = export_onnx(args.checkpoint, args.output, kind=args.kind, opset=args.opset, verify=not args.no_verify,
                        overwrite=args.overwrite, quantize=args.quantize, hops=args.hops)
    except FileExistsError as e:
        print(f"mtakd: error: {e}", file=sys.stderr)
        return 2
    except ExportError as e:
        print(f"mtakd: error: {e}", file=sys.stderr)
        return 1
    check = f", verified (max abs diff {r.max_abs_diff:.2e})" if r.max_abs_diff is not None else ", not verified"
    print(f"wrote {r.path} ({r.kind}, {r.size_bytes / 1e6:.2f} MB{check})")
    if r.quantized_path is not None:
        print(f"wrote {r.quantized_path} (int8, {r.quantized_size_bytes / 1e6:.2f} MB, "
              f"output SNR vs float {r.quantized_snr_db:.1f} dB)")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX (streaming step or whole-utterance)")
    p.add_argument("checkpoint", help="mtakd checkpoint (.safetensors)")
    p.add_argument("-o", "--output", required=True, help="output .onnx file")
    p.add_argument("--kind", choices=KINDS, default="step",
                   help="step: per-hop streaming graph (causal students); offline: whole waveform, any model")
    p.add_argument("--hops", type=positive_int, default=1, metavar="K",
                   help="step graphs: process K consecutive 10 ms hops per onnxruntime run (default 1). Less "
                        "overhead per hop, but the stream's latency grows by (K-1) x 10 ms: 20 ms at K=1, "
                        "30 ms at K=2, 50 ms at K=4 (+10 ms per look-ahead frame of the model)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--quantize", action="store_true", help="also write a dynamic int8 copy <name>.int8.onnx")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--no-verify", action="store_true", help="skip the onnxruntime vs PyTorch check")
    p.set_defaults(func=cmd_export)


def __getattr__(name: str):
    if name in _GRAPHS:
        from . import onnx_graphs

        return getattr(onnx_graphs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
