"""Shared helpers of the benchmark scripts (speed.py, scaling.py, peers_onnx.py, the dev-set
reports such as error_split.py).

Import this module *before* numpy/torch/onnxruntime: importing it pins the BLAS/OpenMP
thread pools to one thread (environment variables are read when those libraries load).
Everything here imports only the standard library and numpy at module level, so the
torch-free scaling child (onnxruntime only) can use it too.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import datetime
import json
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from mtakd.atomic import write_bytes_atomic

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE_RATE = 16000


# ----------------------------------------------------------------------------- machine
def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's name plus what tells two hosts of the same name apart.

    Virtual machines often report only "AMD EPYC"; the speed runs of this project landed on
    hosts of that one name that differ 2-3x in per-core speed (an AVX2 one, and a Zen 4 one
    with AVX-512 VNNI), so the family/model numbers and the widest vector ISA are named too.
    """
    try:
        text = Path("/proc/cpuinfo").read_text() if cpuinfo is None else cpuinfo
    except OSError:
        return platform.processor() or "unknown CPU"
    fields: dict[str, str] = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        fields.setdefault(k.strip(), v.strip())
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    flags = set(fields.get("flags", "").split())
    isa = ("AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "AVX" if "avx" in flags else "")
    if isa and {"avx512_vnni", "avx_vnni"} & flags:
        isa += " VNNI"
    ident = [f"family {fields['cpu family']} model {fields['model']}"] if "cpu family" in fields and "model" in fields else []
    extra = ", ".join(ident + ([isa] if isa else []))
    return f"{name} ({extra})" if extra else name


def torch_one_thread():
    """Import torch pinned to one intra-op and one inter-op thread (the speed runs' setting)."""
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    return torch


def load_average() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for name in ("torch", "onnxruntime", "onnx"):
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
    try:
        from mtakd import __version__ as v

        out["mtakd"] = v
    except ImportError:
        pass
    return out


def git_commit() -> str:
    """Short commit, with ``+dirty`` if tracked files differ from it (read-only git calls)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        if not head:
            return "unknown"
        dirty = subprocess.run(["git", "diff-index", "--quiet", "HEAD", "--"], cwd=REPO, capture_output=True,
                               timeout=10).returncode != 0
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> dict:
    """CPU, cores, memory, kernel; call ``finish_machine_info`` at the end for the end load."""
    mem = ""
    try:
        m = re.search(r"MemTotal:\s+(\d+) kB", Path("/proc/meminfo").read_text())
        mem = f"{int(m.group(1)) / 2**20:.1f} GiB" if m else ""
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "memory": mem,
        "kernel": platform.release(),
        "load_avg_start": load_average(),
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
    }


def finish_machine_info(info: dict) -> dict:
    info["load_avg_end"] = load_average()
    info["finished"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    info["versions"] = _versions()
    return info


def command_line() -> str:
    """The command as typed from the repository root (interpreter shown as ``python``)."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(REPO)
    except ValueError:
        pass
    return "PYTHONPATH=src python " + shlex.join([str(script), *sys.argv[1:]])


def machine_lines(info: dict) -> list[str]:
    v = info.get("versions", {})
    vers = ", ".join(f"{k} {v[k]}" for k in ("python", "torch", "onnxruntime", "onnx", "numpy", "mtakd") if k in v)
    la0 = " / ".join(f"{x:.2f}" for x in info.get("load_avg_start", []))
    la1 = " / ".join(f"{x:.2f}" for x in info.get("load_avg_end", []))
    return [
        f"- Command: `{info.get('command', command_line())}`",
        f"- Machine: {info['cpu']}, {info['logical_cores']} logical cores ({info['usable_cores']} usable), "
        f"{info['memory']} RAM, Linux {info['kernel']}",
        f"- Load average (1/5/15 min) at start: {la0}; at end: {la1} "
        f"(above ~0.0 means other processes competed for the {info['logical_cores']} cores)",
        f"- Versions: {vers}; commit `{info['commit']}`",
        f"- Run: {info['started']} to {info.get('finished', '?')}",
    ]


# ----------------------------------------------------------------------------- audio
def speech_like_noisy(seconds: float, seed: int = 0, snr_db: float = 5.0) -> np.ndarray:
    """Generated speech-like signal in pink noise at ``snr_db`` (mtakd.synth), float32 (N,).

    The length is rounded down to whole 10 ms hops so every streaming feed is a full hop.
    (Imports mtakd.synth, hence torch: call it in the parent, not in torch-free children.)
    """
    from mtakd.mixing import mix_at_snr
    from mtakd.synth import synth_noise, synth_speech

    n = int(seconds * SAMPLE_RATE) // 160 * 160
    rng = np.random.default_rng(seed)
    clean = synth_speech(n, rng)
    noise = synth_noise(n, rng, "pink")
    return mix_at_snr(clean, noise, snr_db)[0]


def load_wav_16k(path: str | os.PathLike, seconds: float | None = None) -> np.ndarray:
    """A file as 16 kHz mono float32, cut to ``seconds`` (if given) and to whole hops."""
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != SAMPLE_RATE:
        from mtakd.audio import resample

        x = resample(x, sr, SAMPLE_RATE)
    if seconds is not None:
        x = x[: int(seconds * SAMPLE_RATE)]
    return np.ascontiguousarray(x[: x.size // 160 * 160], dtype=np.float32)


def bench_audio(wav: str | None, seconds: float) -> tuple[np.ndarray, str]:
    """The audio a speed benchmark times, and how the report describes it: ``wav`` as 16 kHz
    mono (first ``seconds``), or generated speech-like audio in pink noise at 5 dB."""
    if wav:
        x = load_wav_16k(wav, seconds)
        return x, f"`{wav}` (first {x.size / SAMPLE_RATE:.2f} s, 16 kHz mono)"
    x = speech_like_noisy(seconds)
    return x, f"{x.size / SAMPLE_RATE:.2f} s of generated speech-like audio in pink noise at 5 dB SNR (mtakd.synth, seed 0)"


# ----------------------------------------------------------------------------- stats
def frame_stats_ms(times_ns: np.ndarray) -> dict[str, float]:
    t = np.asarray(times_ns, dtype=np.float64) / 1e6
    if t.size == 0:
        return {"median_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan"), "mean_ms": float("nan")}
    return {"median_ms": float(np.median(t)), "p99_ms": float(np.percentile(t, 99)), "max_ms": float(t.max()),
            "mean_ms": float(t.mean())}


def onnx_session(model, threads: int = 1):
    """onnxruntime session at ``threads`` intra-op threads, 1 inter-op thread, sequential."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    src = bytes(model) if isinstance(model, (bytes, bytearray)) else str(model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


class Timer:
    """Wall and this-thread CPU time of a block; ``cpu_share`` < ~0.9 means the thread waited
    for a core (contention) during the measurement."""

    def __enter__(self):
        self.c0, self.t0 = time.thread_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.thread_time() - self.c0
        return False

    @property
    def cpu_share(self) -> float:
        return self.cpu / self.wall if self.wall > 0 else float("nan")


# ----------------------------------------------------------------------------- output
def md_table(headers: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def update_section(path: str | os.PathLike, name: str, lines: list[str]) -> None:
    """Replace the ``name`` section of a markdown file (between HTML-comment markers), or
    append it; creates the file with a ``# Benchmarks`` title. The other scripts' sections and
    any hand-written text outside the markers are kept."""
    path = Path(path)
    begin, end = f"<!-- begin {name} (generated; edit the script, not this section) -->", f"<!-- end {name} -->"
    body = "\n".join([begin, *lines, end])
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    pat = re.compile(re.escape(f"<!-- begin {name} ") + r".*?" + re.escape(end), re.S)
    if pat.search(text):
        text = pat.sub(lambda _m: body, text)
    else:
        text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, text.encode())


def publish(args, section: str, lines: list[str], result: dict) -> None:
    """End of every benchmark script: JSON to ``args.json``, the markdown ``lines`` into the
    ``section`` of ``args.out`` (each only when asked for)."""
    if args.json:
        write_json(args.json, result)
        print(f"\nwrote {args.json}", file=sys.stderr)
    if args.out:
        update_section(args.out, section, lines)
        print(f"updated the '{section}' section of {args.out}", file=sys.stderr)


def write_json(path: str | os.PathLike, obj) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)) + "\n")


def devset_snrs(devset: str | os.PathLike) -> dict[str, float | None]:
    """``{file name: input SNR dB}`` from a dev set's ``manifest.csv`` (``mtakd build-devset``
    writes one); any name it does not list, or every name of a set without one (recorded pairs
    such as VoiceBank-DEMAND's), maps to None."""
    import csv
    from collections import defaultdict

    snr: dict[str, float | None] = defaultdict(lambda: None)
    man = Path(devset) / "manifest.csv"
    if man.is_file():
        with open(man, newline="") as f:
            snr.update({r["name"]: float(r["snr"]) for r in csv.DictReader(f)})
    return snr


def emit(text: str, out: str | os.PathLike | None) -> None:
    """Print a report and, with ``out``, also write it there (a markdown file)."""
    print(text)
    if out:
        Path(out).write_text(text)



def model_args(ap, specs: list[str], devset: Path) -> dict[str, Path]:
    """``--model NAME=CKPT`` values as ``{name: path}``, and the dev set checked for paired
    files; a mistake is a one-line ``ap.error`` naming the argument, not a traceback."""
    models = {}
    for m in specs:
        name, sep, path = m.partition("=")
        if not sep:
            ap.error(f"--model wants NAME=CKPT, got {m!r}")
        if not Path(path).is_file():
            ap.error(f"--model {name}: checkpoint {path} not found")
        models[name] = Path(path)
    if not (Path(devset) / "clean").is_dir() or not (Path(devset) / "noisy").is_dir():
        ap.error(f"{devset}: no clean/ and noisy/ folders of paired files")
    return models


def models_on_files(devset: Path, models: dict[str, Path], max_files: int | None = None):
    """``(items, stft, [(name, model), ...])``: a paired set's files (evenly spaced, read once for
    every model; each a dict with ``name``, ``clean``, ``noisy``), the STFT, and each checkpoint
    loaded for inference, lazily in turn (one model in memory at a time)."""
    from mtakd.checkpoint import load_model
    from mtakd.data import PairedDataset
    from mtakd.stft import STFT

    pairs = PairedDataset(devset, max_files)
    items = [pairs[i] for i in range(len(pairs))]
    return items, STFT(), ((name, load_model(path).eval()) for name, path in models.items())

