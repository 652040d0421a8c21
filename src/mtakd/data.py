"""Data sets of mtakd: the corpus, on-the-fly training mixtures, paired folders, a fixed dev set.

* ``Corpus``: speech (with speaker ids), noise and RIR file lists from the manifests of a data
  root (``speech.csv``, ``noise.csv``, ``rir.csv``) or plain folders, with an audio cache.
* ``MixingDataset``: random but reproducible noisy/clean segments (speech + noise file,
  babble, coloured noise, optional reverberation), from the corpus or fully synthetic.
* ``PairedDataset``: ``noisy/`` + ``clean/`` folders with matching names (VoiceBank-DEMAND).
* ``build_devset``: writes a fixed paired dev set (noisy/, clean/, manifest.csv).
* ``collate``: stacks equal-length items into a batch.

Every item is a dict of float32 tensors ``(N,)`` at 16 kHz; a batch is ``(B, N)``.
"""
from __future__ import annotations

import csv
import fnmatch
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import list_audio_files, load_audio, save_audio, write_atomic, write_error
from .config import DataConfig
from .corpus import AudioItem, Corpus, DataError  # noqa: F401  (AudioItem re-exported)

__all__ = ["AudioItem", "Corpus", "DataError", "MixingDataset", "PairedDataset", "build_devset", "collate"]
from .mixing import fit_length, mix_at_snr, reverberate, rms_dbfs, set_level
from .stft import SAMPLE_RATE
from .synth import NOISE_KINDS, colored_noise, synth_babble, synth_noise, synth_rir, synth_speech

#: probability that an utterance shorter than the segment is zero-padded (at a random offset)
#: instead of being extended with more utterances of its speaker: teaches clean onsets/offsets
P_ZERO_PAD = 0.2
#: at most this many utterances are concatenated to fill one segment (then it loops)
MAX_CONCAT = 12
#: spectral exponent range of the stationary coloured noise (power ~ f**-beta): blue..brown
COLOR_EXPONENT_RANGE = (-1.0, 2.0)
#: number of other speakers summed into babble (inclusive)
BABBLE_SPEAKERS = (3, 7)


# ----------------------------------------------------------------------------- mixing dataset
class MixingDataset(Dataset):
    """On-the-fly noisy/clean training segments; item ``i`` is ``{"noisy": (N,), "clean": (N,)}``
    float32 tensors with ``N = cfg.segment_s * 16000``.

    Recipe per item, all drawn from ``np.random.default_rng([seed, epoch, i])`` (so an item
    is reproducible, workers need no seeding, and ``set_epoch`` gives fresh draws per epoch
    while a dev set left at epoch 0 never changes):

    1. speech: random crop of an utterance; shorter ones are extended with other utterances of
       the same speaker (or, with prob. ``P_ZERO_PAD``, zero-padded at a random offset);
    2. with prob. ``cfg.p_reverb`` the speech is convolved with an RIR (a recorded one of the
       split, else a synthetic one); the clean target is then the *early* reverberant speech
       (direct path + first 50 ms, see ``mixing.reverberate``) and the SNR is measured on the
       full reverberant speech that is actually in the mix;
    3. interference: with prob. ``cfg.p_babble`` babble of 3-7 *other* speakers, else with
       ``cfg.p_colored`` stationary coloured noise (random spectral exponent), else a noise
       file cropped/looped to length;
    4. SNR uniform in ``cfg.snr_range``, then both signals get one gain so the noisy RMS is
       uniform in ``cfg.level_range_db`` dBFS, lowered if needed to stay below 0.99 peak.

    ``cfg.source == "synthetic"`` swaps files for ``synth.py`` generators (tests and demo).
    With a DataLoader, call ``set_epoch`` before creating each epoch's iterator and keep
    ``persistent_workers=False`` (workers copy the dataset when the iterator starts).
    """

    def __init__(self, cfg: DataConfig, split: str, seed: int, length: int | None = None, *,
                 corpus: Corpus | None = None, cache_mb: float = 512.0, preload: bool = False):
        self.cfg, self.split, self.seed, self.epoch = cfg, split, int(seed), 0
        self.length = int(cfg.items_per_epoch if length is None else length)
        self.n = int(round(cfg.segment_s * SAMPLE_RATE))
        if self.seed < 0:  # numpy seed sequences take non-negative integers only
            raise DataError("seed", f"seed must be >= 0, got {seed}", "use a non-negative seed")
        if self.n <= 0 or self.length < 0:
            raise DataError("data.segment_s", f"segment_s={cfg.segment_s} and length={self.length} must be positive", "fix the config")
        for name in ("snr_range", "level_range_db"):
            lo_hi = getattr(cfg, name)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                raise DataError(f"data.{name}", f"must be [low, high], got {lo_hi}", "fix the config")
        probs = (cfg.p_babble, cfg.p_colored, cfg.p_reverb)
        if not all(0.0 <= p <= 1.0 for p in probs) or cfg.p_babble + cfg.p_colored > 1.0 + 1e-9:
            raise DataError("data.p_babble", f"probabilities {probs} must lie in [0, 1] with p_babble + p_colored <= 1", "fix the config")
        if cfg.source == "synthetic":
            self.corpus = None
        elif cfg.source == "corpus":
            self.corpus = corpus or Corpus.from_config(cfg, split, cache_mb=cache_mb, preload=preload)
            if not self.corpus.noise and cfg.p_babble + cfg.p_colored < 1.0:
                raise DataError(cfg.root or "data.noise_dirs", f"no noise files for split '{split}'", "add noise files or set p_babble + p_colored = 1")
        else:
            raise DataError("data.source", f"unknown source '{cfg.source}'", "use 'synthetic' or 'corpus'")

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch`` (training); a dev set stays at epoch 0."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        noisy, clean, _ = self._make(i)
        return {"noisy": torch.from_numpy(noisy), "clean": torch.from_numpy(clean)}

    def describe(self, i: int) -> dict:
        """The draws behind item ``i`` (files, snr, level, kind, ...), for debugging/logging."""
        return self._make(i)[2]

    # -- internals ------------------------------------------------------------------------
    def _make(self, i: int) -> tuple[np.ndarray, np.ndarray, dict]:
        if not 0 <= i < self.length:
            raise IndexError(f"item {i} out of range for a dataset of {self.length}")
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        # scalar draws first, in a fixed order, so each item's recipe is easy to reason about
        reverb = bool(rng.random() < cfg.p_reverb)
        u = rng.random()
        kind = "babble" if u < cfg.p_babble else "colored" if u < cfg.p_babble + cfg.p_colored else "noise"
        snr = float(rng.uniform(*cfg.snr_range))
        level = float(rng.uniform(*cfg.level_range_db))
        meta: dict = {"kind": kind, "snr": snr, "level_target": level, "reverb": reverb}
        if reverb:
            rir, meta["rir"] = self._rir(rng)
            ctx = min(rir.size - 1, SAMPLE_RATE)  # leading context so early samples have a tail
            speech, spk, meta["speech"] = self._speech(rng, self.n + ctx)
            rev, target = reverberate(speech, rir)
            rev, target = rev[ctx:], target[ctx:]
        else:
            speech, spk, meta["speech"] = self._speech(rng, self.n)
            rev = target = speech
        noise, meta["noise"] = self._interference(rng, kind, spk)
        noisy, _ = mix_at_snr(rev, noise, snr)
        clean, noisy, meta["gain"] = set_level(target, noisy, level)
        meta["level"] = rms_dbfs(noisy)
        return noisy, clean, meta

    def _speech(self, rng: np.random.Generator, n: int, speaker: str | None = None, pad: bool = True) -> tuple[np.ndarray, str, list[str]]:
        """``n`` samples of speech of one speaker (random one if None) -> (wav, speaker, files)."""
        c = self.corpus
        if c is None:
            return synth_speech(n, rng), "", ["synthetic"]
        idx = c.speakers[speaker] if speaker is not None else None
        j = int(rng.choice(idx)) if idx else int(rng.integers(len(c.speech)))
        item = c.speech[j]
        x = c.load(item)
        files = [str(item.path)]
        if x.size >= n:
            return fit_length(x, n, rng), item.speaker, files
        if pad and rng.random() < P_ZERO_PAD:
            out = np.zeros(n, np.float32)
            off = int(rng.integers(0, n - x.size + 1))
            out[off : off + x.size] = x
            return out, item.speaker, files
        pieces, total = [x], x.size
        same = c.speakers[item.speaker]
        while total < n and len(pieces) < MAX_CONCAT:
            # short natural pause (0-200 ms) between utterances of the same speaker
            gap = np.zeros(int(rng.integers(0, int(0.2 * SAMPLE_RATE))), np.float32)
            nxt = c.speech[int(rng.choice(same))]
            y = c.load(nxt)
            pieces += [gap, y]
            total += gap.size + y.size
            files.append(str(nxt.path))
        return fit_length(np.concatenate(pieces), n, rng), item.speaker, files

    def _interference(self, rng: np.random.Generator, kind: str, speaker: str) -> tuple[np.ndarray, str]:
        n, c = self.n, self.corpus
        if kind == "colored":
            beta = float(rng.uniform(*COLOR_EXPONENT_RANGE))
            return colored_noise(n, rng, beta), f"colored(beta={beta:.2f})"
        if kind == "babble":
            k = int(rng.integers(BABBLE_SPEAKERS[0], BABBLE_SPEAKERS[1] + 1))
            if c is None:
                return synth_babble(n, rng, k), f"babble(synthetic x{k})"
            others = sorted(s for s in c.speakers if s != speaker) or sorted(c.speakers)
            chosen = rng.choice(others, size=min(k, len(others)), replace=False)
            out = np.zeros(n, np.float32)
            for s in chosen:  # equal-RMS voices, +-3 dB, so no single talker dominates
                v, _, _ = self._speech(rng, n, speaker=str(s), pad=False)
                r = np.sqrt(np.mean(np.square(v, dtype=np.float64)))
                if r > 0:
                    out += v * np.float32(10 ** (rng.uniform(-3, 3) / 20) / r)
            return out, "babble(" + ",".join(str(s) for s in chosen) + ")"
        if c is None:
            nk = str(rng.choice(NOISE_KINDS))
            return synth_noise(n, rng, nk), f"synthetic:{nk}"
        item = c.noise[int(rng.integers(len(c.noise)))]
        return fit_length(c.load(item), n, rng), str(item.path)

    def _rir(self, rng: np.random.Generator) -> tuple[np.ndarray, str]:
        c = self.corpus
        if c is None or not c.rir:  # no recorded RIR for this split: a synthetic room
            return synth_rir(rng), "synthetic"
        item = c.rir[int(rng.integers(len(c.rir)))]
        return c.load(item), str(item.path)


# ----------------------------------------------------------------------------- paired folders
class PairedDataset(Dataset):
    """``root/noisy/*`` and ``root/clean/*`` with identical file names (VoiceBank-DEMAND).

    Item ``i`` (sorted by name): ``{"noisy": (N,), "clean": (N,), "name": str}`` at 16 kHz,
    full length (batch with ``batch_size=1`` or crop). Length differences up to 10 ms (from
    resampling) are trimmed; larger ones raise ``DataError``.
    """

    def __init__(self, root: str | os.PathLike, max_files: int | None = None):
        self.root = Path(root)
        dirs = {k: self.root / k for k in ("noisy", "clean")}
        for k, d in dirs.items():
            if not d.is_dir():
                raise DataError(d, f"folder '{k}/' not found", "a paired set needs noisy/ and clean/ folders with matching file names")
        names = {k: {p.name for p in list_audio_files(d) if p.parent == d} for k, d in dirs.items()}
        only_noisy, only_clean = sorted(names["noisy"] - names["clean"]), sorted(names["clean"] - names["noisy"])
        if only_noisy or only_clean:
            parts = [f"{len(v)} in {k}/ without a match ({', '.join(v[:5])}{', ...' if len(v) > 5 else ''})"
                     for k, v in (("noisy", only_noisy), ("clean", only_clean)) if v]
            raise DataError(self.root, "unmatched file names: " + "; ".join(parts), "noisy/ and clean/ must hold the same names")
        self.names = sorted(names["noisy"])
        if not self.names:
            raise DataError(self.root, "noisy/ and clean/ hold no audio files", "add .wav/.flac/.ogg pairs")
        if max_files is not None and 0 < int(max_files) < len(self.names):
            # evenly spaced, not the first N: sorted names group by condition (e.g. SNR), so a
            # prefix would validate on one or two conditions only
            step = len(self.names) / int(max_files)
            self.names = [self.names[int(i * step)] for i in range(int(max_files))]

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        name = self.names[i]
        noisy, _ = load_audio(self.root / "noisy" / name)
        clean, _ = load_audio(self.root / "clean" / name)
        if abs(noisy.size - clean.size) > SAMPLE_RATE // 100:
            raise DataError(self.root / "noisy" / name, f"{noisy.size} samples but clean/{name} has {clean.size}", "pairs must have equal length")
        m = min(noisy.size, clean.size)
        return {"noisy": torch.from_numpy(noisy[:m].copy()), "clean": torch.from_numpy(clean[:m].copy()), "name": name}


# ----------------------------------------------------------------------------- dev set
def _snr_tag(snr: float) -> str:
    return f"snr{int(snr):+03d}" if float(snr).is_integer() else f"snr{snr:+05.1f}"


def build_devset(cfg: DataConfig, out_dir: str | os.PathLike, snrs=(-5, 0, 5, 10, 15), per_snr: int = 20,
                 seed: int = 1234, segment_s: float | None = None, overwrite: bool = False,
                 noise_match: tuple[str, ...] = ()) -> int:
    """Write a fixed paired dev set: ``out_dir/{noisy,clean}/snr+05_0007.wav`` + ``manifest.csv``.

    Corpus source: dev speech x dev noise, full utterances (``segment_s`` crops/pads them to a
    fixed length instead), the noise looped/cropped to the utterance; each utterance is mixed at
    exactly its SNR and scaled to a random level in ``cfg.level_range_db``. Speech and noise
    files are taken in a seeded permutation so the set spreads over speakers and noise types.
    Synthetic source: synthetic speech of ``segment_s`` (default ``cfg.segment_s``) against the
    synthetic noise kinds in turn. No reverberation, babble or coloured noise: a plain additive
    set whose targets are unambiguous. Manifest columns: name, speech_file, noise_file, snr,
    level (noisy RMS, dBFS). Refuses a non-empty ``out_dir`` unless ``overwrite``; then only the
    files it owns (noisy/*.wav, clean/*.wav, manifest.csv) are replaced. The set is built in a
    hidden sibling folder and moved into place when complete: a failure (bad corpus file, full
    disk, interruption) leaves ``out_dir`` untouched. Returns the number of pairs.

    ``noise_match``: shell patterns (``fnmatch``) on the noise file names; when given, only the
    dev noise files whose name matches one of them are used, e.g. ``("*rain*", "*tap*")`` for a
    set of one kind of noise (a test of a condition, such as stationary noise, not a new split).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder", "choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise DataError(out, "output folder is not empty", "choose a new folder or pass overwrite=True")
    synthetic = cfg.source == "synthetic"
    corpus = None if synthetic else Corpus.from_config(cfg, "dev", cache_mb=64)
    if corpus is not None and not corpus.noise:
        raise DataError(cfg.root or "data.noise_dirs", "no dev noise files", "a dev set needs noise files of split 'dev'")
    if noise_match:
        if corpus is None:
            raise DataError("noise_match", "selects corpus noise files", "leave it out for a synthetic dev set")
        corpus.noise = [it for it in corpus.noise if any(fnmatch.fnmatch(it.path.name, p) for p in noise_match)]
        if not corpus.noise:
            raise DataError(cfg.root or "data.noise_dirs", f"no dev noise file name matches {' or '.join(noise_match)}",
                            "check the patterns against the noise file names (shell wildcards, e.g. '*rain*')")
    # everything is written into a hidden sibling folder first and moved into place at the end,
    # so a bad corpus file, a full disk or an interruption leaves ``out`` as it was
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
        stage.chmod(0o755)  # mkdtemp's 0700 would stick to ``out`` after the rename
    except OSError as e:
        raise write_error(out, e) from None
    try:
        n = _write_devset(cfg, corpus, stage, snrs, per_snr, seed, segment_s)
        _move_into_place(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return n


def _move_into_place(stage: Path, out: Path) -> None:
    """Rename the finished set onto ``out`` (in one step when ``out`` is absent or empty); else
    replace only the files a dev set owns (noisy/*.wav, clean/*.wav, manifest.csv)."""
    try:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        if not out.exists():
            os.replace(stage, out)
            return
        for sub in ("noisy", "clean"):
            (out / sub).mkdir(exist_ok=True)
            for f in (out / sub).glob("*.wav"):
                f.unlink()
            for f in (stage / sub).iterdir():
                os.replace(f, out / sub / f.name)
        os.replace(stage / "manifest.csv", out / "manifest.csv")
    except OSError as e:
        raise write_error(out, e) from None


def _write_devset(cfg: DataConfig, corpus: Corpus | None, out: Path, snrs, per_snr: int, seed: int,
                  segment_s: float | None) -> int:
    for sub in ("noisy", "clean"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed)
    sp_perm = order.permutation(len(corpus.speech)) if corpus else None
    no_perm = order.permutation(len(corpus.noise)) if corpus else None
    rows = []
    for k, snr in enumerate(snrs):
        for j in range(per_snr):
            rng = np.random.default_rng([seed, k, j])
            m = k * per_snr + j
            if corpus is None:
                nk = NOISE_KINDS[m % len(NOISE_KINDS)]
                n = int(round((segment_s or cfg.segment_s) * SAMPLE_RATE))
                speech, noise = synth_speech(n, rng), synth_noise(n, rng, nk)
                sfile, nfile = "synthetic", f"synthetic:{nk}"
            else:
                s_item, n_item = corpus.speech[sp_perm[m % len(sp_perm)]], corpus.noise[no_perm[m % len(no_perm)]]
                speech = corpus.load(s_item)
                if segment_s:
                    n = int(round(segment_s * SAMPLE_RATE))
                    speech = fit_length(speech, n, rng) if speech.size >= n else np.pad(speech, (0, n - speech.size))
                noise = fit_length(corpus.load(n_item), speech.size, rng)
                sfile, nfile = _rel(s_item.path, cfg.root), _rel(n_item.path, cfg.root)
            noisy, _ = mix_at_snr(speech, noise, float(snr))
            clean, noisy, _ = set_level(speech, noisy, float(rng.uniform(*cfg.level_range_db)))
            name = f"{_snr_tag(snr)}_{j:04d}.wav"
            save_audio(out / "noisy" / name, noisy, SAMPLE_RATE)
            save_audio(out / "clean" / name, clean, SAMPLE_RATE)
            rows.append({"name": name, "speech_file": sfile, "noise_file": nfile, "snr": snr, "level": f"{rms_dbfs(noisy):.2f}"})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["name", "speech_file", "noise_file", "snr", "level"], lineterminator="\r\n")
    w.writeheader()
    w.writerows(rows)
    write_atomic(out / "manifest.csv", buf.getvalue().encode("utf-8"))
    return len(rows)


def _rel(path: Path, root: str) -> str:
    try:
        return str(path.relative_to(root)) if root else str(path)
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- batching
def collate(batch: list[dict]) -> dict:
    """Stack items: tensors ``(N,)`` -> ``(B, N)`` (equal N required), other values -> lists."""
    if not batch:
        raise ValueError("collate: empty batch")
    out: dict = {}
    for key in batch[0]:
        vals = [b[key] for b in batch]
        if isinstance(vals[0], torch.Tensor):
            shapes = {tuple(v.shape) for v in vals}
            if len(shapes) > 1:
                raise ValueError(f"collate: '{key}' lengths differ {sorted(shapes)}; use batch_size=1 for full-length items or crop them")
            out[key] = torch.stack(vals)
        else:
            out[key] = vals
    return out
