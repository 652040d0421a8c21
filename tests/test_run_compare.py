"""benchmarks/run_compare.py: paired training-log differences and look-ahead weight sizes."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import run_compare  # noqa: E402

from mtakd.checkpoint import save_checkpoint  # noqa: E402
from mtakd.models import build_model  # noqa: E402


def _run(path: Path, sisdr: list[float]) -> Path:
    path.mkdir()
    rows = ["step,sup,kd,sisdr,kd_sisdr"] + [f"{20 * (i + 1)},0.03,0.004,{v},{2 * v}" for i, v in enumerate(sisdr)]
    (path / "steps.csv").write_text("\n".join(rows) + "\n")
    return path


def test_block_means_of_paired_differences_and_rows_at_steps(tmp_path):
    base = _run(tmp_path / "ctl", [-14.0, -14.0, -13.0, -13.0])
    other = _run(tmp_path / "la", [-13.0, -13.5, -13.5, -13.5])
    lines = run_compare.compare(base, [other], at=[20], block=40)
    assert lines[0].startswith("step 20: ctl ") and "la sup 0.03" in lines[0]
    assert "steps 0-39 (1 rows): la - ctl: sup +0.0000 kd +0.0000 sisdr +1.0000 kd_sisdr +2.0000" == lines[1]
    assert "(2 rows)" in lines[2] and "sisdr +0.0000" in lines[2]  # steps 40 (+0.5) and 60 (-0.5)
    assert "(1 rows)" in lines[3] and "sisdr -0.5000" in lines[3]  # step 80
    with pytest.raises(SystemExit, match="no steps.csv"):
        run_compare.compare(base, [tmp_path / "nope"], at=[], block=40)


def test_only_the_columns_every_run_logs_are_compared(tmp_path):
    """A run without loss.kd_sisdr has no kd_sisdr column; the learned weights are compared too."""
    base = tmp_path / "d"
    base.mkdir()
    (base / "steps.csv").write_text("step,sup,kd,sisdr,w_sup,w_kd\n20,0.03,0.004,-9.0,13.0,40.0\n")
    other = _run(tmp_path / "h", [-10.0])
    lines = run_compare.compare(base, [other], at=[20], block=40)
    assert lines[0] == "step 20: d sup 0.03 kd 0.004 sisdr -9 | h sup 0.03 kd 0.004 sisdr -10"
    assert lines[1] == "steps 0-39 (1 rows): h - d: sup +0.0000 kd +0.0000 sisdr -1.0000"
    other2 = tmp_path / "d2"
    other2.mkdir()
    (other2 / "steps.csv").write_text("step,sup,kd,sisdr,w_sup,w_kd\n20,0.03,0.005,-9.0,13.0,30.0\n")
    # and each task's weighted loss w * L (40 * 0.004 = 0.16 against 30 * 0.005 = 0.15)
    assert run_compare.compare(base, [other2], at=[], block=40) == [
        "steps 0-39 (1 rows): d2 - d: sup +0.0000 kd +0.0010 sisdr +0.0000 w_sup +0.0000 w_kd -10.0000 "
        "wL_sup +0.0000 wL_kd -0.0100"]
    # runs of the same name in two studies are labelled by their paths
    (tmp_path / "v2").mkdir()
    same = tmp_path / "v2" / "d"
    same.mkdir()
    (same / "steps.csv").write_text((other2 / "steps.csv").read_text())
    assert run_compare.compare(base, [same], at=[], block=40) == [
        f"steps 0-39 (1 rows): {same} - {base}: sup +0.0000 kd +0.0010 sisdr +0.0000 w_sup +0.0000 w_kd -10.0000 "
        "wL_sup +0.0000 wL_kd -0.0100"]


def test_weight_sizes_split_fc_in_and_the_look_ahead(tmp_path):
    torch.manual_seed(0)
    plain = build_model("student", {"hidden": 8, "input_size": 6})
    ahead = build_model("student", {"hidden": 8, "input_size": 6, "lookahead": 1})
    with torch.no_grad():
        ahead.fc_ahead.weight.fill_(0.5)  # norm 0.5 * sqrt(6 * 161)
    save_checkpoint(tmp_path / "p.safetensors", plain)
    save_checkpoint(tmp_path / "a.safetensors", ahead)
    assert "look-ahead" not in run_compare.weight_sizes(tmp_path / "p.safetensors")
    assert f"look-ahead norm {0.5 * (6 * 161) ** 0.5:.3f} max 0.500" in run_compare.weight_sizes(tmp_path / "a.safetensors")
