"""``mtakd average`` / ``mtakd.averaging``: the weighted mean of checkpoints of one model."""
import pytest
import torch

from helpers import warm_started_trainer
from mtakd.averaging import average_checkpoints, average_state
from mtakd.checkpoint import load_checkpoint, load_model, save_checkpoint
from mtakd.cli import main
from mtakd.models import build_model
from mtakd.stft import STFT


def _student(seed, **args):
    torch.manual_seed(seed)
    m = build_model("student", {"input_size": 8, "hidden": 8, "layers": 2, **args}).eval()
    with torch.no_grad():  # weights off torch's init, like a trained model's
        for p in m.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return m


def _save(tmp_path, name, model, **train):
    path = tmp_path / f"{name}.safetensors"
    cfg = {"model": {"name": "student", "args": dict(model.cfg.__dict__)}, "seed": 3}
    save_checkpoint(path, model, config=cfg, aux={"log_vars": torch.zeros(2)}, train=train)
    return path


@pytest.mark.parametrize("args", [{}, {"lookahead": 1}, {"cell": "lstm"}])
def test_the_average_is_the_weighted_mean_of_every_tensor(tmp_path, args):
    a, b, c = (_student(s, **args) for s in (1, 2, 3))
    paths = [_save(tmp_path, n, m, step=10 * i, epoch=i) for i, (n, m) in enumerate(zip("abc", (a, b, c)), 1)]
    out = tmp_path / "soup.safetensors"
    avg = average_checkpoints(paths, out, weights=[2, 1, 1])
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    for k, v in load_model(out).state_dict().items():
        torch.testing.assert_close(v, 0.5 * sa[k] + 0.25 * sb[k] + 0.25 * sc[k], atol=1e-6, rtol=0)
        assert torch.equal(v, avg.state_dict()[k])
    model, meta, aux = load_checkpoint(out)
    assert meta["model"]["args"] == dict(a.cfg.__dict__) and meta["config"]["seed"] == 3
    assert aux == {}  # the learned task weights belong to one training run
    assert [(r["path"], r["weight"], r["step"], r["epoch"]) for r in meta["train"]["averaged_from"]] == [
        (str(paths[0]), 0.5, 10, 1), (str(paths[1]), 0.25, 20, 2), (str(paths[2]), 0.25, 30, 3)]
    # equal weights by default
    eq = average_checkpoints(paths[:2], tmp_path / "eq.safetensors")
    torch.testing.assert_close(eq.fc_out.weight, (a.fc_out.weight + b.fc_out.weight) / 2, atol=1e-6, rtol=0)


def test_copies_of_one_model_average_to_that_model(tmp_path):
    """Identical inputs give back the input exactly (same output on a spectrum)."""
    m = _student(4)
    p1, p2 = _save(tmp_path, "one", m), _save(tmp_path, "two", m)
    avg = average_checkpoints([p1, p2], tmp_path / "soup.safetensors", weights=[0.3, 0.7])
    spec = STFT()(torch.randn(1, 8000, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        torch.testing.assert_close(avg(spec), m(spec), atol=1e-6, rtol=0)


def test_non_floating_tensors_must_agree():
    s1 = {"w": torch.ones(2), "n": torch.tensor([1, 2])}
    s2 = {"w": torch.zeros(2), "n": torch.tensor([1, 2])}
    out = average_state([s1, s2], [0.5, 0.5])
    assert torch.equal(out["w"], torch.full((2,), 0.5)) and torch.equal(out["n"], torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="non-floating tensor 'n' differs between input 1 and input 2"):
        average_state([s1, {**s2, "n": torch.tensor([1, 3])}], [0.5, 0.5])


def test_refusals_are_one_line_and_nothing_is_overwritten(tmp_path, capsys):
    a, b = _save(tmp_path, "a", _student(1)), _save(tmp_path, "b", _student(2))
    wide = _save(tmp_path, "wide", _student(3, hidden=12))
    teacher = tmp_path / "t.safetensors"
    save_checkpoint(teacher, build_model("teacher", {"input_size": 8, "hidden": 8, "layers": 1}))
    out = tmp_path / "soup.safetensors"
    cases = [
        ([str(a)], "at least two checkpoints, got 1"),
        ([str(a), str(a)], "given twice (inputs 1 and 2); to count a checkpoint more, use --weights"),
        ([str(a), str(wide)], f"{wide}: other model args: hidden 12 (first input: 8)"),
        ([str(a), str(teacher)], f"{teacher}: a teacher, not a student"),
        ([str(a), str(b), "--weights", "1"], "--weights gives 1 numbers for 2 checkpoints"),
        ([str(a), str(b), "--weights", "1", "0"], "--weights must all be positive"),
        ([str(a), str(tmp_path / "missing.safetensors")], "no such checkpoint file"),
        ([str(a), "pretrained:nope"], "no shipped model 'nope'"),
    ]
    for argv, msg in cases:
        assert main(["average", *argv, "-o", str(out)]) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (argv, err)
    assert not out.exists()
    assert main(["average", str(a), str(b), "-o", str(tmp_path / "no" / "x.safetensors")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    # an existing output is kept unless --overwrite
    assert main(["average", str(a), str(b), "-o", str(out)]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {out}: the mean of 2 checkpoints (student, ")
    before = out.read_bytes()
    assert main(["average", str(a), str(b), "--weights", "3", "1", "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["average", str(a), str(b), "--weights", "3", "1", "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != before


def test_an_average_warm_starts_a_fine_tune(tmp_path):
    a, b = _student(1, layers=1), _student(2, layers=1)
    out = tmp_path / "soup.safetensors"
    avg = average_checkpoints([_save(tmp_path, "a", a), _save(tmp_path, "b", b)], out)
    tr = warm_started_trainer(out, tmp_path / "ft", "{input_size: 8, hidden: 8, layers: 1}")
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in avg.state_dict().items())


def test_info_lists_each_ingredient_on_its_own_line(tmp_path, capsys):
    a, b = (_save(tmp_path, n, _student(s), step=10 * s, epoch=s) for n, s in (("a", 1), ("b", 2)))
    out = tmp_path / "soup.safetensors"
    average_checkpoints([a, b], out, weights=[3, 1])
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "averaged from 2 checkpoints (weight, file, step, epoch):" in text
    assert f"  0.75  {a}  step=10  epoch=1\n" in text and f"  0.25  {b}  step=20  epoch=2\n" in text
    assert "[{" not in text  # not the raw record
