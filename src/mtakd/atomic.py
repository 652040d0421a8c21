"""Atomic file writes, the one implementation every writer in mtakd uses.

A file is written to a hidden temporary file beside its final name (``.NAME.XXXXXXXX.tmp``,
same folder, so the rename cannot cross file systems), fsynced, given the usual permissions
(the old file's, else ``0644``, not ``mkstemp``'s ``0600``) and ``os.replace``-d onto the
final name. On any failure the temporary file is removed and a file already under that name
is left as it was, so a crash or a full disk never leaves a partial file under the final name.
A temporary file left by a writer that was killed (SIGKILL) is removed by the next write of
that name, and ``remove_temp_files`` clears a whole folder of them.

Writes use plain ``os.write``: libsndfile's and safetensors' own file writers drop write
errors (a full disk gives a short file and no exception), ``os.write`` raises ``OSError``.
Callers turn that ``OSError`` into their own one-line error; ``is_disk_full`` and
``os_error_reason`` give the common wording.

Standard library only: importing this module costs nothing.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(e: OSError) -> bool:
    """The disk (or the quota) is full: later writes to it would fail too."""
    return e.errno in _DISK_FULL


def os_error_reason(e: OSError) -> str:
    """A short reason for a failed write: ``disk full: no space left on device`` or the OS's words."""
    if is_disk_full(e):
        return "disk full: no space left on device"
    return e.strerror or str(e) or type(e).__name__


def write_all(fd: int, data) -> None:
    """``os.write`` until all of ``data`` is written (it may write less than asked)."""
    view = memoryview(data).cast("B")
    while view.nbytes:
        view = view[os.write(fd, view):]


def _temp_pattern(path: Path) -> str:
    return f".{glob.escape(path.name)}.*.tmp"


class AtomicFile:
    """An open hidden temporary file beside ``path`` (``fd``, ``tmp``).

    ``commit()`` fsyncs it, sets its permissions and renames it onto ``path``; ``abort()``
    closes and removes it. A failed ``commit()`` aborts too. Temporary files of ``path`` left
    by a killed writer are removed first. Raises ``OSError`` (nothing is left behind).
    """

    def __init__(self, path: str | os.PathLike, mode: int | None = None):
        self.path, self.mode = Path(path), mode
        folder = self.path.parent
        for stale in folder.glob(_temp_pattern(self.path)):
            stale.unlink(missing_ok=True)
        self.fd: int | None
        self.fd, self.tmp = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.", suffix=".tmp")

    def commit(self) -> None:
        try:
            os.fsync(self.fd)
            os.close(self.fd)
            self.fd = None
            mode = self.mode
            if mode is None:  # keep an existing file's permissions, else the usual 0644
                mode = (self.path.stat().st_mode & 0o777) if self.path.exists() else 0o644
            os.chmod(self.tmp, mode)
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None
        Path(self.tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: int | None = None) -> Iterator[AtomicFile]:
    """``with atomic_file(p) as f: write_all(f.fd, ...)``: committed onto ``p`` when the block
    ends normally, removed when it raises (the exception propagates)."""
    f = AtomicFile(path, mode)
    try:
        yield f
    except BaseException:
        f.abort()
        raise
    f.commit()


def write_bytes_atomic(path: str | os.PathLike, data, mode: int | None = None) -> None:
    """Write ``data`` (bytes-like) to ``path`` atomically; raises ``OSError``, leaving nothing behind."""
    with atomic_file(path, mode) as f:
        write_all(f.fd, data)


def remove_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the hidden ``.*.tmp`` files that killed atomic writes left in ``folder`` (not
    recursive); returns what was removed. Only for a folder no other writer is using."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            if p.is_file():
                p.unlink()
                removed.append(p)
    return removed
