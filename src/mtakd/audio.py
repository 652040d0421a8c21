"""Audio file I/O for mtakd: everything enters and leaves as 16 kHz mono float32.

* ``load_audio(path) -> (wav (N,), AudioInfo)`` reads WAV/FLAC/OGG at any rate and channel
  count, downmixes to mono (mean of channels) and resamples with soxr 'HQ'.
* ``iter_blocks(path)`` yields the same signal in bounded-memory blocks for long files.
* ``save_audio(path, wav, sr)`` writes 16-bit PCM WAV atomically.
* ``list_audio_files(paths)`` expands files/folders to a sorted list of audio files.

A user's mistake (missing file, not audio, NaN samples, ...) raises ``AudioError`` whose
message is one line: which file, what is wrong, what to do. The CLI prints it without a
traceback. Digital silence and clipping are *not* errors; they are flagged in ``AudioInfo``.
"""
from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .stft import SAMPLE_RATE

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
#: soxr quality for every rate conversion (transparent for speech, fast enough for data loading)
RESAMPLE_QUALITY = "HQ"
#: |x| at or above this counts as clipped (16-bit full scale is 32767/32768 ~ 0.99997)
_CLIP_LEVEL = 0.999


class AudioError(ValueError):
    """A user's audio input/output is wrong. ``str()`` is a single line naming the file."""

    def __init__(self, path: str | os.PathLike | None, problem: str | None = None, fix: str = ""):
        # AudioError(path, problem, fix) builds "path: problem; fix"; AudioError(message) keeps
        # a ready message (so the exception can be re-created from its str, e.g. by DataLoader)
        if problem is None:
            msg = str(path)
            lines = [ln for ln in msg.splitlines() if ln.strip()]
            if len(lines) > 1:
                # re-raised by a DataLoader worker as type(e)(traceback text): keep only the
                # original message, the last line "mtakd.audio.AudioError: <message>"
                msg = re.sub(r"^\s*[\w.]*(Error|Exception)\w*: ", "", lines[-1])
        else:
            msg = f"{path if path is not None else '<audio>'}: {problem}" + (f"; {fix}" if fix else "")
        # one line, always: messages from libsndfile or the OS may carry newlines
        super().__init__(" ".join(msg.split()))


@dataclass
class AudioInfo:
    """What was read and what was done to it.

    ``frames`` and ``orig_sr`` describe the file as stored; ``silent``/``clipped`` are only
    known after the samples were read (``None`` from ``audio_info``).
    """

    path: str
    orig_sr: int
    channels: int
    frames: int
    subtype: str
    format: str = ""
    downmixed: bool = False
    resampled: bool = False
    silent: bool | None = None
    clipped: bool | None = None

    @property
    def duration_s(self) -> float:
        return self.frames / self.orig_sr if self.orig_sr else 0.0


# ----------------------------------------------------------------------------- helpers
def _check_readable_path(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file does not exist", "check the path")
    if path.is_dir():
        raise AudioError(path, "is a folder, not an audio file", "give a .wav/.flac/.ogg file")
    if not os.access(path, os.R_OK):
        raise AudioError(path, "permission denied", "make the file readable")
    if path.stat().st_size == 0:
        raise AudioError(path, "file is empty (0 bytes)", "re-export or remove the file")


def _open(path: Path) -> sf.SoundFile:
    """Open for reading; any libsndfile failure becomes an ``AudioError``."""
    _check_readable_path(path)
    try:
        return sf.SoundFile(str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        detail = str(e).split(":", 1)[-1].strip() if "Error opening" in str(e) else str(e)
        if "does not exist" in detail or "System error" in detail:
            # libsndfile's words when a decoder (e.g. MP3 probing random bytes) gives up; the
            # file does exist (checked above), so that wording would mislead
            detail = "format not recognised"
        raise AudioError(
            path,
            f"cannot be read as audio ({detail})",
            "the file is not audio, truncated, or an unsupported container; use WAV, FLAC or OGG",
        ) from None


def _info_from(f: sf.SoundFile, path: Path) -> AudioInfo:
    return AudioInfo(
        path=str(path), orig_sr=int(f.samplerate), channels=int(f.channels),
        frames=int(f.frames), subtype=str(f.subtype), format=str(f.format),
    )


def _check_finite(x: np.ndarray, path: Path, where: str = "") -> None:
    if not np.isfinite(x).all():
        raise AudioError(path, f"contains NaN or Inf samples{where}", "re-export the file")


def resample(wav: np.ndarray, from_sr: int, to_sr: int) -> np.ndarray:
    """Resample ``wav`` ``(N,)`` or ``(N, C)`` from ``from_sr`` to ``to_sr`` (soxr 'HQ').

    Returns float32, length ``ceil(N * to_sr / from_sr)`` (soxr's convention).
    """
    x = np.asarray(wav, dtype=np.float32)
    if int(from_sr) == int(to_sr):
        return x.copy()
    if from_sr <= 0 or to_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {from_sr} -> {to_sr}")
    return soxr.resample(x, from_sr, to_sr, quality=RESAMPLE_QUALITY).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------- reading
def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header-only description of ``path`` (no samples read; ``silent``/``clipped`` are None)."""
    p = Path(path)
    with _open(p) as f:
        return _info_from(f, p)


def load_audio(path: str | os.PathLike, sr: int = SAMPLE_RATE) -> tuple[np.ndarray, AudioInfo]:
    """Read ``path`` as mono float32 at ``sr``: returns ``(wav (N,), info)``.

    Multichannel audio is averaged to mono (``info.downmixed``); other rates are resampled
    (``info.resampled``). Raises ``AudioError`` for a missing/unreadable file, zero samples,
    or NaN/Inf samples. Silence (``info.silent``) and clipping (``info.clipped``) are allowed.
    """
    p = Path(path)
    with _open(p) as f:
        info = _info_from(f, p)
        try:
            x = f.read(dtype="float32", always_2d=True)  # (frames, channels)
        except (sf.SoundFileError, RuntimeError) as e:
            raise AudioError(p, f"reading the samples failed ({e})", "the file may be damaged; re-export it") from None
    if x.shape[0] == 0:
        raise AudioError(p, "contains zero samples", "remove the file or record some audio")
    _check_finite(x, p)
    info.clipped = bool(np.abs(x).max() >= _CLIP_LEVEL)
    if x.shape[1] > 1:
        x = x.mean(axis=1)
        info.downmixed = True
    else:
        x = x[:, 0]
    if info.orig_sr != sr:
        x = resample(x, info.orig_sr, sr)
        info.resampled = True
    info.silent = not bool(np.any(x != 0.0))
    return np.ascontiguousarray(x, dtype=np.float32), info


def iter_blocks(path: str | os.PathLike, block_s: float = 30.0, sr: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Yield ``path`` as mono float32 blocks ``(block_s*sr,)`` at ``sr`` (the last one shorter).

    Memory stays bounded by one block whatever the file length. Resampling runs through one
    ``soxr.ResampleStream`` across blocks, so the concatenated blocks equal ``load_audio``'s
    output (block boundaries introduce no edge effects). File errors are raised here, at the
    call, not at the first ``next()``; NaN/Inf found later raise ``AudioError`` while iterating.
    """
    if block_s <= 0:
        raise ValueError(f"block_s must be positive, got {block_s}")
    p = Path(path)
    f = _open(p)
    if f.frames == 0:
        f.close()
        raise AudioError(p, "contains zero samples", "remove the file or record some audio")
    return _blocks(f, p, max(1, int(round(block_s * sr))), sr)


def _blocks(f: sf.SoundFile, p: Path, block_n: int, sr: int) -> Iterator[np.ndarray]:
    orig_sr = int(f.samplerate)
    stream = None if orig_sr == sr else soxr.ResampleStream(orig_sr, sr, 1, dtype="float32", quality=RESAMPLE_QUALITY)
    # read in input-rate blocks of about the output block length; re-chunk the output so every
    # yielded block (but the last) has exactly block_n samples
    read_n = max(1, int(np.ceil(block_n * orig_sr / sr)))
    pending: list[np.ndarray] = []
    n_pending = 0
    pos = 0
    with f:
        total = f.frames
        while True:
            x = f.read(read_n, dtype="float32", always_2d=True)
            last = x.shape[0] < read_n or pos + x.shape[0] >= total
            _check_finite(x, p, f" (near {pos / orig_sr:.1f} s)")
            pos += x.shape[0]
            mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
            y = mono if stream is None else stream.resample_chunk(np.ascontiguousarray(mono), last=last)
            if y.size:
                pending.append(np.asarray(y, dtype=np.float32))
                n_pending += y.size
            while n_pending >= block_n:
                buf = np.concatenate(pending)
                yield buf[:block_n].copy()
                rest = buf[block_n:]
                pending, n_pending = ([rest] if rest.size else []), rest.size
            if last:
                break
    if n_pending:
        yield np.concatenate(pending)


# ----------------------------------------------------------------------------- writing
def save_audio(path: str | os.PathLike, wav, sr: int = SAMPLE_RATE) -> None:
    """Write ``wav`` ``(N,)`` (or ``(N, C)``) as 16-bit PCM WAV at ``sr``, atomically.

    Samples are clipped to [-1, 1) before quantisation (x * 32768, rounded, clipped to int16):
    the positive full scale of 16-bit PCM is 32767/32768, and a float signal above it would
    otherwise wrap around. Writing goes to a temporary file in the same folder, is fsynced and
    then ``os.replace``-d onto ``path``, so a crash never leaves a partial file under the final
    name (the temporary file is removed on failure). Accepts numpy arrays or torch tensors.
    """
    p = Path(path)
    if hasattr(wav, "detach"):  # torch tensor, without importing torch here
        wav = wav.detach().cpu().numpy()
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim not in (1, 2) or x.shape[0] == 0:
        raise AudioError(p, f"refusing to write audio of shape {x.shape}", "pass a non-empty (N,) or (N, C) array")
    if not np.isfinite(x).all():
        raise AudioError(p, "refusing to write NaN or Inf samples", "check the model output")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise AudioError(p, f"output folder '{folder}' does not exist", "create it first")
    if not os.access(folder, os.W_OK):
        raise AudioError(p, f"output folder '{folder}' is not writable", "choose another output folder")
    pcm = np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{p.name}.", suffix=".tmp")
    except OSError as e:
        raise AudioError(p, f"cannot create a file in '{folder}' ({e.strerror})", "choose another output folder") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            sf.write(fh, pcm, int(sr), format="WAV", subtype="PCM_16")
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the result the usual permissions (or keep the old file's)
        os.chmod(tmp, (p.stat().st_mode & 0o777) if p.exists() else 0o644)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, (OSError, sf.SoundFileError, RuntimeError)):
            raise AudioError(p, f"writing failed ({e})", "check free disk space and permissions") from None
        raise


# ----------------------------------------------------------------------------- listing
def list_audio_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and folders (recursively) to a sorted, deduplicated list of audio files.

    Audio means the extension is .wav, .flac or .ogg (any case). Hidden files (leading '.',
    e.g. ``save_audio``'s temporaries) inside folders are skipped. A path that does not exist,
    or a file given explicitly without an audio extension, raises ``AudioError``.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[Path, Path] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for q in p.rglob("*"):
                if q.suffix.lower() in AUDIO_EXTENSIONS and not q.name.startswith(".") and q.is_file():
                    found.setdefault(q.resolve(), q)
        elif p.is_file():
            if p.suffix.lower() not in AUDIO_EXTENSIONS:
                raise AudioError(p, "is not a .wav, .flac or .ogg file", "convert it or leave it out")
            found.setdefault(p.resolve(), p)
        else:
            raise AudioError(p, "does not exist", "check the path")
    return sorted(found.values(), key=lambda q: str(q))
