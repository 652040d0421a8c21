"""Paired per-file differences between two variants, split by input SNR.

``benchmarks/results.py`` gives the paired test over a whole set; this splits it by input SNR,
reading its cached per-file scores (``<run>/<set>.csv``), to see where a difference comes from
(e.g. a mask that helps at low SNR and costs PESQ-WB at high SNR). Each file's score is first
averaged over the seeds both variants have; the test is results.py's (``paired_test``: Wilcoxon
signed-rank p, files where A is better). The SNR is the set's ``snr`` column; a set without one
(the VoiceBank-DEMAND pairs) is one group, or, with ``--snr-from DIR``, grouped by the input SNR
measured from its pairs, ``10 log10(|clean|^2 / |noisy - clean|^2)`` to 0.1 dB.

    PYTHONPATH=src python benchmarks/paired_by_snr.py --runs runs/cpu22/steady \
        --pair real_h_mtakd_tf_sisdr:cplx_h_mtakd_tf_sisdr --pair h_mtakd_tf_sisdr:cplx_h_mtakd_tf_sisdr
    PYTHONPATH=src python benchmarks/paired_by_snr.py --runs runs/cpu22/tanh --set vbd \
        --snr-from ../shared/data/paired/voicebank_demand_train_p287 --pair real_h_mtakd_tf_sisdr:cplx_h_mtakd_tf_sisdr

Runs are scored first by ``benchmarks/results.py`` (this script only reads its caches).
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

import results_tables as rt

METRICS = {"pesq": "PESQ-WB", "si_sdr_i": "SI-SDRi", "stoi": "STOI", "estoi": "ESTOI",
           "csig": "CSIG", "cbak": "CBAK", "covl": "COVL"}
DEFAULT_METRICS = ("pesq", "si_sdr_i")


def seed_tables(runs: Path, variant: str, key: str) -> dict[int | None, dict]:
    """``{seed: per-file table}`` of ``runs/<variant>_s<seed>/<key>.csv`` (run names as results.py parses them)."""
    names = [p.parent.name for p in sorted(runs.glob(f"*/{key}.csv"))]
    seeds = rt.group_runs(names).get(variant, {})
    if not seeds:
        raise SystemExit(f"paired_by_snr: no scored runs {variant}_s<seed>/{key}.csv in {runs}; "
                         f"score them with benchmarks/results.py first")
    return {s: rt.read_scores(runs / name / f"{key}.csv") for s, name in seeds.items()}


def measured_snrs(folder: Path) -> dict[str, float]:
    """``{file name: input SNR dB}`` of a paired set, measured from each clean/noisy pair."""
    from mtakd.audio import load_audio

    out = {}
    for f in sorted((folder / "clean").glob("*.wav")):
        clean, _ = load_audio(f)
        noisy, _ = load_audio(folder / "noisy" / f.name)
        out[f.name] = round(10 * math.log10(np.sum(clean**2) / max(np.sum((noisy - clean) ** 2), 1e-20)), 1)
    if not out:
        raise SystemExit(f"paired_by_snr: no clean/*.wav pairs in {folder}")
    return out


def by_snr(a: dict, b: dict, metric: str, snr_of: dict[str, float] | None = None) -> list[tuple[float | str, dict]]:
    """``[(snr, paired_test of A - B on that SNR's files)]``, SNRs ascending; ``"all"`` for files
    without an SNR. Both variants' tables are averaged over the seeds they share first."""
    seeds = [s for s in a if s in b]
    if not seeds:
        raise SystemExit(f"paired_by_snr: the two variants share no seed (have {sorted(a)} and {sorted(b)})")
    ta, tb = (rt.average_over_seeds([t[s] for s in seeds]) for t in (a, b))
    snr = {n: (snr_of or {}).get(n, r.get("snr", math.nan)) for n, r in ta.items()}
    group = {n: ("all" if not math.isfinite(v) else v) for n, v in snr.items()}
    out = []
    for g in sorted(set(group.values()), key=lambda v: -math.inf if v == "all" else v):
        sel = [n for n in ta if group[n] == g]
        out.append((g, rt.paired_test({n: ta[n] for n in sel}, tb, metric, n_boot=1)))
    return out


def table(runs: Path, pairs: list[tuple[str, str]], key: str = "dev", snr_of: dict[str, float] | None = None,
          metrics: tuple[str, ...] = DEFAULT_METRICS) -> str:
    lines = []
    for a, b in pairs:
        ta, tb = seed_tables(runs, a, key), seed_tables(runs, b, key)
        for metric in metrics:
            label = METRICS[metric]
            rows = by_snr(ta, tb, metric, snr_of)
            if not lines:
                lines.append("| A - B | metric | " + " | ".join("all" if s == "all" else f"{s:+g} dB" for s, _ in rows) + " |")
                lines.append("|---|---|" + "---|" * len(rows))
            cells = [f"{t['mean_diff']:+.3f} (p {t['p']:.2g}, {t['wins']}/{t['n']})" for _, t in rows]
            lines.append(f"| {a} - {b} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_pairs(ap: argparse.ArgumentParser, values: list[str]) -> list[tuple[str, str]]:
    """``--pair A:B`` values -> ``[(A, B)]``; a value without exactly one colon is ``ap.error``."""
    pairs = []
    for p in values:
        if p.count(":") != 1:
            ap.error(f"--pair {p!r}: expected A:B")
        pairs.append(tuple(p.split(":")))
    return pairs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, type=Path, help="folder of run folders scored by results.py")
    ap.add_argument("--pair", action="append", required=True, metavar="A:B", help="variant A minus variant B (repeatable)")
    ap.add_argument("--set", default="dev", help="which cached scores: dev (results.py's --devset), vbd, or an --extra NAME")
    ap.add_argument("--snr-from", type=Path, metavar="DIR", help="group by the input SNR measured from this paired set")
    ap.add_argument("--metric", action="append", choices=sorted(METRICS), metavar="NAME",
                    help=f"a per-file score to compare (repeatable; one of {', '.join(METRICS)}; default: pesq and si_sdr_i)")
    args = ap.parse_args(argv)
    pairs = parse_pairs(ap, args.pair)
    snr_of = measured_snrs(args.snr_from) if args.snr_from else None
    print("Mean per-file difference A - B by input SNR (p: Wilcoxon signed-rank; A better in k/n files):\n")
    print(table(args.runs, pairs, args.set, snr_of, tuple(args.metric or DEFAULT_METRICS)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
