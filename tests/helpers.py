"""Small helpers shared by test modules (tests/ is on sys.path under pytest)."""
from __future__ import annotations

import csv
from pathlib import Path


def read_csv_rows(path: str | Path) -> list[dict]:
    """All rows of a CSV log (steps.csv, epochs.csv, manifests) as dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
