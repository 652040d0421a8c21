"""How long a run takes to *start* on a large corpus: manifest vs directory walk (docs/scaling.md).

    python benchmarks/manifest_startup.py [--files 100000] [--real ../shared/data]

1. Builds a synthetic tree of ``--files`` empty ``.flac`` files (100 files per speaker folder)
   plus a 1 % noise folder, and its ``speech.csv``/``noise.csv`` (durations included, as
   ``mtakd make-manifest`` writes them). Empty files suffice: a run's start never opens them.
2. Times the start of a run from the manifests (``Corpus.from_manifests`` + ``MixingDataset``)
   against the same corpus given as plain folders (``data.speech_dirs``: a walk at every start).
3. With ``--real``, times ``make_dns_manifest`` (the one-time walk + header reads) on real
   audio and reports files/s, to extrapolate the one-time cost for a 100k-file corpus.
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtakd.config import DataConfig  # noqa: E402
from mtakd.data import Corpus, MixingDataset  # noqa: E402
from mtakd.manifests import make_dns_manifest  # noqa: E402


def build_tree(root: Path, n: int) -> None:
    rows, noise = [], []
    for i in range(n):
        rel = f"speech/train/spk{i // 100:05d}/utt{i:07d}.flac"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
        rows.append({"path": rel, "split": "train", "speaker": f"spk{i // 100:05d}", "duration_s": "3.000"})
    for i in range(max(1, n // 100)):
        rel = f"noise/train/n{i:06d}.flac"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
        noise.append({"path": rel, "split": "train", "duration_s": "10.000"})
    for name, fields, data in (("speech.csv", ["path", "split", "speaker", "duration_s"], rows),
                               ("noise.csv", ["path", "split", "duration_s"], noise)):
        with open(root / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(data)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--real", default=str(ROOT.parent / "shared" / "data"), help="a corpus with speech/ and noise/ folders")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="mtakd-manifest-"))
    try:
        t_build, _ = timed(lambda: build_tree(tmp, args.files))
        print(f"built {args.files} empty files + manifests in {t_build:.1f} s (setup, not timed below)")
        cfg = DataConfig(source="corpus", root=str(tmp))
        t_man, ds = timed(lambda: MixingDataset(cfg, "train", seed=0, corpus=Corpus.from_manifests(tmp, "train", cache_mb=0)))
        print(f"start from manifests: {t_man:.2f} s for {len(ds.corpus.speech)} speech + {len(ds.corpus.noise)} noise files")
        walk = DataConfig(source="corpus", speech_dirs=[str(tmp / "speech")], noise_dirs=[str(tmp / "noise")])
        t_walk, c = timed(lambda: Corpus.from_config(walk, "train", cache_mb=0))
        print(f"start from plain folders (walk): {t_walk:.2f} s for {len(c.speech)} files, and without durations "
              "(a header read per file, when needed)")
        if args.real and (Path(args.real) / "speech").is_dir():
            out = tmp / "real"
            t_real, counts = timed(lambda: make_dns_manifest(str(Path(args.real) / "speech"), str(Path(args.real) / "noise"), out))
            n = sum(counts.values())
            print(f"make-manifest on real audio ({args.real}): {n} files in {t_real:.2f} s = {n / t_real:.0f} files/s "
                  f"-> ~{100_000 / (n / t_real):.0f} s once for 100k files on this disk")
        print(f"machine: {os.cpu_count()} cores, load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
