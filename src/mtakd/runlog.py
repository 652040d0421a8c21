"""Run-folder bookkeeping: CSV logs (and optional TensorBoard), console lines.

Only rank 0 writes (``enabled=False`` elsewhere), so distributed runs log once.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class CsvLog:
    """Append rows to a CSV whose columns may grow; existing rows are kept on resume."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = Path(path), enabled
        self.fields: list[str] = []
        if enabled and self.path.exists():
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), [])

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        new = [k for k in row if k not in self.fields]
        if new:
            rows = []
            if self.path.exists():
                with open(self.path, newline="") as f:
                    rows = list(csv.DictReader(f))
            self.fields += new
            with open(self.path, "w", newline="") as f:
                w = csv.DictWriter(f, self.fields)
                w.writeheader()
                w.writerows(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: _fmt(v) for k, v in row.items()})

    def truncate_after(self, key: str, value: float) -> None:
        """Drop rows logged after the resume point (``row[key] > value``) so logs stay consistent."""
        if not self.enabled or not self.path.exists():
            return
        with open(self.path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if float(r.get(key) or 0) <= value]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields)
            w.writeheader()
            w.writerows(rows)


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


class RunLog:
    """``steps.csv`` (every log interval) and ``epochs.csv`` (every epoch), plus TensorBoard."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = False):
        self.steps = CsvLog(run_dir / "steps.csv", enabled)
        self.epochs = CsvLog(run_dir / "epochs.csv", enabled)
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional extra
                print("tensorboard is not installed (pip install 'mtakd[tensorboard]'); logging to CSV only")
            else:
                self.tb = SummaryWriter(str(run_dir / "tb"))

    def step(self, row: dict[str, Any]) -> None:
        self.steps.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(f"train/{k}", v, row["step"])

    def epoch(self, row: dict[str, Any]) -> None:
        self.epochs.write(row)
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(f"epoch/{k}", v, row["step"])

    def rewind(self, step: int, epoch: int) -> None:
        self.steps.truncate_after("step", step)
        self.epochs.truncate_after("epoch", epoch)
