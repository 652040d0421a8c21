"""The corpus: speech (with speaker ids), noise and RIR file lists with an audio cache.

Built from the manifests of a data root (``speech.csv``, ``noise.csv``, ``rir.csv``; paths
relative to the root, durations cached so no file is opened at start) or from plain folders.
"""
from __future__ import annotations

import csv
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import AudioError, audio_info, list_audio_files, load_audio
from .config import DataConfig
from .stft_np import SAMPLE_RATE


class DataError(AudioError):
    """A data set or corpus is wrong (missing manifest, unmatched pairs, non-empty output...).

    A subclass of ``AudioError`` so that one ``except AudioError`` in the CLI reports every
    user-facing data problem as one line.
    """


@dataclass(frozen=True)
class AudioItem:
    """One file of the corpus; ``duration_s`` from the manifest (None: unknown, not read)."""

    path: Path
    speaker: str = ""
    duration_s: float | None = None


# ----------------------------------------------------------------------------- corpus
def _read_manifest(root: Path, name: str, split: str, need: tuple[str, ...], required: bool) -> list[dict]:
    path = root / name
    if not path.is_file():
        if required:
            raise DataError(path, "manifest not found", "set data.root to a folder with speech.csv/noise.csv/rir.csv or use data.speech_dirs")
        return []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(path, f"manifest lacks column(s) {', '.join(missing)}", f"it needs {', '.join(need)}")
        rows = list(reader)
    chosen = [r for r in rows if r["split"] == split]
    if rows and not chosen and required:
        splits = sorted({r["split"] for r in rows})
        raise DataError(path, f"no rows for split '{split}'", f"splits present: {', '.join(splits)}")
    absent = [r["path"] for r in chosen if not (root / r["path"]).is_file()]
    if absent:
        raise DataError(path, f"{len(absent)} listed file(s) do not exist under {root}, e.g. {absent[0]}", "fix the manifest or data.root")
    return chosen


def _duration(row: dict) -> float | None:
    try:
        return float(row["duration_s"]) if row.get("duration_s") else None
    except ValueError:  # a malformed duration only costs a header read later
        return None


def _from_dirs(dirs: list[str], split: str | None, speakers: bool) -> list[AudioItem]:
    """Files under ``dirs``; a ``<dir>/<split>`` subfolder, when present, is used instead of
    ``<dir>`` (so the shared layout ``speech/{train,dev}`` works as a plain folder too)."""
    roots = []
    for d in dirs:
        p = Path(d)
        if not p.is_dir():
            raise DataError(p, "folder does not exist", "check data.speech_dirs/noise_dirs/rir_dirs")
        roots.append(p / split if split and (p / split).is_dir() else p)
    return [AudioItem(f, f.parent.name if speakers else "") for f in list_audio_files(roots)]


class Corpus:
    """File lists plus a per-process audio cache.

    ``speech``/``noise``/``rir``: lists of ``AudioItem``; ``speakers``: speaker -> indices
    into ``speech``. Durations come from the manifests (no file is opened at start).

    Caching: ``load()`` keeps decoded 16 kHz float32 audio in an LRU cache of ``cache_mb``
    (default 512 MB, about the whole train split: 112 min speech + 25 min noise is ~530 MB).
    Decoding a short FLAC costs ~1 ms, so the cache matters mostly for long noise files and
    babble (many files per item). Each DataLoader worker is a separate process with its own
    cache, so memory is ``num_workers * cache_mb`` at worst; lower ``cache_mb`` with many
    workers. ``preload=True`` decodes everything up front (no limit): predictable speed,
    worth it for long runs on a small corpus.
    """

    def __init__(self, speech: list[AudioItem], noise: list[AudioItem], rir: list[AudioItem],
                 cache_mb: float = 512.0, preload: bool = False):
        self.speech, self.noise, self.rir = list(speech), list(noise), list(rir)
        self.speakers: dict[str, list[int]] = {}
        for i, it in enumerate(self.speech):
            self.speakers.setdefault(it.speaker, []).append(i)
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self.cache_bytes_max = float("inf") if preload else cache_mb * 2**20
        if preload:
            for it in self.speech + self.noise + self.rir:
                self.load(it)

    @classmethod
    def from_manifests(cls, root: str | os.PathLike, split: str, **kw) -> Corpus:
        """Read ``root/{speech,noise,rir}.csv`` rows of ``split`` (noise/rir manifests optional)."""
        r = Path(root)
        if not r.is_dir():
            raise DataError(r, "data root does not exist", "set data.root to the corpus folder")
        sp = _read_manifest(r, "speech.csv", split, ("path", "split", "speaker"), True)
        no = _read_manifest(r, "noise.csv", split, ("path", "split"), False)
        ri = _read_manifest(r, "rir.csv", split, ("path", "split"), False)
        return cls([AudioItem(r / x["path"], x["speaker"], _duration(x)) for x in sp],
                   [AudioItem(r / x["path"], "", _duration(x)) for x in no],
                   [AudioItem(r / x["path"], "", _duration(x)) for x in ri], **kw)

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str, **kw) -> Corpus:
        """Manifests under ``cfg.root``; a non-empty ``cfg.*_dirs`` replaces that kind's list
        (speaker = parent folder name of each speech file)."""
        if not cfg.root and not cfg.speech_dirs:
            raise DataError("data.root", "neither data.root nor data.speech_dirs is set", "point data.root at the corpus (e.g. ../shared/data)")
        base = cls.from_manifests(cfg.root, split, cache_mb=0) if cfg.root else None
        speech = _from_dirs(cfg.speech_dirs, split, True) if cfg.speech_dirs else base.speech
        noise = _from_dirs(cfg.noise_dirs, split, False) if cfg.noise_dirs else (base.noise if base else [])
        rir = _from_dirs(cfg.rir_dirs, split, False) if cfg.rir_dirs else (base.rir if base else [])
        if not speech:
            raise DataError(cfg.root or cfg.speech_dirs[0], f"no speech files for split '{split}'", "check the corpus")
        return cls(speech, noise, rir, **kw)

    def load(self, item: AudioItem | Path) -> np.ndarray:
        """Decoded mono float32 16 kHz audio of ``item`` (cached; do not modify in place)."""
        path = item.path if isinstance(item, AudioItem) else Path(item)
        x = self._cache.get(path)
        if x is not None:
            self._cache.move_to_end(path)
            return x
        x, _ = load_audio(path, SAMPLE_RATE)
        x.setflags(write=False)  # shared by every later caller: guard against in-place edits
        if x.nbytes <= self.cache_bytes_max:
            self._cache[path] = x
            self._cache_bytes += x.nbytes
            while self._cache_bytes > self.cache_bytes_max:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes
        return x

    def total_duration_s(self, kind: str = "speech") -> float:
        """Sum of manifest durations of ``speech``/``noise``/``rir`` (unknown ones read from headers)."""
        items = getattr(self, kind)
        return float(sum(it.duration_s if it.duration_s is not None else audio_info(it.path).duration_s for it in items))
