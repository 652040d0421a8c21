"""Training logs of runs that saw the same batches, side by side; and the size of a student's look-ahead weights.

    python benchmarks/run_compare.py --base runs/cpu18/ctl runs/cpu18/la1 runs/cpu18/la3 --at 20 1000 --block 250
    python benchmarks/run_compare.py --weights runs/cpu18/la3/best.safetensors

Runs started from the same checkpoint with the same seed draw the same mixtures in the same order
(``EpochSampler``), so their ``steps.csv`` losses at one step are a paired comparison on
identical batches: far more sensitive than validation on 24 files. ``--at`` prints the logged
rows at those steps; ``--block`` the mean difference (run - base) per block of steps.
``--weights`` prints the Frobenius norm and max |w| of ``fc_in`` and of the look-ahead weights
(``fc_ahead``; or, in files from the first look-ahead design, ``fc_in``'s columns past the first
frame), read from the checkpoint without building the model (files of the first design no longer load).
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

#: the steps.csv columns compared, those that every compared run logs (no KD: no kd, no w_*;
#: kd_sisdr only with loss.kd_sisdr): the loss terms, then the learned task weights
TERMS = ("sup", "kd", "sisdr", "kd_sisdr", "w_sup", "w_kd", "wL_sup", "wL_kd")
#: derived columns: each task's weighted loss w_i * L_i. Uncertainty weighting's optimum is
#: w_i = 1 / (2 L_i), so both settle near 0.5 whatever a task's size: the learned weights scale
#: each task by its own loss (the total is 0.5 log L_sup + 0.5 log L_kd), they do not rank tasks.
#: With loss.kd_teacher_error the KD task's loss is kd + teacher_err, so wL_kd settles below 0.5
DERIVED = {"wL_sup": ("w_sup", "sup"), "wL_kd": ("w_kd", "kd")}


def _steps(run: Path) -> dict[int, dict]:
    path = run / "steps.csv"
    if not path.is_file():
        sys.exit(f"error: {path}: no steps.csv (is {run} a run folder?)")
    with open(path, newline="") as f:
        rows = {int(r["step"]): r for r in csv.DictReader(f)}
    for r in rows.values():
        for name, (w, loss) in DERIVED.items():
            if r.get(w) and r.get(loss):
                r[name] = str(float(r[w]) * float(r[loss]))
    return rows


def compare(base: Path, runs: list[Path], at: list[int], block: int) -> list[str]:
    paths = [base, *runs]
    names = [r.name for r in paths]
    if len(set(names)) < len(names):  # the same run name in two studies: label by the path
        names = [str(r) for r in paths]
    logs = {n: _steps(r) for n, r in zip(names, paths)}
    terms = [t for t in TERMS if all(all(t in row for row in d.values()) for d in logs.values())]
    lines = []
    for s in at:
        cells = [f"{n} " + " ".join(f"{t} {float(d[s][t]):.4g}" for t in terms) for n, d in logs.items() if s in d]
        lines.append(f"step {s}: " + " | ".join(cells))
    common = sorted(set.intersection(*(set(d) for d in logs.values())))
    b = logs[names[0]]
    for lo in range(0, (common[-1] + 1) if common else 0, block):
        ss = [s for s in common if lo <= s < lo + block]
        if not ss:
            continue
        cells = []
        for n in names[1:]:
            d = logs[n]
            diffs = [np.mean([float(d[s][t]) - float(b[s][t]) for s in ss]) for t in terms]
            cells.append(f"{n} - {names[0]}: " + " ".join(f"{t} {v:+.4f}" for t, v in zip(terms, diffs)))
        lines.append(f"steps {lo}-{lo + block - 1} ({len(ss)} rows): " + " | ".join(cells))
    return lines


def weight_sizes(path: Path) -> str:
    from mtakd.checkpoint import read_checkpoint

    tensors, meta = read_checkpoint(path)[:2]
    args = meta["model"]["args"]
    fc_in = tensors["model.fc_in.weight"].numpy()
    d = (3 if args.get("phase_input") else 1) * int(args.get("n_freq", 161))
    ahead = tensors["model.fc_ahead.weight"].numpy() if "model.fc_ahead.weight" in tensors else None
    if ahead is None and fc_in.shape[1] > d:  # first design: one fc_in over the whole window
        fc_in, ahead = fc_in[:, :d], fc_in[:, d:]
    out = f"{path}: fc_in norm {np.linalg.norm(fc_in):.3f} max {np.abs(fc_in).max():.3f}"
    if ahead is not None:
        out += f"; look-ahead norm {np.linalg.norm(ahead):.3f} max {np.abs(ahead).max():.3f}"
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", type=Path, help="run folders to compare with --base")
    ap.add_argument("--base", type=Path, help="the run the others are compared with")
    ap.add_argument("--at", type=int, nargs="*", default=[], help="steps whose logged rows to print")
    ap.add_argument("--block", type=int, default=250, help="steps per block of mean differences")
    ap.add_argument("--weights", type=Path, nargs="*", default=[], help="checkpoints whose fc_in / look-ahead sizes to print")
    args = ap.parse_args(argv)
    if args.runs and not args.base:
        ap.error("--base is needed to compare runs")
    if args.base:
        print("\n".join(compare(args.base, args.runs, args.at, args.block)))
    from mtakd.checkpoint import CheckpointError

    for p in args.weights:
        try:
            print(weight_sizes(p))
        except CheckpointError as e:
            sys.exit(f"error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
