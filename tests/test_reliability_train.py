"""Reliability of training: SIGKILL + --resume, non-finite losses, full disk, unwritable run folder.

The SIGKILL test runs the real CLI (``python -m mtakd distill``) in a subprocess on a tiny
synthetic config, kills it at a seeded random moment after its first checkpoint, checks that
every file left in the run folder is complete, resumes it to the end and compares the result
with an uninterrupted run of the same config (weights, uncertainty weights, optimiser and
scheduler state, step count, logged losses per step).
"""
from __future__ import annotations

import errno
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mtakd import checkpoint
from mtakd.checkpoint import load_checkpoint, load_train_state, save_checkpoint
from mtakd.cli import main
from mtakd.config import TrainConfig, load_config
from mtakd.models import build_model
from mtakd.train import Trainer, TrainingError
from helpers import read_csv_rows

SRC = Path(__file__).resolve().parents[1] / "src"
TINY = ["data.source=synthetic", "data.segment_s=0.5", "data.items_per_epoch=48", "optim.batch_size=8",
        "optim.checkpoint_every=2", "optim.epochs=2", "optim.log_every=1", "optim.warmup_steps=2",
        "model.name=student", "model.args={input_size: 8, hidden: 8, layers: 1}", "threads=1",
        "valid.synthetic_items=1"]



def _cfg(run_dir: Path, extra=()) -> TrainConfig:
    return load_config(TrainConfig, None, TINY + [f"run_dir={run_dir}", *extra])


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_checkpoint(p, build_model("teacher", {"input_size": 8, "hidden": 8, "layers": 1}))
    return p


# ----------------------------------------------------------------------------- SIGKILL + resume
def _assert_run_folder_loadable(run: Path) -> None:
    """Every file under a final name is complete: checkpoints load, CSVs parse."""
    for p in run.iterdir():
        if p.name.startswith("."):
            assert p.name.endswith(".tmp"), p  # only a writer's temporary name may be partial
        elif p.name == "train_state.safetensors":
            assert int(load_train_state(p)["step"]) >= 2
        elif p.suffix == ".safetensors":
            model, meta, _ = load_checkpoint(p)
            assert all(torch.isfinite(t).all() for t in model.state_dict().values())
        elif p.suffix == ".csv":
            assert all(r["step"].isdigit() for r in read_csv_rows(p))


def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, teacher_file, capsys):
    overrides = TINY + [f"teacher={teacher_file}"]
    argv = ["distill", "--kd", "mtakd", "--tf-weight", "on", "--no-progress", "--run-dir", str(tmp_path / "killed")]
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen([sys.executable, "-m", "mtakd", *argv, *overrides], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # the reference runs in this process while the subprocess starts up
        ref = Trainer(_cfg(tmp_path / "ref", [f"teacher={teacher_file}", "loss.kd=mtakd", "loss.tf_weight=true"]),
                      progress=False)
        ref.fit()
        total = ref.step
        rng = random.Random(20240611)
        kill_after = rng.randint(3, total - 4)  # steps logged before the kill ...
        delay = rng.uniform(0.0, 0.08)  # ... plus a fraction of a step
        steps, state = tmp_path / "killed" / "steps.csv", tmp_path / "killed" / "train_state.safetensors"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if state.exists() and steps.exists() and len(steps.read_text().splitlines()) > kill_after:
                break
            time.sleep(0.005)
        time.sleep(delay)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    run = tmp_path / "killed"
    _assert_run_folder_loadable(run)
    killed_at = int(load_train_state(run / "train_state.safetensors")["step"])
    assert 2 <= killed_at < total

    capsys.readouterr()
    assert main([*argv, "--resume", *overrides]) == 0  # the same command with --resume (in-process: no start-up cost)
    assert f"step {killed_at}" in capsys.readouterr().out
    # a temporary file of a killed write is removed when that file is written again (last and
    # train_state always are; best only when validation improves)
    assert not [p for p in run.iterdir() if p.name.startswith((".last.", ".train_state."))]

    # the same weights, uncertainty weights, optimiser/scheduler state and step count
    _, meta, aux = load_checkpoint(run / "last.safetensors")
    want_model, want_meta, want_aux = load_checkpoint(tmp_path / "ref" / "last.safetensors")
    got_model = load_checkpoint(run / "last.safetensors")[0]
    for (k, a), b in zip(want_model.state_dict().items(), got_model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert torch.allclose(aux["loss.uncertainty.log_vars"], want_aux["loss.uncertainty.log_vars"], atol=1e-6)
    assert meta["train"]["step"] == want_meta["train"]["step"] == total
    s_got, s_want = load_train_state(run / "train_state.safetensors"), load_train_state(tmp_path / "ref" / "train_state.safetensors")
    assert s_got["step"] == s_want["step"] and s_got["epoch"] == s_want["epoch"]
    assert s_got["sched"]["last_epoch"] == s_want["sched"]["last_epoch"] == total
    for k, st in s_want["opt"]["state"].items():
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.allclose(s_got["opt"]["state"][k][name].float(), st[name].float(), rtol=1e-5, atol=1e-7), (k, name)
    # the same data order: every step logged exactly once, with the reference's losses
    got_rows, want_rows = read_csv_rows(run / "steps.csv"), read_csv_rows(tmp_path / "ref" / "steps.csv")
    assert [int(r["step"]) for r in got_rows] == list(range(1, total + 1)) == [int(r["step"]) for r in want_rows]
    for g, w in zip(got_rows, want_rows):
        assert math.isclose(float(g["loss"]), float(w["loss"]), rel_tol=1e-4), (g, w)
    assert [r["epoch"] for r in read_csv_rows(run / "epochs.csv")] == ["1", "2"]


# ----------------------------------------------------------------------------- non-finite losses
def _poison(tr: Trainer, bad, how="nan"):
    """Make the model's training forward passes number ``bad(i)`` non-finite (loss or gradient)."""
    real, calls = tr.model.forward, {"n": 0}

    def forward(*a, **k):
        out = real(*a, **k)
        if tr.model.training:
            calls["n"] += 1
            if bad(calls["n"]):
                # "nan": the loss is NaN; "grad": the loss is finite but its gradient is NaN
                out = out * float("nan") if how == "nan" else out + 0 * (out - out.detach()).abs().sqrt()
        return out

    tr.model.forward = forward


def test_non_finite_batches_are_skipped_with_a_warning(tmp_path):
    tr = Trainer(_cfg(tmp_path / "run", ["optim.epochs=1"]), progress=False)
    _poison(tr, lambda i: i in (3, 4))
    with pytest.warns(UserWarning, match="non-finite") as record:
        tr.fit()
    assert len([w for w in record if "non-finite" in str(w.message)]) == 2
    assert tr.step == tr.steps_per_epoch - 2
    model = load_checkpoint(tmp_path / "run" / "last.safetensors")[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_run_of_non_finite_losses_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    tr = Trainer(_cfg(tmp_path / "run", ["optim.nonfinite_patience=3"]), progress=False)
    _poison(tr, lambda i: i > 4)  # steps 1-4 are fine (checkpoints at 2 and 4), then NaN for ever
    with pytest.warns(UserWarning, match="non-finite"), pytest.raises(TrainingError) as e:
        tr.fit()
    msg = str(e.value)
    assert "consecutive non-finite" in msg and "last good checkpoint" in msg and "\n" not in msg
    model, meta, _ = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["train"]["step"] == 4 and int(load_train_state(tmp_path / "run" / "train_state.safetensors")["step"]) == 4
    for a, b in zip(model.parameters(), tr.model.parameters()):
        assert torch.equal(a, b.detach()) and torch.isfinite(a).all()


def test_non_finite_losses_through_the_cli_exit_1_with_one_line(tmp_path, capsys, monkeypatch):
    from mtakd.models.student import Student

    real = Student.forward

    def nan_forward(self, *a, **k):
        out = real(self, *a, **k)
        return out * float("nan") if self.training else out

    monkeypatch.setattr(Student, "forward", nan_forward)
    import warnings

    hook = warnings.showwarning
    code = main(["train-teacher", "--no-progress", "--run-dir", str(tmp_path / "run"), *TINY, "optim.nonfinite_patience=2"])
    assert warnings.showwarning is hook  # main's one-line warning printer is gone again
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("mtakd: error: 3 consecutive non-finite losses")
    # each warning is one line (no "file.py:123: UserWarning:" prefix, no source line under it)
    assert err[:-1] == [f"mtakd: warning: step 0: non-finite loss, batch skipped ({k} in a row)" for k in (1, 2, 3)]


def test_a_non_finite_gradient_is_skipped_too(tmp_path):
    tr = Trainer(_cfg(tmp_path / "run", ["optim.epochs=1"]), progress=False)
    _poison(tr, lambda i: i == 2, how="grad")
    with pytest.warns(UserWarning, match="non-finite") as record:
        tr.fit()
    assert [str(w.message) for w in record if "non-finite" in str(w.message)] == [
        "step 1: non-finite gradient, batch skipped (1 in a row)"]
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert tr.step == tr.steps_per_epoch - 1  # the batch was skipped, not stepped with zero gradients
    model = load_checkpoint(tmp_path / "run" / "last.safetensors")[0]
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_run_of_non_finite_gradients_stops_like_non_finite_losses(tmp_path):
    tr = Trainer(_cfg(tmp_path / "run", ["optim.nonfinite_patience=2"]), progress=False)
    _poison(tr, lambda i: i > 2, how="grad")  # steps 1-2 fine (checkpoint at 2), then NaN gradients for ever
    with pytest.warns(UserWarning, match="non-finite gradient"), pytest.raises(TrainingError) as e:
        tr.fit()
    assert str(e.value).startswith("3 consecutive non-finite gradients at step 2; stopping")
    assert load_checkpoint(tmp_path / "run" / "last.safetensors")[1]["train"]["step"] == 2


def test_save_refuses_non_finite_weights_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    tr = Trainer(_cfg(run), progress=False)
    tr.save("last")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    with torch.no_grad():
        next(tr.model.parameters())[0] = float("inf")
    with pytest.raises(TrainingError) as e:
        tr.save("last")
    msg = str(e.value)
    assert "weights became non-finite at step 0" in msg and "NaN or Inf" in msg and str(run) in msg and "\n" not in msg
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before  # nothing written, nothing left behind


# ----------------------------------------------------------------------------- full disk, unwritable folder
def _fail_writes_after(monkeypatch, n_ok: int, err: int = errno.ENOSPC):
    """``checkpoint._write_all`` succeeds ``n_ok`` times, then writes half and fails with ``err``."""
    real, calls = checkpoint._write_all, {"n": 0}

    def write_all(fd, data):
        calls["n"] += 1
        if calls["n"] > n_ok:
            real(fd, data[: len(data) // 2])
            raise OSError(err, os.strerror(err))
        real(fd, data)

    monkeypatch.setattr(checkpoint, "_write_all", write_all)


@pytest.mark.parametrize("err,words", [(errno.ENOSPC, "disk full"), (errno.EACCES, "Permission denied")])
def test_full_disk_or_unwritable_folder_during_training(tmp_path, monkeypatch, err, words):
    run = tmp_path / "run"
    tr = Trainer(_cfg(run), progress=False)
    _fail_writes_after(monkeypatch, 3, err)  # step 2: last + train_state; step 4: last; then train_state fails
    with pytest.raises(TrainingError) as e:
        tr.fit()
    msg = str(e.value)
    assert words in msg and str(run) in msg and "previous checkpoint is intact" in msg and "\n" not in msg
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left
    assert load_checkpoint(run / "last.safetensors")[1]["train"]["step"] == 4
    assert int(load_train_state(run / "train_state.safetensors")["step"]) == 2
    monkeypatch.undo()  # space again: the run resumes from the last complete state and finishes
    resumed = Trainer(_cfg(run), resume=True, progress=False)
    assert resumed.step == 2
    resumed.fit()
    assert resumed.step == 2 * resumed.steps_per_epoch


def test_unwritable_run_folder_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    code = main(["train-teacher", "--run-dir", str(tmp_path / "file" / "run"), *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("mtakd: error: run folder") and "not writable" in err[0]


def test_full_disk_while_logging_is_reported(tmp_path, monkeypatch):
    from mtakd import runlog

    def full(self, row):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path))

    tr = Trainer(_cfg(tmp_path / "run"), progress=False)
    monkeypatch.setattr(runlog.CsvLog, "write", full)
    with pytest.raises(TrainingError, match="disk|space") as e:
        tr.fit()
    msg = str(e.value)
    assert str(tmp_path / "run" / "steps.csv") in msg and "disk full" in msg and "--resume" in msg and "\n" not in msg


def test_unwritable_config_or_log_through_the_cli_is_one_line(tmp_path, capsys, monkeypatch):
    import mtakd.train

    def full(cfg, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(mtakd.train, "save_config", full)
    code = main(["train-teacher", "--no-progress", "--run-dir", str(tmp_path / "run"), *TINY])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith(f"mtakd: error: could not write {tmp_path / 'run' / 'config.yaml'} (disk full")


# ----------------------------------------------------------------------------- CSV logs
def _log_steps(path: Path, n: int) -> None:
    from mtakd.runlog import CsvLog

    log = CsvLog(path)
    for i in range(1, n + 1):
        log.write({"step": i, "epoch": 1, "loss": 0.5 / i})


def test_resume_drops_rows_cut_short_by_a_kill(tmp_path):
    from mtakd.runlog import CsvLog

    p = tmp_path / "steps.csv"
    _log_steps(p, 11)
    text = p.read_text()
    lines = text.splitlines(keepends=True)
    # a garbled row in the middle (too few fields) and a last row cut inside its step field
    # ("1" of "12", no newline): kept, it would be step 1 a second time
    p.write_text("".join(lines[:5]) + "4,1\n" + "".join(lines[5:]) + "1")
    CsvLog(p).truncate_after("step", 11)
    assert [r["step"] for r in read_csv_rows(p)] == [str(i) for i in range(1, 12)]
    assert p.read_text().endswith("\n")
    p.write_text(text + "12,1,0.0416")  # a last row complete but for its end (its number is cut short)
    CsvLog(p).truncate_after("step", 20)
    assert [r["step"] for r in read_csv_rows(p)] == [str(i) for i in range(1, 12)]


def test_log_rewrites_go_through_a_temporary_file(tmp_path, monkeypatch):
    from mtakd import atomic
    from mtakd.runlog import CsvLog

    p = tmp_path / "steps.csv"
    _log_steps(p, 6)
    before = p.read_text()

    def half_then_full(fd, data):  # the disk fills up in the middle of the rewrite
        os.write(fd, bytes(memoryview(data)[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_all", half_then_full)
    for rewrite in (lambda: CsvLog(p).truncate_after("step", 3), lambda: CsvLog(p).write({"step": 7, "new_column": 1.0})):
        with pytest.raises(OSError):
            rewrite()
        assert p.read_text() == before and os.listdir(tmp_path) == ["steps.csv"]  # intact, no temporary file
    monkeypatch.undo()
    log = CsvLog(p)
    log.write({"step": 7, "epoch": 1, "loss": 0.1, "new_column": 1.0})  # the header grows: old rows kept
    rows = read_csv_rows(p)
    assert [r["step"] for r in rows] == [str(i) for i in range(1, 8)] and rows[0]["new_column"] == "" and rows[-1]["new_column"] == "1"


# ----------------------------------------------------------------------------- resume position
def _poison_items(monkeypatch, tr: Trainer, bad_items: set[int]) -> list[int]:
    """Training items in ``bad_items`` get a NaN sample (their batch's loss is NaN); returns
    the list of item indices the data loader fetches, in order."""
    cls, seen = type(tr.train_set), []
    real = cls.__getitem__

    def getitem(self, i):
        item = real(self, i)
        seen.append(int(i))
        if int(i) in bad_items:
            item["noisy"] = item["noisy"].clone()
            item["noisy"][0] = float("nan")
        return item

    monkeypatch.setattr(cls, "__getitem__", getitem)
    return seen


class _Crash(RuntimeError):
    pass


def test_resume_after_skipped_batches_continues_where_the_data_stopped(tmp_path, monkeypatch):
    extra = ["optim.epochs=1"]
    ref = Trainer(_cfg(tmp_path / "ref", extra), progress=False)
    order = list(ref.sampler)  # the epoch's items; batch k is order[8k:8k+8]
    bad = {order[8], order[16]}  # batches 1 and 2 of 6 are non-finite and skipped
    seen_ref = _poison_items(monkeypatch, ref, bad)
    with pytest.warns(UserWarning, match="non-finite loss"):
        ref.fit()
    assert ref.step == 4 and seen_ref == order

    # the same run, killed after the checkpoint at step 2 (4 batches consumed), then resumed
    crashing = Trainer(_cfg(tmp_path / "run", extra), progress=False)
    real_compute = crashing.compute

    def compute(noisy, clean):
        if crashing.step == 2:
            raise _Crash()
        return real_compute(noisy, clean)

    crashing.compute = compute
    seen = _poison_items(monkeypatch, crashing, bad)
    with pytest.warns(UserWarning, match="non-finite loss"), pytest.raises(_Crash):
        crashing.fit()
    state = load_train_state(tmp_path / "run" / "train_state.safetensors")
    assert state["step"] == 2 and state["batches_in_epoch"] == 4
    resumed = Trainer(_cfg(tmp_path / "run", extra), resume=True, progress=False)
    seen = _poison_items(monkeypatch, resumed, bad)
    resumed.fit()
    assert seen == order[32:]  # no item replayed (the step count would have said 16)
    assert resumed.step == ref.step
    got, want = read_csv_rows(tmp_path / "run" / "steps.csv"), read_csv_rows(tmp_path / "ref" / "steps.csv")
    assert [r["step"] for r in got] == [r["step"] for r in want] == ["1", "2", "3", "4"]
    assert all(math.isclose(float(g["loss"]), float(w["loss"]), rel_tol=1e-4) for g, w in zip(got, want))


def test_a_train_state_without_the_batch_count_still_resumes(tmp_path):
    from mtakd.checkpoint import save_train_state

    run = tmp_path / "run"
    tr = Trainer(_cfg(run, ["optim.epochs=1"]), progress=False)
    tr.fit()
    state = load_train_state(run / "train_state.safetensors")
    state.update(step=3, epoch=0)  # as if saved mid-epoch by an older mtakd (no batches_in_epoch)
    del state["batches_in_epoch"]
    save_train_state(run / "train_state.safetensors", state)
    resumed = Trainer(_cfg(run, ["optim.epochs=1"]), resume=True, progress=False)
    assert resumed.step == 3 and resumed.batches_in_epoch == 3  # the step-based position


def test_temporary_files_of_a_killed_run_are_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    left = [".best.safetensors.k1ll3d.tmp", ".steps.csv.x.tmp", ".write_test.tmp"]
    for name in left:
        (run / name).write_bytes(b"partial")
    # a folder that holds only such leftovers is not "a run": a new run may start in it
    tr = Trainer(_cfg(run, ["data.items_per_epoch=16", "optim.epochs=1"]), progress=False)
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
    tr.fit()
    for name in left:
        (run / name).write_bytes(b"partial")
    Trainer(_cfg(run, ["data.items_per_epoch=16", "optim.epochs=1"]), resume=True, progress=False)
    assert not [p for p in run.iterdir() if p.name.startswith(".")]
