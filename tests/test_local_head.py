"""The student's per-bin refinement of the mask (``model.args.local_head``): config checks,
streaming == offline, causality, the zero start, shift-equivariance, growing, ONNX export."""
import pytest
import torch

from mtakd.config import ConfigError
from mtakd.efficiency import macs_per_second
from mtakd.export import export_onnx
from mtakd.inference import MaskEnhancer
from mtakd.models import build_model
from mtakd.models.grow import grow_student
from mtakd.stft import HOP, N_FFT, STFT

SMALL = {"hidden": 12, "input_size": 10}


def _refined(seed: int = 0, **args):
    """A small student with the refinement switched on (its output layer made non-zero)."""
    torch.manual_seed(seed)
    m = build_model("student", {**SMALL, "local_head": 5, **args}).eval()
    with torch.no_grad():
        m.local_out.weight.normal_(0, 0.5)
        m.local_out.bias.normal_(0, 0.5)
    return m


@pytest.mark.parametrize("bad", [2, -1, 33, True, 1.0])
def test_local_head_must_be_zero_or_an_odd_width(bad):
    with pytest.raises(ConfigError, match="local_head"):
        build_model("student", {"local_head": bad})
    with pytest.raises(ConfigError, match="local_channels"):
        build_model("student", {"local_head": 3, "local_channels": 0})


@pytest.mark.parametrize("cell,mask,lookahead,phase_input", [("gru", "complex", 0, False), ("gru", "real", 0, False),
                                                             ("gru", "tanh", 1, False), ("lstm", "complex", 1, False),
                                                             ("gru", "complex", 0, True)])
def test_step_equals_forward_with_the_refinement(cell, mask, lookahead, phase_input):
    m = _refined(cell=cell, mask=mask, lookahead=lookahead, phase_input=phase_input)
    spec = STFT()(torch.randn(2, 4000))
    full = m(spec)
    padded = torch.nn.functional.pad(spec, (0, 0, 0, lookahead))
    state, outs = m.initial_state(2), []
    for t in range(spec.shape[2]):
        frame = padded[:, :, t] if lookahead == 0 else padded[:, :, t: t + 1 + lookahead]
        o, state = m.step(frame, state)
        outs.append(o)
    assert torch.allclose(torch.stack(outs, 2), full, atol=1e-5)


@pytest.mark.parametrize("lookahead", [0, 1])
def test_refined_student_is_causal(lookahead):
    enh = MaskEnhancer(_refined(lookahead=lookahead))
    x = torch.randn(1, 8000)
    x2 = x.clone()
    x2[:, 5000:] = torch.randn(1, 3000) * 3
    with torch.no_grad():
        y, y2 = enh(x), enh(x2)
    latency = N_FFT + lookahead * HOP
    assert torch.equal(y[:, : 5000 - latency], y2[:, : 5000 - latency])
    assert not torch.allclose(y[:, 5000:], y2[:, 5000:])


def test_the_refinement_starts_at_zero_and_learns_through_its_output_layer():
    torch.manual_seed(0)
    plain = build_model("student", SMALL).eval()
    refined = build_model("student", {**SMALL, "local_head": 5})
    refined.load_state_dict({**refined.state_dict(), **plain.state_dict()})
    spec = STFT()(torch.randn(2, 4000))
    with torch.no_grad():
        assert torch.equal(refined.eval()(spec), plain(spec))
    refined.train()
    refined(spec).pow(2).sum().backward()
    # the zero output layer gets gradients (its inputs are active); the layer before it has none
    # until the output layer has moved, as a grown unit does (models/grow.py)
    assert refined.local_out.weight.grad.abs().sum() > 0
    assert refined.local_in.weight.grad.abs().sum() == 0


def test_the_refinement_is_shared_by_every_bin():
    """Shifting the hidden state's raw mask and the magnitude by s bins shifts the refinement by
    s bins (away from the zero-padded edges): one small network for all frequencies."""
    m = _refined()
    torch.manual_seed(3)
    mag, raw = torch.rand(4, 161), torch.randn(4, 2, 161)

    def refine(mag, raw):
        x = torch.cat([mag.unsqueeze(-2), raw], dim=-2)
        return m.local_out(m.local_act(m.local_in(x)))

    with torch.no_grad():
        a = refine(mag, raw)
        b = refine(torch.roll(mag, 7, -1), torch.roll(raw, 7, -1))
    assert torch.allclose(b[..., 7 + 2: -2], a[..., 2: -7 - 2], atol=1e-6)


def test_grow_adds_or_widens_the_refinement_without_changing_the_output():
    torch.manual_seed(0)
    small = build_model("student", SMALL).eval()
    spec = STFT()(torch.randn(1, 4000))
    with torch.no_grad():
        ref = small(spec)
        grown = grow_student(small, local_head=3).eval()
        assert grown.cfg.local_head == 3 and torch.equal(grown(spec), ref)
        grown.local_out.weight.normal_()  # now it does something; widening must keep that
        before = grown(spec)
        wide = grow_student(grown, local_head=7, hidden=16).eval()
        assert wide.cfg.local_head == 7 and torch.allclose(wide(spec), before, atol=1e-6)
    with pytest.raises(ValueError, match="local_head 7 -> 3"):
        grow_student(wide, local_head=3)
    with pytest.raises(ConfigError, match="local_head"):
        grow_student(small, local_head=4)


@pytest.mark.parametrize("lookahead,hops", [(0, 1), (0, 2), (1, 1)])
def test_onnx_step_graph_runs_the_refinement(tmp_path, lookahead, hops):
    m = _refined(lookahead=lookahead)
    res = export_onnx(m, tmp_path / "s.onnx", hops=hops)  # verified against PyTorch by export_onnx
    assert res.max_abs_diff < 1e-4
    off = export_onnx(m, tmp_path / "o.onnx", kind="offline")
    assert off.max_abs_diff < 1e-4


def test_the_refinement_costs_about_one_mac_per_weight_per_bin_and_frame():
    torch.manual_seed(0)
    plain = build_model("student", SMALL)
    refined = build_model("student", {**SMALL, "local_head": 5, "local_channels": 8})
    extra = macs_per_second(refined, include_stft=False) - macs_per_second(plain, include_stft=False)
    per_frame = 161 * (8 * 3 * 5 + 2 * 8)  # the k-wide convolution and the 1x1 one, every bin
    assert extra == pytest.approx(per_frame * 16000 / HOP, rel=0.02)


def test_grow_cli_adds_the_refinement_and_says_how_to_fine_tune(tmp_path, capsys):
    from mtakd.checkpoint import load_checkpoint, save_checkpoint
    from mtakd.cli import main

    torch.manual_seed(0)
    small = build_model("student", SMALL).eval()
    src, out = tmp_path / "small.safetensors", tmp_path / "refined.safetensors"
    save_checkpoint(src, small, config={"model": {"name": "student", "args": dict(small.cfg.__dict__)}})
    assert main(["grow", str(src), "--local-head", "5", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert "per-bin refinement 5 bins" in said and "model.args.local_head=5" in said
    big, meta, _ = load_checkpoint(out)
    assert meta["model"]["args"]["local_head"] == 5 and meta["config"]["model"]["args"]["local_head"] == 5
    spec = STFT()(torch.randn(1, 4000))
    with torch.no_grad():
        assert torch.equal(big.eval()(spec), small(spec))
    assert main(["grow", str(src), "--local-head", "4", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "local_head" in capsys.readouterr().err


@pytest.mark.parametrize("lookahead,extra", [(0, 8), (1, 9)])
def test_the_step_graph_grows_by_the_documented_nodes(lookahead, extra):
    onnx = pytest.importorskip("onnx")
    from mtakd.export import onnx_bytes

    torch.manual_seed(0)
    plain = build_model("student", {**SMALL, "lookahead": lookahead}).eval()
    refined = build_model("student", {**SMALL, "lookahead": lookahead, "local_head": 3}).eval()
    n = [len(onnx.load_from_string(onnx_bytes(m, kind="step", verify=False)[0]).graph.node) for m in (plain, refined)]
    assert n[1] - n[0] == extra
