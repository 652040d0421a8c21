"""What would a perfect per-input choice between two variants be worth?

Two variants that each win on some inputs (e.g. one that removes more noise, one that distorts
speech less) invite a per-input choice between them. Its upper bound is the oracle that keeps,
file by file, the better of the two scores. But part of that bound is chance: the better of
any two runs, even two seeds of one variant, beats either on the mean. So this reports, per set
and metric, from ``benchmarks/results.py``'s cached per-file scores:

- ``oracle``: mean over files of ``max(A, B)`` minus the better variant's mean, seed by seed
  (A and B of the same seed trained on the same mixtures), averaged over the seeds;
- ``chance``: the same for two seeds of one variant (A with A', B with B', every seed pair),
  the second shifted by the two variants' mean difference: what a choice gains between two
  runs that differ by as much on the mean but in nothing systematic file by file (the better
  of two runs gains less the further apart their means are);
- ``excess`` = oracle - mean of the two chance figures: what the two variants' difference, not
  run-to-run noise, offers a per-input choice at best. A real chooser gets less.

    PYTHONPATH=src python benchmarks/oracle_choice.py --runs runs/cpu23/complex \
        --pair h_mtakd_tf_sisdr:i_mtakd_sisdr_notf --set dev --set steady --set seed2
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from bench_common import emit
from paired_by_snr import parse_pairs, seed_tables

METRICS = {"pesq": "PESQ-WB", "si_sdr_i": "SI-SDRi"}


def oracle_gain(x: dict, y: dict, metric: str, shift: float = 0.0) -> float:
    """Mean of the per-file better score of tables ``x`` and ``y`` (``y``'s scores plus
    ``shift``) minus the better table's mean (files in both with finite scores)."""
    names = [n for n in sorted(set(x) & set(y)) if np.isfinite(x[n][metric]) and np.isfinite(y[n][metric])]
    if not names:
        raise SystemExit("oracle_choice: two tables share no scored file")
    a = np.asarray([x[n][metric] for n in names])
    b = np.asarray([y[n][metric] for n in names]) + shift
    return float(np.maximum(a, b).mean() - max(a.mean(), b.mean()))


def chance_gain(tables: dict, metric: str, shift: float = 0.0) -> float:
    """Mean oracle gain over every pair of seeds of one variant ``{seed: table}``, the second
    seed's scores shifted by ``shift``."""
    pairs = list(itertools.combinations(sorted(tables, key=str), 2))
    if not pairs:
        raise SystemExit("oracle_choice: a variant needs two seeds for the chance figure")
    return float(np.mean([oracle_gain(tables[s], tables[t], metric, shift) for s, t in pairs]))


def compare(a: dict, b: dict, metric: str) -> dict[str, float]:
    """``{means of A and B, oracle, chance_a, chance_b, excess}`` for seed tables ``{seed: table}``."""
    seeds = [s for s in a if s in b]
    if not seeds:
        raise SystemExit(f"oracle_choice: the two variants share no seed (have {sorted(a)} and {sorted(b)})")
    mean = lambda t: float(np.nanmean([r[metric] for r in t.values()]))  # noqa: E731
    out = {"seeds": len(seeds), "mean_a": float(np.mean([mean(a[s]) for s in seeds])),
           "mean_b": float(np.mean([mean(b[s]) for s in seeds])),
           "oracle": float(np.mean([oracle_gain(a[s], b[s], metric) for s in seeds]))}
    delta = out["mean_b"] - out["mean_a"]
    out["chance_a"], out["chance_b"] = chance_gain(a, metric, delta), chance_gain(b, metric, -delta)
    out["excess"] = out["oracle"] - (out["chance_a"] + out["chance_b"]) / 2
    return out


def table(runs: Path, pairs: list[tuple[str, str]], sets: list[str]) -> list[str]:
    lines = ["| A : B | set | metric | seeds | mean A | mean B | oracle | chance A | chance B | excess |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (a, b), key in itertools.product(pairs, sets):
        ta, tb = seed_tables(runs, a, key), seed_tables(runs, b, key)
        for metric, label in METRICS.items():
            r = compare(ta, tb, metric)
            d = 3 if metric == "pesq" else 2
            lines.append(f"| {a} : {b} | {key} | {label} | {r['seeds']} | {r['mean_a']:.{d}f} | {r['mean_b']:.{d}f} | "
                         f"+{r['oracle']:.{d}f} | +{r['chance_a']:.{d}f} | +{r['chance_b']:.{d}f} | "
                         f"**{r['excess']:+.{d}f}** |")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, type=Path, help="folder of run folders scored by results.py")
    ap.add_argument("--pair", action="append", required=True, metavar="A:B", help="two variants (repeatable)")
    ap.add_argument("--set", action="append", help="cached set name: dev, vbd or an --extra NAME (repeatable; default dev)")
    ap.add_argument("--out", help="write the markdown here (default: print it)")
    args = ap.parse_args(argv)
    pairs = parse_pairs(ap, args.pair)
    head = ["Per-file oracle choice between two variants, over the better variant's mean, against the "
            "same for two seeds of one variant (chance); excess = oracle - mean chance.", ""]
    emit("\n".join(head + table(args.runs, pairs, args.set or ["dev"])) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
