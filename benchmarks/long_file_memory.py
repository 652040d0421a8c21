"""Peak memory and time of ``mtakd enhance`` on a very long file (default: one hour).

    nice -n 10 .venv/bin/python benchmarks/long_file_memory.py            # 60 min, + a 1 min control
    .venv/bin/python benchmarks/long_file_memory.py --minutes 5 --keep    # quicker

Writes a 16 kHz 16-bit mono WAV of noisy synthetic audio into ``--workdir`` (chunk by chunk,
so generating it costs little memory; one hour is ~115 MB), saves the default-size student
(``build_model("student")``, untrained weights: memory does not depend on the values) as a
checkpoint, then enhances the file in a *fresh subprocess* through the CLI code path
(``mtakd.cli.main(["enhance", ...])``), so the measurement holds only what enhancement needs.
The child reports its peak resident memory (``VmHWM`` from /proc/self/status, cross-checked
with ``getrusage``), the resident memory after start-up (imports + model, before the file is
opened) and wall/CPU time. A 1-minute control run shows the peak does not grow with length.
Results are printed as one JSON object per run and a summary table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

SR = 16000


def _vm(key: str) -> float:
    """A ``/proc/self/status`` field (VmRSS, VmHWM, ...) in MiB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def make_wav(path: Path, minutes: float, seed: int = 0) -> None:
    """Noisy tones + noise, written 10 s at a time (bounded memory)."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(seed)
    n_total, chunk = int(minutes * 60 * SR), 10 * SR
    with sf.SoundFile(path, "w", SR, 1, "PCM_16", format="WAV") as f:
        for start in range(0, n_total, chunk):
            n = min(chunk, n_total - start)
            t = (start + np.arange(n)) / SR
            tone = 0.2 * np.sin(2 * np.pi * (150 + 50 * np.sin(2 * np.pi * 0.3 * t)) * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            f.write((tone + 0.05 * rng.standard_normal(n)).astype(np.float32))


def child(src: str, out_dir: str, ckpt: str) -> None:
    """Runs in the subprocess: enhance through the CLI entry point, report memory and time."""
    import torch

    torch.set_num_threads(1)
    from mtakd.checkpoint import load_model  # noqa: F401  (imports counted in the start-up RSS)
    from mtakd.cli import main
    from mtakd.enhancement import get_engine

    get_engine(ckpt)  # model loaded and cached: the start-up RSS includes it
    startup = _vm("VmRSS")
    t0, c0 = time.perf_counter(), time.process_time()
    code = main(["enhance", src, "-o", out_dir, "--model", ckpt, "--overwrite"])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({
        "exit": code, "startup_rss_mib": round(startup, 1), "peak_rss_mib": round(_vm("VmHWM"), 1),
        "ru_maxrss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
    }))


def run(minutes: float, work: Path, ckpt: Path) -> dict:
    import numpy as np
    import soundfile as sf

    src = work / f"long_{minutes:g}min.wav"
    if not src.exists():
        make_wav(src, minutes)
    out_dir = work / "out"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    proc = subprocess.run([sys.executable, __file__, "--child", str(src), str(out_dir), str(ckpt)],
                          capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    res = json.loads(lines[-1])
    out = out_dir / src.name
    info = sf.info(out)
    ok = info.frames == sf.info(src).frames and info.samplerate == SR
    with sf.SoundFile(out) as f:  # check the output block-wise: finite, not silent
        peak = max(float(np.abs(b).max()) for b in f.blocks(blocksize=60 * SR, dtype="float32"))
    res.update(minutes=minutes, input_mb=round(src.stat().st_size / 1e6, 1), output_ok=bool(ok and peak > 0),
               rtf=round(res["wall_s"] / (minutes * 60), 4))
    out.unlink()
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--control-minutes", type=float, default=1.0, help="a short run for comparison (0: none)")
    ap.add_argument("--workdir", default="/tmp/mtakd_long_file")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", nargs=3, metavar=("SRC", "OUT_DIR", "CKPT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from mtakd.checkpoint import save_checkpoint
    from mtakd.models import build_model

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    ckpt = work / "student_default.safetensors"
    save_checkpoint(ckpt, build_model("student"))
    results = [run(m, work, ckpt) for m in ([args.control_minutes] if args.control_minutes else []) + [args.minutes]]
    for r in results:
        print(json.dumps(r))
    print(f"\n{'minutes':>8} {'input MB':>9} {'start-up RSS':>13} {'peak RSS':>9} {'wall s':>7} {'CPU s':>6} {'RTF':>7}  output")
    for r in results:
        print(f"{r['minutes']:>8g} {r['input_mb']:>9} {r['startup_rss_mib']:>10} MiB {r['peak_rss_mib']:>5} MiB "
              f"{r['wall_s']:>7} {r['cpu_s']:>6} {r['rtf']:>7}  {'ok' if r['output_ok'] else 'WRONG'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
