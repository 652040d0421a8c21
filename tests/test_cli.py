"""The ``mtakd`` entry point itself: start-up cost, and errors no verb expects."""
from __future__ import annotations

import errno
import subprocess
import sys

import numpy as np
import soundfile as sf

from mtakd import cli
from mtakd.cli import main


def test_help_starts_without_torch():
    # the verb modules are imported explicitly, and each imports torch only inside its functions
    code = ("import sys\nfrom mtakd.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'scipy', 'onnxruntime', 'safetensors'))\n"
            "assert not heavy, heavy[:5]\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "enhance-sharded" in proc.stdout  # every verb was registered


def test_every_verb_is_registered():
    sub = next(a for a in cli.build_parser()._actions if a.dest == "verb")
    assert set(sub.choices) == {"train-teacher", "distill", "build-devset", "info", "enhance", "evaluate", "stream",
                                "export", "grow", "average", "demo", "make-manifest", "enhance-sharded"}


def test_an_unexpected_os_error_is_one_line_and_exit_1(tmp_path, capsys):
    # make-manifest writing its CSV under a file: mkdir raises NotADirectoryError, which no verb catches
    for d in ("noisy", "clean"):
        (tmp_path / d).mkdir()
        sf.write(tmp_path / d / "a.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "file").write_text("not a folder")
    out = tmp_path / "file" / "manifests"
    code = main(["make-manifest", "paired", "--noisy", str(tmp_path / "noisy"), "--clean", str(tmp_path / "clean"), "-o", str(out)])
    assert code == 1 and capsys.readouterr().err.splitlines() == [f"mtakd: error: {out}: Not a directory"]


def test_a_full_disk_says_so(monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", "out/x.wav")

    monkeypatch.setattr(cli, "cmd_info", full)
    assert main(["info", "m.safetensors"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("mtakd: error: out/x.wav: No space left on device (the disk is full")


def test_ctrl_c_is_still_130(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_info", interrupted)
    assert main(["info", "m.safetensors"]) == 130
    assert capsys.readouterr().err.splitlines() == ["mtakd: interrupted"]


def test_init_flag_is_the_init_override_and_a_wrong_model_is_one_line(tmp_path, capsys):
    # the shipped student's weights into a teacher: refused before any training
    args = cli.build_parser().parse_args(["distill", "--init", "pretrained:student", "--run-dir", "r", "seed=3"])
    assert cli._train_overrides(args, []) == ["seed=3", "run_dir=r", "init=pretrained:student"]
    code = main(["train-teacher", "--init", "pretrained:student", "--run-dir", str(tmp_path / "r"), "--no-progress",
                 "model.name=teacher", "data.source=synthetic", "threads=1", "device=cpu"])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("mtakd: error: init=pretrained:student: the checkpoint holds model 'student'")


def test_train_teacher_defaults_to_the_teacher_model(tmp_path, monkeypatch):
    """The verbs as a user runs them: train-teacher builds the teacher unless the config or an
    override names a model; distill keeps the config default, the student."""
    import mtakd.train

    seen = []
    monkeypatch.setattr(mtakd.train, "train", lambda cfg, resume=False, progress=True: seen.append(cfg.model.name) or "best")

    def resolved(*argv):
        assert main([*argv, "--run-dir", str(tmp_path / "r"), "--no-progress"]) == 0
        return seen.pop()

    assert resolved("train-teacher") == "teacher"
    assert resolved("distill", "--kd", "none") == "student"
    silent = tmp_path / "silent.yaml"
    silent.write_text("seed: 1\nmodel: {args: {hidden: 8}}\n")
    assert resolved("train-teacher", "-c", str(silent)) == "teacher"
    named = tmp_path / "named.yaml"
    named.write_text("model: {name: student}\n")
    assert resolved("train-teacher", "-c", str(named)) == "student"
    assert resolved("train-teacher", "model.name=student") == "student"
