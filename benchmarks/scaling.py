"""How cost grows with input length: time and peak memory for 10 s, 1 min and 10 min of audio.

    PYTHONPATH=src python benchmarks/scaling.py [--student CKPT] [--teacher CKPT] --out docs/benchmarks.md
    PYTHONPATH=src python benchmarks/scaling.py --quick          # 10 s and 1 min only

Every (mode, length) pair runs in a fresh child process at one thread, so the peak resident
memory (``VmHWM`` from ``/proc/self/status``) belongs to that run alone. The child loads its
model, warms up on 1 s, resets the kernel's peak-RSS counter (``echo 5 > /proc/self/clear_refs``)
and then times the processing only. Expected: time per second of audio (= RTF) flat across
lengths (linear time) and peak RSS flat (memory does not grow with the input).

Modes:

* ``stream-ort``: ``mtakd.ort_runtime.OrtStreamingEnhancer`` on the exported step graph, fed
  one 160-sample hop at a time; the child never imports torch.
* ``stream-torch``: ``mtakd.streaming.StreamingEnhancer`` (PyTorch), one hop at a time.
  The streaming input is generated on the fly by cycling over a 10 s signal and the output is
  only summed, so neither grows with the length: what is measured is the streamer's memory.
* ``files-student`` / ``files-student-ort``: ``mtakd.batch.enhance_files`` on a generated
  16-bit WAV of that length (the 10 s signal repeated), PyTorch / onnxruntime backend:
  30 s read blocks, bounded frame batches, block-wise writing. The onnxruntime row exports
  the checkpoint in memory as ``mtakd enhance --backend onnxruntime`` does for files
  (``enhancement.FILE_HOPS`` frames per run).
* ``files-teacher``: the same for the non-causal teacher (30 s chunks with 1 s crossfade).

Without checkpoints, default-size untrained models are used (speed does not depend on weights).
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/torch load

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = ("stream-ort", "stream-torch", "files-student", "files-student-ort", "files-teacher")
LENGTHS = (10.0, 60.0, 600.0)
HOP = 160
BASE_S = 10.0


def _status_kb() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1])
    return out


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- child
def child(args) -> int:
    import soundfile as sf

    tmp = Path(args.tmp)
    base = sf.read(str(tmp / "base.wav"), dtype="float32")[0]
    base = np.ascontiguousarray(base[: base.size // HOP * HOP])
    n_hops = int(round(args.seconds * bc.SAMPLE_RATE)) // HOP
    mode = args.child
    t_setup = time.perf_counter()

    if mode.startswith("stream"):
        if mode == "stream-ort":
            from mtakd.ort_runtime import OrtStreamingEnhancer

            streamer = OrtStreamingEnhancer(bc.onnx_session(tmp / "student_step.onnx"))
        else:
            import torch

            torch.set_num_threads(1)
            from mtakd.checkpoint import load_model
            from mtakd.streaming import StreamingEnhancer

            streamer = StreamingEnhancer(load_model(tmp / "student.safetensors"), backend="torch")
        hops = [base[i : i + HOP] for i in range(0, base.size, HOP)]
        for h in hops[:100]:  # 1 s warm-up
            streamer.feed(h)
        streamer.flush()
        setup_s = time.perf_counter() - t_setup
        before = _status_kb()
        reset = _reset_peak()
        feed, clock = streamer.feed, time.perf_counter_ns
        n_out, energy, worst = 0, 0.0, 0
        with bc.Timer() as t:
            for i in range(n_hops):
                t0 = clock()
                y = feed(hops[i % len(hops)])
                dt = clock() - t0
                worst = dt if dt > worst else worst
                n_out += y.size
                energy += float(np.dot(y, y))
            y = streamer.flush()
            n_out += y.size
        if n_out != n_hops * HOP:
            raise RuntimeError(f"{n_out} samples out for {n_hops * HOP} in")
        extra = {"max_hop_ms": worst / 1e6, "mean_hop_ms": t.wall / n_hops * 1e3}
    else:
        import torch

        torch.set_num_threads(1)
        from mtakd.batch import enhance_files
        from mtakd.enhancement import FILE_HOPS, get_engine

        if mode == "files-student-ort":  # as `mtakd enhance --backend onnxruntime` with a checkpoint
            engine = get_engine(tmp / "student.safetensors", backend="onnxruntime", hops=FILE_HOPS)
        else:
            engine = get_engine(tmp / ("teacher.safetensors" if mode == "files-teacher" else "student.safetensors"))
        s = engine.stream()  # 1 s warm-up
        s.feed(base[: bc.SAMPLE_RATE])
        s.flush()
        src = tmp / f"input_{int(args.seconds)}s.wav"
        out_dir = tmp / f"out_{mode}_{int(args.seconds)}s"
        setup_s = time.perf_counter() - t_setup
        before = _status_kb()
        reset = _reset_peak()
        with bc.Timer() as t:
            summary = enhance_files([src], out_dir, model=engine, overwrite=True)
        if not summary.ok or len(summary.enhanced) != 1:
            raise RuntimeError(f"enhance_files failed: {summary.failed}")
        out_file = summary.enhanced[0][1]
        if sf.info(str(out_file)).frames != sf.info(str(src)).frames:
            raise RuntimeError("output length differs from the input's")
        out_file.unlink()
        extra = {}
    after = _status_kb()
    res = {
        "mode": mode, "seconds": n_hops * HOP / bc.SAMPLE_RATE, "wall_s": t.wall, "cpu_share": t.cpu_share,
        "rtf": t.wall / (n_hops * HOP / bc.SAMPLE_RATE), "setup_s": setup_s,
        "rss_before_mib": before["VmRSS"] / 1024, "peak_rss_mib": after["VmHWM"] / 1024,
        "peak_is_processing_only": reset, "rss_after_mib": after["VmRSS"] / 1024,
        "peak_growth_mib": (after["VmHWM"] - before["VmRSS"]) / 1024, "torch_imported": "torch" in sys.modules,
        **extra,
    }
    print("RESULT " + json.dumps(res))
    return 0


# ----------------------------------------------------------------------------- parent
def prepare(args, tmp: Path, notes: list[str]) -> None:
    import soundfile as sf
    import torch

    from mtakd.checkpoint import save_checkpoint
    from mtakd.export import export_onnx
    from mtakd.models import build_model

    for role in ("student", "teacher"):
        dst = tmp / f"{role}.safetensors"
        given = getattr(args, role)
        if given:
            os.symlink(Path(given).resolve(), dst)
        elif role == "student" or "files-teacher" in args.modes:
            torch.manual_seed(0)
            save_checkpoint(dst, build_model(role))
            notes.append(f"{role}: no checkpoint given, a default-size **untrained** {role} was used "
                         "(speed and memory do not depend on the weights).")
    if "stream-ort" in args.modes:
        export_onnx(tmp / "student.safetensors", tmp / "student_step.onnx", kind="step")
    base = bc.speech_like_noisy(BASE_S)
    sf.write(str(tmp / "base.wav"), base, bc.SAMPLE_RATE, subtype="FLOAT")
    if any(m.startswith("files") for m in args.modes):
        pcm = np.clip(np.round(base * 32768.0), -32768, 32767).astype(np.int16)
        for sec in args.lengths:
            n = int(sec * bc.SAMPLE_RATE)
            with sf.SoundFile(str(tmp / f"input_{int(sec)}s.wav"), "w", bc.SAMPLE_RATE, 1, "PCM_16", format="WAV") as f:
                left = n
                while left > 0:
                    f.write(pcm[: min(left, pcm.size)])
                    left -= min(left, pcm.size)


def run_child(mode: str, seconds: float, tmp: Path, timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", mode, "--seconds", str(seconds), "--tmp", str(tmp)]
    env = dict(os.environ)
    src = str(bc.REPO / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
    raise RuntimeError(f"child {mode} {seconds:g}s failed (exit {p.returncode}): " + " | ".join(tail))


def _len_label(sec: float) -> str:
    return f"{sec:g} s" if sec < 60 else f"{sec / 60:g} min"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", help="student checkpoint; default: untrained default-size student")
    ap.add_argument("--teacher", help="teacher checkpoint (files-teacher mode); default: untrained")
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    ap.add_argument("--lengths", default=",".join(f"{x:g}" for x in LENGTHS), help="seconds, comma-separated (default 10,60,600)")
    ap.add_argument("--quick", action="store_true", help="10 s and 1 min only")
    ap.add_argument("--out", help="markdown file to update (its 'scaling' section), e.g. docs/benchmarks.md")
    ap.add_argument("--json", default="runs/bench/scaling.json", help="JSON results (default runs/bench/scaling.json)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per child run")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        ap.error(f"unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
    args.lengths = [float(x) for x in args.lengths.split(",")]
    if args.quick:
        args.lengths = [x for x in args.lengths if x <= 60] or [10.0, 60.0]

    info = bc.machine_info()
    info["command"] = bc.command_line()
    notes: list[str] = []
    results = []
    with tempfile.TemporaryDirectory(prefix="mtakd-scaling-") as d:
        tmp = Path(d)
        prepare(args, tmp, notes)
        for mode in args.modes:
            for sec in args.lengths:
                print(f"{mode} {_len_label(sec)} ...", file=sys.stderr, flush=True)
                try:
                    r = run_child(mode, sec, tmp, args.timeout)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    print(f"  failed: {e}", file=sys.stderr)
                    r = {"mode": mode, "seconds": sec, "error": str(e)}
                else:
                    print(f"  {r['wall_s']:.1f} s, RTF {r['rtf']:.4f}, peak RSS {r['peak_rss_mib']:.0f} MiB", file=sys.stderr)
                results.append(r)
    bc.finish_machine_info(info)

    L = ["## Cost vs input length (`benchmarks/scaling.py`)", ""]
    L += bc.machine_lines(info)
    L += ["- Each row: a fresh process at 1 thread; model loaded and warmed up on 1 s, then the peak-RSS counter is "
          "reset and only the processing is timed. Streaming rows feed one 10 ms hop per call, cycling over a 10 s "
          "generated signal (speech-like in pink noise, 5 dB); file rows run `mtakd.batch.enhance_files` on a "
          "16-bit WAV of that length (the same 10 s repeated) and write the enhanced WAV."]
    L += [f"- {n}" for n in notes]
    L += ["", "Linear time = flat 'RTF' column; flat memory = flat 'peak RSS' column for a mode.", ""]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["mode"], _len_label(r["seconds"]), "failed: " + r["error"][:80], "", "", "", "", ""])
            continue
        rows.append([r["mode"], _len_label(r["seconds"]), f"{r['wall_s']:.2f}", f"{r['rtf']:.4f}",
                     f"{r['peak_rss_mib']:.0f}", f"{r['peak_growth_mib']:+.1f}", f"{r['cpu_share']:.2f}",
                     "no" if not r["torch_imported"] else "yes"])
    L += bc.md_table(["mode", "audio", "wall s", "RTF (s per s of audio)", "peak RSS MiB", "peak - RSS before MiB",
                      "CPU share", "torch loaded"], rows)
    summary = []
    for mode in args.modes:
        ok = [r for r in results if r["mode"] == mode and "error" not in r]
        if len(ok) >= 2:
            lens = " / ".join(_len_label(r["seconds"]) for r in ok)
            rtfs = " / ".join(f"{r['rtf'] / ok[0]['rtf']:.2f}" for r in ok)
            rss = " / ".join(f"{r['peak_rss_mib']:.0f}" for r in ok)
            summary.append(f"- {mode} ({lens}): RTF relative to the shortest {rtfs} (1.00 = linear time); "
                           f"peak RSS {rss} MiB")
    if any(m.startswith("files") for m in args.modes):
        summary.append("- File modes read and enhance 30 s blocks (`mtakd.enhancement.BLOCK_S`; the teacher 30 s chunks), "
                       "so their memory grows up to 30 s of input and should be flat beyond it (1 min vs 10 min).")
    if summary:
        L += ["", *summary]
    print("\n".join(L))
    out = {"machine": info, "notes": notes, "results": results}
    bc.publish(args, "scaling", L, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
