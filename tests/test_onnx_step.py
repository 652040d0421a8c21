"""The hand-written student step graph (onnx_step): same numbers as the traced torch pipeline
for several model shapes, no layout nodes, the traced fallback for other causal models, the
int8 copy keeping the DFT float, and the IOBinding processor's state handling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from helpers import noise, stream_chunks
from mtakd.export import export_onnx, onnx_bytes, quantize_bytes  # noqa: E402
from mtakd.models import Student, build_model  # noqa: E402
from mtakd.onnx_step import DFT_PREFIX  # noqa: E402
from mtakd.ort_runtime import OrtStepProcessor, OrtStreamingEnhancer, model_kind, open_session  # noqa: E402
from mtakd.streaming import StreamingEnhancer  # noqa: E402


_signal, _stream = noise, stream_chunks  # tests/helpers.py


def _student(seed=0, **args):
    torch.manual_seed(seed)
    model = build_model("student", {"hidden": 12, "input_size": 10, **args}).eval()
    with torch.no_grad():  # a non-trivial PReLU slope, so LeakyRelu's alpha is really tested
        model.act.weight.fill_(0.3)
    return model


@pytest.mark.parametrize("args", [{}, {"layers": 1}, {"layers": 3}, {"mask_bound": 0.7},
                                  {"cell": "lstm"}, {"cell": "lstm", "layers": 3}, {"mask": "real"},
                                  {"mask": "real", "cell": "lstm", "mask_bound": 0.7}, {"mask": "tanh", "mask_bound": 0.7}])
def test_step_graph_equals_torch_streaming(args):
    model = _student(**args)
    data, diff = onnx_bytes(model, kind="step")  # verified against the traced torch StepGraph
    assert diff <= 1e-4
    x = _signal(6000, seed=1)
    sizes = [160, 160, 7, 500, 161]  # hop-sized feeds (fast path) and batches of frames
    y_ort = _stream(OrtStreamingEnhancer(data), x, sizes)
    y_torch = _stream(StreamingEnhancer(model), x, sizes)
    assert np.abs(y_ort - y_torch).max() <= 1e-4


def test_step_graph_has_no_layout_nodes_and_one_state_per_layer():
    model = _student(layers=3)
    proto = onnx.load_from_string(onnx_bytes(model, kind="step", verify=False)[0])
    ops = [n.op_type for n in proto.graph.node]
    assert not {"Transpose", "Squeeze", "Unsqueeze", "Split", "Concat", "Gather", "Constant"} & set(ops)
    assert ops.count("GRU") == 3 and len(ops) <= 25
    assert [i.name for i in proto.graph.input] == ["frame", "state0", "state1", "state2"]
    assert [o.name for o in proto.graph.output] == ["out", "state_out0", "state_out1", "state_out2"]
    dft = {n.name for n in proto.graph.node if n.name.startswith(DFT_PREFIX)}
    assert dft == {"dft_analysis", "dft_mask_mix", "dft_synthesis"}


def test_other_causal_models_use_the_traced_graph():
    class MyStudent(Student):  # not exactly Student: onnx_step does not know what it changes
        pass

    model = MyStudent(_student().cfg).eval()
    model.load_state_dict(_student().state_dict())
    data, diff = onnx_bytes(model, kind="step")
    sess = open_session(data)
    assert diff <= 1e-4 and [i.name for i in sess.get_inputs()] == ["frame", "state"]
    x = _signal(3000, seed=2)
    assert np.abs(_stream(OrtStreamingEnhancer(sess), x, [160, 333]) - _stream(StreamingEnhancer(model), x, [160, 333])).max() <= 1e-4


def test_lstm_step_graph_carries_h_then_c_per_layer():
    """An LSTM student's graph: one LSTM op per layer, states h0..h{L-1} then c0..c{L-1} (the
    order of the student's packed state), equal to torch over multi-hop runs too."""
    model = _student(cell="lstm", layers=2)
    proto = onnx.load_from_string(onnx_bytes(model, kind="step", verify=False)[0])
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("LSTM") == 2 and "GRU" not in ops and len(ops) <= 25
    assert [i.name for i in proto.graph.input] == ["frame", "state0", "state1", "state2", "state3"]
    lstm0 = next(n for n in proto.graph.node if n.op_type == "LSTM")
    assert list(lstm0.input[5:]) == ["state0", "state2"] and list(lstm0.output[1:]) == ["state_out0", "state_out2"]
    data, diff = onnx_bytes(model, kind="step", hops=4)
    assert diff <= 1e-4
    x = _signal(5000, seed=5)
    y = _stream(StreamingEnhancer(model), x, [640, 17, 900])
    assert np.abs(_stream(OrtStreamingEnhancer(data), x, [640, 17, 900]) - y).max() <= 1e-4


def test_int8_copy_keeps_the_dft_float():
    data = onnx_bytes(_student(), kind="step", verify=False)[0]
    q = onnx.load_from_string(quantize_bytes(data))
    ops = {n.name: n.op_type for n in q.graph.node}
    assert all(ops[n] == "MatMul" for n in ("dft_analysis", "dft_mask_mix", "dft_synthesis"))
    assert sum(op == "MatMulInteger" for op in ops.values()) == 2  # fc_in and fc_out
    floats = {i.name for i in q.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    assert {"dft_fwd", "dft_inv"} <= floats
    # an LSTM student's recurrence is quantised too (onnxruntime has a dynamic int8 LSTM, no GRU)
    q = onnx.load_from_string(quantize_bytes(onnx_bytes(_student(cell="lstm"), kind="step", verify=False)[0]))
    assert [n.op_type for n in q.graph.node].count("DynamicQuantizeLSTM") == 2


def test_int8_weights_have_one_scale_per_output_unit_and_track_float_closer():
    """Per-channel int8 (the default): each output unit of fc_in and fc_out gets its own scale.
    With output rows whose ranges differ tenfold (as the trained head's bins do), one scale per
    matrix rounds the small rows to a few levels; per channel the int8 stream is closer to float."""
    from mtakd.ort_runtime import enhance_array

    model = _student()
    with torch.no_grad():  # rows of very different range, like a trained output layer's bins
        model.fc_out.weight.mul_(torch.logspace(-1, 0.5, model.fc_out.weight.shape[0]).unsqueeze(1))
    data = onnx_bytes(model, kind="step", verify=False)[0]
    per_ch, per_t = quantize_bytes(data), quantize_bytes(data, per_channel=False)
    scales = {i.name: tuple(i.dims) for i in onnx.load_from_string(per_ch).graph.initializer if i.name.endswith("_scale")}
    assert sorted(v for k, v in scales.items() if "fc_" in k) == [(10,), (322,)], scales  # fc_in (I), fc_out (2F)
    x = noise(8000, seed=3)
    ref = enhance_array(data, x)

    def snr(q):
        return 10 * np.log10(np.sum(ref**2) / np.sum((enhance_array(q, x) - ref) ** 2))

    assert snr(per_ch) > snr(per_t) + 3


def test_processor_reset_state_and_kind_without_metadata():
    data = onnx_bytes(_student(), kind="step", verify=False)[0]
    proto = onnx.load_from_string(data)
    del proto.metadata_props[:]  # files from elsewhere: the kind is guessed from the inputs
    proc = OrtStepProcessor(proto.SerializeToString())
    assert model_kind(proc.session) == "step"
    frames = _signal(5 * 320, seed=3).reshape(5, 320)
    a = proc(frames).copy()
    assert any(np.abs(s).max() > 0 for s in proc.state)
    b = np.stack([proc(f[None])[0].copy() for f in frames])  # state carried on: differs
    proc.reset()
    assert all(not s.any() for s in proc.state)
    c = np.stack([proc(f[None])[0].copy() for f in frames])  # one frame per call == a batch
    np.testing.assert_array_equal(a, c)
    assert np.abs(a - b).max() > 0


def test_export_file_streams(tmp_path):
    model = _student()
    r = export_onnx(model, tmp_path / "s.onnx")
    x = _signal(4000, seed=4)
    y = _stream(StreamingEnhancer(r.path, backend="onnxruntime"), x, [160])
    assert np.abs(y - _stream(StreamingEnhancer(model), x, [160])).max() <= 1e-4


def test_step_graph_refuses_a_mask_kind_it_does_not_know():
    from mtakd.onnx_step import student_step_model

    params = {k: v.numpy() for k, v in _student().state_dict().items()}
    with pytest.raises(ValueError, match="mask of complex, real, tanh, got 'polar'"):
        student_step_model(params, 161, 10, 12, 2, 1.0, mask="polar")
