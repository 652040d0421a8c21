"""Manifests for large corpora: walk the folders once, start every later run in seconds.

A corpus of 100k+ files must not be walked and probed at every start (``rglob`` plus one header
read per file is minutes on network storage). ``mtakd make-manifest`` walks once, reads each
header once (in a thread pool: libsndfile releases the GIL) and writes CSVs that runs read
instead:

* ``make-manifest dns --clean DIR --noise DIR [--rir DIR] -o ROOT``: DNS-Challenge style
  clean/noise(/impulse-response) folders for on-the-fly mixing. Writes ``ROOT/speech.csv``
  (path, split, speaker, duration_s), ``noise.csv`` and ``rir.csv`` (path, split, duration_s),
  the layout ``Corpus.from_manifests`` reads: train with ``data.source=corpus data.root=ROOT``.
* ``make-manifest paired --noisy DIR --clean DIR -o ROOT``: VoiceBank-DEMAND style paired
  folders (same relative names in both). Writes ``ROOT/pairs.csv`` (noisy, clean, split,
  speaker, duration_s): train with ``data.source=paired data.root=ROOT``.

Paths are stored relative to ROOT (move the corpus and its manifests together). Splits: a
path component ``train``/``dev``/``valid``/``test`` decides; otherwise a stable hash of the
speaker (speech, pairs) or file name (noise) puts ``--dev-fraction`` of them in ``dev``, so dev
speakers never appear in train. Speaker ids: ``reader_<n>`` (DNS/LibriVox names), ``p<nnn>_``
(VoiceBank), else the parent folder name.
"""
from __future__ import annotations

import csv
import io
import os
import re
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .atomic import write_bytes_atomic
from .audio import AudioError, audio_info, list_audio_files
from .corpus import DataError

SPLIT_NAMES = {"train": "train", "dev": "dev", "valid": "dev", "validation": "dev", "test": "test"}
_SPEAKER_PATTERNS = (re.compile(r"reader_(\d+)"), re.compile(r"^(p\d{3})_"))


# ----------------------------------------------------------------------------- scanning
def speaker_of(path: Path, root: Path) -> str:
    for pat in _SPEAKER_PATTERNS:
        m = pat.search(path.name)
        if m:
            return m.group(1)
    return path.parent.name if path.parent != root else ""


def split_of(rel: Path, key: str, dev_fraction: float) -> str:
    """Split from a path component, else a stable hash of ``key`` (same on every machine)."""
    for part in rel.parts[:-1]:
        if part.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[part.lower()]
    return "dev" if zlib.crc32(key.encode()) % 10000 < dev_fraction * 10000 else "train"


def durations(files: list[Path], jobs: int = 8) -> tuple[list[float | None], list[str]]:
    """Header durations of ``files`` (None for unreadable ones) and one line per failure."""
    def one(p: Path):
        try:
            return audio_info(p).duration_s, None
        except AudioError as e:
            return None, str(e)

    with ThreadPoolExecutor(max(1, jobs)) as ex:
        got = list(ex.map(one, files, chunksize=64))
    return [d for d, _ in got], [e for _, e in got if e]


def _rel(p: Path, out_root: Path) -> str:
    return os.path.relpath(p.resolve(), out_root.resolve())


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=fields)
    w.writeheader()
    w.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))  # never a half-written manifest


def _scan_dir(d: str | os.PathLike, out_root: Path, kind: str, dev_fraction: float, jobs: int) -> tuple[list[dict], list[str]]:
    root = Path(d)
    if not root.is_dir():
        raise DataError(root, "folder does not exist", "check the path")
    files = list_audio_files(root)
    durs, errors = durations(files, jobs)
    rows = []
    for f, dur in zip(files, durs):
        if dur is None:
            continue
        rel = f.relative_to(root)
        spk = speaker_of(f, root) if kind == "speech" else ""
        row = {"path": _rel(f, out_root), "split": split_of(rel, spk or str(rel), dev_fraction), "duration_s": f"{dur:.3f}"}
        if kind == "speech":
            row["speaker"] = spk
        rows.append(row)
    return rows, errors


def make_dns_manifest(clean: str, noise: str, out_root: str | os.PathLike, rir: str = "",
                      dev_fraction: float = 0.05, jobs: int = 8) -> dict[str, int]:
    """Write ``speech.csv``/``noise.csv``(/``rir.csv``) under ``out_root``; returns row counts.

    Raises ``DataError`` when a folder has no readable audio; unreadable files are left out
    and listed in ``out_root/manifest_errors.txt``.
    """
    out = Path(out_root)
    counts, errors = {}, []
    for name, d, kind in (("speech", clean, "speech"), ("noise", noise, "noise"), ("rir", rir, "rir")):
        if not d:
            continue
        rows, errs = _scan_dir(d, out, kind, dev_fraction if kind != "rir" else 0.0, jobs)
        errors += errs
        if not rows:
            raise DataError(d, "no readable audio files", "check the folder")
        fields = ["path", "split", "speaker", "duration_s"] if kind == "speech" else ["path", "split", "duration_s"]
        _write_csv(out / f"{name}.csv", fields, rows)
        counts[name] = len(rows)
    _write_errors(out, errors)
    return counts


def make_paired_manifest(noisy: str, clean: str, out_root: str | os.PathLike,
                         dev_fraction: float = 0.0, jobs: int = 8) -> int:
    """Write ``pairs.csv`` for files with the same relative name under ``noisy`` and ``clean``."""
    out, nd, cd = Path(out_root), Path(noisy), Path(clean)
    for d in (nd, cd):
        if not d.is_dir():
            raise DataError(d, "folder does not exist", "give the noisy and the clean folder")
    nf = {f.relative_to(nd): f for f in list_audio_files(nd)}
    cf = {f.relative_to(cd): f for f in list_audio_files(cd)}
    common = sorted(set(nf) & set(cf))
    unmatched = sorted(set(nf) ^ set(cf))
    if not common:
        raise DataError(nd, "no file name occurs in both folders", "noisy/ and clean/ must hold the same names")
    durs, errors = durations([nf[r] for r in common], jobs)
    errors += [f"{r}: only in one of the two folders" for r in unmatched]
    rows = []
    for r, dur in zip(common, durs):
        if dur is None:
            continue
        spk = speaker_of(nf[r], nd)
        rows.append({"noisy": _rel(nf[r], out), "clean": _rel(cf[r], out), "split": split_of(r, spk or str(r), dev_fraction),
                     "speaker": spk, "duration_s": f"{dur:.3f}"})
    _write_csv(out / "pairs.csv", ["noisy", "clean", "split", "speaker", "duration_s"], rows)
    _write_errors(out, errors)
    return len(rows)


def _write_errors(out: Path, errors: list[str]) -> None:
    target = out / "manifest_errors.txt"
    if errors:
        target.write_text("\n".join(errors) + "\n", encoding="utf-8")
        print(f"{len(errors)} file(s) left out, listed in {target}")
    elif target.exists():
        target.unlink()


# ----------------------------------------------------------------------------- CLI
def cmd_make_manifest(args) -> int:
    t0 = time.perf_counter()
    if args.layout == "dns":
        counts = make_dns_manifest(args.clean, args.noise, args.out, rir=args.rir or "", dev_fraction=args.dev_fraction, jobs=args.jobs)
        what = ", ".join(f"{v} {k}" for k, v in counts.items())
        hint = f"train with data.source=corpus data.root={args.out}"
    else:
        n = make_paired_manifest(args.noisy, args.clean, args.out, dev_fraction=args.dev_fraction, jobs=args.jobs)
        what = f"{n} pairs"
        hint = f"train with data.source=paired data.root={args.out}"
    print(f"wrote manifests for {what} to {args.out} in {time.perf_counter() - t0:.1f} s; {hint}")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("make-manifest", help="walk a corpus once and write CSV manifests (path, duration) for fast starts")
    p.add_argument("layout", choices=("dns", "paired"), help="dns: clean/noise folders (on-the-fly mixing); paired: noisy/clean folders (VoiceBank-DEMAND)")
    p.add_argument("--clean", required=True, help="clean speech folder")
    p.add_argument("--noise", help="noise folder (dns)")
    p.add_argument("--rir", help="room impulse response folder (dns, optional)")
    p.add_argument("--noisy", help="noisy folder (paired)")
    p.add_argument("-o", "--out", required=True, help="folder for the manifests (the data.root of later runs)")
    p.add_argument("--dev-fraction", type=float, default=None,
                   help="share of speakers (files, for noise) put in split 'dev' when no train/dev folder says (default 0.05 dns, 0 paired)")
    p.add_argument("--jobs", type=int, default=8, help="threads reading file headers")

    def run(args):
        if args.layout == "dns" and not args.noise:
            p.error("dns needs --noise")
        if args.layout == "paired" and not args.noisy:
            p.error("paired needs --noisy")
        if args.dev_fraction is None:
            args.dev_fraction = 0.05 if args.layout == "dns" else 0.0
        return cmd_make_manifest(args)

    p.set_defaults(func=run)


def __getattr__(name: str):
    # the training-data readers moved to ``training_data`` (torch); still importable from here
    if name in ("PairedManifestDataset", "training_set"):
        from . import training_data

        return getattr(training_data, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
