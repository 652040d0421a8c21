"""Distributed training and sharded enhancement on 2 CPU processes (torchrun, gloo), tiny scale.

One torchrun launch (tests/dist_worker.py) runs the distributed parts; a one-process run of the
same config with the same global batch runs here for comparison. Why the curves can differ
at all: a rank averages its half batch and the all-reduce averages the two halves, so sums
are taken in another order (float32 rounding, ~1e-7 relative per step, amplified a little by
Adam over the steps); CSV logs keep 6 significant digits. Every loss term used here is a mean
of per-utterance terms, so the global-batch maths is otherwise identical. (Feature
distillation is not: it standardises teacher features with per-batch statistics, which
then come from each rank's half batch.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mtakd.audio import save_audio
from mtakd.checkpoint import load_checkpoint, save_checkpoint
from mtakd.cli import main as cli_main
from mtakd.config import ConfigError, TrainConfig, load_config
from mtakd.models import build_model
from mtakd.synth import synth_noise, synth_speech
from mtakd.schedule import EpochSampler
from mtakd.train import Trainer
from helpers import read_csv_rows

ROOT = Path(__file__).resolve().parents[1]
# 6 steps per epoch of a global batch of 8; checkpoint at step 4 (mid-epoch), crash at step 5
TINY = ["data.source=synthetic", "data.segment_s=1.0", "data.items_per_epoch=48", "optim.batch_size=8",
        "optim.lr=0.005", "optim.warmup_steps=2", "optim.checkpoint_every=4", "optim.log_every=1",
        "optim.epochs=2", "valid.synthetic_items=2", "threads=1", "device=cpu",
        "model.name=student", "model.args={input_size: 8, hidden: 8, layers: 1}"]
#: relative tolerance of the 2-process loss curve against the 1-process one (see docstring)
RTOL = 1e-4
N_GOOD_FILES = 5



@pytest.fixture(scope="module")
def dist_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("dist")
    teacher = build_model("teacher", {"input_size": 8, "hidden": 8, "layers": 1})
    save_checkpoint(work / "teacher.safetensors", teacher)
    overrides = TINY + [f"teacher={work / 'teacher.safetensors'}", "loss.kd=mtakd", "loss.gate=true"]
    (work / "spec.json").write_text(json.dumps({"overrides": overrides, "cli": overrides}))
    rng = np.random.default_rng(0)
    for k in range(N_GOOD_FILES):  # nested folders: the output keeps the structure
        sub = work / "audio" / ("a" if k % 2 else "b")
        sub.mkdir(parents=True, exist_ok=True)
        save_audio(sub / f"f{k}.wav", (synth_speech(8000, rng) + 0.1 * synth_noise(8000, rng, "white")).astype(np.float32), 16000)
    (work / "audio" / "broken.wav").write_bytes(b"not audio at all" * 8)

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tests" / "dist_worker.py"), str(work)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0 and (work / "results.json").exists(), proc.stdout[-3000:] + proc.stderr[-5000:]
    # the reference: one process, the same config and global batch
    assert cli_main(["distill", "--no-progress", "--run-dir", str(work / "ref")] + overrides) == 0
    return work, json.loads((work / "results.json").read_text()), proc.stdout


def test_two_process_training_matches_one_process(dist_run):
    work, res, _ = dist_run
    assert res["world"] == 2 and res["cli_rc"] == 0
    assert {"best.safetensors", "last.safetensors", "train_state.safetensors", "steps.csv", "epochs.csv"} <= {
        p.name for p in (work / "full").iterdir()}
    two, one = read_csv_rows(work / "full" / "steps.csv"), read_csv_rows(work / "ref" / "steps.csv")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [str(i) for i in range(1, 13)]  # logged once, by rank 0
    for a, b in zip(two, one):
        for key in ("loss", "sup", "kd", "logvar_sup", "logvar_kd", "lr"):
            x, y = float(a[key]), float(b[key])
            assert abs(x - y) <= RTOL * max(abs(y), 1e-3), (a["step"], key, x, y)
    assert len(read_csv_rows(work / "full" / "epochs.csv")) == 2
    w2, w1 = load_checkpoint(work / "full" / "last.safetensors"), load_checkpoint(work / "ref" / "last.safetensors")
    for p, q in zip(w2[0].parameters(), w1[0].parameters()):
        assert torch.allclose(p, q, atol=1e-4)  # measured: 1.2e-6 after 12 steps
    assert torch.allclose(w2[2]["loss.uncertainty.log_vars"], w1[2]["loss.uncertainty.log_vars"], atol=1e-5)


def test_distributed_resume_continues_exactly(dist_run):
    _, res, _ = dist_run
    assert res["resumed_at"] == 4  # the mid-epoch checkpoint, loaded on both ranks
    assert res["replica_max_diff"] == 0.0  # DDP keeps the replicas bit-identical
    assert res["resume_vs_full_max_diff"] < 1e-5


def test_uncertainty_weights_are_synchronised(dist_run):
    _, res, _ = dist_run
    # the log-variances live in the loss module, inside the same DDP wrapper as the model
    assert np.allclose(res["log_vars_resumed"], res["log_vars_full"], atol=1e-5)
    assert all(v != 0.0 for v in res["log_vars_full"])  # they were trained


def test_sharded_enhancement_writes_each_file_once_and_resumes(dist_run):
    work, res, stdout = dist_run
    written = res["first"]["enhanced"]
    assert len(written) == len(set(written)) == N_GOOD_FILES  # the union of both shards, no file twice
    assert sorted(Path(p).relative_to(work / "enhanced").as_posix() for p in written) == \
        ["a/f1.wav", "a/f3.wav", "b/f0.wav", "b/f2.wav", "b/f4.wav"]
    assert len(res["first"]["failed"]) == 1 and "broken.wav" in res["first"]["failed"][0]
    assert res["second"] == {"enhanced": 0, "skipped": N_GOOD_FILES, "failed": 1}
    assert res["cli_enhance_rc"] == 1  # the broken file fails again; the rest is skipped
    assert res["cli_enhance_distributed_rc"] == 1  # 'mtakd enhance --distributed': the same
    # one summary per command (enhance-sharded, enhance --distributed), from rank 0
    assert stdout.count(f"0 enhanced, 1 failed, {N_GOOD_FILES} skipped") == 2
    assert not list((work / "enhanced").rglob(".*.tmp"))


# ----------------------------------------------------------------------------- in-process
@pytest.mark.parametrize("world", [2, 3])
def test_sampler_ranks_are_disjoint_and_form_the_global_batches(world):
    n, batch, steps = 50, 6, 8
    total = steps * batch
    ref = list(EpochSampler(n, seed=3, total=total))
    for start in (0, 2 * batch):  # a fresh epoch, and one resumed after 2 steps
        shares = []
        for r in range(world):
            s = EpochSampler(n, seed=3, rank=r, world=world, total=total)
            s.set_epoch(0, start)
            shares.append(list(s))
            assert len(s) == len(shares[-1]) == (total - start) // world
        flat = [i for sh in shares for i in sh]
        assert len(flat) == len(set(flat)) and sorted(flat) == sorted(ref[start:])
        micro = batch // world
        for k in range((total - start) // batch):  # step k: the ranks' micro-batches = global batch k
            got = {i for sh in shares for i in sh[k * micro:(k + 1) * micro]}
            assert got == set(ref[start + k * batch:start + (k + 1) * batch])
    one = EpochSampler(n, seed=3)  # one process, no cap: exactly the sampler before this change
    one.set_epoch(1, 4)
    assert list(one) == torch.randperm(n, generator=torch.Generator().manual_seed(3 * 100003 + 1))[4:].tolist()


def _cfg(tmp_path, name, extra):
    return load_config(TrainConfig, None, TINY + ["optim.epochs=1", "optim.checkpoint_every=0", f"run_dir={tmp_path / name}"] + extra)


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    a = Trainer(_cfg(tmp_path, "a", []), progress=False)
    b = Trainer(_cfg(tmp_path, "b", ["optim.grad_accum=2"]), progress=False)
    assert b.micro_batch == 4
    a.fit(), b.fit()
    for x, y in zip(read_csv_rows(tmp_path / "a" / "steps.csv"), read_csv_rows(tmp_path / "b" / "steps.csv")):
        assert abs(float(x["loss"]) - float(y["loss"])) <= RTOL * abs(float(x["loss"]))
    for p, q in zip(a.model.parameters(), b.model.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_bf16_autocast_trains_on_cpu(tmp_path):
    cfg = _cfg(tmp_path, "bf16", ["optim.amp=bf16", "data.items_per_epoch=16"])
    tr = Trainer(cfg, progress=False)
    before = [p.clone() for p in tr.model.parameters()]
    tr.fit()
    rows = read_csv_rows(tmp_path / "bf16" / "steps.csv")
    assert len(rows) == 2 and all(np.isfinite(float(r["loss"])) for r in rows)
    assert all(p.dtype == torch.float32 for p in tr.model.parameters())  # weights stay float32
    assert any(not torch.equal(p, q) for p, q in zip(before, tr.model.parameters()))


def test_bad_distributed_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="global batch"):
        Trainer(_cfg(tmp_path, "x", ["optim.grad_accum=3"]), progress=False)
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        Trainer(_cfg(tmp_path, "y", ["optim.amp=fp16"]), progress=False)
    with pytest.raises(ConfigError, match="optim.amp"):
        Trainer(_cfg(tmp_path, "z", ["optim.amp=fp8"]), progress=False)


def test_resume_after_a_finished_epoch_keeps_its_log_row(tmp_path):
    Trainer(_cfg(tmp_path, "r", ["data.items_per_epoch=16"]), progress=False).fit()
    tr = Trainer(_cfg(tmp_path, "r", ["data.items_per_epoch=16", "optim.epochs=2"]), resume=True, progress=False)
    tr.fit()
    assert [r["epoch"] for r in read_csv_rows(tmp_path / "r" / "epochs.csv")] == ["1", "2"]
    assert [r["step"] for r in read_csv_rows(tmp_path / "r" / "steps.csv")] == ["1", "2", "3", "4"]


def test_shards_are_disjoint_and_a_rerun_skips(tmp_path, rng):
    from mtakd.shard import enhance_sharded, shard

    assert shard(list(range(7)), 1, 3) == [1, 4] and sorted(shard(list(range(7)), r, 3) for r in range(3)) == [[0, 3, 6], [1, 4], [2, 5]]
    model = tmp_path / "s.safetensors"
    save_checkpoint(model, build_model("student", {"input_size": 8, "hidden": 8, "layers": 1}))
    (tmp_path / "in").mkdir()
    for k in range(5):
        save_audio(tmp_path / "in" / f"x{k}.wav", synth_speech(4000, rng).astype(np.float32), 16000)
    # two "ranks" in one process (no group): each does its own shard and reports only that
    parts = [enhance_sharded([tmp_path / "in"], tmp_path / "out", model=str(model), rank=r, world=2) for r in (0, 1)]
    done = [d.name for p in parts for _, d in p.enhanced]
    assert sorted(done) == [f"x{k}.wav" for k in range(5)] and len(parts[0].enhanced) == 3
    again = enhance_sharded([tmp_path / "in"], tmp_path / "out", model=str(model), rank=0, world=1)
    assert not again.enhanced and len(again.skipped) == 5


def test_enhance_distributed_writes_each_file_and_a_rerun_skips(tmp_path, rng, capsys):
    """``mtakd enhance --distributed`` (what ``torchrun -m mtakd enhance --distributed`` runs
    on every rank): here one process, a world of 1; the 2-process run is in ``dist_run``."""
    model = tmp_path / "s.safetensors"
    save_checkpoint(model, build_model("student", {"input_size": 8, "hidden": 8, "layers": 1}))
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for k in range(3):
        save_audio(tmp_path / "in" / ("sub" if k else "") / f"x{k}.wav", synth_speech(4000, rng).astype(np.float32), 16000)
    argv = ["enhance", "--distributed", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", str(model)]
    assert cli_main(argv) == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.wav")) == \
        ["sub/x1.wav", "sub/x2.wav", "x0.wav"]
    assert capsys.readouterr().out.splitlines()[-1] == "3 enhanced, 0 failed"
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.wav")}
    assert cli_main(argv) == 0  # a re-run skips every finished output
    assert capsys.readouterr().out.splitlines()[-1] == "0 enhanced, 0 failed, 3 skipped (output exists; --overwrite replaces)"
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.wav")} == before
