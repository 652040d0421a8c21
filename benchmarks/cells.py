"""Students side by side (cell, width): one pipeline timed per runtime at one thread, in one run.

    PYTHONPATH=src python benchmarks/cells.py --student gru=src/mtakd/pretrained/student.safetensors \
        --student lstm80=lstm:80 --student lstm96=lstm:96 \
        --teacher src/mtakd/pretrained/teacher.safetensors --out docs/benchmarks.md

Why: PyTorch on the CPU runs a whole ``nn.LSTM`` sequence in one oneDNN primitive, but an
``nn.GRU`` one time step at a time (several ATen calls per step and layer), so at equal MACs the
cell decides the student's offline PyTorch speed, and with it the teacher/student RTF ratio
(the teacher is an LSTM, so it already gets oneDNN). onnxruntime runs either as one op.

Each ``--student LABEL=CKPT`` (or ``LABEL=cell:hidden`` for an untrained one of that cell and
width: speed does not depend on the weights) and the teacher are timed on the same 10 s of
audio, round-robin over the systems (as ``speed.py`` does, whose system classes this reuses):
PyTorch offline (``enhance_waveform``), PyTorch streaming (one 160-sample hop per ``feed``),
onnxruntime streaming (one-hop step graph) and onnxruntime offline. Reported: RTF best-of and
median, per-hop median / p99 for streaming, and teacher RTF / student RTF for every runtime.
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/torch load

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from speed import Offline, Streaming, time_round_robin

RUNTIMES = ("PyTorch offline", "PyTorch streaming", "onnxruntime streaming", "onnxruntime offline")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", action="append", metavar="LABEL=CKPT|LABEL=CELL:HIDDEN",
                    help="a student to time (repeatable); default: gru=gru:96 lstm=lstm:80, untrained")
    ap.add_argument("--teacher", help="teacher checkpoint; default: untrained default-size teacher")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", help="markdown file to update (its 'cells' section)")
    ap.add_argument("--json", default="runs/bench/cells.json")
    ap.add_argument("--quick", action="store_true", help="validation run: 3 s of audio, 2 repeats")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = min(args.seconds, 3.0), min(args.repeats, 2)
    args.student = args.student or ["gru=gru:96", "lstm=lstm:80"]
    for s in args.student:
        if "=" not in s:
            ap.error(f"--student {s}: expected LABEL=CKPT or LABEL=CELL:HIDDEN")
    return args


def _checkpoint(spec: str, tmp: Path, label: str, notes: list[str]) -> Path:
    """``CKPT`` or ``cell:hidden`` (an untrained default student of that cell and width)."""
    import torch

    from mtakd.checkpoint import save_checkpoint
    from mtakd.models import build_model

    if Path(spec).is_file():
        return Path(spec)
    cell, _, hidden = spec.partition(":")
    if not hidden.isdigit():
        raise SystemExit(f"error: --student {label}={spec}: no such checkpoint, and not CELL:HIDDEN (e.g. lstm:80)")
    torch.manual_seed(0)
    path = tmp / f"{label}.safetensors"
    try:
        model = build_model("student", {"cell": cell, "hidden": int(hidden)})
    except ValueError as e:  # ConfigError: an unknown cell
        raise SystemExit(f"error: --student {label}={spec}: {e}") from None
    save_checkpoint(path, model)
    notes.append(f"{label}: untrained student ({cell} 2x{hidden}); speed does not depend on the weights.")
    return path


def build_systems(args, tmp: Path, notes: list[str]):
    import torch

    from mtakd.checkpoint import load_model, save_checkpoint
    from mtakd.efficiency import efficiency_report
    from mtakd.export import export_onnx
    from mtakd.inference import enhance_waveform
    from mtakd.models import build_model
    from mtakd.ort_runtime import OrtOfflineEnhancer, OrtStreamingEnhancer
    from mtakd.stft import HOP, STFT
    from mtakd.streaming import StreamingEnhancer

    n = int(args.seconds * bc.SAMPLE_RATE) // HOP * HOP
    n_frames = STFT().num_frames(n)
    if args.teacher:
        t_ckpt = Path(args.teacher)
    else:
        torch.manual_seed(0)
        t_ckpt = tmp / "teacher.safetensors"
        save_checkpoint(t_ckpt, build_model("teacher"))
        notes.append("teacher: untrained default-size teacher; speed does not depend on the weights.")
    teacher = load_model(t_ckpt)
    systems = [Offline("teacher", "PyTorch offline", lambda x: enhance_waveform(teacher, torch.from_numpy(x)), n_frames)]
    t_off = export_onnx(t_ckpt, tmp / "teacher_offline.onnx", kind="offline")
    systems.append(Offline("teacher", "onnxruntime offline", OrtOfflineEnhancer(bc.onnx_session(t_off.path)), n_frames))
    eff = {"teacher": {**efficiency_report(teacher), "ckpt": str(args.teacher or "untrained"), "cell": "BiLSTM"}}
    for item in args.student:
        label, spec = item.split("=", 1)
        ckpt = _checkpoint(spec, tmp, label, notes)
        m = load_model(ckpt)
        eff[label] = {**efficiency_report(m), "ckpt": spec, "cell": f"{m.cfg.cell.upper()} {m.cfg.layers}x{m.cfg.hidden}"}
        systems.append(Offline(label, "PyTorch offline", lambda x, m=m: enhance_waveform(m, torch.from_numpy(x)), n_frames))
        systems.append(Streaming(label, "PyTorch streaming", StreamingEnhancer(m, backend="torch"), HOP))
        step = export_onnx(ckpt, tmp / f"{label}_step.onnx", kind="step")
        off = export_onnx(ckpt, tmp / f"{label}_offline.onnx", kind="offline")
        notes.append(f"{label}: ONNX step and offline graphs verified vs PyTorch (max abs diff "
                     f"{step.max_abs_diff:.1e}, {off.max_abs_diff:.1e}).")
        systems.append(Streaming(label, "onnxruntime streaming", OrtStreamingEnhancer(bc.onnx_session(step.path)), HOP))
        systems.append(Offline(label, "onnxruntime offline", OrtOfflineEnhancer(bc.onnx_session(off.path)), n_frames))
    return systems, eff


def main(argv=None) -> int:
    args = parse_args(argv)
    info = bc.machine_info()
    info["command"] = bc.command_line()
    bc.torch_one_thread()
    x, audio = bc.bench_audio(None, args.seconds)
    duration = x.size / bc.SAMPLE_RATE
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mtakd-cells-") as d:
        systems, eff = build_systems(args, Path(d), notes)
        runs = time_round_robin(systems, x, args.repeats)
    bc.finish_machine_info(info)

    res = {}
    for s in systems:
        walls = np.array([r["wall_s"] for r in runs[id(s)]])
        row = {"rtf_best": float(walls.min() / duration), "rtf_median": float(np.median(walls) / duration),
               "cpu_share_median": float(np.median([r["cpu_share"] for r in runs[id(s)]]))}
        if s.streaming:
            st = bc.frame_stats_ms(np.concatenate([r["frame_ns"] for r in runs[id(s)]]))
            row.update(median_ms=st["median_ms"], p99_ms=st["p99_ms"])
        res.setdefault(s.name, {})[s.runtime] = row

    labels = [a.split("=", 1)[0] for a in args.student]
    L = ["## Students side by side: cells and widths (`benchmarks/cells.py`)", ""]
    L += bc.machine_lines(info)
    L += [f"- Audio: {audio}; {args.repeats} timed passes per system after one warm-up, round-robin; one thread "
          "(torch 1 + 1 inter-op, onnxruntime intra 1 / inter 1 / sequential)"]
    L += [f"- {n}" for n in notes]
    L += ["", "Cost:", ""]
    L += bc.md_table(["model", "checkpoint", "recurrent layers", "params", "MMAC/s (model)", "teacher / model params"],
                     [[k, f"`{e['ckpt']}`", e["cell"], f"{e['params']:,}", f"{e['macs_per_s_model'] / 1e6:.1f}",
                       f"{eff['teacher']['params'] / e['params']:.1f}x"] for k, e in eff.items()])
    L += ["", "RTF best-of (median) at one thread; streaming rows add the per-hop median / p99 in ms:", ""]
    rows = []
    for name in ["teacher"] + labels:
        cells = [name]
        for rt in RUNTIMES:
            r = res[name].get(rt)
            if r is None:
                cells.append("-")
                continue
            c = f"{r['rtf_best']:.4f} ({r['rtf_median']:.4f})"
            if "median_ms" in r:
                c += f"; {r['median_ms']:.3f} / {r['p99_ms']:.3f} ms"
            cells.append(c)
        rows.append(cells)
    L += bc.md_table(["model"] + list(RUNTIMES), rows)
    L += ["", "Teacher RTF / student RTF, best-of (the teacher on the same runtime where it has one, else on "
          "PyTorch offline; it cannot stream):", ""]
    ratios = {}
    for lab in labels:
        ratios[lab] = {}
        for rt in RUNTIMES:
            t = res["teacher"].get(rt) or res["teacher"]["PyTorch offline"]
            ratios[lab][rt] = t["rtf_best"] / res[lab][rt]["rtf_best"]
    L += bc.md_table(["student"] + list(RUNTIMES), [[lab] + [f"{ratios[lab][rt]:.1f}x" for rt in RUNTIMES] for lab in labels])
    print("\n".join(L))
    bc.publish(args, "cells", L, {"machine": info, "audio": audio, "repeats": args.repeats, "notes": notes,
                                  "efficiency": eff, "results": res, "teacher_over_student_rtf": ratios})
    return 0


if __name__ == "__main__":
    sys.exit(main())
