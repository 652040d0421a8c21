"""How much of its teacher's gain a student keeps, split by input SNR and by kind of noise.

The issue's retention target is one number per set: the student's PESQ-WB (SI-SDR) gain over
the noisy input as a share of the teacher's, ``kept = mean(student - noisy) / mean(teacher -
noisy)`` over the set's files. This splits it by the set's input SNR and by its noise (the
manifest's ``noise_file`` without the recording's id: ``esc10_dog_bark_4-183992-A`` ->
``esc10_dog_bark``), to see where the gap lies: at some SNRs or noises, or everywhere. Each
share comes with a 95 % percentile-bootstrap interval over the group's files (resampled
together for the student, the teacher and the noisy input, so that the ratio's noise is the
files', not each mean's). A group where the teacher gains little has a wide interval: read it
with the teacher's gain beside it. Students and the teacher are run folders of ``--runs``
scored by ``benchmarks/results.py`` (this script reads its caches: ``<run>/<set>.csv``, the
input's ``_scores/noisy_<set>.csv``); a variant with seeds (``<variant>_s<seed>``) is averaged
over its seeds file by file::

    PYTHONPATH=src python benchmarks/retention.py --runs runs/cpu25/shipped --teacher teacher \
        --student v013 --student la --set dev=data/devset --set steady=data/devset_steady \
        [--out docs/retention.md]
"""
from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

import results_tables as rt
from bench_common import command_line, emit, git_commit
from paired_by_snr import seed_tables

#: metric column -> label; SI-SDR minus the input's SI-SDR is SI-SDRi
METRICS = {"pesq": "PESQ-WB", "si_sdr": "SI-SDRi"}


def noise_class(noise_file: str) -> str:
    """A manifest's noise file -> its kind: the file's stem without a recording id
    (``noise/dev/esc10_dog_bark_4-183992-A.flac`` -> ``esc10_dog_bark``)."""
    stem = Path(noise_file).name.split(".")[0]
    return re.sub(r"_\d+-\d+-[A-Z]$", "", stem)


def read_groups(set_dir: Path, names) -> dict[str, dict[str, str]]:
    """``{"SNR": {file: label}, "noise": {file: label}}`` from ``set_dir/manifest.csv`` for the
    scored ``names``; a set without a manifest (or without a column) gives fewer groupings."""
    path = set_dir / "manifest.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        rows = {r["name"]: r for r in csv.DictReader(f)}
    out: dict[str, dict[str, str]] = {}
    if all(rows.get(n, {}).get("snr") not in (None, "") for n in names):
        out["SNR"] = {n: f"{float(rows[n]['snr']):+g} dB" for n in names}
    if all(rows.get(n, {}).get("noise_file") for n in names):
        out["noise"] = {n: noise_class(rows[n]["noise_file"]) for n in names}
    return out


def retention(student: dict, teacher: dict, noisy: dict, names: list[str], metric: str,
              n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """The student's share of the teacher's gain on ``names`` (files with finite scores in all
    three tables): ``n``, ``teacher`` and ``student`` mean gains, ``kept`` (their ratio; NaN when
    the teacher gains nothing), ``lo``/``hi`` (95 % bootstrap over the files)."""
    keep = [n for n in names if all(math.isfinite(t.get(n, {}).get(metric, math.nan)) for t in (student, teacher, noisy))]
    out = {"n": len(keep), "teacher": math.nan, "student": math.nan, "kept": math.nan, "lo": math.nan, "hi": math.nan}
    if not keep:
        return out
    s = np.asarray([student[n][metric] - noisy[n][metric] for n in keep])
    t = np.asarray([teacher[n][metric] - noisy[n][metric] for n in keep])
    out["teacher"], out["student"] = float(t.mean()), float(s.mean())
    if t.mean() <= 0:
        return out
    out["kept"] = float(s.mean() / t.mean())
    idx = np.random.default_rng(seed).integers(0, len(keep), (n_boot, len(keep)))
    ts = t[idx].mean(axis=1)
    ok = ts > 0  # a resample where the teacher gains nothing has no share
    ratios = s[idx].mean(axis=1)[ok] / ts[ok]
    if ratios.size:
        out["lo"], out["hi"] = (float(v) for v in np.percentile(ratios, [2.5, 97.5]))
    return out


def _pct(r: dict) -> str:
    if not math.isfinite(r["kept"]):
        return "-"
    ci = f" [{100 * r['lo']:.0f}, {100 * r['hi']:.0f}]" if math.isfinite(r["lo"]) else ""
    return f"{100 * r['kept']:.0f} %{ci}"


def group_table(grouping: str, labels: dict[str, str], students: dict[str, dict], teacher: dict,
                noisy: dict) -> list[str]:
    """One markdown table over the files ``labels`` names: the row of all files, then one per
    group (an empty ``grouping``: the first row only). By noise, the groups are ordered by the
    first student's PESQ-WB share ascending: where it keeps least first."""
    members: dict[str, list[str]] = defaultdict(list)
    for n, g in labels.items():
        members[g].append(n)
    first = next(iter(students.values()))
    if not grouping:
        order = []
    elif grouping == "noise":
        def kept(g: str) -> float:  # a group whose teacher gains nothing has no share: last
            k = retention(first, teacher, noisy, members[g], "pesq", n_boot=1)["kept"]
            return k if math.isfinite(k) else math.inf
        order = sorted(members, key=lambda g: (kept(g), g))
    else:
        order = sorted(members, key=lambda g: float(g.split()[0]))
    head = [grouping or "files", "n", "noisy PESQ-WB", "teacher PESQ-WB gain", "teacher SI-SDRi"]
    for name in students:
        head += [f"{name} PESQ-WB gain", f"{name} kept PESQ-WB", f"{name} SI-SDRi", f"{name} kept SI-SDRi"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in ["all"] + order:
        names = sorted(labels) if g == "all" else sorted(members[g])
        tp = retention(first, teacher, noisy, names, "pesq", n_boot=1)
        ts = retention(first, teacher, noisy, names, "si_sdr", n_boot=1)
        cells = ["**all**" if g == "all" else g, str(len(names)), f"{rt.nanmean(noisy[n]['pesq'] for n in names):.3f}",
                 f"{tp['teacher']:+.3f}", f"{ts['teacher']:.2f}"]
        for tab in students.values():
            p, s = (retention(tab, teacher, noisy, names, m) for m in ("pesq", "si_sdr"))
            cells += [f"{p['student']:+.3f}", _pct(p), f"{s['student']:.2f}", _pct(s)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def report(runs: Path, teacher: str, students: list[str], sets: list[tuple[str, Path]]) -> list[str]:
    """Markdown: per set, a table by input SNR and one by noise (from its manifest), or one row
    of all files for a set without one."""
    out = []
    for key, folder in sets:
        noisy_path = runs / "_scores" / f"noisy_{key}.csv"
        if not noisy_path.is_file():
            raise SystemExit(f"retention: no {noisy_path} (the input's scores on set {key}); "
                             f"score the runs with benchmarks/results.py first")
        noisy = rt.read_scores(noisy_path)
        t_tab = rt.average_over_seeds(list(seed_tables(runs, teacher, key).values()))
        s_tabs = {s: rt.average_over_seeds(list(seed_tables(runs, s, key).values())) for s in students}
        names = sorted(set(noisy) & set(t_tab).intersection(*s_tabs.values()))
        if not names:
            raise SystemExit(f"retention: the teacher, the students and the input share no scored file on set {key}")
        out += [f"## Set `{key}`: `{folder}` ({len(names)} files)", ""]
        groupings = read_groups(folder, names)
        if not groupings:
            out += group_table("", {n: "all" for n in names}, s_tabs, t_tab, noisy) + [""]
        for grouping, labels in groupings.items():
            out += [f"By {grouping}:", ""] + group_table(grouping, labels, s_tabs, t_tab, noisy) + [""]
    return out


def _named(text: str) -> tuple[str, Path]:
    if text.count("=") != 1:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR (e.g. dev=data/devset), got {text!r}")
    k, v = text.split("=")
    return k, Path(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", required=True, type=Path, help="folder of run folders scored by results.py")
    ap.add_argument("--teacher", default="teacher", help="the teacher's run (variant) name")
    ap.add_argument("--student", action="append", required=True, help="a student's run (variant) name (repeatable)")
    ap.add_argument("--set", action="append", type=_named, metavar="NAME=DIR",
                    help="a scored set and its folder (for the manifest's SNRs and noises), repeatable; "
                         "NAME as results.py caches it: dev, vbd or an --extra NAME (default dev=data/devset)")
    ap.add_argument("--title", default="Where a student keeps its teacher's gain", help="the page's heading")
    ap.add_argument("--notes", type=Path, help="markdown appended after the tables (the reading of them)")
    ap.add_argument("--out", help="write the markdown here (default: print it)")
    args = ap.parse_args(argv)
    if args.notes and not args.notes.is_file():
        ap.error(f"--notes {args.notes}: no such file")
    sets = args.set or [("dev", Path("data/devset"))]
    text = [f"# {args.title}", "", f"Generated by `{command_line()}` at commit `{git_commit()}`. "
            "Each cell: the share of the teacher's gain over the noisy input that the student keeps "
            "(ratio of the mean gains over the group's files; 95 % bootstrap interval over the files in "
            "brackets; a group of one file has no interval to speak of).", ""]
    text += report(args.runs, args.teacher, args.student, sets)
    if args.notes:
        text += [args.notes.read_text().rstrip(), ""]
    emit("\n".join(text).rstrip() + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
