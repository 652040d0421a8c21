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
                                "export", "demo", "make-manifest", "enhance-sharded"}


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
