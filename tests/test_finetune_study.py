"""benchmarks/finetune_study.py end to end on a generated dev set and two tiny checkpoints."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import finetune_study  # noqa: E402

from mtakd.checkpoint import save_checkpoint
from mtakd.config import DataConfig, TrainConfig, load_config, save_config
from mtakd.data import build_devset
from mtakd.models import build_model


def _run(root: Path, name: str, seed: int, extra: list[str]) -> None:
    torch.manual_seed(seed)
    cfg = load_config(TrainConfig, None, ["model.name=student", "model.args={input_size: 8, hidden: 8, layers: 1}",
                                          f"seed={seed}"] + extra)
    (root / name).mkdir(parents=True)
    save_checkpoint(root / name / "best.safetensors", build_model(cfg.model.name, cfg.model.args))
    save_config(cfg, root / name / "config.yaml")
    (root / name / "epochs.csv").write_text("epoch,step\n1,40\n")


def test_report_has_every_run_levels_pairs_and_recipes(tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    build_devset(DataConfig(source="synthetic"), dev, snrs=(0, 10), per_snr=1, segment_s=1.0)
    runs = tmp_path / "runs"
    _run(runs, "ft_a", 0, ["init=pretrained:student", "loss.kd_sisdr=true"])  # a no-op without KD: not named
    _run(runs, "ft_d", 1, ["loss.kd=mtakd", "loss.tf_weight=true", "loss.kd_sisdr=true", "teacher=pretrained:teacher"])
    _run(runs, "ft_f", 2, ["loss.kd=mtakd", "loss.tf_weight=true", "loss.tf_floor=0.3", "teacher=pretrained:teacher",
                           "loss.log_var_lr_scale=100"])
    out = tmp_path / "report.md"
    monkeypatch.setattr(sys, "argv", ["finetune_study.py", "--runs", str(runs), "--devset", str(dev),
                                      "--pair", "ft_d:ft_a", "--level-files", "2", "--out", str(out)])
    assert finetune_study.main() == 0
    text = out.read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert {"noisy", "ft_a", "ft_d"} <= set(rows)
    # level column: a signed dB figure for every system
    assert all(cell.strip()[0] in "+-" for cell in (rows[n].split("|")[-3] for n in ("noisy", "ft_a", "ft_d")))
    # untrained models: PESQ may be NaN on a file (then left out of the pair), SI-SDR never is
    assert "| ft_d - ft_a | PESQ-WB |" in text and "| ft_d - ft_a | SI-SDRi | 2 |" in text
    assert "**ft_a**: student (GRU 1x8) from `pretrained:student`, kd none, 40 steps" in text
    assert "kd mtakd + T-F weights + SI-SDR in both tasks (kd_sisdr), teacher `pretrained:teacher`" in text
    assert "kd mtakd + T-F weights (tf_floor 0.3) (log-variance lr x100), teacher" in text  # non-defaults are named
    # scores are cached beside each run
    assert (runs / "ft_a" / "dev.csv").is_file() and (runs / "_scores" / "noisy_dev.csv").is_file()


def test_groups_give_mean_and_std_over_seeds(tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    build_devset(DataConfig(source="synthetic"), dev, snrs=(0, 10), per_snr=1, segment_s=1.0)
    runs = tmp_path / "runs"
    for seed in (0, 1):
        _run(runs, f"gru_s{seed}", seed, [])
        _run(runs, f"lstm_s{seed}", seed, ["model.args={input_size: 8, hidden: 8, layers: 1, cell: lstm}"])
    out = tmp_path / "report.md"
    argv = ["finetune_study.py", "--runs", str(runs), "--devset", str(dev), "--level-files", "2", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv + ["--group", "gru", "--group", "lstm"])
    assert finetune_study.main() == 0
    text = out.read_text()
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    assert rows["lstm"].split("|")[2].strip() == "0, 1" and "+/-" in rows["lstm"].split("|")[4]
    assert "**lstm_s1**: student (LSTM 1x8) from `scratch`" in text
    monkeypatch.setattr(sys, "argv", argv + ["--group", "nope"])
    with pytest.raises(SystemExit) as e:  # an empty group is a usage error
        finetune_study.main()
    assert e.value.code == 2


def test_a_weight_average_says_what_it_averages(tmp_path):
    from mtakd.averaging import average_checkpoints

    runs = tmp_path / "runs"
    _run(runs, "a", 0, [])
    _run(runs, "b", 1, [])
    (runs / "soup").mkdir()
    paths = [runs / "a" / "best.safetensors", runs / "b" / "best.safetensors"]
    average_checkpoints(paths, runs / "soup" / "best.safetensors")
    assert finetune_study.recipe(runs / "soup") == (
        f"uniform weight average (`mtakd average`) of 2 checkpoints: `{paths[0]}`, `{paths[1]}`")
    average_checkpoints(paths, runs / "soup" / "best.safetensors", weights=[3, 1], overwrite=True)
    assert finetune_study.recipe(runs / "soup").endswith(f"`{paths[0]}` (0.75), `{paths[1]}` (0.25)")
    (runs / "copy").mkdir()
    (runs / "copy" / "best.safetensors").write_bytes(paths[0].read_bytes())  # a plain copy: no record, as before
    assert finetune_study.recipe(runs / "copy") == "(no config.yaml: a copied checkpoint)"


def test_a_cached_table_is_reused_only_for_the_same_audio(tmp_path, capsys):
    """Dev sets built with different seeds share their file names; a table scored on one must
    not be taken for the other's (the cache used to compare names only)."""
    from results import score_all, set_fingerprint

    devs = {}
    for seed in (1, 2):
        devs[seed] = tmp_path / f"dev{seed}"
        build_devset(DataConfig(source="synthetic"), devs[seed], snrs=(0, 10), per_snr=1, segment_s=1.0, seed=seed)
    names = sorted(p.name for p in (devs[1] / "noisy").iterdir())
    assert names == sorted(p.name for p in (devs[2] / "noisy").iterdir())
    assert set_fingerprint(devs[1], names) != set_fingerprint(devs[2], names)
    runs = tmp_path / "runs"
    _run(runs, "s", 0, [])
    run_dirs = {"s": runs / "s"}

    def score(seed):
        tables = score_all(run_dirs, {"dev": str(devs[seed])}, runs / "_scores", False, 1)["dev"]
        return tables, capsys.readouterr().err

    first, log = score(1)
    assert "0 cached, 2 to score" in log
    again, log = score(1)
    assert "2 cached, 0 to score" in log and again == first
    other, log = score(2)
    assert "0 cached, 2 to score" in log and other["noisy"] != first["noisy"]
    assert (runs / "s" / "dev.csv.set").read_text().strip() == set_fingerprint(devs[2], names)
    (runs / "s" / "dev.csv.set").unlink()  # a table from before fingerprints is scored again
    _, log = score(2)
    assert "1 cached, 1 to score" in log
