"""Paired per-file differences between two variants, split by input SNR.

``benchmarks/results.py`` gives the paired test over a whole set; this splits it by the SNR
column of its cached per-file scores (``<run>/<set>.csv``), to see where a difference comes
from (e.g. a mask that helps at low SNR and costs PESQ-WB at high SNR). Each file's difference
is the mean over the seeds both variants have; the p-value is Wilcoxon's signed-rank test.

    PYTHONPATH=src python benchmarks/paired_by_snr.py --runs runs/cpu22/steady \
        --pair real_h_mtakd_tf_sisdr:cplx_h_mtakd_tf_sisdr --pair h_mtakd_tf_sisdr:cplx_h_mtakd_tf_sisdr

Runs are scored first by ``benchmarks/results.py`` (this script only reads its caches).
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
from pathlib import Path

import numpy as np
from scipy.stats import wilcoxon

METRICS = {"pesq": "PESQ-WB", "si_sdr_i": "SI-SDRi"}


def seed_tables(runs: Path, variant: str, key: str) -> dict[int, dict[str, dict]]:
    """``{seed: {file name: row}}`` of ``runs/<variant>_s<seed>/<key>.csv``."""
    out = {}
    for d in sorted(runs.glob(f"{variant}_s*")):
        m = re.fullmatch(re.escape(variant) + r"_s(\d+)", d.name)
        if m and (d / f"{key}.csv").is_file():
            with open(d / f"{key}.csv", newline="") as f:
                out[int(m.group(1))] = {r["name"]: r for r in csv.DictReader(f)}
    if not out:
        raise SystemExit(f"paired_by_snr: no scored runs {variant}_s<seed>/{key}.csv in {runs}; "
                         f"score them with benchmarks/results.py first")
    return out


def _snr(row: dict) -> float:
    """The file's input SNR; NaN where the set has none (VoiceBank-DEMAND pairs): one group."""
    try:
        return float(row.get("snr") or "nan")
    except ValueError:
        return float("nan")


def by_snr(a: dict[int, dict], b: dict[int, dict], metric: str) -> list[tuple[float | str, np.ndarray]]:
    """``[(snr, per-file differences a - b averaged over the common seeds)]``, SNRs ascending
    (``"all"``: a set without SNRs, every file in one group)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise SystemExit(f"paired_by_snr: the two variants share no seed (have {sorted(a)} and {sorted(b)})")
    names = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds)))
    key = {n: _snr(a[seeds[0]][n]) for n in names}
    key = {n: ("all" if np.isnan(v) else v) for n, v in key.items()}
    out = []
    for snr in sorted(set(key.values()), key=lambda v: -np.inf if v == "all" else v):
        sel = [n for n in names if key[n] == snr]
        d = np.array([np.mean([float(a[s][n][metric]) - float(b[s][n][metric]) for s in seeds]) for n in sel])
        out.append((snr, d))
    return out


def _p(d: np.ndarray) -> float:
    return float(wilcoxon(d).pvalue) if np.any(d != 0) else 1.0


def table(runs: Path, pairs: list[tuple[str, str]], key: str = "dev") -> str:
    lines = []
    for a, b in pairs:
        ta, tb = seed_tables(runs, a, key), seed_tables(runs, b, key)
        for metric, label in METRICS.items():
            rows = by_snr(ta, tb, metric)
            if not lines:
                lines.append("| A - B | metric | " + " | ".join("all" if s == "all" else f"{s:+g} dB" for s, _ in rows) + " |")
                lines.append("|---|---|" + "---|" * len(rows))
            cells = [f"{d.mean():+.3f} (p {_p(d):.2g}, {int((d > 0).sum())}/{d.size})" for _, d in rows]
            lines.append(f"| {a} - {b} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, type=Path, help="folder of run folders scored by results.py")
    ap.add_argument("--pair", action="append", required=True, metavar="A:B", help="variant A minus variant B (repeatable)")
    ap.add_argument("--set", default="dev", help="which cached scores: dev (the --devset of results.py) or vbd")
    args = ap.parse_args(argv)
    pairs = []
    for p in args.pair:
        if p.count(":") != 1:
            ap.error(f"--pair {p!r}: expected A:B")
        pairs.append(tuple(p.split(":")))
    print("Mean per-file difference A - B by input SNR (p: Wilcoxon signed-rank; A better in k/n files):\n")
    print(table(args.runs, pairs, args.set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
