"""Shared by tests/test_reliability_inputs.py and tests/test_reliability_models.py: test
signals, a ``mtakd.cli.main`` runner and a simulated full disk (their ``student`` and
``ckpt`` fixtures are in tests/conftest.py).

CLI contract checked with these: usage errors -> exit 2 and stderr is exactly one line
starting ``mtakd: error:``; a batch -> every good file done, one ``mtakd: error:`` line per
bad file (named once), a final count line on stderr and the summary as the last stdout line,
exit 1.
"""
from __future__ import annotations

import errno

import numpy as np

from mtakd.cli import main

SR = 16000


def sig(n, channels=None, seed=0, amp=0.1):
    rng = np.random.default_rng(seed)
    return (amp * rng.standard_normal((n,) if channels is None else (n, channels))).astype(np.float32)


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out.splitlines(), cap.err.splitlines()


def one_error_line(err):
    assert len(err) == 1 and err[0].startswith("mtakd: error:"), err
    return err[0]


def fill_disk_after(monkeypatch, module, n_ok_bytes):
    """``module._write_all`` writes ``n_ok_bytes`` in total, then fails with ENOSPC."""
    real = module._write_all
    budget = {"left": n_ok_bytes}

    def write_all(fd, data):
        view = memoryview(data).cast("B")
        take = min(budget["left"], view.nbytes)
        real(fd, view[:take])
        budget["left"] -= take
        if take < view.nbytes:
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(module, "_write_all", write_all)
