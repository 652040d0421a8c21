"""``mtakd.atomic``: the one atomic-write implementation, and the writers that use it."""
from __future__ import annotations

import errno
import os
import stat

import numpy as np
import pytest

from mtakd import atomic
from mtakd.atomic import atomic_file, remove_temp_files, write_bytes_atomic


def _mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_write_replaces_with_the_usual_permissions(tmp_path):
    p = tmp_path / "a.bin"
    write_bytes_atomic(p, b"one")
    assert p.read_bytes() == b"one" and _mode(p) == 0o644  # not mkstemp's 0600
    os.chmod(p, 0o600)
    write_bytes_atomic(p, memoryview(b"two"))
    assert p.read_bytes() == b"two" and _mode(p) == 0o600  # an existing file keeps its permissions
    write_bytes_atomic(p, b"three", mode=0o644)
    assert _mode(p) == 0o644 and os.listdir(tmp_path) == ["a.bin"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    p = tmp_path / "a.bin"
    write_bytes_atomic(p, b"old")

    def half_then_full(fd, data):
        os.write(fd, bytes(memoryview(data)[:2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_all", half_then_full)
    with pytest.raises(OSError) as e:
        write_bytes_atomic(p, b"new data")
    assert atomic.is_disk_full(e.value) and atomic.os_error_reason(e.value) == "disk full: no space left on device"
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["a.bin"]
    with pytest.raises(KeyboardInterrupt), atomic_file(tmp_path / "b.bin") as f:  # any exception aborts
        os.write(f.fd, b"partial")
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == ["a.bin"]


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    (tmp_path / ".a.bin.k1ll3d.tmp").write_bytes(b"left by a killed writer of a.bin")
    (tmp_path / ".b.bin.k1ll3d.tmp").write_bytes(b"another file's")
    (tmp_path / ".hidden").write_bytes(b"not a temporary file")
    write_bytes_atomic(tmp_path / "a.bin", b"x")  # removes a.bin's own leftovers only
    assert sorted(os.listdir(tmp_path)) == [".b.bin.k1ll3d.tmp", ".hidden", "a.bin"]
    assert remove_temp_files(tmp_path) == [tmp_path / ".b.bin.k1ll3d.tmp"]
    assert sorted(os.listdir(tmp_path)) == [".hidden", "a.bin"]


def test_every_writer_goes_through_it(tmp_path, monkeypatch):
    """audio (save_audio, AtomicWavWriter via enhance_file), checkpoint and export files all
    end in ``AtomicFile.commit``."""
    pytest.importorskip("onnx")
    from mtakd.audio import save_audio
    from mtakd.checkpoint import save_checkpoint
    from mtakd.enhancement import enhance_file
    from mtakd.export import export_onnx
    from mtakd.models import build_model

    committed, real = [], atomic.AtomicFile.commit

    def commit(self):
        committed.append(self.path.name)
        real(self)

    monkeypatch.setattr(atomic.AtomicFile, "commit", commit)
    model = build_model("student", {"input_size": 8, "hidden": 8, "layers": 1}).eval()
    save_audio(tmp_path / "in.wav", 0.1 * np.random.default_rng(0).standard_normal(1600), 16000)
    save_checkpoint(tmp_path / "m.safetensors", model)
    enhance_file(tmp_path / "in.wav", tmp_path / "out.wav", model)
    export_onnx(model, tmp_path / "m.onnx", verify=False)
    assert committed == ["in.wav", "m.safetensors", "out.wav", "m.onnx"]
    assert sorted(os.listdir(tmp_path)) == ["in.wav", "m.onnx", "m.safetensors", "out.wav"]
