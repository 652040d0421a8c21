"""Run-folder bookkeeping: the folder itself, CSV logs (and optional TensorBoard), console lines.

Only rank 0 writes (``enabled=False`` elsewhere), so distributed runs log once. Rows are
appended; every rewrite of a CSV (new columns, dropping rows on resume) goes through a
temporary file and a rename (``mtakd.atomic``), so a kill never empties a log. Write errors
are ``OSError``s; the trainer turns them into a one-line ``TrainingError``.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from .atomic import remove_temp_files, write_bytes_atomic
from .config import ConfigError


def prepare_run_dir(run_dir: Path, resume: bool) -> None:
    """Create/check the run folder: a new run needs an empty (or missing) folder, ``--resume``
    a ``train_state``. Temporary files of a killed run's atomic writes are removed."""
    state = run_dir / "train_state.safetensors"
    if resume and not state.exists():
        raise ConfigError(f"--resume: {state} does not exist; start without --resume")
    if not resume and run_dir.is_dir() and any(not _is_temp(p) for p in run_dir.iterdir()):
        raise ConfigError(f"run folder {run_dir} already holds a run; use --resume to continue it or choose another run_dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        remove_temp_files(run_dir)  # ``.*.tmp`` left by atomic writes of a run that was killed
        probe = run_dir / ".write_test.tmp"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"run folder {run_dir} is not writable ({e.strerror}); choose another run_dir") from None


def _is_temp(p: Path) -> bool:
    """A hidden ``.*.tmp`` file: what an atomic write that was killed leaves behind."""
    return p.name.startswith(".") and p.name.endswith(".tmp")


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
        if new:  # the header grows: rewrite the file with the old rows under the new header
            rows = self._complete_rows() if self.path.exists() else []
            self.fields += new
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields).writerow({k: _fmt(v) for k, v in row.items()})

    def truncate_after(self, key: str, value: float) -> None:
        """Drop rows logged after the resume point (``row[key] > value``) so logs stay consistent,
        and rows a kill cut short (an unterminated last line, missing or surplus fields)."""
        if not self.enabled or not self.path.exists():
            return
        rows = [r for r in self._complete_rows() if _number(r.get(key)) is not None and _number(r[key]) <= value]
        self._rewrite(rows)

    def _complete_rows(self) -> list[dict[str, str]]:
        text = self.path.read_text()
        if not text.endswith("\n"):  # the last row was being appended when the process died
            text = text[: text.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        self.fields = list(reader.fieldnames or self.fields)
        # DictReader gives None for missing fields and a None key for surplus ones
        return [r for r in reader if None not in r and None not in r.values()]

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        buf = io.StringIO(newline="")
        w = csv.DictWriter(buf, self.fields)
        w.writeheader()
        w.writerows(rows)
        write_bytes_atomic(self.path, buf.getvalue().encode("utf-8"))


def _number(v: str | None) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


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


# ----------------------------------------------------------------------------- console
def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def print_epoch(row: dict[str, Any], uncertainty=None) -> None:
    """One console line per epoch; ``uncertainty`` (the loss's module, if any) names the task weights."""
    parts = [f"epoch {row['epoch']}", f"step {row['step']}", f"loss {row.get('train_loss', float('nan')):.4f}"]
    parts += [f"val PESQ {row['val_pesq']:.3f}", f"SI-SDR {row['val_si_sdr']:.2f} dB"]
    if uncertainty is not None:
        parts += [f"w_{n} {row.get('train_w_' + n, float('nan')):.3f}" for n in uncertainty.names]
    print(" | ".join(parts) + (" *" if row["best"] else ""), flush=True)
