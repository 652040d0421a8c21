"""End to end at tiny scale on generated audio: teacher and student losses fall, runs resume."""

import pytest
import torch

from mtakd.checkpoint import load_checkpoint
from mtakd.config import ConfigError, TrainConfig, load_config
from mtakd.data import MixingDataset, collate
from mtakd.train import Trainer, resolve_checkpoint, train
from helpers import read_csv_rows

TINY = ["data.source=synthetic", "data.segment_s=1.0", "data.items_per_epoch=48", "optim.batch_size=8",
        "optim.lr=0.005", "optim.warmup_steps=2", "optim.checkpoint_every=0", "optim.log_every=1",
        "valid.synthetic_items=2", "threads=1", "device=cpu"]
TEACHER = ["model.name=teacher", "model.args={input_size: 24, hidden: 24, layers: 1}"]
STUDENT = ["model.name=student", "model.args={input_size: 8, hidden: 8, layers: 1}"]


def _cfg(tmp_path, name, extra):
    return load_config(TrainConfig, None, TINY + [f"run_dir={tmp_path / name}"] + extra)


def _fixed_batch(cfg):
    ds = MixingDataset(cfg.data, "dev", seed=99, length=8)
    return collate([ds[i] for i in range(8)])


def _held_out_loss(trainer, batch, key):
    trainer.model.eval()
    with torch.no_grad():
        return float(trainer.compute(batch["noisy"], batch["clean"])[key])



@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teacher")
    cfg = _cfg(tmp, "t", TEACHER + ["optim.epochs=3"])
    tr = Trainer(cfg, progress=False)
    batch = _fixed_batch(cfg)
    before = _held_out_loss(tr, batch, "sup")
    best = tr.fit()
    after = _held_out_loss(tr, batch, "sup")
    assert after < 0.8 * before, (before, after)
    return best


def test_teacher_loss_falls_and_run_folder_is_complete(teacher_ckpt):
    run = teacher_ckpt.parent
    assert {"config.yaml", "best.safetensors", "last.safetensors", "train_state.safetensors", "epochs.csv", "steps.csv"} <= {
        p.name for p in run.iterdir()}
    epochs = read_csv_rows(run / "epochs.csv")
    assert len(epochs) == 3
    assert float(epochs[-1]["train_loss"]) < float(epochs[0]["train_loss"])
    model, meta, _ = load_checkpoint(teacher_ckpt)
    assert meta["model"]["name"] == "teacher" and meta["config"]["loss"]["kd"] == "none"


@pytest.mark.parametrize("kd,extra", [("fixed", []), ("mtakd", ["loss.tf_weight=true"]),
                                      ("mtakd", ["loss.gate=true", "loss.feature_kd=true"]),
                                      ("mtakd", ["loss.tf_weight=true", "loss.sisdr_weight=0.1", "loss.kd_sisdr=true"])])
def test_student_distillation_loss_falls(tmp_path, teacher_ckpt, kd, extra):
    cfg = _cfg(tmp_path, "s", STUDENT + [f"teacher={teacher_ckpt}", f"loss.kd={kd}", "optim.epochs=2"] + extra)
    tr = Trainer(cfg, progress=False)
    assert not tr.teacher.training and all(not p.requires_grad for p in tr.teacher.parameters())
    batch = _fixed_batch(cfg)
    before = {k: _held_out_loss(tr, batch, k) for k in ("sup", "kd")}
    teacher_before = [p.clone() for p in tr.teacher.parameters()]
    tr.fit()
    after = {k: _held_out_loss(tr, batch, k) for k in ("sup", "kd")}
    assert after["sup"] < before["sup"] and after["kd"] < before["kd"], (before, after)
    assert all(torch.equal(a, b) for a, b in zip(teacher_before, tr.teacher.parameters()))
    epochs = read_csv_rows(tr.run_dir / "epochs.csv")
    if kd == "mtakd":
        # the learned task weights are logged every epoch and saved in the checkpoint
        assert "train_w_kd" in epochs[0] and "train_logvar_sup" in epochs[-1]
        _, _, aux = load_checkpoint(tr.run_dir / "last.safetensors")
        lv = aux["loss.uncertainty.log_vars"]
        assert torch.equal(lv, tr.objective.uncertainty.log_vars.detach())
        assert (lv != 0).all()  # they moved from their initial value
    if "loss.kd_sisdr=true" in extra:  # both SI-SDR terms (to the clean and to the teacher) are logged
        assert {"train_sisdr", "train_kd_sisdr"} <= set(epochs[-1])


class Crash(RuntimeError):
    pass


def test_resume_after_crash_continues_exactly(tmp_path, teacher_ckpt, monkeypatch):
    """A run that crashes mid-epoch and resumes ends with the same weights as an uninterrupted one."""
    extra = STUDENT + [f"teacher={teacher_ckpt}", "loss.kd=mtakd", "optim.epochs=2", "optim.checkpoint_every=3"]
    full = Trainer(_cfg(tmp_path, "full", extra), progress=False)
    full.fit()

    crashing = Trainer(_cfg(tmp_path, "part", extra), progress=False)
    real_compute = Trainer.compute

    def compute_then_crash(self, noisy, clean):
        if self.step == 5:  # after the step-3 checkpoint, in the middle of epoch 1
            raise Crash()
        return real_compute(self, noisy, clean)

    monkeypatch.setattr(Trainer, "compute", compute_then_crash)
    with pytest.raises(Crash):
        crashing.fit()
    monkeypatch.setattr(Trainer, "compute", real_compute)

    resumed = Trainer(_cfg(tmp_path, "part", extra), resume=True, progress=False)
    assert resumed.step == 3 and resumed.epoch == 0
    resumed.fit()
    assert resumed.step == full.step
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert torch.allclose(full.objective.uncertainty.log_vars, resumed.objective.uncertainty.log_vars, atol=1e-6)
    assert [r["step"] for r in read_csv_rows(tmp_path / "part" / "steps.csv")] == [r["step"] for r in read_csv_rows(tmp_path / "full" / "steps.csv")]


def test_run_folder_is_never_overwritten(tmp_path, teacher_ckpt):
    cfg = _cfg(tmp_path, "x", STUDENT + ["optim.epochs=1"])
    train(cfg, progress=False)
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(cfg, progress=False)
    with pytest.raises(ConfigError, match="does not exist"):
        Trainer(_cfg(tmp_path, "y", STUDENT), resume=True, progress=False)
    with pytest.raises(ConfigError, match="needs a teacher"):
        Trainer(_cfg(tmp_path, "z", STUDENT + ["loss.kd=fixed"]), progress=False)


def test_init_warm_starts_from_a_checkpoint(tmp_path, teacher_ckpt):
    """``init=``: the new run starts from the checkpoint's weights (fine-tuning), with a fresh
    optimiser; a model that differs from the checkpoint's is refused with one clear message."""
    source = load_checkpoint(teacher_ckpt)[0].state_dict()
    cfg = _cfg(tmp_path, "ft", TEACHER + [f"init={teacher_ckpt}", "optim.epochs=1"])
    tr = Trainer(cfg, progress=False)
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in source.items())
    assert tr.step == 0 and not tr.opt.state
    fresh = Trainer(_cfg(tmp_path, "scratch", TEACHER + ["optim.epochs=1"]), progress=False)
    assert not all(torch.equal(v, fresh.model.state_dict()[k]) for k, v in source.items())
    with pytest.raises(ConfigError, match="init=.*holds model 'teacher'.*set model.name and model.args"):
        Trainer(_cfg(tmp_path, "wrong", STUDENT + [f"init={teacher_ckpt}"]), progress=False)
    with pytest.raises(ConfigError, match="no shipped model 'nope'"):
        Trainer(_cfg(tmp_path, "nope", TEACHER + ["init=pretrained:nope"]), progress=False)


def test_init_names_the_shipped_student(tmp_path):
    path = resolve_checkpoint("pretrained:student")
    model, meta, _ = load_checkpoint(path)
    cfg = _cfg(tmp_path, "ship", ["model.name=student", f"model.args={meta['model']['args']}",
                                  "init=pretrained:student", "optim.epochs=1"])
    tr = Trainer(cfg, progress=False)
    assert all(torch.equal(v, tr.model.state_dict()[k]) for k, v in model.state_dict().items())


def test_resume_ignores_init(tmp_path, teacher_ckpt):
    """A resumed fine-tuning run continues from its own state and never reads ``init`` again:
    it resumes even when the init checkpoint has since been deleted."""
    init = tmp_path / "init.safetensors"
    init.write_bytes(teacher_ckpt.read_bytes())
    cfg = _cfg(tmp_path, "ft", TEACHER + [f"init={init}", "optim.epochs=1"])
    tr = Trainer(cfg, progress=False)
    tr.fit()
    trained = {k: v.clone() for k, v in tr.model.state_dict().items()}
    init.unlink()
    again = Trainer(cfg, resume=True, progress=False)
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in trained.items())


def test_the_shipped_teacher_can_teach(tmp_path):
    """``teacher=pretrained:teacher`` distils from the teacher shipped in the package."""
    cfg = _cfg(tmp_path, "kd", STUDENT + ["teacher=pretrained:teacher", "loss.kd=fixed", "optim.epochs=1"])
    tr = Trainer(cfg, progress=False)
    shipped = load_checkpoint(resolve_checkpoint("pretrained:teacher"))[0]
    assert all(torch.equal(v, tr.teacher.state_dict()[k]) for k, v in shipped.state_dict().items())


def test_valid_select_last_keeps_the_last_epoch_and_bad_values_are_refused(tmp_path):
    cfg = _cfg(tmp_path, "sel", STUDENT + ["optim.epochs=3", "valid.select=last"])
    best = Trainer(cfg, progress=False).fit()
    epochs = read_csv_rows(best.parent / "epochs.csv")
    assert [r["best"] for r in epochs] == ["1", "1", "1"]
    b, _, _ = load_checkpoint(best)
    last, _, _ = load_checkpoint(best.parent / "last.safetensors")
    assert all(torch.equal(x, y) for x, y in zip(b.state_dict().values(), last.state_dict().values()))
    with pytest.raises(ConfigError, match="valid.select must be one of pesq, si_sdr, last, got 'stoi'"):
        Trainer(_cfg(tmp_path, "bad", STUDENT + ["valid.select=stoi"]), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before the run folder is made


def test_selection_score_ranks_epochs_by_the_chosen_metric():
    from mtakd.validate import selection_score

    a, b = {"val_pesq": 2.0, "val_si_sdr": 9.0}, {"val_pesq": 1.9, "val_si_sdr": 10.0}
    assert selection_score(a, "pesq", 1) > selection_score(b, "pesq", 2)
    assert selection_score(a, "si_sdr", 1) < selection_score(b, "si_sdr", 2)
    assert selection_score(b, "last", 2) > selection_score(a, "last", 1)
    # no PESQ (e.g. silent validation audio): the PESQ mode ranks by SI-SDR instead
    assert selection_score({"val_pesq": float("nan"), "val_si_sdr": 12.0}, "pesq", 1) == 1.2
