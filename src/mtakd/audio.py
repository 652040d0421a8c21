"""Audio file I/O for mtakd: everything enters and leaves as 16 kHz mono float32.

* ``load_audio(path) -> (wav (N,), AudioInfo)`` reads WAV/FLAC/OGG at any rate and channel
  count, downmixes to mono (mean of channels) and resamples with soxr 'HQ'.
* ``iter_blocks(path)`` yields the same signal in bounded-memory blocks for long files.
* ``save_audio(path, wav, sr)`` / ``AtomicWavWriter`` (block by block) write 16-bit PCM WAV
  atomically; ``write_error`` turns a failed write into a one-line ``AudioError``.
* ``list_audio_files(paths)`` expands files/folders to a sorted list of audio files.

A user's mistake (missing file, not audio, NaN samples, ...) raises ``AudioError`` whose
message is one line: which file, what is wrong, what to do. The CLI prints it without a
traceback. Digital silence, clipping and a cut-short WAV are *not* errors; they are flagged in
``AudioInfo``. Writes go through ``mtakd.atomic`` (plain ``os.write``: libsndfile's virtual
I/O swallows ``OSError``s), so a full disk is reported (``DiskFullError``), never a short
file under the final name.
"""
from __future__ import annotations

import errno
import io
import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .atomic import AtomicFile, atomic_file, is_disk_full
from .atomic import write_all as _write_all  # a module attribute: tests patch it to simulate a full disk
from .stft_np import SAMPLE_RATE

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
#: audio formats mtakd does not read; inside input folders they are reported, not skipped silently
UNSUPPORTED_EXTENSIONS = (".mp3", ".m4a", ".mp4", ".aac", ".wma", ".opus", ".aif", ".aiff", ".amr", ".webm", ".caf")
#: soxr quality for every rate conversion (transparent for speech, fast enough for data loading)
RESAMPLE_QUALITY = "HQ"
#: sample rates outside this range are taken as a damaged header
_MIN_SR, _MAX_SR = 1000, 768000
#: at most this many samples (frames x channels) are read at once by ``iter_blocks``
_MAX_READ_SAMPLES = 1 << 22
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


class DiskFullError(AudioError):
    """A write failed because the disk (or the quota) is full: later writes would fail too."""


def write_error(path: str | os.PathLike, e: OSError) -> AudioError:
    """The one-line ``AudioError`` for a failed write of ``path`` (``DiskFullError`` if the disk is full)."""
    if is_disk_full(e):
        return DiskFullError(path, "cannot write: the disk is full (no space left on device)",
                             "free some space or write to another disk; no partial file was left under this name")
    reason = (e.strerror or str(e)).lower()
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOENT, errno.EISDIR, errno.EEXIST):
        return AudioError(path, f"cannot write: {reason}", "choose a writable output folder")
    return AudioError(path, f"writing failed ({reason})", "check free disk space and permissions")


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
    #: the WAV header promises more data than the file holds (cut short, or never finalised)
    truncated: bool = False

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
        # bytes: libsndfile opens any file name, also ones that are not valid UTF-8
        f = sf.SoundFile(os.fsencode(path) if os.name != "nt" else str(path))
    except (sf.SoundFileError, RuntimeError, OSError) as e:
        detail = getattr(e, "error_string", None) or str(e)
        if "does not exist" in detail or "System error" in detail:
            # libsndfile's words when a decoder (e.g. MP3 probing random bytes) gives up; the
            # file does exist (checked above), so that wording would mislead
            detail = "format not recognised"
        raise AudioError(path, f"cannot be read as audio ({detail})",
                         "the file is not audio, truncated, or an unsupported container; use WAV, FLAC or OGG") from None
    if not _MIN_SR <= f.samplerate <= _MAX_SR:  # a damaged header; 1 Hz would mean 16000x upsampling
        f.close()
        raise AudioError(path, f"has an implausible sample rate ({f.samplerate} Hz)",
                         f"the header is damaged or the file is not audio; mtakd reads {_MIN_SR}..{_MAX_SR} Hz")
    return f


def _info_from(f: sf.SoundFile, path: Path) -> AudioInfo:
    return AudioInfo(
        path=str(path), orig_sr=int(f.samplerate), channels=int(f.channels),
        frames=int(f.frames), subtype=str(f.subtype), format=str(f.format),
        # libsndfile logs "data : 8000 (should be 1956)" when the data chunk is cut short
        truncated=bool(re.search(r"^data\s*:\s*\d+ \(should be \d+\)", f.extra_info or "", re.M)),
    )


#: float files may exceed full scale (1.0), but not by 60 dB: such values are damage, and
#: squaring them inside the model overflows float32 into NaN
MAX_ABS_SAMPLE = 1000.0


def _check_finite(x: np.ndarray, path: Path, offset: int, sr: int) -> None:
    """``x`` ``(frames, channels)`` starting at frame ``offset``: NaN/Inf or absurd values
    (``|x| > MAX_ABS_SAMPLE``) -> ``AudioError`` with the time of the first one."""
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        at = (offset + int(np.argmax(bad))) / sr
        raise AudioError(path, f"contains NaN or Inf samples (the first at {at:.3f} s)", "re-export the file")
    huge = (np.abs(x) > MAX_ABS_SAMPLE).any(axis=1)
    if huge.any():
        at = (offset + int(np.argmax(huge))) / sr
        raise AudioError(path, f"has sample values above {MAX_ABS_SAMPLE:g} (full scale is 1.0; the first at {at:.3f} s)",
                         "the file is damaged or holds unnormalised float data; normalise or re-export it")


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
    _check_finite(x, p, 0, info.orig_sr)
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
    read_n = max(1, min(int(np.ceil(block_n * orig_sr / sr)), _MAX_READ_SAMPLES // max(1, f.channels)))
    pending: list[np.ndarray] = []
    n_pending = pos = 0
    with f:
        total = f.frames
        while True:
            try:
                x = f.read(read_n, dtype="float32", always_2d=True)
            except (sf.SoundFileError, RuntimeError) as e:
                raise AudioError(p, f"reading the samples failed near {pos / orig_sr:.1f} s ({e})",
                                 "the file may be damaged; re-export it") from None
            last = x.shape[0] < read_n or pos + x.shape[0] >= total
            _check_finite(x, p, pos, orig_sr)
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
    pcm = _pcm16(x)
    buf = io.BytesIO()  # encoded in memory: writing to disk is then plain os.write (errors are OSErrors)
    try:
        sf.write(buf, pcm, int(sr), format="WAV", subtype="PCM_16")
    except (sf.SoundFileError, RuntimeError) as e:
        raise AudioError(p, f"writing failed ({e})", "check the sample rate and the samples") from None
    write_atomic(p, buf.getbuffer())


def write_atomic(path: str | os.PathLike, data) -> None:
    """Write bytes to ``path`` atomically (``mtakd.atomic``). On any failure an existing
    ``path`` is left as it was and no temporary file stays; ``OSError``s become one-line
    ``AudioError``s (``DiskFullError`` when the disk is full)."""
    p = Path(path)
    try:
        with atomic_file(p) as f:
            _write_all(f.fd, data)
    except OSError as e:
        raise write_error(p, e) from None


def _pcm16(x: np.ndarray) -> np.ndarray:
    """float -> little-endian int16: x * 32768, rounded, clipped."""
    return np.clip(np.round(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype("<i2")


def _wav_header(sr: int, channels: int, frames: int) -> bytes:
    data = frames * channels * 2
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data, b"WAVE", b"fmt ", 16, 1, channels, sr,
                       sr * channels * 2, channels * 2, 16, b"data", data)


class AtomicWavWriter:
    """16-bit PCM WAV written block by block to a hidden temporary file beside ``path`` and
    renamed onto ``path`` by ``commit()`` (``abort()``, or leaving a ``with`` block by an
    exception, removes it). Memory: one block. Failed writes raise one-line ``AudioError``s
    (``DiskFullError`` when the disk is full) and leave no temporary file behind.
    """

    _MAX_DATA = 0xFFFFFFFF - 36  # RIFF sizes are 32-bit

    def __init__(self, path: str | os.PathLike, sr: int, channels: int = 1):
        self.path, self.sr, self.channels, self.frames = Path(path), int(sr), int(channels), 0
        self.file: AtomicFile | None = None
        self.file = self._io(AtomicFile, self.path)
        self._io(_write_all, self.file.fd, _wav_header(self.sr, self.channels, 0))

    def _io(self, fn, *args):
        try:
            return fn(*args)
        except OSError as e:
            self.abort()
            raise write_error(self.path, e) from None

    def write(self, x) -> None:
        x = np.asarray(x, np.float64).reshape(-1, self.channels)
        problem = ("refusing to write NaN or Inf samples" if not np.isfinite(x).all() else "output exceeds the 4 GB "
                   "limit of a WAV file" if (self.frames + x.shape[0]) * self.channels * 2 > self._MAX_DATA else "")
        if problem:
            self.abort()
            raise AudioError(self.path, problem, "check the model, or split the input")
        self._io(_write_all, self.file.fd, _pcm16(x))
        self.frames += x.shape[0]

    def commit(self) -> None:
        self._io(self._finish)

    def _finish(self) -> None:
        os.pwrite(self.file.fd, _wav_header(self.sr, self.channels, self.frames), 0)
        self.file.commit()

    def abort(self) -> None:
        if self.file is not None:
            self.file.abort()

    def __enter__(self) -> "AtomicWavWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is not None:
            self.abort()


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


def list_unsupported_files(folder: str | os.PathLike) -> list[Path]:
    """Files under ``folder`` (recursively, hidden ones skipped) with an audio extension that
    mtakd does not read (``UNSUPPORTED_EXTENSIONS``, e.g. .mp3, .m4a): to be reported, not skipped."""
    return sorted((q for q in Path(folder).rglob("*") if q.suffix.lower() in UNSUPPORTED_EXTENSIONS
                   and not q.name.startswith(".") and q.is_file()), key=str)
