"""Pure helpers of ``benchmarks/results.py``: run names, per-file score tables, statistics,
markdown tables and the target checks. No torch here, and no data needed: the tests
(``tests/test_results_report.py``) run these on synthetic tables.

A *table* is ``{file name: {"snr": float, metric: float, ...}}`` (one run on one set, as read
from the per-file CSV that ``mtakd.evaluate.evaluate`` writes). A *variant* is the list of
its seeds' tables. Statistics over seeds are taken on the per-seed means: the spread is the
sample standard deviation (ddof=1) of the seed means, NaN with a single seed.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from mtakd.evaluate import BUSY_SHARE

METRICS = ["pesq", "stoi", "estoi", "si_sdr", "si_sdr_i", "csig", "cbak", "covl"]
LABEL = {"pesq": "PESQ-WB", "stoi": "STOI", "estoi": "ESTOI", "si_sdr": "SI-SDR", "si_sdr_i": "SI-SDRi",
         "csig": "CSIG", "cbak": "CBAK", "covl": "COVL"}
DIGITS = {"pesq": 3, "stoi": 3, "estoi": 3, "si_sdr": 2, "si_sdr_i": 2, "csig": 2, "cbak": 2, "covl": 2}
#: report order; names not listed follow, sorted
ORDER = ["teacher", "a_none", "b_fixed", "c_fixed_tf", "d_mtakd_tf", "e_mtakd_gate", "f_mtakd_terr", "g_fixed83_tf",
         "h_mtakd_tf_sisdr",
         "student_none", "student_fixed", "student_fixed_tf", "student_mtakd", "student_mtakd_gate"]
#: single-seed run names of the first results (before the <variant>_s<seed> layout)
LEGACY_ROLE = {"student_none": "a", "student_fixed": "b", "student_fixed_tf": "c",
               "student_mtakd": "d", "student_mtakd_gate": "e"}
ROLE_TEXT = {"a": "(a) no KD", "b": "(b) fixed-weight KD", "c": "(c) fixed-weight KD + T-F weighting",
             "d": "(d) mtakd + T-F weighting", "e": "(e) mtakd + T-F weighting + reliability gate",
             "f": "(f) mtakd + T-F weighting, teacher error in sigma_kd^2"}
#: variants outside the issue's (a)-(e), described by name in the report's legend
VARIANT_TEXT = {"f_mtakd_terr": "(d) with the teacher's error in sigma_kd^2 (loss.kd_teacher_error)",
                "g_fixed83_tf": "fixed-weight KD at alpha 0.83 (the KD share (d) learns) + T-F weighting",
                "h_mtakd_tf_sisdr": "(d) with the SI-SDR term in both tasks (loss.kd_sisdr)",
                "p_none_phase": "(a) with the phase input (model.args.phase_input)"}


def method_label(variant: str) -> str:
    """How the report names the variant judged as the method: ``(d)`` for the issue's (d),
    else ``(<variant>)``."""
    return "(d)" if role(variant) == "d" else f"({variant})"


def describe(variant: str) -> str | None:
    """One-line description of a variant for the legend, or None."""
    r = role(variant)
    return ROLE_TEXT.get(r) if r in ROLE_TEXT else VARIANT_TEXT.get(variant)


_SEEDED = re.compile(r"^(?P<variant>.+)_s(?P<seed>\d+)$")


# ----------------------------------------------------------------------------- run names
def parse_run_name(name: str) -> tuple[str, int | None]:
    """``"d_mtakd_tf_s2" -> ("d_mtakd_tf", 2)``; a name without ``_s<seed>`` is its own
    single-seed variant: ``"student_mtakd" -> ("student_mtakd", None)``."""
    m = _SEEDED.match(name)
    return (m["variant"], int(m["seed"])) if m else (name, None)


def _seed_key(seed: int | None) -> int:
    return -1 if seed is None else seed


def group_runs(names) -> dict[str, dict[int | None, str]]:
    """Run folder names -> ``{variant: {seed: run name}}``, variants in report order, seeds
    ascending. Two names that map to the same (variant, seed) are refused."""
    groups: dict[str, dict[int | None, str]] = {}
    for name in names:
        variant, seed = parse_run_name(name)
        if seed in groups.setdefault(variant, {}):
            raise ValueError(f"runs '{groups[variant][seed]}' and '{name}' are both {variant} seed {seed}")
        groups[variant][seed] = name
    order = [v for v in ORDER if v in groups] + sorted(v for v in groups if v not in ORDER)
    return {v: {s: groups[v][s] for s in sorted(groups[v], key=_seed_key)} for v in order}


def role(variant: str) -> str | None:
    """``"teacher"``, a letter ``"a"``..``"e"`` of the issue's variants, or None."""
    if variant == "teacher":
        return "teacher"
    m = re.match(r"^([a-e])_", variant)
    return m[1] if m else LEGACY_ROLE.get(variant)


def find_role(variants, r: str) -> str | None:
    """The first variant (in the given order) playing role ``r``."""
    return next((v for v in variants if role(v) == r), None)


# ----------------------------------------------------------------------------- tables
def read_scores(path: str | Path) -> dict[str, dict[str, float]]:
    """Per-file CSV (name, snr, metrics...) -> table; empty / unparsable cells become NaN."""
    def num(v: str | None) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    with open(path, newline="") as f:
        return {r["name"]: {k: num(v) for k, v in r.items() if k != "name"} for r in csv.DictReader(f)}


def nanmean(values) -> float:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    return float(v.mean()) if v.size else float("nan")


def table_mean(table: dict[str, dict[str, float]], metric: str) -> float:
    return nanmean(r.get(metric, float("nan")) for r in table.values())


def seed_stats(tables: list[dict], metric: str) -> tuple[float, float, int]:
    """``(mean of the per-seed means, sample std of the per-seed means, seeds)``."""
    means = [m for m in (table_mean(t, metric) for t in tables) if math.isfinite(m)]
    if not means:
        return float("nan"), float("nan"), 0
    std = float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")
    return float(np.mean(means)), std, len(means)


def per_snr_means(tables: list[dict], metric: str) -> dict[float, float]:
    """``{snr: mean over seeds of that seed's mean at this SNR}`` (finite SNRs only)."""
    snrs = sorted({r["snr"] for t in tables for r in t.values() if math.isfinite(r.get("snr", float("nan")))})
    return {s: nanmean(nanmean(r.get(metric, float("nan")) for r in t.values() if r.get("snr") == s) for t in tables)
            for s in snrs}


def average_over_seeds(tables: list[dict]) -> dict[str, dict[str, float]]:
    """One table whose every file's scores are the means over the seeds (files in all seeds)."""
    if not tables:
        return {}
    names = sorted(set.intersection(*(set(t) for t in tables)))
    keys = sorted({k for t in tables for r in t.values() for k in r})
    return {n: {k: nanmean(t[n].get(k, float("nan")) for t in tables) for k in keys} for n in names}


def paired_test(x: dict, y: dict, metric: str, n_boot: int = 10000, seed: int = 0) -> dict[str, float]:
    """Per-file comparison of tables ``x`` and ``y`` on ``metric`` (differences x - y).

    Files in both tables with finite scores in both. Returns ``n``, ``mean_diff``, its 95 %
    percentile-bootstrap interval ``ci_low``/``ci_high`` (``n_boot`` resamples of the files,
    fixed ``seed``), the two-sided Wilcoxon signed-rank ``p`` (``scipy.stats.wilcoxon``; NaN
    when every difference is zero or fewer than 2 files) and ``wins`` (files where x > y).
    """
    from scipy.stats import wilcoxon

    names = sorted(set(x) & set(y))
    d = np.asarray([x[n][metric] - y[n][metric] for n in names
                    if math.isfinite(x[n].get(metric, float("nan"))) and math.isfinite(y[n].get(metric, float("nan")))])
    out = {"n": int(d.size), "mean_diff": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
           "p": float("nan"), "wins": int((d > 0).sum())}
    if d.size == 0:
        return out
    out["mean_diff"] = float(d.mean())
    boot = d[np.random.default_rng(seed).integers(0, d.size, (n_boot, d.size))].mean(axis=1)
    out["ci_low"], out["ci_high"] = (float(v) for v in np.percentile(boot, [2.5, 97.5]))
    if d.size >= 2 and np.any(d != 0):
        out["p"] = float(wilcoxon(d).pvalue)
    return out


def pick_example(snr_of: dict[str, float], target_snr: float = 0.0) -> str | None:
    """The fixed rule for the spectrogram file: the first name (sorted) at ``target_snr`` dB,
    else the first name."""
    names = sorted(snr_of)
    return next((n for n in names if snr_of[n] == target_snr), names[0] if names else None)


# ----------------------------------------------------------------------------- formatting
def fmt(v: float, digits: int) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.{digits}f}"


def fmt_pm(mean: float, std: float, digits: int) -> str:
    """``"1.234 ± 0.012"``; the mean alone when the spread is unknown (one seed)."""
    if not math.isfinite(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if math.isfinite(std) else f"{mean:.{digits}f}"


def _seeds_cell(seeds) -> str:
    if seeds is None:
        return "-"
    s = [x for x in seeds if x is not None]
    return ",".join(str(x) for x in s) if s else "1 run"


def metric_table(variants: dict[str, list[dict]], seeds: dict[str, list], metrics=METRICS) -> list[str]:
    """Mean ± std over seeds of every metric, one row per variant (``noisy`` included as given);
    ``seeds``: the seed numbers of each variant (None for a run without one; variant absent: "-")."""
    lines = ["| system | seeds | " + " | ".join(LABEL[m] for m in metrics) + " |",
             "|---|---|" + "---|" * len(metrics)]
    for v, tables in variants.items():
        cells = [fmt_pm(*seed_stats(tables, m)[:2], DIGITS[m]) for m in metrics]
        lines.append(f"| {v} | {_seeds_cell(seeds.get(v))} | " + " | ".join(cells) + " |")
    return lines


def _by_seed(tables: list[dict], seeds: list) -> dict:
    """``{seed: table}`` for a variant's tables (in its seeds' order); unseeded runs left out."""
    return {x: t for x, t in zip(seeds, tables) if x is not None}


def per_seed_table(variants: dict[str, list[dict]], seeds: dict[str, list]) -> list[str]:
    """PESQ-WB / SI-SDRi of each seeded run (its mean over the files), one column per seed:
    the spread behind the ± of the main table, and the within-seed comparison of variants."""
    all_seeds = sorted({x for v in seeds.values() for x in v if x is not None})
    if not all_seeds:
        return []
    lines = ["| system | " + " | ".join(f"seed {x}" for x in all_seeds) + " |", "|---|" + "---|" * len(all_seeds)]
    for v, tables in variants.items():
        by_seed = _by_seed(tables, seeds.get(v, []))
        if by_seed:
            cells = [f"{table_mean(by_seed[x], 'pesq'):.3f} / {table_mean(by_seed[x], 'si_sdr_i'):.2f}"
                     if x in by_seed else "-" for x in all_seeds]
            lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return lines


def within_seed_table(variants: dict[str, list[dict]], seeds: dict[str, list], d: str | None, label: str,
                      others) -> list[str]:
    """``d`` minus each of ``others``, seed by seed, on PESQ-WB and SI-SDRi: every variant of a
    seed trains on the same mixtures in the same order, so a hard seed is hard for all of them;
    the seed-spread test sets the two variants' stds side by side as if the seeds were unrelated,
    and this is the paired view beside it. Rows only where the two share >= 2 seeds."""
    rows = []
    for other in others:
        if not (d and other and d in variants and other in variants):
            continue
        a, b = _by_seed(variants[d], seeds.get(d, [])), _by_seed(variants[other], seeds.get(other, []))
        common = sorted(set(a) & set(b))
        if len(common) < 2:
            continue
        for m, digits in (("pesq", 3), ("si_sdr_i", 2)):
            diffs = [table_mean(a[x], m) - table_mean(b[x], m) for x in common]
            ahead = sum(x > 0 for x in diffs)
            rows.append(f"| {label} - {other} | {LABEL[m]} | {', '.join(str(x) for x in common)} | "
                        + ", ".join(f"{x:+.{digits}f}" for x in diffs)
                        + f" | {np.mean(diffs):+.{digits}f} ± {np.std(diffs, ddof=1):.{digits}f} | {ahead}/{len(diffs)} |")
    if not rows:
        return []
    return ["Within each seed (same mixtures): the method minus each baseline, per seed, and the mean ± std "
            "of those differences:", "", "| comparison | metric | seeds | per-seed differences | mean ± std | "
            "seeds ahead |", "|---|---|---|---|---|---|"] + rows + [""]


def per_snr_table(variants: dict[str, list[dict]]) -> list[str]:
    """PESQ-WB / SI-SDRi per SNR (means over seeds)."""
    pesq = {v: per_snr_means(t, "pesq") for v, t in variants.items()}
    sdri = {v: per_snr_means(t, "si_sdr_i") for v, t in variants.items()}
    snrs = sorted({s for d in pesq.values() for s in d})
    if not snrs:
        return []
    lines = ["| system | " + " | ".join(f"{s:+g} dB" for s in snrs) + " |", "|---|" + "---|" * len(snrs)]
    for v in variants:
        cells = [f"{fmt(pesq[v].get(s, math.nan), 2)} / {fmt(sdri[v].get(s, math.nan), 1)}" for s in snrs]
        lines.append(f"| {v} | " + " | ".join(cells) + " |")
    return lines


def paired_rows(label: str, d_table: dict, others: dict[str, dict], metrics=("pesq", "si_sdr_i"),
                method: str = "(d)") -> tuple[list[str], list[dict]]:
    """Markdown rows and raw results of ``(d)`` (or the variant named ``method``) vs every other given variant."""
    lines, raw = [], []
    for other, table in others.items():
        for m in metrics:
            r = paired_test(d_table, table, m)
            raw.append({"set": label, "method": method, "vs": other, "metric": m, **r})
            p = "-" if not math.isfinite(r["p"]) else (f"{r['p']:.2g}" if r["p"] >= 1e-4 else f"{r['p']:.1e}")
            dg = DIGITS[m]
            lines.append(f"| {label} | {method} - {other} | {LABEL[m]} | {r['n']} | {fmt(r['mean_diff'], dg)} | "
                         f"[{fmt(r['ci_low'], dg)}, {fmt(r['ci_high'], dg)}] | {p} | {r['wins']}/{r['n']} |")
    return lines, raw


PAIRED_HEAD = ["| set | comparison | metric | files | mean diff | 95 % bootstrap CI | Wilcoxon p | files first better |",
               "|---|---|---|---|---|---|---|---|"]


def paired_section(per_set: dict[str, dict[str, list[dict]]], d: str | None, mlabel: str, others: list[str],
                   min_files: int) -> tuple[list[str], list[dict]]:
    """The per-file paired comparison of ``d`` against each of ``others`` on every set, as a
    report section, and its raw rows. ``per_set`` maps set -> variant (and ``"noisy"``) -> seed
    tables; a set with fewer than ``min_files`` files is left out, and the section says so."""
    paired_raw, plines, notes = [], [], []
    if not (d and others):
        return [], []
    for key, tabs in per_set.items():
        n = len(tabs["noisy"][0])
        if n < min_files:
            notes.append(f"{key} left out: {n} files (fewer than {min_files}).")
            continue
        if n < 30:  # the VoiceBank-DEMAND pairs; a full extra dev set needs no warning
            notes.append(f"{key} has only {n} files: low power (the smallest two-sided p the test can give "
                         f"with {n} files is {2 / 2 ** n:.2g}).")
        avg = {v: average_over_seeds(tabs[v]) for v in [d, *others]}
        lines, raw = paired_rows(key, avg[d], {v: avg[v] for v in others}, method=mlabel)
        plines += lines
        paired_raw += raw
    if not plines:
        return [], []
    head = [f"## Paired per-file comparison: {mlabel} = {d} vs " + ", ".join(others), "",
            f"Each file's score is first averaged over the seeds of a variant; differences are {mlabel} minus the other. "
            "Two-sided Wilcoxon signed-rank test over files; 95 % percentile-bootstrap CI of the mean difference "
            "(10 000 resamples of the files). " + " ".join(notes), ""]
    return head + PAIRED_HEAD + plines + [""], paired_raw


def efficiency_table(rows: dict[str, dict[str, float]]) -> list[str]:
    """``rows``: ``{"teacher": eff, "student": eff}`` (``mtakd.evaluate.efficiency`` dicts);
    adds a teacher/student ratio row when both are there."""
    def lat(v: float) -> str:
        return "whole utterance (non-causal)" if not math.isfinite(v) else f"{v:.0f}"

    lines = ["| model | params | MMAC/s | RTF (1 thread) | RTF (all cores) | algorithmic latency ms |",
             "|---|---|---|---|---|---|"]
    for name, e in rows.items():
        lines.append(f"| {name} | {e['params']:,} | {e['macs_per_s'] / 1e6:.1f} | {e['rtf_1thread']:.4f} | "
                     f"{e['rtf_default']:.4f} | {lat(e['latency_ms'])} |")
    if "teacher" in rows and "student" in rows:
        t, s = rows["teacher"], rows["student"]
        lines.append(f"| **teacher / student** | {t['params'] / s['params']:.1f}x | {t['macs_per_s'] / s['macs_per_s']:.1f}x | "
                     f"{t['rtf_1thread'] / s['rtf_1thread']:.1f}x | {t['rtf_default'] / s['rtf_default']:.1f}x | - |")
    shares = {name: e["cpu_share_1thread"] for name, e in rows.items() if "cpu_share_1thread" in e}
    if shares:
        busy = min(shares.values()) < BUSY_SHARE
        lines += ["", "CPU share of the 1-thread timing (thread CPU time / wall time): "
                  + ", ".join(f"{n} {v:.2f}" for n, v in shares.items())
                  + (f". **Below {BUSY_SHARE}: the host was busy, the process waited for a core, and the RTF "
                     "columns are inflated: not a speed result** (time them on a quiet machine: benchmarks/speed.py)."
                     if busy else " (each had its core).")]
    return lines


# ----------------------------------------------------------------------------- targets
def _line(ok: bool | None, text: str) -> dict[str, Any]:
    return {"status": "N/A" if ok is None else ("PASS" if ok else "FAIL"), "text": text}


def spread_lines(dev: dict[str, list[dict]], d: str | None, label: str, others) -> list[dict[str, Any]]:
    """``d`` beats each of ``others`` by more than the seed spread, on PESQ-WB and SI-SDRi (any set)."""
    out = []
    for other in others:
        for m in ("pesq", "si_sdr_i"):
            what = f"{label} beats {other or '(a)/(b)'} on {LABEL[m]} by more than the seed spread"
            if not (d and other):
                out.append(_line(None, f"{what}: variant missing"))
                continue
            md, sd, nd = seed_stats(dev[d], m)
            mo, so, no = seed_stats(dev[other], m)
            if nd < 2 or no < 2:
                out.append(_line(None, f"{what}: needs >= 2 seeds of each ({nd} and {no})"))
                continue
            spread = max(sd, so)
            out.append(_line(md - mo > spread, f"{what}: {md:.3f} - {mo:.3f} = {md - mo:+.3f} vs spread "
                                               f"max(std) = {spread:.3f} ({nd} / {no} seeds)"))
    return out


def check_targets(dev: dict[str, list[dict]], eff: dict[str, dict], method: str | None = None) -> list[dict[str, Any]]:
    """The issue's targets on the dev set; ``dev`` maps variant (and ``"noisy"``) to tables.

    ``method``: the variant judged as "(d)" (default: the first variant of role d); naming
    another one (an improved method, e.g. ``h_mtakd_tf_sisdr``) judges that one instead, and
    every line names it; the variant of role d is then judged on the seed spread as well (four
    more lines, labelled "(d)"), since that is the issue's own test. Each entry
    ``{"status": "PASS" | "FAIL" | "N/A", "text": numbers}``; N/A when a needed variant or
    measurement is missing (or, for the seed-spread target, fewer than 2 seeds).
    """
    out = []
    names = [v for v in dev if v != "noisy"]
    t, d, a, b = (find_role(names, r) for r in ("teacher", "d", "a", "b"))
    label = "(d)"
    if method is not None:
        if method not in names:
            raise ValueError(f"--method {method}: no such variant (have: {', '.join(names)})")
        d, label = method, method_label(method)
    # 1. improvement kept: (d - noisy) >= 0.9 (teacher - noisy), on the dev means
    for m, noisy_base in (("pesq", True), ("si_sdr_i", False)):
        what = f"{label} keeps >= 90 % of the teacher's {LABEL[m]} improvement over noisy"
        if not (t and d and "noisy" in dev):
            out.append(_line(None, f"{what}: teacher, {label} or noisy scores missing"))
            continue
        base = seed_stats(dev["noisy"], m)[0] if noisy_base else 0.0
        ti, di = seed_stats(dev[t], m)[0] - base, seed_stats(dev[d], m)[0] - base
        nums = f"teacher {ti:+.3f}, {label} {di:+.3f}"
        if not ti > 0:
            out.append(_line(None, f"{what}: {nums}; the teacher does not improve on noisy, no share to keep"))
        else:
            out.append(_line(di >= 0.9 * ti, f"{what}: {nums} = {100 * di / ti:.0f} % (need >= 90 %)"))
    # 2./3. cost ratios
    te, se = eff.get("teacher"), eff.get("student")
    for key, need, what in (("params", 20, "parameters"), ("rtf_1thread", 10, "RTF at 1 thread")):
        if not (te and se):
            out.append(_line(None, f">= {need}x lower {what}: teacher or student efficiency missing"))
            continue
        r = te[key] / se[key]
        nums = f"{te[key]:,}" if key == "params" else f"{te[key]:.4f}"
        nums += f" / {se[key]:,}" if key == "params" else f" / {se[key]:.4f}"
        out.append(_line(r >= need, f">= {need}x lower {what} (teacher / student): {nums} = {r:.1f}x"))
    # 4. (d) beats (a) and (b) by more than the seed spread (larger of the two seed stds); when
    # another variant is judged as the method, the issue's own (d) is judged too, after it
    out += spread_lines(dev, d, label, (a, b))
    role_d = find_role(names, "d")
    if method is not None and role_d and role_d != d:
        out += spread_lines(dev, role_d, "(d)", (a, b))
    return out
