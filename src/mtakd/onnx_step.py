"""The per-hop ONNX graph of the default student, written node by node for speed.

``mtakd.export`` (``kind="step"``) builds this graph for ``Student`` instead of tracing
``onnx_graphs.StepGraph``. Both compute the same pipeline (``analyze_frame -> Student.step ->
apply_mask -> synthesize_frame``); the export checks this one against the traced torch
reference on every export (``VERIFY_ATOL``) and the tests do so for several model sizes.

Why by hand: at one thread a hop costs ~0.1 ms, and what onnxruntime spends on it is mostly
per node (~1-2 us for each small node with the caches cold, as they are between hops;
~5-20 us for each MatMul/Gemm/GRU), not arithmetic. The traced graph had 61 nodes (plus 49
``Constant``), including Transpose/Squeeze/Unsqueeze/Split/Concat/Slice around the GRUs and
the state; this one has 24 (onnxruntime fuses one more away), none of them for layout:

* spectra are kept as ``(2, 1, F)`` (real/imag first) so the feature and mask reductions are
  a single ``ReduceSumSquare`` over axis 0, and the GRU's ``(seq, batch, H)`` = ``(1, 1, H)``
  is also its ``Y_h``, so layer ``l``'s ``Y_h`` feeds layer ``l+1`` and is the new state;
* one state tensor per GRU layer (``state0``, ``state1``, ...; each ``(1, 1, H)``) instead of
  one ``(L, 1, H)``: no Split/Concat (measured: a packed state cost 3-5 % more per hop);
* the complex product of spectrum and mask is one broadcast ``Mul`` to ``(2, 2, 1, F)``
  (all four real products) and a ``(2, 4)`` matmul that adds them up, so the synthesis
  matrix is read once (the alternative, a ``(4F, N_FFT)`` synthesis matrix, reads twice
  the bytes and was slower); ``mask_bound`` is folded into that small matrix;
* PReLU with one slope is written as ``LeakyRelu``, which onnxruntime fuses into the
  ``Gemm`` before it (``FusedGemm``).

The GRU is onnxruntime's ``GRU`` op (``linear_before_reset=1`` is torch's formulation) on
the ``nn.GRU`` parameters, gates reordered from torch's (r, z, n) to ONNX's (z, r, h). An LSTM
student (``cell="lstm"``) gets onnxruntime's ``LSTM`` op, gates reordered from torch's
(i, f, g, o) to ONNX's (i, o, f, c), and two states per layer (h, then c: ``state{L + l}``). A
hand-written cell (two Gemm + ~11 element-wise nodes per layer) measured slower. The
dense DFT matmuls stay: a two-stage FFT written as matmuls needs ~16 more nodes and was
slower, and folding the frame's symmetric halves (half the DFT bytes) was no faster. DFT
nodes and constants are named ``dft_*`` so that int8 quantisation leaves them float.

Interface (``mtakd_kind = "step"``): ``frame (1, N_FFT)``, ``state0 .. state{L-1}
(1, 1, H)`` (and ``ahead (A, 2F)`` for a student with ``A`` frames of look-ahead) ->
``out (1, N_FFT)`` (windowed synthesis frame), ``state_out0 ..`` in the same order;
``mtakd.ort_runtime.OrtStepProcessor`` accepts any number of state tensors.

Multi-hop graphs (``hops=K``, metadata ``mtakd_hops``): ``frame (K, N_FFT)`` holds K
consecutive frames and ``out (K, N_FFT)`` their synthesis frames; the states are still
``(1, 1, H)``, carried through the K steps by the GRU op itself (its sequence axis), while
the DFT, feature, head and mask nodes each run once on all K frames. What a run costs
besides arithmetic (per-node dispatch, the Python and IOBinding call, bringing the ~0.8 MB
of DFT matrices into cache) is thus paid once per K hops; the runtime has to wait for the
K-th hop before it can run, which adds ``(K - 1)`` hops of latency (``stft_np.HopFramer``).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np

from .stft_np import N_FFT, N_FREQ, dft_matrices

#: name prefix of the DFT nodes and constants (``export.quantize_bytes`` keeps them float)
DFT_PREFIX = "dft_"


def _gates_to_onnx(a: np.ndarray) -> np.ndarray:
    """torch's GRU gate blocks (r, z, n) along axis 0 -> ONNX's (z, r, h)."""
    r, z, n = np.split(a, 3, axis=0)
    return np.concatenate((z, r, n), axis=0)


def _lstm_gates_to_onnx(a: np.ndarray) -> np.ndarray:
    """torch's LSTM gate blocks (i, f, g, o) along axis 0 -> ONNX's (i, o, f, c)."""
    i, f, g, o = np.split(a, 4, axis=0)
    return np.concatenate((i, o, f, g), axis=0)


class _Graph:
    """Tiny helper: float32/int64 constants and nodes with generated names."""

    def __init__(self):
        self.nodes, self.inits, self._n = [], [], 0

    def const(self, name: str, value, dtype=np.float32) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype=dtype)), name))
        return name

    def shape(self, name: str, *dims: int) -> str:
        return self.const(name, dims, np.int64)

    def node(self, op: str, inputs: list[str], out: str | None = None, name: str | None = None, **attrs) -> str:
        from onnx import helper

        self._n += 1
        out = out or f"{op.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name or f"{op}_{self._n}", **attrs))
        return out


def student_step_model(params: Mapping[str, np.ndarray], n_freq: int, input_size: int, hidden: int,
                       layers: int, mask_bound: float, opset: int = 17, hops: int = 1, cell: str = "gru",
                       lookahead: int = 0, mask: str = "complex", local_head: int = 0):
    """The step graph of a ``Student`` as an ``onnx.ModelProto``, ``hops`` (K) frames per run.

    ``cell="lstm"``: the ``lstm.*`` parameters (4 gate blocks) run as onnxruntime's ``LSTM``
    op, and the states are ``state0 .. state{L-1}`` (h of each layer) then ``state{L} ..
    state{2L-1}`` (c), the order of the student's packed ``(2L, 1, H)`` state.

    ``params``: the model's ``state_dict`` as float numpy arrays (``fc_in.weight (I, F)``,
    ``fc_ahead.weight (I, A F)`` with look-ahead, ``act.weight (1,)`` or ``(I,)``, ``gru.weight_ih_l{l} (3H, I or H)``, ``gru.weight_hh_l{l}
    (3H, H)``, ``gru.bias_*_l{l} (3H,)``, ``fc_out.weight (2F, H)``, ``fc_out.bias (2F,)``).
    ``frame (K, N_FFT)``, ``state{l} (1, 1, H)`` -> ``out (K, N_FFT)``, ``state_out{l}``.
    ``hops=1`` is the measured one-hop graph described above; ``hops=K > 1`` keeps the frame
    index first in every tensor (see ``_tensor_shapes``) and adds one Reshape per GRU layer
    but the last (the layer's ``Y (K, 1, 1, H)`` is the next layer's ``X (K, 1, H)``).

    ``lookahead=A > 0``: one more state, ``ahead (A, 2F)`` (the last ``A`` spectra as the
    analysis MatMul gives them; the runtime's ``prefill`` writes a stream's first ``A`` there) -> ``ahead_out``, after the recurrent
    states; ``out`` holds the synthesis frames of the frames ``A`` hops before the newest
    (metadata ``mtakd_lookahead``; ``HopFramer`` shifts the output back). Seven more nodes for
    A = 1: a Concat of kept and new spectra, Slices for the kept and the masked rows, a Reshape
    for the features of all rows, a Slice per window frame and a Concat of the windows.

    ``mask="real"`` (``fc_out.weight (F, H)``): the gain ``sigmoid(raw)`` multiplies the spectrum
    directly, ``mask_bound`` folded into the synthesis matrix (the synthesis is linear); no
    mask-magnitude nodes and no mix matmul. ``mask="tanh"``: the same with the gain
    ``tanh(sqrt(raw^2 + eps))`` (four elementwise nodes instead of the Sigmoid).

    ``local_head=k`` (``local_in.weight (Ch, 1 + C, k)``, ``local_act.weight``, ``local_out.weight
    (C, Ch, 1)``, biases; C = 2 mask channels, or 1): the per-bin refinement adds to the raw mask
    ``Conv(k) -> PRelu -> Conv(1)`` over [the masked frame's features, the raw mask], each frame a
    row of the batch axis: eight more nodes (three Reshapes, a Concat, two Conv, the activation,
    an Add), and a Slice of the masked frame's features with look-ahead.
    """
    from onnx import helper

    from .models.common import FEATURE_EPS, FEATURE_POWER, MASK_EPS  # (imports torch)
    from .models.student import MASKS

    if n_freq != N_FREQ:
        raise ValueError(f"the step graph is built for the STFT's {N_FREQ} bins, the model has {n_freq}")
    if not (isinstance(hops, int) and hops >= 1):
        raise ValueError(f"hops must be an integer >= 1, got {hops!r}")
    if mask not in MASKS:
        raise ValueError(f"the step graph is built for a mask of {', '.join(MASKS)}, got {mask!r}")
    p = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
    F, H, K, A = n_freq, hidden, hops, int(lookahead)
    sh = _tensor_shapes(K, F)
    fwd, inv = dft_matrices(N_FFT)  # (N_FFT, 2F), (2F, N_FFT)
    g = _Graph()

    # ---- analysis and input features: frame (K, N_FFT) -> spec -> feat (K, F)
    spec = g.node("MatMul", ["frame", g.const("dft_fwd", fwd)], name="dft_analysis")  # (K, 2F)
    eps, exp = g.const("feature_eps", FEATURE_EPS), g.const("feature_exp", 0.5 * FEATURE_POWER)
    if A == 0:
        spec = g.node("Reshape", [spec, g.shape("shape_spec", *sh["spec"])], "spec")
        ss = g.node("ReduceSumSquare", [spec], axes=sh["spec_axes"], keepdims=0)  # |X|^2 (K, F)
        feat = g.node("Pow", [g.node("Add", [ss, eps]), exp], "feat")
    else:  # look-ahead: the kept spectra, then the K new; frame k is masked with k+1..k+A
        rows = g.node("Concat", ["ahead", spec], "spec_rows", axis=0)  # (A + K, 2F)
        axis0 = g.shape("axis0", 0)
        g.node("Slice", [rows, g.shape("ahead_start", K), g.shape("ahead_end", K + A), axis0], "ahead_out")
        spec = g.node("Slice", [rows, g.shape("masked_start", 0), g.shape("masked_end", K), axis0])
        spec = g.node("Reshape", [spec, g.shape("shape_spec", *sh["spec"])], "spec")
        ss = g.node("ReduceSumSquare", [g.node("Reshape", [rows, g.shape("shape_rows", A + K, 2, F)])], axes=[1],
                    keepdims=0)  # |X|^2 (A + K, F)
        every = g.node("Pow", [g.node("Add", [ss, eps]), exp], "feat_rows")
        # (K, (A + 1) F): frame k's features, then its A successors' (fc_in's column blocks)
        feat = g.node("Concat", [g.node("Slice", [every, g.shape(f"win{j}_start", j), g.shape(f"win{j}_end", j + K), axis0])
                                 for j in range(A + 1)], "feat", axis=1)
    w_in = np.concatenate((p["fc_in.weight"], p["fc_ahead.weight"]), axis=1) if A else p["fc_in.weight"]
    x = g.node("Gemm", [feat, g.const("fc_in_w", w_in), g.const("fc_in_b", p["fc_in.bias"])], transB=1)
    slope = p["act.weight"].reshape(-1)
    if slope.size == 1:  # shared slope: LeakyRelu, fused into the Gemm by onnxruntime
        x = g.node("LeakyRelu", [x], alpha=float(slope[0]))
    else:
        x = g.node("PRelu", [x, g.const("prelu_slope", slope)])
    x = g.node("Reshape", [x, g.shape("shape_rnn_in", K, 1, input_size)], "rnn_in")  # (seq, batch, I)

    # ---- recurrent layers over the K frames. Y_h (1, 1, H) is the new state; with K = 1 it is
    # also the whole output sequence, so it feeds the next layer directly (no Y, no Reshape)
    if cell not in ("gru", "lstm"):
        raise ValueError(f"the step graph is built for a GRU or LSTM student, got cell {cell!r}")
    reorder = _gates_to_onnx if cell == "gru" else _lstm_gates_to_onnx
    for l in range(layers):
        w = reorder(p[f"{cell}.weight_ih_l{l}"])[None]
        r = reorder(p[f"{cell}.weight_hh_l{l}"])[None]
        b = np.concatenate((reorder(p[f"{cell}.bias_ih_l{l}"]), reorder(p[f"{cell}.bias_hh_l{l}"])))[None]
        y = "" if K == 1 else f"{cell}{l}_y"  # Y (K, 1, 1, H)
        ins = [x, g.const(f"{cell}{l}_w", w), g.const(f"{cell}{l}_r", r), g.const(f"{cell}{l}_b", b), "", f"state{l}"]
        if cell == "gru":
            g.nodes.append(helper.make_node("GRU", ins, [y, f"state_out{l}"], name=f"GRU_l{l}",
                                            hidden_size=H, linear_before_reset=1))
        else:  # initial_c / Y_c are the layer's cell state, carried as state{L + l}
            g.nodes.append(helper.make_node("LSTM", ins + [f"state{layers + l}"],
                                            [y, f"state_out{l}", f"state_out{layers + l}"], name=f"LSTM_l{l}", hidden_size=H))
        if K == 1:
            x = f"state_out{l}"
        elif l < layers - 1:
            x = g.node("Reshape", [y, g.shape(f"shape_{cell}{l}_y", K, 1, H)])
        else:
            x = y

    h = g.node("Reshape", [x, g.shape("shape_head_in", K, H)])
    raw = g.node("Gemm", [h, g.const("fc_out_w", p["fc_out.weight"]), g.const("fc_out_b", p["fc_out.bias"])], transB=1)
    if local_head:
        raw = _local_refinement(g, p, raw, feat, K, F, 2 if mask == "complex" else 1, local_head, bool(A))
    if mask != "complex":  # ---- one gain per bin: spec * gain(raw), bound folded into the synthesis
        if mask == "real":
            gain = g.node("Sigmoid", [raw], "gain")  # (K, F)
        else:  # tanh(|raw|), |raw| smoothed as the complex mask's magnitude is
            sq = g.node("Add", [g.node("Mul", [raw, raw]), g.const("mask_eps", MASK_EPS)])
            gain = g.node("Tanh", [g.node("Sqrt", [sq])], "gain")
        if K > 1:
            gain = g.node("Reshape", [gain, g.shape("shape_gain", K, 1, 1, F)])
        masked = g.node("Reshape", [g.node("Mul", [spec, gain], "masked_spec"), g.shape("shape_masked", K, 2 * F)])
        g.node("MatMul", [masked, g.const("dft_inv", mask_bound * inv)], out="out", name="dft_synthesis")
        return _finish(g, K, H, A, layers, cell, opset)

    # ---- bounded complex mask: raw (K or 2, ...), mask = raw * tanh|raw| / |raw|
    raw = g.node("Reshape", [raw, g.shape("shape_raw", *sh["raw"])], "raw")
    mag = g.node("Sqrt", [g.node("Add", [g.node("ReduceSumSquare", [raw], axes=sh["raw_axes"], keepdims=1),
                                         g.const("mask_eps", MASK_EPS)])], "mask_mag")
    mask = g.node("Mul", [raw, g.node("Div", [g.node("Tanh", [mag]), mag])], "mask")

    # ---- apply the mask and synthesise: prod[.., a, b, ..] = mask[a] * spec[b] (4 products per bin)
    prod = g.node("Reshape", [g.node("Mul", [spec, mask]), g.shape("shape_prod", *sh["prod"])])
    # rows of prod: mr*sr, mr*si, mi*sr, mi*si -> real = mr*sr - mi*si, imag = mr*si + mi*sr
    mix = mask_bound * np.array([[1.0, 0.0, 0.0, -1.0], [0.0, 1.0, 1.0, 0.0]])
    masked = g.node("MatMul", [g.const("dft_mask_mix", mix), prod], name="dft_mask_mix")  # (2, F) or (K, 2, F)
    masked = g.node("Reshape", [masked, g.shape("shape_masked", K, 2 * F)])
    g.node("MatMul", [masked, g.const("dft_inv", inv)], out="out", name="dft_synthesis")  # (K, N_FFT)
    return _finish(g, K, H, A, layers, cell, opset)


def _local_refinement(g: "_Graph", p: Mapping[str, np.ndarray], raw: str, feat: str, K: int, F: int, C: int,
                      k: int, ahead: bool) -> str:
    """``raw (K, C F)`` plus ``Student``'s per-bin refinement of it from ``feat`` (the masked
    frames' compressed magnitude in its first ``F`` columns) -> ``(K, C F)``."""
    if ahead:  # (K, (A + 1) F): frame k's own features come first
        feat = g.node("Slice", [feat, g.shape("local_mag_start", 0), g.shape("local_mag_end", F), g.shape("axis1", 1)])
    mag = g.node("Reshape", [feat, g.shape("shape_local_mag", K, 1, F)])
    raw3 = g.node("Reshape", [raw, g.shape("shape_local_raw", K, C, F)])
    x = g.node("Concat", [mag, raw3], axis=1)  # (K, 1 + C, F)
    x = g.node("Conv", [x, g.const("local_in_w", p["local_in.weight"]), g.const("local_in_b", p["local_in.bias"])],
               pads=[k // 2, k // 2])
    slope = p["local_act.weight"].reshape(-1)
    x = g.node("LeakyRelu", [x], alpha=float(slope[0])) if slope.size == 1 else \
        g.node("PRelu", [x, g.const("local_slope", slope.reshape(-1, 1))])
    x = g.node("Conv", [x, g.const("local_out_w", p["local_out.weight"]), g.const("local_out_b", p["local_out.bias"])])
    return g.node("Reshape", [g.node("Add", [raw3, x]), g.shape("shape_local_out", K, C * F)])


def _finish(g: "_Graph", K: int, H: int, A: int, layers: int, cell: str, opset: int):
    """The graph's inputs and outputs (frame, states, look-ahead rows) -> checked ``ModelProto``."""
    from onnx import TensorProto, checker, helper

    F = N_FREQ
    f32 = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("frame", f32, [K, N_FFT])]
    n_states = layers * (2 if cell == "lstm" else 1)
    inputs += [helper.make_tensor_value_info(f"state{l}", f32, [1, 1, H]) for l in range(n_states)]
    outputs = [helper.make_tensor_value_info("out", f32, [K, N_FFT])]
    outputs += [helper.make_tensor_value_info(f"state_out{l}", f32, [1, 1, H]) for l in range(n_states)]
    if A:
        inputs.append(helper.make_tensor_value_info("ahead", f32, [A, 2 * F]))
        outputs.append(helper.make_tensor_value_info("ahead_out", f32, [A, 2 * F]))
    model = helper.make_model(helper.make_graph(g.nodes, "mtakd_student_step", inputs, outputs, g.inits),
                              opset_imports=[helper.make_opsetid("", opset)], producer_name="mtakd")
    model.ir_version = min(model.ir_version, 8)  # loadable by older onnxruntime releases too
    checker.check_model(model)
    return model


def _tensor_shapes(hops: int, n_freq: int) -> dict:
    """Layouts of the spectrum, raw mask and product, and the (real, imag) reduction axes.

    One hop: real/imag first, ``spec (2, 1, F)``, ``raw (2, 1, 1, F)``, ``prod (2, 2, 1, F) ->
    (4, F)`` (the measured layout above). K hops: the frame first, as the analysis MatMul and
    the head Gemm produce it (a real/imag-first layout would need Transposes):
    ``spec (K, 1, 2, F)``, ``raw (K, 2, 1, F)``, ``prod (K, 2, 2, F) -> (K, 4, F)``; the
    ``(2, 4)`` mix matrix then broadcasts over K to ``(K, 2, F)``.
    """
    F, K = n_freq, hops
    if K == 1:
        return {"spec": (2, 1, F), "spec_axes": [0], "raw": (2, 1, 1, F), "raw_axes": [0], "prod": (4, F)}
    return {"spec": (K, 1, 2, F), "spec_axes": [1, 2], "raw": (K, 2, 1, F), "raw_axes": [1], "prod": (K, 4, F)}


def student_step_bytes(model, opset: int = 17, hops: int = 1) -> bytes:
    """Serialized step graph (``hops`` frames per run) of a torch ``Student`` (parameters
    copied, model untouched)."""
    cfg = model.cfg
    params = {k: v.detach().cpu().float().numpy() for k, v in model.state_dict().items()}
    proto = student_step_model(params, cfg.n_freq, cfg.input_size, cfg.hidden, cfg.layers, cfg.mask_bound, opset, hops,
                               cfg.cell, cfg.lookahead, cfg.mask, cfg.local_head)
    return proto.SerializeToString()
