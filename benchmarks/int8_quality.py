"""Quality change of dynamic int8 quantisation of the student's streaming ONNX graph.

    PYTHONPATH=src python benchmarks/int8_quality.py --student src/mtakd/pretrained/student.safetensors \
        --devset data/devset --out docs/benchmarks.md

Exports the per-hop step graph (float) and its dynamic int8 copies: ``int8`` is what ``mtakd
export --quantize`` writes (one scale per output unit of each weight matrix; the DFT matmuls
stay float), ``int8 per-tensor`` the earlier default (one scale per matrix). Streams every dev
file through all three with onnxruntime at one thread and scores the outputs with the same
metrics as ``mtakd evaluate``. Reports the means, the per-file mean difference (int8 - float)
and the worst file, and the SNR of each int8 output against the float output.
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/torch load

import argparse
import time
from pathlib import Path

import numpy as np

from mtakd.audio import load_audio
from mtakd.checkpoint import load_checkpoint
from mtakd.export import onnx_bytes, quantize_bytes
from mtakd.metrics import evaluate_pair
from mtakd.ort_runtime import enhance_array, open_session

KEYS = ("pesq", "stoi", "estoi", "si_sdr_i", "csig", "cbak", "covl")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", default="src/mtakd/pretrained/student.safetensors")
    ap.add_argument("--devset", default="data/devset")
    ap.add_argument("--max-files", type=int, default=0, help="0: all")
    ap.add_argument("--out", help="markdown file to update (its 'int8' section)")
    ap.add_argument("--json", default="runs/bench/int8.json")
    args = ap.parse_args()
    info = bc.machine_info()
    model = load_checkpoint(args.student)[0]
    fp32 = onnx_bytes(model, "step")[0]
    sessions = {"float": open_session(fp32), "int8": open_session(quantize_bytes(fp32)),
                "int8 per-tensor": open_session(quantize_bytes(fp32, per_channel=False))}
    int8 = [k for k in sessions if k != "float"]
    names = sorted(p.name for p in (Path(args.devset) / "noisy").iterdir() if p.suffix in (".wav", ".flac"))
    if args.max_files:
        names = names[:: max(1, len(names) // args.max_files)][: args.max_files]
    rows, snrs, t0 = {k: [] for k in sessions}, {k: [] for k in int8}, time.time()
    for name in names:
        x = load_audio(Path(args.devset) / "noisy" / name)[0]
        ref = load_audio(Path(args.devset) / "clean" / name)[0]
        out = {k: enhance_array(s, x)[: ref.size] for k, s in sessions.items()}
        for k, y in out.items():
            rows[k].append(evaluate_pair(ref, y, noisy=x))
        for k in int8:
            err = out[k] - out["float"]
            snrs[k].append(10 * np.log10(np.sum(out["float"] ** 2) / max(np.sum(err**2), 1e-20)))
    mean = {k: {m: float(np.nanmean([r[m] for r in v])) for m in KEYS} for k, v in rows.items()}
    diff = {k: {m: np.array([b[m] - a[m] for a, b in zip(rows["float"], rows[k])]) for m in KEYS} for k in int8}
    lines = [*bc.machine_lines(bc.finish_machine_info(info)),
             f"- {len(names)} dev files, {time.time() - t0:.0f} s; onnxruntime streaming at 1 thread, all graphs from one export",
             "", "| graph | " + " | ".join(KEYS) + " |", "|---|" + "---|" * len(KEYS)]
    for k in sessions:
        lines.append(f"| {k} | " + " | ".join(f"{mean[k][m]:.3f}" for m in KEYS) + " |")
    for k in int8:
        lines.append(f"| {k} - float, mean per file | " + " | ".join(f"{np.nanmean(diff[k][m]):+.3f}" for m in KEYS) + " |")
        lines.append(f"| {k} - float, worst file | " + " | ".join(f"{np.nanmin(diff[k][m]):+.3f}" for m in KEYS) + " |")
    lines.append("")
    for k in int8:
        lines.append(f"- Output SNR of {k} against float: median {np.median(snrs[k]):.1f} dB, worst "
                     f"{np.min(snrs[k]):.1f} dB ({names[int(np.argmin(snrs[k]))]}).")
    print("\n".join(lines))
    bc.publish(args, "int8", lines, {"mean": mean, "snr_db": {k: [float(v) for v in snrs[k]] for k in int8}, "files": names})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
