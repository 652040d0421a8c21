"""mtakd's student(s) against every peer system on the same paired files: quality and speed.

Run it with the peers venv's python (the peers and the metrics' packages are installed
there, torch is not; ``requirements-peers.txt`` says how) and this checkout's ``src`` on
the path; students are exported to ONNX by the core venv (``--core-python``, torch) in a
subprocess and then streamed by onnxruntime in this process like the ONNX peers::

    PYTHONPATH=src nice -n 10 runs/venv-peers/bin/python benchmarks/peers.py --data data/devset \
        --student mtakd=runs/student_mtakd/best.safetensors --student none=runs/student_none/best.safetensors \
        --out docs/peers.md

Per file and system: ``reset()`` (untimed), ``process(noisy)`` timed at one thread (file
I/O, model load and scoring excluded; 48 kHz peers include their 16 <-> 48 kHz resampling),
then the raw output is aligned to the clean reference by the system's fixed output delay
(``peer_systems``; checked by cross-correlation with the clean file on every file, and the
first file's estimate is stated) and scored with ``mtakd.metrics.evaluate_pair``. One
untimed warm-up pass per system on the first file. A system that cannot be loaded, or fails
on a file, is reported and the run goes on; NaN scores (PESQ on silence) are counted.
Outputs: per-file CSV per system in ``--csv-dir``, JSON, and a markdown section in ``--out``.
"""
from __future__ import annotations

import bench_common as bc  # first: pins thread pools before numpy/onnxruntime load

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import peer_systems as ps
from peer_models import align, xcorr_lag

SR = bc.SAMPLE_RATE
KEYS = ("pesq", "stoi", "estoi", "si_sdr", "si_sdr_i", "seg_snr", "csig", "cbak", "covl")
NOISY = "noisy (unprocessed)"
_EXPORT = """
import json, sys
from mtakd.checkpoint import load_model
from mtakd.efficiency import count_params
from mtakd.export import export_onnx
m = load_model(sys.argv[1])
r = export_onnx(m, sys.argv[2], kind="step", overwrite=True)
print(json.dumps({"params": count_params(m), "max_abs_diff": r.max_abs_diff}))
"""


# ----------------------------------------------------------------------------- pure helpers
def nanmean(values) -> float:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else float("nan")


def summarize(rows: list[dict]) -> dict:
    """Means of the metric columns over the rows scored (NaNs left out and counted), total
    RTF (sum of processing time / sum of audio duration) and the failures."""
    ok = [r for r in rows if not r.get("error")]
    out = {"n_files": len(rows), "n_scored": len(ok), "failed": [(r["name"], r["error"]) for r in rows if r.get("error")]}
    for k in KEYS:
        vals = [r.get(k, float("nan")) for r in ok]
        out[k] = nanmean(vals)
        out[k + "_nan"] = sum(1 for v in vals if not math.isfinite(float(v)))
    timed = [r for r in rows if math.isfinite(float(r.get("proc_s", float("nan"))))]
    dur = sum(r["duration_s"] for r in timed)
    out["rtf"] = sum(r["proc_s"] for r in timed) / dur if dur else float("nan")
    out["rtf_cpu"] = sum(r["proc_s"] * r["cpu_share"] for r in timed) / dur if dur else float("nan")
    out["cpu_share_median"] = float(np.median([r["cpu_share"] for r in timed])) if timed else float("nan")
    out["proc_s"] = sum(r["proc_s"] for r in timed)
    out["resample_s"] = sum(r.get("resample_s", float("nan")) for r in timed)
    return out


def by_snr(rows: list[dict], key: str) -> dict[float, float]:
    """Mean of ``key`` per SNR (rows without an SNR or with an error left out)."""
    groups: dict[float, list] = {}
    for r in rows:
        snr = r.get("snr")
        if snr is not None and math.isfinite(float(snr)) and not r.get("error"):
            groups.setdefault(float(snr), []).append(r.get(key, float("nan")))
    return {s: nanmean(v) for s, v in sorted(groups.items())}


def parse_student(spec: str) -> tuple[str, str]:
    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--student wants NAME=path/to/best.safetensors, got '{spec}'")
    return name, path


def read_manifest_snr(root: Path) -> dict[str, float]:
    man = root / "manifest.csv"
    if not man.is_file():
        return {}
    with open(man, newline="") as f:
        return {r["name"]: float(r["snr"]) for r in csv.DictReader(f) if r.get("snr") not in (None, "")}


def paired_files(root: Path, max_files: int | None) -> list[str]:
    names = sorted(p.name for p in (root / "noisy").iterdir() if p.suffix.lower() in (".wav", ".flac"))
    names = [n for n in names if (root / "clean" / n).is_file()]
    if max_files and len(names) > max_files:  # evenly spread: every SNR group of the devset
        idx = np.unique(np.round(np.linspace(0, len(names) - 1, max_files)).astype(int))
        names = [names[i] for i in idx]
    return names


# ----------------------------------------------------------------------------- systems
def build_systems(args, tmp: Path) -> tuple[list, list[str]]:
    systems, skipped = [], []
    env = dict(os.environ, PYTHONPATH=str(bc.REPO / "src"), OMP_NUM_THREADS="1")
    for name, ckpt in args.student:
        label = name if name.startswith("mtakd") else f"mtakd {name}"
        try:
            onnx = tmp / f"student_{len(systems)}.onnx"
            r = subprocess.run([args.core_python, "-c", _EXPORT, ckpt, str(onnx)], env=env, capture_output=True,
                               text=True, timeout=600)
            if r.returncode != 0:
                raise RuntimeError((r.stderr.strip().splitlines() or ["export failed"])[-1])
            info = json.loads(r.stdout.strip().splitlines()[-1])
            systems.append(ps.mtakd_student(label, onnx, info["params"], ckpt))
        except Exception as e:  # noqa: BLE001 - reported, the run goes on
            skipped.append(f"{label}: {type(e).__name__}: {e}")
    kw = {"webrtc": {"level": args.webrtc_level}, "deepfilternet3": {"atten_lim_db": args.dfn_atten_lim}}
    for key in args.peers:
        try:
            systems.append(ps.PEERS[key](**kw.get(key, {})))
        except Exception as e:  # noqa: BLE001
            skipped.append(f"{key} ({getattr(ps.PEERS[key], 'package', key)}): {type(e).__name__}: {e}")
    return systems, skipped


def run_system(s, noisy: np.ndarray, clean: np.ndarray, delay: int) -> dict:
    """Process, time, align and score one file; errors become the row's ``error``."""
    from mtakd.metrics import evaluate_pair

    row = {"proc_s": float("nan"), "cpu_share": float("nan"), "resample_s": float("nan"), "xcorr_lag": "", "error": ""}
    try:
        s.reset()
        with bc.Timer() as t:
            raw = s.process(noisy)
        row["proc_s"], row["cpu_share"] = t.wall, t.cpu_share
        row["resample_s"] = getattr(s, "last_resample_s", float("nan"))
        row["xcorr_lag"] = xcorr_lag(clean, raw)
        y = align(raw, delay, noisy.size)
        if not np.all(np.isfinite(y)):
            raise ValueError("output has NaN/Inf samples")
        row.update(evaluate_pair(clean, y, SR, noisy=noisy))
    except Exception as e:  # noqa: BLE001 - one bad file must not end the run
        row["error"] = f"{type(e).__name__}: {e}".replace("\n", " ")[:200]
        traceback.print_exc(limit=2)
    return row


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/devset", help="paired folder: noisy/, clean/, optional manifest.csv (snr)")
    ap.add_argument("--student", action="append", default=[], type=parse_student, metavar="NAME=CKPT",
                    help="mtakd student checkpoint (repeatable)")
    ap.add_argument("--peers", default=",".join(ps.PEERS), help=f"comma list from {','.join(ps.PEERS)} (default all)")
    ap.add_argument("--max-files", type=int, help="N files evenly spread over the set (default all)")
    ap.add_argument("--core-python", default=str(bc.REPO / ".venv" / "bin" / "python"),
                    help="python of the core venv (torch) that exports the students to ONNX")
    ap.add_argument("--webrtc-level", type=int, default=2, choices=range(5), help="WebRTC NS level 0-4 (default 2)")
    ap.add_argument("--dfn-atten-lim", type=float, default=100.0, help="DeepFilterNet3 attenuation limit dB (100: none)")
    ap.add_argument("--csv-dir", default="runs/bench/peers", help="per-file CSV per system ('' to skip)")
    ap.add_argument("--json", default="runs/bench/peers.json")
    ap.add_argument("--out", help="markdown file whose 'peers' section is replaced, e.g. docs/peers.md")
    args = ap.parse_args(argv)
    args.peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in args.peers if p not in ps.PEERS]
    if bad:
        ap.error(f"unknown peer(s) {bad}; choose from {list(ps.PEERS)}")
    root = Path(args.data)
    if not (root / "noisy").is_dir() or not (root / "clean").is_dir():
        ap.error(f"{root}: needs noisy/ and clean/ folders")

    info = bc.machine_info()
    exe = Path(sys.executable)
    exe = os.path.relpath(exe, bc.REPO) if str(exe).startswith(str(bc.REPO)) else str(exe)
    info["command"] = bc.command_line().replace("PYTHONPATH=src python", f"PYTHONPATH=src {exe}", 1)
    names = paired_files(root, args.max_files)
    snrs = read_manifest_snr(root)
    wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="mtakd-peers-") as d:
        systems, skipped = build_systems(args, Path(d))
        for msg in skipped:
            print(f"warning: not run: {msg}", file=sys.stderr)
        # ---- warm-up and the delay check on the first file
        noisy0, clean0 = (bc.load_wav_16k(root / sub / names[0]) for sub in ("noisy", "clean"))
        first_lag, delays = {}, {}
        for s in systems:
            s.reset()
            first_lag[s.name] = xcorr_lag(clean0[: noisy0.size], s.process(noisy0))
            delays[s.name] = s.delay if s.delay is not None else first_lag[s.name]
            if s.delay is not None and first_lag[s.name] != s.delay:
                print(f"warning: {s.name}: cross-correlation lag {first_lag[s.name]} on {names[0]}, "
                      f"declared delay {s.delay}", file=sys.stderr)
        # ---- every file, every system
        rows = {s.name: [] for s in systems}
        rows[NOISY] = []
        score_s = {s.name: 0.0 for s in systems}
        for k, name in enumerate(names, 1):
            noisy = bc.load_wav_16k(root / "noisy" / name)
            clean = bc.load_wav_16k(root / "clean" / name)
            n = min(noisy.size, clean.size)
            noisy, clean = noisy[:n], clean[:n]
            base = {"name": name, "snr": snrs.get(name, float("nan")), "duration_s": n / SR}
            rows[NOISY].append({**base, **run_system(_Identity(), noisy, clean, 0), "proc_s": float("nan")})
            for s in systems:
                t0 = time.perf_counter()
                row = run_system(s, noisy, clean, delays[s.name])
                score_s[s.name] += time.perf_counter() - t0
                rows[s.name].append({**base, **row})
            print(f"  {k}/{len(names)} {name}", file=sys.stderr, flush=True)
    bc.finish_machine_info(info)
    total_wall = time.perf_counter() - wall0

    # ---------------------------------------------------------------- outputs
    if args.csv_dir:
        out_dir = Path(args.csv_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        cols = ["name", "snr", "duration_s", "proc_s", "rtf", "cpu_share", "resample_s", "xcorr_lag", *KEYS, "error"]
        for sysname, rr in rows.items():
            with open(out_dir / (sysname.replace(" ", "_").replace("(", "").replace(")", "") + ".csv"), "w",
                      newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
                w.writeheader()
                for r in rr:
                    w.writerow({**r, "rtf": r["proc_s"] / r["duration_s"] if r["duration_s"] else ""})
    summ = {name: summarize(rr) for name, rr in rows.items()}
    lines = report(args, info, systems, skipped, names, rows, summ, first_lag, delays, score_s, total_wall)
    print("\n".join(lines))
    result = {"machine": info, "files": names, "skipped": skipped, "summary": summ, "first_file_lag": first_lag,
              "delays": delays, "systems": {s.name: {"package": s.package, "params": s.params, "note": s.note,
                                                       "latency_ms": s.latency_ms, "native_sr": s.native_sr}
                                            for s in systems}}
    bc.publish(args, "peers", lines, result)
    return 0


class _Identity(ps.System):
    name = NOISY

    def process(self, x):
        return x


def report(args, info, systems, skipped, names, rows, summ, first_lag, delays, score_s, total_wall) -> list[str]:
    f = bc.fmt
    dur = sum(r["duration_s"] for r in rows[NOISY])
    L = ["## mtakd students and every peer on the same files (`benchmarks/peers.py`)", ""]
    L += bc.machine_lines(info)
    L += [f"- Data: `{args.data}`, {len(names)} files, {dur:.1f} s of audio"
          + (", evenly spread over the set" if args.max_files else "") + f"; first file `{names[0]}`",
          f"- Whole run {total_wall / 60:.1f} min (processing + scoring + warm-up)", ""]
    L += ["RTF = processing time / audio duration over all files at one thread (wall clock; 'RTF CPU': the "
          "processing thread's CPU time), file I/O, model load and scoring excluded, after one untimed warm-up file "
          "(48 kHz peers: 16 -> 48 -> 16 kHz soxr resampling included). "
          "Delay = the system's fixed output delay in 16 kHz samples used to align its output with the clean "
          "reference; 'xcorr' = the cross-correlation estimate on the first file / the share of all files whose "
          "estimate equals the delay. Latency = algorithmic latency with zero compute time (delay + hop; "
          "'offline' = needs the whole file). The two RTFs agree where the thread had a core to itself (median CPU "
          "time / wall time per file: "
          + ", ".join(f"{n} {s['cpu_share_median']:.2f}" for n, s in summ.items() if n != NOISY) + ").", ""]
    head = ["system", "PESQ-WB", "STOI", "ESTOI", "SI-SDR dB", "SI-SDRi dB", "CSIG", "CBAK", "COVL", "RTF 1 thr",
            "RTF CPU", "params", "native rate", "delay (xcorr)", "latency ms", "scored / NaN PESQ / failed"]
    trs = []
    for name, s in summ.items():
        sysobj = next((x for x in systems if x.name == name), None)
        if sysobj is None:
            extra = ["-"] * 6
        else:
            lags = [r["xcorr_lag"] for r in rows[name] if r["xcorr_lag"] != ""]
            share = np.mean([lg == delays[name] for lg in lags]) if lags else float("nan")
            extra = [f(s["rtf"], 4), f(s["rtf_cpu"], 4), sysobj.params, f"{sysobj.native_sr // 1000} kHz",
                     f"{delays[name]} ({first_lag[name]} / {100 * share:.0f} %)",
                     "offline" if sysobj.latency_ms is None else f"{sysobj.latency_ms:g}"]
        trs.append([name, f(s["pesq"]), f(s["stoi"]), f(s["estoi"]), f(s["si_sdr"], 2), f(s["si_sdr_i"], 2),
                    f(s["csig"], 2), f(s["cbak"], 2), f(s["covl"], 2), *extra,
                    f"{s['n_scored']} / {s['pesq_nan']} / {len(s['failed'])}"])
    L += bc.md_table(head, trs)
    snr_vals = sorted({r["snr"] for r in rows[NOISY] if math.isfinite(r["snr"])})
    if snr_vals:
        for key, label, digits in (("pesq", "PESQ-WB", 3), ("si_sdr_i", "SI-SDRi dB", 2)):
            L += ["", f"Mean {label} per input SNR (dB; files per SNR: "
                  + ", ".join(f"{s:g}: {sum(1 for r in rows[NOISY] if r['snr'] == s)}" for s in snr_vals) + "):", ""]
            L += bc.md_table(["system", *[f"{s:g} dB" for s in snr_vals]],
                             [[name, *[f(by_snr(rr, key).get(s, float("nan")), digits) for s in snr_vals]]
                              for name, rr in rows.items()])
    L += ["", "Systems (package, how it was run):", ""]
    L += [f"- **{s.name}** (`{s.package}`): {s.note}"
          + (f"; resampling took {100 * summ[s.name]['resample_s'] / summ[s.name]['proc_s']:.0f} % of its processing "
             f"time (RTF {summ[s.name]['resample_s'] / dur:.4f})" if math.isfinite(summ[s.name]["resample_s"]) and
             summ[s.name]["proc_s"] else "") for s in systems]
    L += [f"- not run: {m}" for m in skipped]
    fails = [(name, n, e) for name, s in summ.items() for n, e in s["failed"]]
    if fails:
        L += ["", "Failed files (reported, not scored):", ""] + [f"- {name}: `{n}`: {e}" for name, n, e in fails]
    L += ["", "Wall time per system in this run, all files (processing + alignment + scoring; in brackets the "
          "processing alone): " + ", ".join(f"{n} {t:.0f} s ({summ[n]['proc_s']:.0f} s)" for n, t in score_s.items())]
    return L


if __name__ == "__main__":
    sys.exit(main())
