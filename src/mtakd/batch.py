"""Batches of files: ``enhance_files(inputs, out_dir, ...)``: files/folders -> 16-bit WAVs
under ``out_dir``.

``plan_outputs`` maps inputs to outputs (folders keep their structure; nothing may land on
an input), ``check_output_folder`` makes sure the output folder can be written, and
``run_pairs`` enhances the planned pairs one by one with ``enhance.enhance_file``: a bad
file is recorded and the loop goes on, a full disk stops it. ``shard.py`` shares the same
steps. 
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .audio import AUDIO_EXTENSIONS, AudioError, DiskFullError, list_audio_files, list_unsupported_files, write_error
from .enhancement import FILE_HOPS, EnhanceWarning, enhance_file, get_engine

if TYPE_CHECKING:
    from .enhancement import Engine


def check_output_folder(root: Path) -> None:
    """Create ``root`` if needed and make sure a file can be created in it; else ``AudioError``."""
    if root.exists() and not root.is_dir():
        raise AudioError(root, "output folder is an existing file", "choose a folder for -o")
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=root, prefix=".mtakd-write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        err = write_error(root, e)
        raise type(err)(f"output folder {err}") from None


@dataclass
class EnhanceSummary:
    enhanced: list[tuple[Path, Path]] = field(default_factory=list)
    skipped: list[tuple[Path, Path]] = field(default_factory=list)  # output existed
    failed: list[tuple[str, str]] = field(default_factory=list)  # (input, one-line message)
    warnings: list[str] = field(default_factory=list)
    not_attempted: list[Path] = field(default_factory=list)  # after the disk filled up

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        s = f"{len(self.enhanced)} enhanced, {len(self.failed)} failed"
        s += f", {len(self.not_attempted)} not attempted (disk full)" if self.not_attempted else ""
        return s + (f", {len(self.skipped)} skipped (output exists; --overwrite replaces)" if self.skipped else "")


def _one_line(src, e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    return " ".join((msg if str(src) in msg else f"{src}: {msg}").split())


def plan_outputs(inputs, out_dir) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """``(pairs (input, output), failures)``; folders keep their structure under ``out_dir``.

    Raises ``AudioError`` if an output would land on any input file (never overwritten).
    Files inside ``out_dir`` are not taken as inputs when ``out_dir`` is a subfolder of an input
    folder (they are earlier outputs).
    """
    root = Path(out_dir)
    root_res = root.resolve()
    pairs, failed = [], []
    for raw in inputs:
        p = Path(raw)
        try:
            if p.is_dir():
                p_res = p.resolve()
                for f in list_unsupported_files(p):
                    failed.append((str(f), f"{f}: unsupported format ({f.suffix}); convert it to WAV or FLAC"))
                for f in list_audio_files(p):
                    if root_res != p_res and root_res in f.resolve().parents:
                        continue
                    pairs.append((f, root / f.relative_to(p).with_suffix(".wav")))
            elif p.is_file() and p.suffix.lower() not in AUDIO_EXTENSIONS:
                raise AudioError(p, "is not a .wav, .flac or .ogg file", "convert it or leave it out")
            elif p.is_file():
                pairs.append((p, root / (p.stem + ".wav")))
            else:
                raise AudioError(p, "does not exist", "check the path")
        except AudioError as e:
            failed.append((str(p), _one_line(p, e)))
    sources = {src.resolve(): src for src, _ in pairs}
    for src, dst in pairs:
        if dst.resolve() in sources:
            raise AudioError(dst, f"the output for {src} would overwrite an input file",
                             "choose an output folder (-o) that is not an input folder")
    unique, seen = [], {}
    for src, dst in pairs:
        other = seen.setdefault(dst.resolve(), src)
        if other is src:
            unique.append((src, dst))
        else:
            failed.append((str(src), f"{src}: its output name {dst} is already used by {other}; rename one of them"))
    return unique, failed


def enhance_files(inputs, out_dir, model=None, overwrite: bool = False, backend: str = "torch",
                  progress: Callable[[int, int, str, Path, Path | None, str], None] | None = None) -> EnhanceSummary:
    """Enhance files/folders into ``out_dir``; a bad file is listed in ``failed``, never fatal.

    ``progress(i, n, status, src, dst, detail)`` is called per file (status: enhanced, skipped,
    failed). Model problems (``CheckpointError``/``ConfigError``) and outputs that would
    overwrite an input (``AudioError``) are raised before any file is touched.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    root = Path(out_dir)
    engine = get_engine(model, backend, FILE_HOPS)
    pairs, failed = plan_outputs(inputs, root)
    check_output_folder(root)
    summary = EnhanceSummary(failed=list(failed))
    for src, msg in failed:
        if progress:
            progress(0, len(pairs), "failed", Path(src), None, msg)
    return run_pairs(pairs, engine, summary, overwrite, progress)


def run_pairs(pairs: list[tuple[Path, Path]], engine: Engine, summary: EnhanceSummary, overwrite: bool = False,
              progress: Callable[[int, int, str, Path, Path | None, str], None] | None = None) -> EnhanceSummary:
    """Enhance planned ``(src, dst)`` pairs into ``summary``: existing outputs are skipped unless
    ``overwrite``, a bad file is recorded and the loop goes on, a full disk stops it (the rest
    is listed as not attempted). Shared by ``enhance_files`` and the sharded ``shard.py``."""
    n = len(pairs)
    for i, (src, dst) in enumerate(pairs, 1):
        if dst.exists() and not overwrite:
            summary.skipped.append((src, dst))
            if progress:
                progress(i, n, "skipped", src, dst, "output exists")
            continue
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", EnhanceWarning)
                enhance_file(src, dst, engine)
        except (AudioError, ValueError, OSError, RuntimeError) as e:  # soundfile errors are RuntimeErrors
            msg = _one_line(src, e)
            summary.failed.append((str(src), msg))
            if progress:
                progress(i, n, "failed", src, dst, msg)
            if isinstance(e, DiskFullError):  # every later file would fail the same way
                summary.not_attempted = [s for s, _ in pairs[i:]]
                break
            continue
        for w in caught:
            if issubclass(w.category, EnhanceWarning):
                text = str(w.message)
                summary.warnings.append(text if str(src) in text else f"{src}: {text}")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        summary.enhanced.append((src, dst))
        if progress:
            progress(i, n, "enhanced", src, dst, f"{time.perf_counter() - t0:.2f} s")
    return summary
