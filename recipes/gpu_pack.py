"""Split the training corpus into packs that each fit one call of a lent GPU machine.

    python recipes/gpu_pack.py [--data ../shared/data] [--devset data/devset] [--out gpu] [--mib 38]

A call of the workplace's device tool carries the working tree plus at most 64 MiB, and the
tracked tree is already ~19 MiB (the shipped teacher), so the 145 MiB of training audio goes
in several calls: q1 holds noise/train, the RIRs, the manifests, the wheels the device lacks
(``--wheels``) and the 24 validation pairs (the same evenly spaced files ``valid.max_files=24``
picks); q2.. hold speech/train, split by size. ``recipes/gpu_stage.sh`` merges each pack on the
device; ``recipes/gpu_finetune.sh`` stages the last one and trains. ``recipes/gpu_wheels.sh DIR``
fetches the wheels (and pesq's sdist) for ``--wheels DIR``. Keep ``--out`` ignored by git
(the audio must never enter the repository).
"""
from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mtakd.corpus import DataError
from mtakd.data import PairedDataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--wheels", default="", help="folder of wheels to carry in q1 (soundfile, soxr, pesq sdist, ...)")
    ap.add_argument("--out", default="gpu")
    ap.add_argument("--mib", type=float, default=38.0, help="largest speech pack")
    ap.add_argument("--valid-files", type=int, default=24)
    a = ap.parse_args()
    src, out = Path(a.data), Path(a.out)
    q1 = out / "q1"
    # check everything before writing anything, so a bad argument leaves no half-made pack
    stale = sorted(str(p) for p in out.glob("q[0-9]*"))
    if stale:
        raise SystemExit(f"gpu_pack: {', '.join(stale)} exist; remove {out}/q* first (packs are never merged)")
    need = [src / "noise" / "train", src / "rir", src / "speech" / "train"] + [src / m for m in ("speech.csv", "noise.csv", "rir.csv")]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise SystemExit(f"gpu_pack: {', '.join(missing)} not found; --data must be the corpus root (e.g. ../shared/data)")
    try:
        names = PairedDataset(a.devset, max_files=a.valid_files).names  # the files training validates on
    except DataError as e:
        raise SystemExit(f"gpu_pack: {e}") from None
    shutil.copytree(src / "noise" / "train", q1 / "data" / "noise" / "train")
    shutil.copytree(src / "rir", q1 / "data" / "rir")
    for m in ("speech.csv", "noise.csv", "rir.csv"):
        shutil.copy(src / m, q1 / "data" / m)
    if a.wheels:
        shutil.copytree(a.wheels, q1 / "whl")
    for k in ("noisy", "clean"):
        (q1 / "devset" / k).mkdir(parents=True)
        for n in names:
            shutil.copy(Path(a.devset) / k / n, q1 / "devset" / k / n)
    files = sorted((src / "speech" / "train").rglob("*.flac"))
    total = sum(f.stat().st_size for f in files)
    packs = max(1, int(-(-total // (a.mib * 2**20))))
    acc = 0
    for f in files:
        q = 2 + min(packs - 1, int(packs * acc / total))
        acc += f.stat().st_size
        dst = out / f"q{q}" / "data" / f.relative_to(src)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dst)
    print(f"{len(files)} speech files ({total / 2**20:.0f} MiB) in q2..q{packs + 1}; q1: noise, RIRs, manifests, "
          f"{a.valid_files} validation pairs")


if __name__ == "__main__":
    main()
