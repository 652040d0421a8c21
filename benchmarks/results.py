"""Regenerate docs/results.md from saved runs: one command, every number measured here.

    PYTHONPATH=src python benchmarks/results.py --runs runs/gpu --devset data/devset \
        --paired ../shared/data/paired/voicebank_demand_train_p287 --out docs/results.md --jobs 2

Run folders under ``--runs`` (any folder with a ``best.safetensors``) named ``<variant>_s<seed>``
are grouped into variants over seeds (``d_mtakd_tf_s0``, ``d_mtakd_tf_s1``, ...); a name
without ``_s<seed>`` (``teacher``, ``student_mtakd``) is a single-run variant. Every run is
scored on the dev set and the VoiceBank-DEMAND pairs (``mtakd.evaluate.evaluate``), its
per-file scores cached as ``<run>/dev.csv`` / ``<run>/vbd.csv``: a cache newer than the run's
``best.safetensors``, holding exactly the set's file names and scored on the same audio (a
sha256 of the set's files in the sidecar ``dev.csv.set``) is re-used (``--rescore`` forces
scoring); the noisy input's scores are cached under ``<runs>/_scores/``. ``--jobs N``
scores in N processes of one torch thread each. Efficiency (parameters, MACs/s, RTF, latency)
is measured once per model architecture, in this process, after all scoring has finished.

Tables and tests (``results_tables.py``): mean ± std over seeds (std of the per-seed means),
per-SNR breakdown, a per-file paired comparison of (d) (or ``--method``) with (a), (b), (c), (d)
and each ``--vs`` variant, and of each ``--pair A:B`` (each file's score averaged over seeds; Wilcoxon signed-rank and a bootstrap CI of the mean difference), and the
issue's targets as PASS / FAIL lines. Figures (``results_figures.py``) go to ``--figures``
(default: ``figures/`` next to ``--out``) and are linked relatively from the report.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_tables as rt  # noqa: E402

SETS = ("dev", "vbd")
MIN_PAIRED_FILES = 6


def _machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


# ----------------------------------------------------------------------------- scoring
def set_fingerprint(folder: str | Path, names: list[str]) -> str:
    """sha256 of a paired set's audio (``noisy/`` and ``clean/`` of each name, in order): two
    sets whose files share names (every dev set that ``mtakd build-devset`` writes does) still
    get different fingerprints, so a cached score table is never taken for another set's."""
    import hashlib

    h = hashlib.sha256()
    for name in names:
        for sub in ("noisy", "clean"):
            h.update(f"{sub}/{name}\0".encode())
            h.update((Path(folder) / sub / name).read_bytes())
    return h.hexdigest()


def _source(csv_path: Path) -> Path:
    """The sidecar that names the set a cached table was scored on."""
    return csv_path.with_name(csv_path.name + ".set")


def _fresh(csv_path: Path, ckpt: Path | None, names: list[str], fingerprint: str) -> bool:
    """The cache holds exactly ``names``, was scored on the set with this ``fingerprint`` (a
    table without its sidecar is from before fingerprints: scored again), and is newer than
    the checkpoint."""
    if not csv_path.is_file() or (ckpt is not None and csv_path.stat().st_mtime < ckpt.stat().st_mtime):
        return False
    try:
        if _source(csv_path).read_text().strip() != fingerprint:
            return False
        return set(rt.read_scores(csv_path)) == set(names)
    except (OSError, KeyError, ValueError):
        return False


def _score(job: tuple[str | None, str, str]) -> tuple[int, list, float]:
    """Worker: score one checkpoint (None: the noisy input) on one folder into a CSV."""
    import torch

    torch.set_num_threads(1)
    from mtakd.evaluate import evaluate

    ckpt, folder, out = job
    t0 = time.time()
    r = evaluate(ckpt, folder, out, progress=False, with_efficiency=False)
    return r["n_files"], r["failed"], time.time() - t0


def score_all(runs: dict[str, Path], sets: dict[str, str], cache_root: Path, rescore: bool, jobs: int) -> dict:
    """``{set: {run name or "noisy": table}}``, scoring whatever is not cached."""
    from mtakd.data import PairedDataset

    todo, paths, fingerprints = [], {}, {}
    for key, folder in sets.items():
        names = PairedDataset(folder).names
        fingerprint = fingerprints[key] = set_fingerprint(folder, names)
        entries = [("noisy", None, cache_root / f"noisy_{key}.csv")]
        entries += [(n, run / "best.safetensors", run / f"{key}.csv") for n, run in runs.items()]
        for name, ckpt, csv_path in entries:
            paths[(key, name)] = csv_path
            if rescore or not _fresh(csv_path, ckpt, names, fingerprint):
                _source(csv_path).unlink(missing_ok=True)  # a table half rewritten is never taken as fresh
                todo.append(((key, name), (None if ckpt is None else str(ckpt), folder, str(csv_path))))
    cached = len(paths) - len(todo)
    print(f"{len(paths)} (run, set) score tables: {cached} cached, {len(todo)} to score with {jobs} job(s)", file=sys.stderr)
    cache_root.mkdir(parents=True, exist_ok=True)

    def done(tag, res):
        n, failed, secs = res
        _source(paths[tag]).write_text(fingerprints[tag[0]] + "\n")  # after the table: never a sidecar without one
        print(f"scored {tag[1]} on {tag[0]}: {n} files in {secs:.0f} s" + (f", {len(failed)} failed" if failed else ""),
              file=sys.stderr)
        for _, msg in failed:
            print(f"  failed: {msg}", file=sys.stderr)

    if jobs <= 1 or len(todo) <= 1:
        for tag, job in todo:
            done(tag, _score(job))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
            futures = {pool.submit(_score, job): tag for tag, job in todo}
            for f in as_completed(futures):
                done(futures[f], f.result())
    out: dict[str, dict] = {k: {} for k in sets}
    for (key, name), p in paths.items():
        out[key][name] = rt.read_scores(p)
    return out


def measure_efficiency(groups: dict, runs: dict[str, Path]) -> dict[str, dict]:
    """``{"teacher": eff, "student": eff, "student (<variant>)": eff ...}``: one measurement per
    architecture; "student" is the architecture of (d) (else of the first student variant)."""
    import torch

    from mtakd.checkpoint import load_model, read_checkpoint
    from mtakd.evaluate import efficiency

    torch.set_num_threads(1)
    arch, first = {}, {}
    for v, seeds in groups.items():
        ckpt = runs[next(iter(seeds.values()))] / "best.safetensors"
        key = json.dumps(read_checkpoint(ckpt)[1]["model"], sort_keys=True)
        arch[v] = key
        first.setdefault(key, ckpt)
    measured = {}
    for key, ckpt in first.items():
        print(f"measuring efficiency of {ckpt.parent.name}'s architecture", file=sys.stderr)
        measured[key] = efficiency(load_model(ckpt))
    rows = {}
    students = [v for v in groups if rt.role(v) != "teacher"]
    t = rt.find_role(groups, "teacher")
    main = rt.find_role(students, "d") or (students[0] if students else None)
    if t:
        rows["teacher"] = measured[arch[t]]
    if main:
        rows["student"] = measured[arch[main]]
        for v in students:
            if arch[v] != arch[main] and f"student ({v})" not in rows:
                rows[f"student ({v})"] = measured[arch[v]]
    return rows


# ----------------------------------------------------------------------------- report
def _figures(args, groups, runs, dev_tables, fig_dir: Path, out_dir: Path) -> list[str]:
    import results_figures as rf

    lines = []
    mt = {v: {s: runs[n] for s, n in seeds.items()} for v, seeds in groups.items()}
    last = rf.weights_figure(mt, fig_dir / "uncertainty_weights.png")
    if last:
        rel = os.path.relpath(fig_dir / "uncertainty_weights.png", out_dir)
        lines += ["## Learned uncertainty weights", "",
                  "w_i = 0.5 exp(-log sigma_i^2) of the supervised (w_sup, solid) and distillation (w_kd, dashed) "
                  "losses at every logged training step, one colour per seed. With Adam, whose steps do not scale with "
                  "the loss, what shapes training is the ratio: the KD share w_kd / (w_sup + w_kd) (fixed-weight KD: "
                  "loss.alpha).", "", f"![uncertainty weights]({rel})", ""]
        for v, seeds in last.items():
            cells = [f"{'run' if s is None else f'seed {s}'}: w_sup {a:.2f}, w_kd {b:.2f} (KD share {b / (a + b):.2f})"
                     for s, (a, b) in seeds.items()]
            lines.append(f"- {v}, last logged step: " + "; ".join(cells))
        lines.append("")
    t = rt.find_role(groups, "teacher")
    students = [v for v in groups if rt.role(v) != "teacher"]
    d = rt.find_role(students, "d") or (students[0] if students else None)
    snr_of = {n: r["snr"] for n, r in dev_tables["noisy"].items()}
    name = rt.pick_example(snr_of)
    if t and d and name:
        t_run, d_seed = next(iter(groups[t].values())), next(iter(groups[d]))
        d_run = groups[d][d_seed]
        tables = {"noisy": dev_tables["noisy"], "teacher": dev_tables[t_run], "student": dev_tables[d_run]}
        scores = {k: f"PESQ-WB {tab[name]['pesq']:.2f}, SI-SDR {tab[name]['si_sdr']:.1f} dB"
                  for k, tab in tables.items() if name in tab}
        png = fig_dir / "spectrograms.png"
        d_label = f"student {d}" + ("" if d_seed is None else f" seed {d_seed}")
        rf.spectrogram_figure(Path(args.devset), name, runs[t_run] / "best.safetensors", runs[d_run] / "best.safetensors",
                              png, labels=("teacher" if t_run == "teacher" else f"teacher ({t_run})", d_label), scores=scores)
        lines += ["## Spectrograms", "",
                  f"Dev file `{name}` (rule: the first file, by name, mixed at 0 dB), magnitude in dB "
                  f"(mtakd's STFT: 20 ms sqrt-Hann window, 10 ms hop); noisy / {t_run} / {d_label} / clean.", "",
                  f"![spectrograms]({os.path.relpath(png, out_dir)})", ""]
    return lines


def header(args, elapsed: float) -> list[str]:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cmd = "python benchmarks/results.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = ["# Results", "",
           f"Generated by `{cmd}` at commit `{commit}` in {elapsed:.0f} s on: {_machine()}. Scores per file are cached "
           "in each run folder; mean ± std is over seeds (sample std of the per-seed means; the mean alone for a "
           "single run). RTF: processing time / audio duration on 10 s of audio, best of 3, offline whole-utterance "
           "path, measured after all scoring.", ""]
    if Path(args.commands).is_file():
        out += [Path(args.commands).read_text().strip(), ""]
    return out


def build_report(args, groups, runs, scores, eff) -> tuple[list[str], dict]:
    """The report after its header, and the JSON data."""
    seeds = {v: list(s) for v, s in groups.items()}
    per_set = {k: {"noisy": [tabs["noisy"]], **{v: [tabs[n] for n in s.values()] for v, s in groups.items()}}
               for k, tabs in scores.items()}
    out = []
    targets = rt.check_targets(per_set["dev"], eff, args.method)
    out += ["## Targets (dev set, means over seeds)", "", "```"]
    out += [f"{t['status']:4}  {t['text']}" for t in targets] + ["```", ""]
    if eff:
        out += ["## Efficiency (measured once per architecture)", ""] + rt.efficiency_table(eff) + [
            "", "MMAC/s include the STFT/iSTFT; latency is algorithmic (window), none for the offline teacher.", ""]
    dev = per_set["dev"]
    n_dev, snrs = len(scores["dev"]["noisy"]), sorted({r["snr"] for r in scores["dev"]["noisy"].values() if r["snr"] == r["snr"]})
    out += [f"## Fixed dev set ({n_dev} files at {'/'.join(f'{s:g}' for s in snrs)} dB)", ""]
    legend = [f"{v} = {text}" for v in groups if (text := rt.describe(v))]
    out += rt.metric_table(dev, seeds) + ([""] + ["Variants: " + "; ".join(legend) + "."] if legend else [])
    out += ["", "Per SNR: PESQ-WB / SI-SDRi dB (means over seeds):", ""]
    out += rt.per_snr_table(dev) + [""]
    per_seed = rt.per_seed_table(dev, seeds)
    if per_seed:
        out += ["Per seed: PESQ-WB / SI-SDRi dB (each run's mean over the files):", ""] + per_seed + [""]
    d = args.method or rt.find_role(groups, "d")
    d_label = rt.method_label(d) if d else "(d)"
    a_b = (rt.find_role(groups, "a"), rt.find_role(groups, "b"))
    out += rt.within_seed_table(dev, seeds, d, d_label, a_b)
    if "vbd" in per_set:
        out += [f"## VoiceBank-DEMAND pairs in `{args.paired}` ({len(scores['vbd']['noisy'])} files)", ""]
        out += rt.metric_table(per_set["vbd"], seeds) + [""]
    spread_extra = {}
    for name, folder in args.extra:  # more dev sets: the dev set's tables and its seed-spread test
        snrs = sorted({r["snr"] for r in scores[name]["noisy"].values() if r["snr"] == r["snr"]})
        at = f" at {'/'.join(f'{s:g}' for s in snrs)} dB" if snrs else ""
        out += [f"## Set `{name}`: `{folder}` ({len(scores[name]['noisy'])} files{at})", ""]
        out += rt.metric_table(per_set[name], seeds) + [""]
        per_snr = rt.per_snr_table(per_set[name])
        if per_snr:
            out += ["Per SNR: PESQ-WB / SI-SDRi dB (means over seeds):", ""] + per_snr + [""]
        per_seed = rt.per_seed_table(per_set[name], seeds)
        if per_seed:
            out += ["Per seed: PESQ-WB / SI-SDRi dB (each run's mean over the files):", ""] + per_seed + [""]
        out += rt.within_seed_table(per_set[name], seeds, d, d_label, a_b)
        # the test on this set too (a result that holds on one set of files only is
        # weak), for the method and each variant it is compared with (--vs) other than (a), (b)
        spread_extra[name] = rt.spread_lines(per_set[name], d, d_label, a_b)
        for v in args.vs:
            if v not in a_b and v != d and v in groups:
                spread_extra[name] += rt.spread_lines(per_set[name], v, rt.method_label(v), a_b)
        out += [f"Seed-spread test on `{name}` (means over seeds):", "", "```"]
        out += [f"{t['status']:4}  {t['text']}" for t in spread_extra[name]] + ["```", ""]
    paired_raw = []
    others = {v: None for r in ("a", "b", "c", "d") if (v := rt.find_role(groups, r)) and v != d}
    for v in args.vs:
        others.setdefault(v, None)
    blocks = [(d, d_label, list(others))]
    role_d = rt.find_role(groups, "d")
    if args.method and role_d and role_d != d:  # the issue's own test: (d) against (a), (b), (c)
        blocks.append((role_d, "(d)", [v for r in ("a", "b", "c") if (v := rt.find_role(groups, r))]))
    for a, b in args.pair:  # extra comparisons the study asks for, e.g. one variant at two settings
        blocks.append((a, rt.method_label(a), [b]))
    for method, mlabel, vs in blocks:
        lines, raw = rt.paired_section(per_set, method, mlabel, vs, MIN_PAIRED_FILES)
        out += lines
        paired_raw += raw
    if not args.no_figures:
        fig_dir = Path(args.figures) if args.figures else Path(args.out).parent / "figures"
        out += _figures(args, groups, runs, scores["dev"], fig_dir, Path(args.out).parent)
    if Path(args.notes).is_file():
        out += [Path(args.notes).read_text().strip(), ""]
    data = {"sets": {k: {v: {m: rt.seed_stats(t, m) for m in rt.METRICS} for v, t in tabs.items()}
                     for k, tabs in per_set.items()},
            "per_snr": {v: {m: {str(s): x for s, x in rt.per_snr_means(t, m).items()} for m in ("pesq", "si_sdr_i")}
                        for v, t in dev.items()},
            "seeds": {v: s for v, s in seeds.items()}, "efficiency": eff, "paired": paired_raw, "targets": targets,
            "spread_extra": spread_extra}
    return out, data


def _pair(text: str) -> tuple[str, str]:
    """``"A:B"`` -> ``("A", "B")``: two different, non-empty variant names."""
    a, sep, b = text.partition(":")
    if not (sep and a and b) or a == b:
        raise argparse.ArgumentTypeError(f"expected two different variants as A:B, got '{text}'")
    return a, b


def _named_set(text: str) -> tuple[str, str]:
    """``"NAME=DIR"`` -> ``("NAME", "DIR")``; NAME a short identifier, not one of the built-in sets."""
    name, sep, folder = text.partition("=")
    if not (sep and folder and name.isidentifier()) or name in (*SETS, "noisy"):
        raise argparse.ArgumentTypeError(f"expected NAME=FOLDER with NAME an identifier other than "
                                         f"{', '.join(SETS)}, got '{text}'")
    return name, folder


def find_runs(ap: argparse.ArgumentParser, folder: str) -> tuple[Path, dict[str, Path]]:
    """``(root, {run name: run folder})`` of the folders under ``folder`` holding a
    ``best.safetensors``; none is a usage error of ``ap``."""
    root = Path(folder)
    runs = {p.parent.name: p.parent for p in sorted(root.glob("*/best.safetensors"))}
    if not runs:
        ap.error(f"no run folders (with best.safetensors) under {root}")
    return root, runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default="runs", help="folder of run folders (<variant>_s<seed>, teacher, ...)")
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--paired", default="../shared/data/paired/voicebank_demand_train_p287")
    ap.add_argument("--out", default="docs/results.md")
    ap.add_argument("--figures", help="folder for the PNGs (default: figures/ next to --out)")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="scoring processes (1 torch thread each)")
    ap.add_argument("--method", help="variant judged as the method in the targets and paired tests "
                    "(default: the d_ variant), e.g. an improved one such as h_mtakd_tf_sisdr")
    ap.add_argument("--vs", action="append", default=[], metavar="VARIANT",
                    help="also compare the method per file with this variant (repeatable; a, b, c, d always)")
    ap.add_argument("--pair", action="append", default=[], type=_pair, metavar="A:B",
                    help="also compare variant A with variant B per file (repeatable), e.g. one variant "
                         "trained two ways")
    ap.add_argument("--extra", type=_named_set, action="append", default=[], metavar="NAME=DIR",
                    help="also score and report this paired set (repeatable), e.g. steady=data/devset_steady; "
                         "its per-file scores are cached as <run>/NAME.csv")
    ap.add_argument("--rescore", action="store_true", help="score every run again, ignoring cached per-file CSVs")
    ap.add_argument("--commands", default="docs/results_commands.md", help="markdown with the commands that made the runs")
    ap.add_argument("--notes", default="docs/results_notes.md", help="markdown appended after the tables (interpretation)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    root, runs = find_runs(ap, args.runs)
    groups = rt.group_runs(runs)
    for v in ([args.method] if args.method else []) + args.vs + [v for p in args.pair for v in p]:  # before scoring
        if v not in groups:
            ap.error(f"no variant '{v}' under {args.runs} (have: {', '.join(groups)})")
    sets = {"dev": args.devset}
    if Path(args.paired).is_dir():
        sets["vbd"] = args.paired
    else:
        print(f"no VoiceBank-DEMAND folder at {args.paired}: dev set only", file=sys.stderr)
    for name, folder in args.extra:
        if name in sets:
            ap.error(f"--extra {name}: given twice")
        if not Path(folder).is_dir():
            ap.error(f"--extra {name}={folder}: no such folder (a paired set: noisy/, clean/)")
        sets[name] = folder
    scores = score_all(runs, sets, root / "_scores", args.rescore, max(1, args.jobs))
    eff = measure_efficiency(groups, runs)
    body, data = build_report(args, groups, runs, scores, eff)
    Path(args.out).write_text("\n".join(header(args, time.time() - t0) + body) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
