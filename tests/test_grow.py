"""Growing a student (``mtakd.models.grow``): the wider model computes the same output, its new
units can learn, sizes only grow, and the file it writes fine-tunes like any checkpoint."""
import pytest
import torch

from helpers import warm_started_trainer
from mtakd.checkpoint import load_checkpoint, save_checkpoint
from mtakd.cli import main
from mtakd.models import build_model
from mtakd.models.grow import grow_checkpoint, grow_student
from mtakd.stft import STFT


def _student(seed=0, **args):
    torch.manual_seed(seed)
    m = build_model("student", {"input_size": 8, "hidden": 8, "layers": 2, **args}).eval()
    with torch.no_grad():  # weights off torch's init, like a trained model's (non-zero biases too)
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _spec(seconds=1.0, seed=1):
    g = torch.Generator().manual_seed(seed)
    return STFT()(torch.randn(2, int(16000 * seconds), generator=g))


@pytest.mark.parametrize("args", [{}, {"cell": "lstm"}, {"phase_input": True}, {"layers": 1}, {"mask": "real"}, {"mask": "tanh"}])
def test_grown_student_has_the_same_output_offline_and_streaming(args):
    small = _student(**args)
    big = grow_student(small, hidden=13, input_size=11, seed=3)
    assert big.cfg.hidden == 13 and big.cfg.input_size == 11 and not big.training
    assert sum(p.numel() for p in big.parameters()) > sum(p.numel() for p in small.parameters())
    spec = _spec()
    with torch.no_grad():
        torch.testing.assert_close(big(spec), small(spec), atol=1e-6, rtol=0)
        # streaming: same masks frame by frame, with the wider state
        s_small, s_big = small.initial_state(2), big.initial_state(2)
        for t in range(0, spec.shape[2], 7):
            m_small, s_small = small.step(spec[:, :, t], s_small)
            m_big, s_big = big.step(spec[:, :, t], s_big)
            torch.testing.assert_close(m_big, m_small, atol=1e-6, rtol=0)
        assert s_big.shape[-1] == 13
        # the old units' states are the small model's: the new units never feed back into them
        L = small.cfg.layers
        torch.testing.assert_close(s_big[:L, :, :8], s_small[:L], atol=1e-6, rtol=0)


def test_new_units_are_active_and_learn():
    """New units start silent towards the output (zero outgoing weights) but not dead: they are
    active, and the output layer's weights from them receive gradients."""
    small, spec = _student(), _spec(0.5)
    big = grow_student(small, hidden=12, seed=0).train()
    mask, h = big(spec, return_hidden=True)
    assert h[..., 8:].abs().mean() > 1e-3  # the new units' activations
    assert torch.count_nonzero(big.fc_out.weight[:, 8:]) == 0
    mask.square().mean().backward()
    assert big.fc_out.weight.grad[:, 8:].abs().sum() > 0
    # a seed changes only the new units
    other = grow_student(small, hidden=12, seed=1)
    assert torch.equal(other.fc_out.weight, big.fc_out.weight.detach())
    assert not torch.equal(other.gru.weight_hh_l0, big.gru.weight_hh_l0.detach())


def test_growing_keeps_the_size_when_not_asked_and_refuses_to_shrink():
    small = _student()
    same = grow_student(small)
    assert all(torch.equal(v, same.state_dict()[k]) for k, v in small.state_dict().items())
    with pytest.raises(ValueError, match="only grows: hidden 8 -> 6"):
        grow_student(small, hidden=6)
    with pytest.raises(ValueError, match="init_scale must be > 0"):
        grow_student(small, hidden=9, init_scale=0.0)
    with pytest.raises(ValueError, match="grows a Student, got Teacher"):
        grow_student(build_model("teacher", {"input_size": 8, "hidden": 8, "layers": 1}), hidden=9)


def test_grown_checkpoint_round_trip_cli_and_fine_tuning(tmp_path, capsys):
    small = _student(layers=1)
    src = tmp_path / "small.safetensors"
    save_checkpoint(src, small, config={"model": {"name": "student", "args": dict(small.cfg.__dict__)}, "seed": 5})
    out = tmp_path / "big.safetensors"
    assert main(["grow", str(src), "--hidden", "12", "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {out}") and f"init={out} model.args.hidden=12" in said
    big, meta, _ = load_checkpoint(out)
    assert meta["model"]["args"]["hidden"] == 12 and meta["config"]["model"]["args"]["hidden"] == 12
    assert meta["train"]["grown_from"] == str(src) and meta["train"]["grown_from_args"]["hidden"] == 8
    spec = _spec(0.5)
    with torch.no_grad():
        torch.testing.assert_close(big(spec), small(spec), atol=1e-6, rtol=0)
    # nothing a user owns is overwritten; errors are one line, exit 2
    before = out.read_bytes()
    assert main(["grow", str(src), "--hidden", "16", "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["grow", str(src), "--hidden", "4", "-o", str(tmp_path / "x.safetensors")]) == 2
    assert "only grows" in capsys.readouterr().err
    teacher = tmp_path / "t.safetensors"
    save_checkpoint(teacher, build_model("teacher", {"input_size": 8, "hidden": 8, "layers": 1}))
    assert main(["grow", str(teacher), "--hidden", "16", "-o", str(tmp_path / "y.safetensors")]) == 2
    assert "only a student can be grown" in capsys.readouterr().err
    assert main(["grow", "pretrained:nope", "--hidden", "16", "-o", str(tmp_path / "z.safetensors")]) == 2
    assert "checkpoint=pretrained:nope: no shipped model 'nope'" in capsys.readouterr().err
    with pytest.raises(FileExistsError):
        grow_checkpoint(src, out, hidden=16)
    # the grown file warm-starts a run of the wider model
    tr = warm_started_trainer(out, tmp_path / "ft", "{input_size: 8, hidden: 12, layers: 1}")
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in big.state_dict().items())
