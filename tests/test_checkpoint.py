import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from mtakd.checkpoint import (CheckpointError, load_checkpoint, load_model, load_train_state, read_checkpoint,
                              save_checkpoint, save_train_state)
from mtakd.models import build_model
from mtakd.stft import STFT


@pytest.fixture
def ckpt(tmp_path):
    m = build_model("student", {"hidden": 8, "input_size": 8})
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, m, config={"seed": 1}, aux={"loss.uncertainty.log_vars": torch.tensor([0.1, -0.2])}, train={"step": 7})
    return m, p


def test_round_trip_same_outputs(ckpt):
    m, p = ckpt
    spec = STFT()(torch.randn(1, 3200))
    loaded, meta, aux = load_checkpoint(p)
    assert not loaded.training
    assert torch.equal(loaded(spec), m.eval()(spec))
    assert meta["model"] == {"name": "student", "args": m.cfg.__dict__}
    assert meta["config"] == {"seed": 1} and meta["train"] == {"step": 7}
    assert {"mtakd", "torch", "python"} <= set(meta["versions"])
    assert torch.allclose(aux["loss.uncertainty.log_vars"], torch.tensor([0.1, -0.2]))
    assert type(load_model(p)) is type(m)


def test_atomic_write_leaves_no_temp_files(ckpt):
    _, p = ckpt
    assert sorted(x.name for x in p.parent.iterdir()) == ["m.safetensors"]


def test_loading_never_modifies_the_file(ckpt):
    _, p = ckpt
    before = p.read_bytes()
    load_checkpoint(p)
    assert p.read_bytes() == before


def test_pickle_refused(tmp_path):
    p = tmp_path / "evil.safetensors"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_model(p)
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pt)
    with pytest.raises(CheckpointError, match="pickle|safetensors"):
        load_model(pt)


def test_truncated_and_missing_refused(ckpt, tmp_path):
    _, p = ckpt
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="truncated|readable"):
        load_model(cut)
    with pytest.raises(CheckpointError, match="no such"):
        load_model(tmp_path / "nope.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 5)
    with pytest.raises(CheckpointError):
        load_model(junk)


def _rewrite(p, out, edit):
    tensors, meta = read_checkpoint(p)
    tensors, meta = edit(dict(tensors), meta)
    save_file(tensors, str(out), metadata={"mtakd": json.dumps(meta)})
    return out


def test_missing_extra_and_mismatched_tensors_refused(ckpt, tmp_path):
    _, p = ckpt
    def drop(t, m):
        t.pop("model.fc_out.bias")
        return t, m
    def add(t, m):
        t["model.extra"] = torch.zeros(1)
        return t, m
    def wrong_args(t, m):
        m["model"]["args"]["hidden"] = 9
        return t, m
    def no_meta(t, m):
        return t, {}
    with pytest.raises(CheckpointError, match="missing tensor 'fc_out.bias'"):
        load_model(_rewrite(p, tmp_path / "a.safetensors", drop))
    with pytest.raises(CheckpointError, match="unexpected tensor"):
        load_model(_rewrite(p, tmp_path / "b.safetensors", add))
    with pytest.raises(CheckpointError, match="shape"):
        load_model(_rewrite(p, tmp_path / "c.safetensors", wrong_args))
    with pytest.raises(CheckpointError, match="without mtakd metadata"):
        load_model(_rewrite(p, tmp_path / "d.safetensors", no_meta))


def test_train_state_round_trip(tmp_path):
    m = build_model("student", {"hidden": 8, "input_size": 8})
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    m(STFT()(torch.randn(2, 1600))).sum().backward()
    opt.step()
    state = {"opt": opt.state_dict(), "step": 3, "best": -1.5, "rng": torch.get_rng_state()}
    save_train_state(tmp_path / "s.safetensors", state)
    back = load_train_state(tmp_path / "s.safetensors")
    assert back["step"] == 3 and back["best"] == -1.5 and torch.equal(back["rng"], state["rng"])
    opt2 = torch.optim.AdamW(m.parameters(), lr=1e-3)
    opt2.load_state_dict(back["opt"])
    for k, v in opt.state_dict()["state"].items():
        assert torch.equal(opt2.state_dict()["state"][k]["exp_avg"], v["exp_avg"])
    assert opt2.state_dict()["param_groups"] == opt.state_dict()["param_groups"]
