from pathlib import Path

import pytest

from mtakd.config import ConfigError, TrainConfig, load_config, save_config


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("seed: 3\noptim: {lr: 0.01}\nmodel: {name: teacher, args: {hidden: 32}}\n")
    cfg = load_config(TrainConfig, p, ["optim.lr=3e-4", "loss.kd=mtakd", "data.snr_range=[0, 5]", "model.args.layers=1"])
    assert cfg.seed == 3 and cfg.optim.lr == 3e-4 and cfg.loss.kd == "mtakd"
    assert cfg.data.snr_range == [0.0, 5.0]
    assert cfg.model.args == {"hidden": 32, "layers": 1}
    assert cfg.optim.batch_size == TrainConfig().optim.batch_size  # defaults where silent


def test_unknown_key_rejected_with_its_name(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("optim: {lrr: 0.1}\n")
    with pytest.raises(ConfigError, match=r"'optim\.lrr'.*allowed.*lr"):
        load_config(TrainConfig, p)
    with pytest.raises(ConfigError, match="'nope'"):
        load_config(TrainConfig, None, ["nope=1"])


@pytest.mark.parametrize("override,msg", [("optim.lr=fast", "number"), ("optim.epochs=1.5", "integer"),
                                          ("loss.tf_weight=maybe", "true or false"), ("optim", "key.subkey=value"),
                                          ("model.args={input_size:", "not valid YAML.*one key at a time")])
def test_type_errors(override, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(TrainConfig, None, [override])


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, bad)


def test_saved_config_reloads_identically(tmp_path):
    cfg = load_config(TrainConfig, None, ["loss.kd=fixed", "optim.lr=0.002"])
    save_config(cfg, tmp_path / "run.yaml")
    assert load_config(TrainConfig, tmp_path / "run.yaml") == cfg


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_every_config_file_is_checked():
    assert {p.name for p in CONFIGS} >= {"student.yaml", "student_finetune.yaml", "teacher.yaml", "tiny.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_serve_every_kd_mode(path):
    """Each file in configs/ loads, and its loss settings build for --kd none/fixed/mtakd
    (e.g. loss.kd_sisdr in student.yaml must not break --kd none). A config with the
    teacher-error bound is for mtakd only: the other modes get the one-line ConfigError."""
    from mtakd.losses import KD_MODES, MultiTaskLoss

    for kd in KD_MODES:
        cfg = load_config(TrainConfig, path, [f"loss.kd={kd}"])
        if cfg.loss.kd_teacher_error and kd != "mtakd":
            with pytest.raises(ConfigError, match="needs loss.kd=mtakd"):
                MultiTaskLoss(cfg.loss)
            continue
        assert MultiTaskLoss(cfg.loss).uses_teacher == (kd != "none")
