"""recipes/reproduce.sh: the teacher then every requested student variant, resumable, DONE markers."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["data.source=synthetic", "data.segment_s=1.0", "data.items_per_epoch=8", "optim.batch_size=4",
        "optim.epochs=1", "valid.synthetic_items=2", "valid.dir=", "optim.warmup_steps=1", "threads=1"]


def _run(runs: Path, variants: str, student_extra: str = "") -> subprocess.CompletedProcess:
    env = dict(os.environ, PY=sys.executable, SEEDS="0", JOBS="2", VARIANTS=variants,
               TEACHER_ARGS="model.args.input_size=16 model.args.hidden=8 model.args.layers=1",
               STUDENT_ARGS="model.args.input_size=8 model.args.hidden=8 model.args.layers=1 " + student_extra)
    return subprocess.run(["bash", str(ROOT / "recipes" / "reproduce.sh"), str(runs), *TINY],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_recipe_trains_teacher_and_variants_then_skips_finished_runs(tmp_path):
    runs = tmp_path / "runs"
    r = _run(runs, "a_none e_mtakd_gate h_mtakd_tf_sisdr j_mtakd_tf_ramp")
    assert r.returncode == 0, r.stderr + "".join(p.read_text() for p in runs.glob("*.log"))
    for name in ("teacher", "a_none_s0", "e_mtakd_gate_s0", "h_mtakd_tf_sisdr_s0"):
        assert (runs / name / "DONE").is_file() and (runs / name / "best.safetensors").is_file()
    cfg = (runs / "e_mtakd_gate_s0" / "config.yaml").read_text()
    assert "kd: mtakd" in cfg and "gate: true" in cfg and "feature_kd: true" in cfg
    # the first-defined variants pin the supervised-only SI-SDR term; h is (d) with it in both tasks
    assert "kd_sisdr: false" in cfg
    assert "kd_sisdr: true" in (runs / "h_mtakd_tf_sisdr_s0" / "config.yaml").read_text()
    # j's list override survives the recipe's two rounds of shell word splitting
    ramp = (runs / "j_mtakd_tf_ramp_s0" / "config.yaml").read_text()
    assert "tf_snr_ramp:\n  - 0.0\n  - 10.0" in ramp and "tf_weight: true" in ramp
    stamp = (runs / "a_none_s0" / "best.safetensors").stat().st_mtime_ns
    r = _run(runs, "a_none")  # finished runs are skipped, not retrained
    assert r.returncode == 0 and (runs / "a_none_s0" / "best.safetensors").stat().st_mtime_ns == stamp


def test_recipe_rejects_an_unknown_variant(tmp_path):
    r = _run(tmp_path / "runs", "z_nonsense")
    assert r.returncode != 0 and "unknown variant 'z_nonsense'" in r.stderr


def test_recipe_reports_a_failed_run_and_goes_on(tmp_path):
    runs = tmp_path / "runs"
    r = _run(runs, "a_none b_fixed", student_extra="loss.no_such_key=1")
    assert r.returncode == 1
    assert "failed: " + str(runs / "a_none_s0") in r.stderr and "failed: " + str(runs / "b_fixed_s0") in r.stderr
    assert (runs / "teacher" / "DONE").is_file() and "no_such_key" in (runs / "a_none_s0.log").read_text()
