import math
import pytest
import torch

from mtakd.config import ConfigError
from mtakd.inference import MaskEnhancer
from mtakd.models import build_model, model_args, model_name
from mtakd.efficiency import algorithmic_latency_ms
from mtakd.stft import HOP, N_FFT, STFT


def _params(m):
    return sum(p.numel() for p in m.parameters())


def test_default_budgets():
    student, teacher = build_model("student"), build_model("teacher")
    assert _params(student) <= 150_000
    assert 2_000_000 <= _params(teacher) <= 10_000_000
    assert _params(teacher) >= 20 * _params(student)


@pytest.mark.parametrize("name", ["student", "teacher"])
def test_forward_shapes_and_mask_bound(name):
    m = build_model(name, {"hidden": 8, "input_size": 8})
    spec = STFT()(torch.randn(2, 3200))
    mask, hidden = m(spec, return_hidden=True)
    assert mask.shape == spec.shape
    assert hidden.shape[:2] == (2, spec.shape[2]) and hidden.shape[2] == m.hidden_size
    assert (mask.pow(2).sum(1).sqrt() <= m.cfg.mask_bound + 1e-5).all()
    with pytest.raises(ValueError, match="expects a spectrum"):
        m(spec[:, :1])


@pytest.mark.parametrize("cell,mask", [("gru", "complex"), ("lstm", "complex"), ("gru", "real"), ("lstm", "real"),
                                       ("gru", "tanh")])
@pytest.mark.parametrize("phase_input", [False, True])
def test_student_step_equals_forward(phase_input, cell, mask):
    m = build_model("student", {"hidden": 12, "input_size": 10, "layers": 2, "phase_input": phase_input, "cell": cell,
                                "mask": mask}).eval()
    spec = STFT()(torch.randn(2, 4000))
    full = m(spec)
    state = m.initial_state(2)
    outs = []
    for t in range(spec.shape[2]):
        o, state = m.step(spec[:, :, t], state)
        outs.append(o)
    assert torch.allclose(torch.stack(outs, 2), full, atol=1e-5)
    with pytest.raises(ValueError, match="expects a frame"):
        m.step(spec[:, :, :2], state)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("phase_input", [False, True])
def test_student_steps_equal_step_and_carry_the_state(phase_input, cell):
    """``steps`` over chunks of frames == ``step`` frame by frame == ``forward`` on the whole."""
    torch.manual_seed(1)
    m = build_model("student", {"hidden": 12, "input_size": 10, "layers": 2, "phase_input": phase_input, "cell": cell}).eval()
    spec = STFT()(torch.randn(2, 4000))  # (2, 2, 26, F)
    full = m(spec)
    state, outs = m.initial_state(2), []
    for a, b in [(0, 1), (1, 9), (9, 10), (10, 26)]:  # chunks of 1, 8, 1 and 16 frames
        o, state = m.steps(spec[:, :, a:b], state)
        outs.append(o)
    assert torch.allclose(torch.cat(outs, 2), full, atol=1e-5)
    # the state steps returns is the state step would have carried
    st = m.initial_state(2)
    for t in range(spec.shape[2]):
        _, st = m.step(spec[:, :, t], st)
    assert torch.allclose(state, st, atol=1e-5)
    with pytest.raises(ValueError, match="expects a state"):
        m.steps(spec, m.initial_state(1))
    with pytest.raises(ValueError, match="expects a spectrum"):
        m.steps(spec[:, :, 0], state)


@pytest.mark.parametrize("cell,lookahead,mask", [("gru", 0, "complex"), ("lstm", 0, "complex"), ("gru", 1, "complex"),
                                                ("lstm", 2, "complex"), ("gru", 0, "real"), ("gru", 1, "real")])
@pytest.mark.parametrize("phase_input", [False, True])
def test_student_is_causal_end_to_end(phase_input, cell, lookahead, mask):
    """Changing the input after sample k never changes the output before k - latency."""
    m = build_model("student", {"hidden": 12, "input_size": 10, "phase_input": phase_input, "cell": cell,
                                "lookahead": lookahead, "mask": mask}).eval()
    enh = MaskEnhancer(m)
    x = torch.randn(1, 8000)
    k = 5000
    x2 = x.clone()
    x2[:, k:] = torch.randn(1, 8000 - k) * 3
    with torch.no_grad():
        y, y2 = enh(x), enh(x2)
    # window (one hop to fill the frame + one hop of overlap-add), plus a hop per look-ahead frame
    latency = N_FFT + lookahead * HOP
    assert latency == algorithmic_latency_ms(m) * 16
    assert torch.equal(y[:, : k - latency], y2[:, : k - latency])
    assert not torch.allclose(y[:, k:], y2[:, k:])
    # the latency bound is tight: within one window of k the output may change
    assert not torch.allclose(y[:, k - latency : k], y2[:, k - latency : k])


def test_bidirectional_teacher_looks_ahead():
    m = build_model("teacher", {"hidden": 8, "input_size": 8, "layers": 1}).eval()
    spec = STFT()(torch.randn(1, 4000))
    spec2 = spec.clone()
    spec2[:, :, -5:] += 1.0
    with torch.no_grad():
        assert not torch.allclose(m(spec)[:, :, :10], m(spec2)[:, :, :10])


def test_registry_round_trip_and_errors():
    m = build_model("student", {"hidden": 20})
    assert model_name(m) == "student"
    again = build_model(model_name(m), model_args(m))
    assert model_args(again) == model_args(m)
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("nope")
    with pytest.raises(ConfigError, match="hiden"):
        build_model("student", {"hiden": 3})


def test_phase_input_sees_the_phase():
    """The default student's output mask depends only on magnitudes; with phase_input it does not."""
    spec = STFT()(torch.randn(1, 3200))
    turned = torch.stack([-spec[:, 1], spec[:, 0]], 1)  # every bin times j: same magnitudes
    for phase_input, same in ((False, True), (True, False)):
        torch.manual_seed(0)
        m = build_model("student", {"hidden": 8, "input_size": 8, "phase_input": phase_input}).eval()
        with torch.no_grad():
            assert torch.allclose(m(spec), m(turned), atol=1e-6) is same
    assert _params(build_model("student", {"phase_input": True})) - _params(build_model("student")) == 2 * 161 * 64


def test_lstm_student_packs_h_then_c_and_names_its_weights():
    """The LSTM student's state is ``(2L, B, H)``: nn.LSTM's h then c, as forward returns them;
    its weights are ``lstm.*`` (a GRU checkpoint cannot load into it by mistake)."""
    torch.manual_seed(2)
    m = build_model("student", {"hidden": 12, "input_size": 10, "layers": 3, "cell": "lstm"}).eval()
    assert m.initial_state(2).shape == (6, 2, 12)
    assert any(k.startswith("lstm.") for k in m.state_dict()) and not any(k.startswith("gru.") for k in m.state_dict())
    spec = STFT()(torch.randn(2, 3000))
    with torch.no_grad():
        x = m.act(m.fc_in(m._features(spec)))
        _, (h, c) = m.lstm(x)
        _, state = m.steps(spec, m.initial_state(2))
    assert torch.allclose(state, torch.cat((h, c)), atol=1e-6)
    with pytest.raises(ValueError, match=r"expects a state \(6, 2, 12\) for its 3-layer LSTM"):
        m.step(spec[:, :, 0], torch.zeros(3, 2, 12))
    with pytest.raises(ConfigError, match="cell"):
        build_model("student", {"cell": "rnn"})
    # the forget gates start at sigmoid(1): the two forget-bias blocks add up to lstm_forget_bias
    b = m.lstm.bias_ih_l1 + m.lstm.bias_hh_l1
    assert torch.allclose(b[12:24], torch.ones(12)) and not torch.allclose(b[:12], torch.ones(12))
    torch.manual_seed(2)
    plain = build_model("student", {"hidden": 12, "input_size": 10, "layers": 3, "cell": "lstm", "lstm_forget_bias": None})
    assert not torch.allclose((plain.lstm.bias_ih_l1 + plain.lstm.bias_hh_l1)[12:24], torch.ones(12))
    with pytest.raises(RuntimeError, match="lstm"):  # a GRU's weights do not load into an LSTM student
        m.load_state_dict(build_model("student", {"hidden": 12, "input_size": 10, "layers": 3}).state_dict())


def test_real_mask_is_one_gain_per_bin_in_0_bound():
    """``mask="real"``: F outputs (half the complex head), imaginary part exactly 0, gain in
    (0, bound); the same spectrum scaled keeps its phase; a bad name is a config error."""
    torch.manual_seed(0)
    cplx = build_model("student", {"hidden": 12, "input_size": 10})
    real = build_model("student", {"hidden": 12, "input_size": 10, "mask": "real", "mask_bound": 0.8})
    assert real.fc_out.out_features == cplx.fc_out.out_features // 2 == real.cfg.n_freq
    assert _params(cplx) - _params(real) == (12 + 1) * real.cfg.n_freq
    spec = STFT()(torch.randn(2, 3200))
    with torch.no_grad():
        real.fc_out.bias.normal_(0, 30)  # push some gains into saturation at both ends
        m = real(spec)
    assert m.shape == spec.shape and torch.equal(m[:, 1], torch.zeros_like(m[:, 1]))
    assert (m[:, 0] >= 0).all() and (m[:, 0] <= 0.8).all()
    assert (m[:, 0] < 1e-6).any() and (m[:, 0] > 0.8 - 1e-6).any()
    with pytest.raises(ConfigError, match="model.args.mask"):
        build_model("student", {"mask": "polar"})


def test_tanh_mask_is_the_complex_masks_magnitude_on_one_real_number():
    """``mask="tanh"``: F outputs, imaginary part 0, gain ``bound * tanh(|raw|)`` in [0, bound):
    a complex student whose imaginary raw outputs are 0 gives the same gain magnitude; a
    small ``raw`` (the start of training) is a small gain, not ``bound / 2`` as the sigmoid's."""
    torch.manual_seed(0)
    th = build_model("student", {"hidden": 12, "input_size": 10, "mask": "tanh", "mask_bound": 0.8})
    cplx = build_model("student", {"hidden": 12, "input_size": 10, "mask_bound": 0.8})
    assert th.fc_out.out_features == th.cfg.n_freq
    sd = {k: v for k, v in th.state_dict().items() if not k.startswith("fc_out")}
    F = th.cfg.n_freq
    sd["fc_out.weight"] = torch.cat([th.fc_out.weight, torch.zeros(F, 12)])  # imaginary rows 0
    sd["fc_out.bias"] = torch.cat([th.fc_out.bias, torch.zeros(F)])
    cplx.load_state_dict(sd)
    spec = STFT()(torch.randn(2, 3200))
    with torch.no_grad():
        m, mc = th(spec), cplx(spec)
        assert torch.equal(m[:, 1], torch.zeros_like(m[:, 1])) and (m[:, 0] >= 0).all() and (m[:, 0] < 0.8).all()
        assert torch.allclose(m[:, 0], mc.pow(2).sum(1).sqrt(), atol=1e-6)
        th.fc_out.weight.zero_()
        th.fc_out.bias.fill_(0.01)
        assert torch.allclose(th(spec)[:, 0], torch.full_like(m[:, 0], 0.8 * math.tanh(0.01)), atol=1e-6)
