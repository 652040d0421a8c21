"""``mtakd evaluate CKPT PAIRED_DIR``: quality on paired files plus the model's efficiency.

Per file: PESQ (WB at 16 kHz), STOI, ESTOI, SI-SDR and its improvement over the noisy
input, segmental SNR, CSIG/CBAK/COVL (``metrics.evaluate_pair``). Summary: means, per-SNR
means when the folder has a ``manifest.csv`` with an ``snr`` column (``build-devset``
writes one), and parameters, MACs/s, CPU real-time factor (1 thread and default threads)
and algorithmic latency. ``CKPT`` may be ``noisy`` to score the unprocessed input.

A pair that cannot be read (bad audio, lengths that differ) is listed in ``result["failed"]``
with a one-line message and the others are still scored; the CLI then prints one ``mtakd:
error:`` line per failed pair and exits 1. A pair too short or too quiet for some metrics
(PESQ needs 0.25 s, STOI ~0.4 s of speech) is kept: those metrics are NaN for it, left out of
the means, and the report counts them. The checkpoint is only read; the per-file CSV is
written atomically.
"""
from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

# torch, the data readers and the metrics are imported where used: the CLI imports this
# module for its arguments, and ``mtakd --help`` should not load torch
from .stft_np import SAMPLE_RATE

if TYPE_CHECKING:  # torch is imported lazily: `mtakd --help` must stay fast
    import torch

QUALITY_KEYS = ["pesq", "stoi", "estoi", "si_sdr", "si_sdr_i", "seg_snr", "csig", "cbak", "covl"]
#: below this CPU share of the one-thread RTF timing, the process waited for a core
BUSY_SHARE = 0.9


def _nanmean(values: list[float]) -> float:
    v = [x for x in values if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def _snr_of(root: Path) -> dict[str, float]:
    man = root / "manifest.csv"
    if not man.is_file():
        return {}
    with open(man, newline="") as f:
        return {r["name"]: float(r["snr"]) for r in csv.DictReader(f) if r.get("snr") not in (None, "")}


def _orig_rate(root: Path, name: str) -> int:
    """Sample rate of the clean reference file as stored (before loading resamples it)."""
    from .audio import AudioError, audio_info

    try:
        return audio_info(root / "clean" / name).orig_sr
    except AudioError:
        return SAMPLE_RATE


def efficiency(model: torch.nn.Module, seconds: float = 10.0) -> dict[str, float]:
    """Parameters, MACs/s, RTF at 1 thread and at the default thread count, latency."""
    import torch

    from .efficiency import algorithmic_latency_ms, efficiency_report, real_time_factor
    from .inference import enhance_waveform

    rep = efficiency_report(model)
    wav = torch.randn(int(seconds * SAMPLE_RATE)) * 0.1
    fn = lambda x: enhance_waveform(model, x)  # noqa: E731
    # at one torch thread the work runs on this thread, so its CPU time over the wall time says
    # whether it had a core to itself (about 1) or waited for one (the RTF is then inflated)
    cpu0, wall0 = time.thread_time(), time.perf_counter()
    rtf_1thread = real_time_factor(fn, wav, threads=1)
    share = (time.thread_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return {
        "params": rep["params"],
        "macs_per_s": rep["macs_per_s"],
        "rtf_1thread": rtf_1thread,
        "cpu_share_1thread": round(share, 3),
        "rtf_default": real_time_factor(fn, wav, threads=os.cpu_count() or 1),
        "latency_ms": algorithmic_latency_ms(model),
    }


def evaluate(
    model: torch.nn.Module | str | Path | None,
    paired_dir: str | Path,
    out_csv: str | Path | None = None,
    max_files: int | None = None,
    with_efficiency: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``model`` (a model, a checkpoint path, or None for the noisy input) on ``paired_dir``.

    Returns ``{"summary": {metric: mean}, "per_snr": {snr: {metric: mean}}, "files": [rows],
    "failed": [(name, one-line message)], "efficiency": {...}}``; writes the per-file rows to
    ``out_csv`` when given.
    """
    from .audio import AudioError, resample, write_atomic, write_error
    from .checkpoint import load_model
    from .data import PairedDataset
    from .inference import enhance_waveform
    from .metrics import evaluate_pair

    if isinstance(model, (str, Path)):
        model = None if str(model) == "noisy" else load_model(model)
    root = Path(paired_dir)
    ds = PairedDataset(root, max_files=max_files)
    snrs = _snr_of(root)
    rows: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    it = range(len(ds))
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="evaluate", leave=False, dynamic_ncols=True, disable=None)  # off when not a terminal
    for i in it:
        try:
            item = ds[i]
        except AudioError as e:  # unreadable file, NaN samples, lengths that differ, ...
            failed.append((ds.names[i], " ".join(str(e).split())))
            continue
        noisy, clean = item["noisy"], item["clean"]
        est = noisy if model is None else enhance_waveform(model, noisy)
        sigs = [clean.numpy(), est.numpy(), noisy.numpy()]
        # narrow-band material (< 16 kHz originals) is scored as such: back to 8 kHz, PESQ-NB;
        # upsampled 8 kHz audio has no content above 4 kHz for PESQ-WB to judge fairly
        sr_metric = SAMPLE_RATE if _orig_rate(root, item["name"]) >= SAMPLE_RATE else 8000
        if sr_metric != SAMPLE_RATE:
            sigs = [resample(x, SAMPLE_RATE, sr_metric) for x in sigs]
        try:
            m = evaluate_pair(sigs[0], sigs[1], sr_metric, noisy=sigs[2])
        except (ValueError, IndexError, RuntimeError, FloatingPointError) as e:  # not expected: metrics give NaN
            failed.append((item["name"], f"{root / 'noisy' / item['name']}: could not be scored ({type(e).__name__}: "
                           f"{' '.join(str(e).split())})"))
            continue
        rows.append({"name": item["name"], "snr": snrs.get(item["name"], float("nan")), "metric_sr": sr_metric,
                     **{k: m.get(k, float("nan")) for k in QUALITY_KEYS}})
    summary = {k: _nanmean([r[k] for r in rows]) for k in QUALITY_KEYS}
    per_snr: dict[float, dict[str, float]] = {}
    for snr in sorted({r["snr"] for r in rows if math.isfinite(r["snr"])}):
        group = [r for r in rows if r["snr"] == snr]
        per_snr[snr] = {k: _nanmean([r[k] for r in group]) for k in QUALITY_KEYS}
    if out_csv is not None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, ["name", "snr", "metric_sr", *QUALITY_KEYS])
        w.writeheader()
        w.writerows(rows)
        try:
            Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(Path(out_csv).parent, e) from None
        write_atomic(out_csv, buf.getvalue().encode("utf-8"))
    eff = efficiency(model) if (with_efficiency and model is not None) else {}
    return {"summary": summary, "per_snr": per_snr, "files": rows, "failed": failed, "efficiency": eff, "n_files": len(rows)}


def format_report(name: str, result: dict[str, Any]) -> str:
    s, e = result["summary"], result["efficiency"]
    lines = [f"{name}: {result['n_files']} files"]
    lines.append("  " + "  ".join(f"{k.upper()} {s[k]:.3f}" for k in QUALITY_KEYS))
    unscored = {k: sum(1 for r in result["files"] if not math.isfinite(r[k])) for k in QUALITY_KEYS}
    unscored = {k: n for k, n in unscored.items() if n}
    if unscored:
        lines.append("  not scored (NaN: too short or silent; left out of the means): "
                     + ", ".join(f"{k.upper()} {n}" for k, n in unscored.items()))
    for snr, g in result["per_snr"].items():
        lines.append(f"  SNR {snr:+g} dB: PESQ {g['pesq']:.3f}  STOI {g['stoi']:.3f}  SI-SDRi {g['si_sdr_i']:.2f}")
    if e:
        lines.append(
            f"  params {e['params']:,}  MACs/s {e['macs_per_s'] / 1e6:.1f} M  RTF(1 thread) {e['rtf_1thread']:.4f}  "
            f"RTF(default) {e['rtf_default']:.4f}  latency {e['latency_ms']:.0f} ms"
        )
        if e.get("cpu_share_1thread", 1.0) < BUSY_SHARE:
            lines.append(f"  (CPU share {e['cpu_share_1thread']:.2f} during the 1-thread timing: the host was busy, "
                         "so the RTF is inflated; time it again on a quiet machine)")
    return "\n".join(lines)


def register_cli(sub) -> None:
    p = sub.add_parser("evaluate", help="score a checkpoint (or 'noisy') on a paired noisy/clean folder")
    p.add_argument("checkpoint", help="model checkpoint, or 'noisy' for the unprocessed input")
    p.add_argument("paired_dir", help="folder with noisy/ and clean/ (same file names)")
    p.add_argument("-o", "--out", help="per-file CSV to write")
    p.add_argument("--max-files", type=int)
    p.add_argument("--no-efficiency", action="store_true", help="skip parameter/MAC/RTF measurements")
    p.set_defaults(func=_cmd)


def _cmd(args) -> int:
    import sys

    result = evaluate(args.checkpoint, args.paired_dir, args.out, args.max_files, with_efficiency=not args.no_efficiency)
    print(format_report(str(args.checkpoint), result), flush=True)
    failed = result.get("failed", [])
    for _, msg in failed:
        print(f"mtakd: error: {msg}", file=sys.stderr)
    if failed:
        print(f"mtakd: {len(failed)} of {len(failed) + result['n_files']} pair(s) failed; the summary covers the "
              f"{result['n_files']} scored", file=sys.stderr)
    return 1 if failed else 0
