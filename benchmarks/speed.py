"""Per-frame latency and real-time factor of the teacher and the student, at 1 thread, one run.

    PYTHONPATH=src python benchmarks/speed.py --student runs/student_mtakd/best.safetensors \
        --teacher runs/teacher/best.safetensors --out docs/benchmarks.md

Measures, in one process and on the same audio (10 s of generated speech-like audio in pink
noise at 5 dB, or ``--wav FILE``):

* teacher, PyTorch, offline (whole utterance, ``inference.enhance_waveform``);
* student, PyTorch, offline (same path);
* student, PyTorch, streaming (``StreamingEnhancer``, one 160-sample hop per ``feed``);
* student, onnxruntime, streaming (step graph from ``export_onnx(kind="step")``), float and
  dynamic int8 (``quantize=True``);
* student, onnxruntime, streaming with K = 2 and K = 4 hops per run (``export_onnx(...,
  hops=K)``, ``mtakd export --hops K``): less overhead per hop, ``(K - 1) * 10 ms`` more latency;
* student, onnxruntime, offline (``export_onnx(kind="offline")``);
* teacher, onnxruntime, offline (the like-for-like speed ratio).

Everything runs at one thread: ``torch.set_num_threads(1)`` (and one inter-op thread),
onnxruntime sessions with ``intra_op_num_threads=1``, ``inter_op_num_threads=1``, sequential
execution, and OMP/MKL/OpenBLAS pools at 1. Each system gets one untimed warm-up pass over
the whole signal, then ``--repeats`` timed passes; the passes go round-robin over the systems
(repeat 1 of every system, then repeat 2, ...) so slow spells of background load spread over
all of them. Streaming: every ``feed`` of one hop is timed (``perf_counter_ns``), percentiles
are over all hops of all timed passes; RTF = (sum of feeds + flush) / audio duration. With K
hops per run only every K-th feed runs onnxruntime (the others store their hop): the per-hop
figures are then (sum of the K feeds of a group) / K, and "per call" is the feed that runs the
group -- the time that has to fit into one hop in real time.
Offline: RTF = call time / duration; "per frame" = call time / number of STFT frames.
Reported: best-of (least disturbed) and median RTF, and the CPU share (thread CPU time /
wall time) of the timed passes, which falls below ~0.9 when the process waited for a core.

Without ``--student``/``--teacher`` default-size *untrained* models are built
(``build_model``) and saved to a temporary checkpoint: speed does not depend on the weights.
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/torch load

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", help="student checkpoint (.safetensors); default: untrained default-size student")
    ap.add_argument("--teacher", help="teacher checkpoint (.safetensors); default: untrained default-size teacher")
    ap.add_argument("--wav", help="audio file to time on (default: generated speech-like audio)")
    ap.add_argument("--seconds", type=float, default=10.0, help="audio length in seconds (default 10)")
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per system (default 5)")
    ap.add_argument("--out", help="markdown file to update (its 'speed' section), e.g. docs/benchmarks.md")
    ap.add_argument("--json", default="runs/bench/speed.json", help="JSON results (default runs/bench/speed.json)")
    ap.add_argument("--quick", action="store_true", help="validation run: 3 s of audio, 2 repeats")
    ap.add_argument("--no-teacher", action="store_true", help="skip the teacher")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = min(args.seconds, 3.0), min(args.repeats, 2)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    return args


# ----------------------------------------------------------------------------- systems
class Offline:
    """A whole-utterance call ``fn(x)``; per-frame time = call time / STFT frames."""

    streaming = False

    def __init__(self, name, runtime, fn, n_frames):
        self.name, self.runtime, self.fn, self.n_frames = name, runtime, fn, n_frames

    def run(self, x):
        gc.collect()
        with bc.Timer() as t:
            self.fn(x)
        return {"wall_s": t.wall, "cpu_share": t.cpu_share, "frame_ns": None}


class Streaming:
    """``feed`` one hop at a time (each timed), then ``flush``. ``hops``: the streamer's hops
    per processor run (K; ``frame_ns`` stays per feed, ``group_stats`` regroups it)."""

    streaming = True

    def __init__(self, name, runtime, streamer, hop):
        self.name, self.runtime, self.streamer, self.hop = name, runtime, streamer, hop
        self.hops = int(getattr(streamer, "hops", 1))
        self.delay_samples = int(streamer.delay_samples)

    def group_stats(self, frame_ns: list[np.ndarray]) -> dict[str, float]:
        """Per-hop stats as (sum of each group's K feed times) / K, and per-call stats of the
        feed that completes (and runs) each group; a trailing partial group is left out."""
        k = self.hops
        per_hop, per_call = [], []
        for t in frame_ns:
            g = t[: t.size // k * k].reshape(-1, k)
            per_hop.append(g.sum(axis=1) / k)
            per_call.append(g[:, -1])
        hop, call = bc.frame_stats_ms(np.concatenate(per_hop)), bc.frame_stats_ms(np.concatenate(per_call))
        return {**hop, "call_median_ms": call["median_ms"], "call_p99_ms": call["p99_ms"], "call_max_ms": call["max_ms"]}

    def run(self, x):
        hops = [x[i : i + self.hop] for i in range(0, x.size, self.hop)]
        times = np.empty(len(hops), np.int64)
        feed, clock = self.streamer.feed, time.perf_counter_ns
        self.streamer.reset()
        gc.collect()
        n_out = 0
        with bc.Timer() as t:
            for i, h in enumerate(hops):
                t0 = clock()
                y = feed(h)
                times[i] = clock() - t0
                n_out += y.size
            n_out += self.streamer.flush().size
        if n_out != x.size:
            raise RuntimeError(f"{self.name}: {n_out} samples out for {x.size} in")
        return {"wall_s": t.wall, "cpu_share": t.cpu_share, "frame_ns": times}


#: hops per run timed besides the default K = 1
MULTI_HOPS = (2, 4)


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

    ckpts = {}
    for role in ("student", "teacher"):
        given = getattr(args, role)
        if role == "teacher" and args.no_teacher:
            continue
        if given:
            ckpts[role] = Path(given)
        else:
            path = tmp / f"{role}_untrained.safetensors"
            torch.manual_seed(0)
            save_checkpoint(path, build_model(role))
            ckpts[role] = path
            notes.append(f"{role}: no checkpoint given, so a default-size **untrained** {role} "
                         f"(`build_model(\"{role}\")`) was timed; speed does not depend on the weights.")
    models = {role: load_model(p) for role, p in ckpts.items()}
    eff = {role: efficiency_report(m) for role, m in models.items()}

    n = int(args.seconds * bc.SAMPLE_RATE) // HOP * HOP
    n_frames = STFT().num_frames(n)
    systems = []
    if "teacher" in models:
        teacher = models["teacher"]
        systems.append(Offline("teacher", "PyTorch offline", lambda x: enhance_waveform(teacher, torch.from_numpy(x)), n_frames))
    student = models["student"]
    systems.append(Offline("student", "PyTorch offline", lambda x: enhance_waveform(student, torch.from_numpy(x)), n_frames))
    systems.append(Streaming("student", "PyTorch streaming", StreamingEnhancer(student, backend="torch"), HOP))

    step = export_onnx(ckpts["student"], tmp / "student_step.onnx", kind="step", quantize=True)
    off = export_onnx(ckpts["student"], tmp / "student_offline.onnx", kind="offline")
    notes.append(f"ONNX step graph {step.size_bytes / 1e6:.2f} MB (verified vs PyTorch, max abs diff "
                 f"{step.max_abs_diff:.1e}); int8 copy {step.quantized_size_bytes / 1e6:.2f} MB, output SNR vs "
                 f"float {step.quantized_snr_db:.1f} dB; offline graph {off.size_bytes / 1e6:.2f} MB.")
    systems.append(Streaming("student", "onnxruntime streaming", OrtStreamingEnhancer(bc.onnx_session(step.path)), HOP))
    systems.append(Streaming("student", "onnxruntime int8 streaming",
                             OrtStreamingEnhancer(bc.onnx_session(step.quantized_path)), HOP))
    for k in MULTI_HOPS:  # same graph, K hops per run
        multi = export_onnx(ckpts["student"], tmp / f"student_step_k{k}.onnx", kind="step", hops=k)
        notes.append(f"K={k} step graph (`export_onnx(..., hops={k})`): verified vs PyTorch, max abs diff "
                     f"{multi.max_abs_diff:.1e}.")
        systems.append(Streaming("student", f"onnxruntime streaming, K={k} hops/run",
                                 OrtStreamingEnhancer(bc.onnx_session(multi.path)), HOP))
    ort_off = OrtOfflineEnhancer(bc.onnx_session(off.path))
    systems.append(Offline("student", "onnxruntime offline", ort_off, n_frames))
    if "teacher" in models:  # the like-for-like comparison: both models on onnxruntime, offline
        t_off = export_onnx(ckpts["teacher"], tmp / "teacher_offline.onnx", kind="offline")
        systems.append(Offline("teacher", "onnxruntime offline", OrtOfflineEnhancer(bc.onnx_session(t_off.path)), n_frames))
    return systems, eff, ckpts


def time_round_robin(systems, x, repeats: int) -> dict[int, list[dict]]:
    """One untimed warm-up pass per system, then ``repeats`` timed passes, round-robin (repeat
    1 of every system, then repeat 2, ...), so slow spells of load spread over all systems.
    Returns ``{id(system): [run results]}``."""
    for s in systems:
        s.run(x)
    runs = {id(s): [] for s in systems}
    for r in range(repeats):
        for s in systems:
            runs[id(s)].append(s.run(x))
        print(f"repeat {r + 1}/{repeats} done", file=sys.stderr)
    return runs


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    info = bc.machine_info()
    info["command"] = bc.command_line()

    bc.torch_one_thread()
    from mtakd.stft import HOP, N_FFT, SAMPLE_RATE

    x, audio = bc.bench_audio(args.wav, args.seconds)
    if x.size < HOP:
        print("error: audio shorter than one hop", file=sys.stderr)
        return 2
    duration = x.size / SAMPLE_RATE

    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mtakd-speed-") as d:
        systems, eff, ckpts = build_systems(args, Path(d), notes)
        print(f"warming up {len(systems)} systems on {duration:.1f} s of audio ...", file=sys.stderr)
        runs = time_round_robin(systems, x, args.repeats)
    bc.finish_machine_info(info)

    results = []
    for s in systems:
        rr = runs[id(s)]
        walls = np.array([r["wall_s"] for r in rr])
        res = {
            "model": s.name, "runtime": s.runtime, "streaming": s.streaming,
            "rtf_best": float(walls.min() / duration), "rtf_median": float(np.median(walls) / duration),
            "wall_s": walls.tolist(), "cpu_share_median": float(np.median([r["cpu_share"] for r in rr])),
        }
        if s.streaming:
            res.update(s.group_stats([r["frame_ns"] for r in rr]))
            res["hops"], res["latency_ms"] = s.hops, 1000.0 * s.delay_samples / SAMPLE_RATE
            res["frame_basis"] = ("per feed of one 160-sample hop, all hops of all timed passes" if s.hops == 1 else
                                  f"per hop = (sum of the {s.hops} one-hop feeds of a group) / {s.hops}; per call = "
                                  "the feed that runs the group; all groups of all timed passes")
        else:
            per = walls / s.n_frames * 1e3
            res.update({"median_ms": float(np.median(per)), "p99_ms": None, "max_ms": None, "mean_ms": float(per.mean()),
                        "frame_basis": f"call time / {s.n_frames} frames"})
        results.append(res)

    def find(model, runtime):
        return next((r for r in results if r["model"] == model and r["runtime"] == runtime), None)

    hop_ms = 1000.0 * HOP / SAMPLE_RATE
    ort_stream = find("student", "onnxruntime streaming")
    # the student's algorithmic latency: its one-hop stream's delay (a window, + a hop per look-ahead frame)
    base_ms = ort_stream["latency_ms"]
    teacher = find("teacher", "PyTorch offline")
    ratios = {}
    t_ort = find("teacher", "onnxruntime offline")
    if teacher:
        for r in results:
            if r["model"] == "student":
                ratios[r["runtime"]] = {"best": teacher["rtf_best"] / r["rtf_best"], "median": teacher["rtf_median"] / r["rtf_median"]}
    multi = [r for r in results if r["streaming"] and r["runtime"].startswith("onnxruntime streaming, K=")]
    targets = [
        ("student onnxruntime streaming RTF <= 0.01 (best-of)", ort_stream["rtf_best"] <= 0.01, f"{ort_stream['rtf_best']:.4f}"),
        *[(f"same with K={r['hops']} hops per run ({r['latency_ms']:.0f} ms latency instead of {base_ms:.0f} ms)",
           r["rtf_best"] <= 0.01, f"{r['rtf_best']:.4f}") for r in multi],
        (f"student onnxruntime streaming p99 frame time well under the {hop_ms:.0f} ms hop (<= 10 % of it)",
         ort_stream["p99_ms"] <= 0.1 * hop_ms, f"p99 {ort_stream['p99_ms']:.3f} ms = {100 * ort_stream['p99_ms'] / hop_ms:.1f} % of the hop"),
    ]
    if teacher:
        r = ratios["onnxruntime streaming"]["best"]
        targets.append(("student (onnxruntime streaming) >= 10x faster than the teacher (best-of RTF)", r >= 10, f"{r:.1f}x"))
        r = ratios["PyTorch offline"]["best"]
        targets.append(("student (PyTorch offline) >= 10x faster than the teacher (best-of RTF)", r >= 10, f"{r:.1f}x"))
    if t_ort:
        r = t_ort["rtf_best"] / find("student", "onnxruntime offline")["rtf_best"]
        targets.append(("student >= 10x faster than the teacher, like for like (both onnxruntime offline, best-of RTF)",
                        r >= 10, f"{r:.1f}x"))

    # ---------------------------------------------------------------- report
    L = ["## Speed at one thread (`benchmarks/speed.py`)", ""]
    L += bc.machine_lines(info)
    L += [f"- Audio: {audio}; {args.repeats} timed passes per system after one warm-up pass, round-robin; "
          "threads: torch 1 (+1 inter-op), onnxruntime intra 1 / inter 1 / sequential, OMP/MKL/OpenBLAS 1",
          f"- Models: student `{args.student or 'untrained default'}`"
          + (f", teacher `{args.teacher or 'untrained default'}`" if "teacher" in ckpts else "")]
    L += [f"- {n}" for n in notes]
    L += ["", "Per-frame time: streaming rows time each `feed` of one 10 ms hop (160 samples); with K hops per run "
          "(rows `K=...`) only every K-th feed runs onnxruntime, and the figure is the group's K feeds summed / K "
          "(per-call times below); offline rows have no "
          "per-frame timing, their figure is the whole call divided by the number of frames. RTF = processing time / "
          "audio duration (best-of and median of the passes); x real time = 1 / best RTF. CPU share = thread CPU "
          "time / wall time of the timed passes (below ~0.9: the process waited for a core, numbers inflated).", ""]
    rows = []
    for r in results:
        rows.append([r["model"], r["runtime"], bc.fmt(r["median_ms"]), bc.fmt(r["p99_ms"]), bc.fmt(r["max_ms"]),
                     f"{hop_ms:.0f}", f"{r['rtf_best']:.4f}", f"{r['rtf_median']:.4f}", f"{1 / r['rtf_best']:.0f}",
                     f"{r['cpu_share_median']:.2f}"])
    L += bc.md_table(["model", "runtime", "frame median ms", "frame p99 ms", "frame max ms", "hop ms", "RTF best",
                      "RTF median", "x real time", "CPU share"], rows)
    L += ["", "Hops per onnxruntime run (student, float step graph; latency = `delay_samples` of the stream, the "
          "algorithmic latency; per call = the feed that runs the K-hop group, which must fit in one 10 ms hop):", ""]
    L += bc.md_table(["K", "latency ms", "per-hop median ms", "per-hop p99 ms", "per-call median ms", "per-call p99 ms",
                      "RTF best", "RTF median"],
                     [[str(r["hops"]), f"{r['latency_ms']:.0f}", bc.fmt(r["median_ms"]), bc.fmt(r["p99_ms"]),
                       bc.fmt(r["call_median_ms"]), bc.fmt(r["call_p99_ms"]), f"{r['rtf_best']:.4f}", f"{r['rtf_median']:.4f}"]
                      for r in [ort_stream] + multi])
    L += ["", "Cost and latency:", ""]
    erows = []
    for role, e in eff.items():
        ahead = round((base_ms - 1000.0 * N_FFT / SAMPLE_RATE) / hop_ms)
        lat = (f"{base_ms:.0f} ms (one {N_FFT}-sample window" + (f" + {ahead} frame(s) of look-ahead" if ahead else "")
               + f"; causal, streams per {hop_ms:.0f} ms hop); "
               f"K hops per onnxruntime run: +(K-1) x {hop_ms:.0f} ms"
               if role == "student" else "whole utterance (bidirectional; files: 30 s chunks); not streamable")
        erows.append([role, f"{e['params']:,}", f"{e['macs_per_s'] / 1e6:.1f}", f"{e['macs_per_s_model'] / 1e6:.1f}", lat])
    L += bc.md_table(["model", "params", "MMAC/s (model + STFT)", "MMAC/s (model)", "algorithmic latency"], erows)
    if ratios:
        L += ["", "Teacher RTF / student RTF (how many times faster the student is):", ""]
        L += bc.md_table(["student runtime", "best-of", "median"],
                         [[k, f"{v['best']:.1f}x", f"{v['median']:.1f}x"] for k, v in ratios.items()])
    L += ["", "Targets (from the issue):", ""]
    L += [f"- [{'x' if ok else ' '}] {what}: {val}" for what, ok, val in targets]
    print("\n".join(L))

    out = {"machine": info, "audio": audio, "duration_s": duration, "repeats": args.repeats, "notes": notes,
           "algorithmic_latency_ms": base_ms, "hop_ms": hop_ms, "results": results,
           "efficiency": eff, "teacher_over_student_rtf": ratios,
           "targets": [{"target": w, "met": bool(ok), "value": v} for w, ok, v in targets]}
    bc.publish(args, "speed", L, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
