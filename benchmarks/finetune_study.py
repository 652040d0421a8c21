"""Compare a handful of run folders file by file: quality, output level, paired tests.

    PYTHONPATH=src python benchmarks/finetune_study.py --runs runs/cpu3 --devset data/devset \
        --pair student_ft_d:student_ft_a --pair student_ft_d:shipped_before --out docs/finetune.md

For studies that are not the seeded five-variant grid of ``benchmarks/results.py`` (e.g.
fine-tuning the shipped models with ``--init``): every folder under ``--runs`` with a
``best.safetensors`` is one system. Each is scored on the dev set with
``mtakd.evaluate.evaluate`` (per-file CSV cached in the run folder, shared with
``results.py``), its output level and compressed-spectrum loss are measured on the same
files (``output_level.py``: PESQ, STOI and SI-SDR cannot see a level error), and each
``--pair A:B`` gets a per-file paired test of A - B (Wilcoxon, bootstrap CI). The training
recipe of each run (init, kd mode, steps, batch, lr) is read from its ``config.yaml`` and
``epochs.csv``. ``--group NAME`` adds a mean +/- std over seeds of the runs ``NAME_s<seed>``
(e.g. one recipe at three seeds against another).
"""
from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import results_tables as rt  # noqa: E402
from output_level import level_and_loss  # noqa: E402
from results import _machine, find_runs, score_all  # noqa: E402

METRICS = ["pesq", "stoi", "estoi", "si_sdr_i", "csig", "cbak", "covl"]


def averaged(path: Path) -> str | None:
    """For a weight average (``mtakd average``): what it averages, from its training record."""
    from mtakd.checkpoint import read_checkpoint

    parts = (read_checkpoint(path)[1].get("train") or {}).get("averaged_from")
    if not parts:
        return None
    equal = len({round(p["weight"], 9) for p in parts}) == 1
    items = ", ".join(f"`{p['path']}`" + ("" if equal else f" ({p['weight']:.3g})") for p in parts)
    return f"{'uniform' if equal else 'weighted'} weight average (`mtakd average`) of {len(parts)} checkpoints: {items}"


def recipe(run: Path) -> str:
    """One line: how the run was trained, from its saved config and logs."""
    import yaml

    from mtakd.config import LossConfig

    cfg_path = run / "config.yaml"
    if not cfg_path.is_file():
        return averaged(run / "best.safetensors") or "(no config.yaml: a copied checkpoint)"
    cfg = yaml.safe_load(cfg_path.read_text())
    rows = list(csv.DictReader(open(run / "epochs.csv"))) if (run / "epochs.csv").is_file() else []
    steps = rows[-1]["step"] if rows else "?"
    loss, optim = cfg["loss"], cfg["optim"]
    tf, d = "", LossConfig()
    if loss.get("tf_weight"):  # the T-F weights' shape is named when it is not the default
        shape = [f"{k} {loss[k]:g}" for k in ("tf_gamma", "tf_floor") if k in loss and loss[k] != getattr(d, k)]
        tf = " + T-F weights" + (f" ({', '.join(shape)})" if shape else "")
    # the learned weights' own lr decides whether they reach their equilibrium: named when changed
    lv = loss.get("log_var_lr_scale", d.log_var_lr_scale)
    lv = f" (log-variance lr x{lv:g})" if loss["kd"] == "mtakd" and lv != d.log_var_lr_scale else ""
    kd = loss["kd"] + tf + lv + (
        " + teacher error" if loss.get("kd_teacher_error") else "") + (
        " + SI-SDR in both tasks (kd_sisdr)" if loss.get("kd_sisdr") and loss["kd"] != "none" else "")
    init = cfg.get("init") or "scratch"
    model = cfg["model"]["name"]
    margs = cfg["model"].get("args") or {}
    if model == "student":  # the recurrent cell and size, which studies of the student vary
        ahead = f", look-ahead {margs['lookahead']}" if margs.get("lookahead") else ""
        model += f" ({str(margs.get('cell', 'gru')).upper()} {margs.get('layers', '?')}x{margs.get('hidden', '?')}{ahead})"
    teacher = f", teacher `{cfg['teacher']}`" if cfg.get("teacher") else ""
    scales = ", ".join(f"{k} x{v:g}" for k, v in (optim.get("lr_scale") or {}).items())
    return (f"{model} from `{init}`, kd {kd}{teacher}, {steps} steps x {optim['batch_size']} x "
            f"{cfg['data']['segment_s']:g} s, lr {optim['lr']:g}{f' ({scales})' if scales else ''}, "
            f"SI-SDR weight {loss.get('sisdr_weight', 0):g}, seed {cfg['seed']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", required=True, help="folder of run folders, one system each")
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--pair", action="append", default=[], metavar="A:B", help="paired test of run A against run B")
    ap.add_argument("--group", action="append", default=[], metavar="NAME",
                    help="mean +/- std over the runs NAME_s<seed> (repeatable)")
    ap.add_argument("--level-files", type=int, default=24, help="evenly spaced dev files for the level measurement")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--title", default="Fine-tuning study")
    ap.add_argument("--notes", help="markdown appended after the tables")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    root, runs = find_runs(ap, args.runs)
    pairs = [tuple(p.split(":", 1)) for p in args.pair]
    for a, b in pairs:
        for n in (a, b):
            if n not in runs:
                ap.error(f"--pair {a}:{b}: no run '{n}' under {root} (runs: {', '.join(runs)})")
    groups = {g: sorted(n for n in runs if n.rsplit("_s", 1)[0] == g and n.rsplit("_s", 1)[-1].isdigit())
              for g in args.group}
    for g, members in groups.items():
        if len(members) < 2:
            ap.error(f"--group {g}: needs at least two runs named {g}_s<seed> under {root}, found {len(members)}")
    tables = score_all(runs, {"dev": args.devset}, root / "_scores", False, max(1, args.jobs))["dev"]
    levels = {n: level_and_loss(run / "best.safetensors", args.devset, args.level_files) for n, run in runs.items()}
    noisy_level = level_and_loss(None, args.devset, args.level_files)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    cmd = "python benchmarks/finetune_study.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    out = [f"# {args.title}", "",
           f"Generated by `{cmd}` at commit `{commit}` in {time.time() - t0:.0f} s on: {_machine()}. Dev set "
           f"`{args.devset}` ({len(tables['noisy'])} files). Level: mean over {args.level_files} evenly spaced files of "
           "20 log10(rms(output) / rms(clean)); spectral loss: the training loss's compressed-spectrum term.", "",
           "| system | " + " | ".join(rt.LABEL[m] for m in METRICS) + " | level dB | spectral loss |",
           "|---|" + "---|" * (len(METRICS) + 2)]
    for name, table in {"noisy": tables["noisy"], **{n: tables[n] for n in runs}}.items():
        lv = noisy_level if name == "noisy" else levels[name]
        cells = [rt.fmt(rt.table_mean(table, m), rt.DIGITS[m]) for m in METRICS]
        out.append(f"| {name} | " + " | ".join(cells) + f" | {lv[0]:+.1f} | {lv[1]:.4f} |")
    if groups:
        import numpy as np

        out += ["", "## Mean +/- std over seeds", "",
                "Each run's mean over the dev files, then the mean and sample std of those means over its seeds.", "",
                "| recipe | seeds | " + " | ".join(rt.LABEL[m] for m in METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
        for g, members in groups.items():
            cells = []
            for m in METRICS:
                v = np.array([rt.table_mean(tables[n], m) for n in members])
                cells.append(f"{rt.fmt(v.mean(), rt.DIGITS[m])} +/- {rt.fmt(v.std(ddof=1), rt.DIGITS[m])}")
            out.append(f"| {g} | {', '.join(n.rsplit('_s', 1)[1] for n in members)} | " + " | ".join(cells) + " |")
    if pairs:
        out += ["", "## Paired per-file tests", "",
                "| comparison | metric | files | mean diff | 95 % bootstrap CI | Wilcoxon p | files A better |",
                "|---|---|---|---|---|---|---|"]
        for a, b in pairs:
            for m in ("pesq", "si_sdr_i", "stoi"):
                r = rt.paired_test(tables[a], tables[b], m)
                p = "-" if r["p"] != r["p"] else (f"{r['p']:.2g}" if r["p"] >= 1e-4 else f"{r['p']:.1e}")
                dg = rt.DIGITS[m]
                out.append(f"| {a} - {b} | {rt.LABEL[m]} | {r['n']} | {rt.fmt(r['mean_diff'], dg)} | "
                           f"[{rt.fmt(r['ci_low'], dg)}, {rt.fmt(r['ci_high'], dg)}] | {p} | {r['wins']}/{r['n']} |")
    out += ["", "## How each run was trained", ""] + [f"- **{n}**: {recipe(run)}" for n, run in runs.items()]
    if args.notes and Path(args.notes).is_file():
        out += ["", Path(args.notes).read_text().strip()]
    Path(args.out).write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
