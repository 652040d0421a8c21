"""Loader vs training step, and the loader-plus-step loop on 1 vs N processes (docs/scaling.md).

    python benchmarks/train_scaling.py all   [--config configs/student.yaml] [--steps 30] [--nproc 2]
    python benchmarks/train_scaling.py loader [--workers 0 1 2]     # DataLoader alone, samples/s
    python benchmarks/train_scaling.py step                         # train_step alone on one fixed batch
    torchrun --nproc_per_node N benchmarks/train_scaling.py loop    # the real loop, global batch fixed

``all`` runs loader and step here, then the loop under ``torchrun`` with 1 and ``--nproc``
processes, and prints one table. The global batch is the config's ``optim.batch_size`` in
every case (N processes each load and compute 1/N of it), so loop samples/s compare directly.
A distillation config without a teacher checkpoint gets an untrained teacher of the size in
configs/teacher.yaml: the cost of a step does not depend on the weights. Data: the config's
corpus when it exists, else synthetic audio. Every process uses 1 torch thread.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mtakd import distributed as dist  # noqa: E402
from mtakd.checkpoint import save_checkpoint  # noqa: E402
from mtakd.config import TrainConfig, load_config  # noqa: E402
from mtakd.data import collate  # noqa: E402
from mtakd.manifests import training_set  # noqa: E402
from mtakd.models import build_model  # noqa: E402
from mtakd.schedule import EpochSampler, step_groups  # noqa: E402
from mtakd.train import Trainer  # noqa: E402


def make_config(args, tmp: Path, steps: int) -> TrainConfig:
    cfg = load_config(TrainConfig, args.config, [f"run_dir={tmp / 'run'}", "threads=1", "device=cpu", "valid.dir=",
                                                 "valid.synthetic_items=1", "optim.checkpoint_every=0"] + args.overrides)
    if cfg.data.source == "corpus" and not Path(cfg.data.root).is_dir():
        print(f"# corpus {cfg.data.root!r} not found: synthetic data instead", file=sys.stderr)
        cfg.data.source = "synthetic"
    cfg.data.items_per_epoch = (steps + 2) * cfg.optim.batch_size
    if cfg.loss.kd != "none" and not cfg.teacher:
        tcfg = load_config(TrainConfig, ROOT / "configs" / "teacher.yaml")
        path = tmp / "teacher.safetensors"
        # rank 0 writes it; the others read it only after Trainer's first collective
        if dist.is_main() and not path.exists():
            torch.manual_seed(0)
            save_checkpoint(path, build_model(tcfg.model.name, tcfg.model.args))
        cfg.teacher = str(path)
    return cfg


def bench_loader(cfg: TrainConfig, workers: int, batches: int) -> float:
    """Samples/s of the DataLoader alone (after its first batch: worker start-up excluded)."""
    ds = training_set(cfg.data, "train", seed=cfg.seed)
    ds.set_epoch(0)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.optim.batch_size, sampler=EpochSampler(len(ds), cfg.seed),
                                         collate_fn=collate, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = sum(len(next(it)["noisy"]) for _ in range(batches))
    return n / (time.perf_counter() - t0)


def bench_step(cfg: TrainConfig, steps: int) -> float:
    """Samples/s of ``Trainer.train_step`` alone, on one batch held in memory."""
    tr = Trainer(cfg, progress=False)
    tr.train_set.set_epoch(0)
    group = next(step_groups(tr._loader(), cfg.optim.grad_accum))
    tr.train_step(group)  # warm-up: first-call allocations
    t0 = time.perf_counter()
    for _ in range(steps):
        tr.train_step(group)
    return steps * cfg.optim.batch_size / (time.perf_counter() - t0)


def bench_loop(cfg: TrainConfig, steps: int) -> dict:
    """The training loop (load + step) for ``steps`` global batches; run under torchrun."""
    tr = Trainer(cfg, progress=False)
    tr.train_set.set_epoch(0)
    tr.sampler.set_epoch(0, 0)
    it = step_groups(tr._loader(), cfg.optim.grad_accum)
    tr.train_step(next(it))  # warm-up step, not timed
    dist.barrier()
    t_data = t_step = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        a = time.perf_counter()
        group = next(it)
        b = time.perf_counter()
        tr.train_step(group)
        t_data, t_step = t_data + b - a, t_step + time.perf_counter() - b
    dist.barrier()
    wall = time.perf_counter() - t0
    parts = dist.all_gather_objects({"data_s": round(t_data, 2), "step_s": round(t_step, 2)})
    return {"world": tr.ctx.world, "steps": steps, "global_batch": cfg.optim.batch_size, "wall_s": round(wall, 2),
            "samples_per_s": round(steps * cfg.optim.batch_size / wall, 2), "per_rank": parts}


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPU cores, load average {load} (1/5/15 min), torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("all", "loader", "step", "loop"))
    ap.add_argument("--config", default=str(ROOT / "configs" / "student.yaml"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader: worker counts to try")
    ap.add_argument("--nproc", type=int, default=2, help="all: the process count compared with 1")
    ap.add_argument("--json", help="loop: write the result here (rank 0)")
    ap.add_argument("overrides", nargs="*", help="dotted config overrides")
    args = ap.parse_intermixed_args()  # overrides may follow options
    torch.set_num_threads(1)
    # torchrun's processes share one folder (run dir, teacher), chosen by the launching `all`
    tmp = Path(os.environ.get("MTAKD_BENCH_TMP") or tempfile.mkdtemp(prefix="mtakd-scaling-"))
    if args.mode == "loop":
        res = bench_loop(make_config(args, tmp, args.steps), args.steps)
        if dist.is_main():
            print(json.dumps(res))
            if args.json:
                Path(args.json).write_text(json.dumps(res))
        dist.cleanup()
        return
    cfg = make_config(args, tmp, args.steps)
    out = {"machine_before": machine(), "config": args.config, "overrides": args.overrides, "data": cfg.data.source,
           "global_batch": cfg.optim.batch_size}
    if args.mode in ("all", "loader"):
        out["loader_samples_per_s"] = {w: round(bench_loader(cfg, w, max(4, args.steps // 3)), 1) for w in args.workers}
        print(f"loader alone: {out['loader_samples_per_s']} samples/s by num_workers", flush=True)
    if args.mode in ("all", "step"):
        out["step_samples_per_s"] = round(bench_step(make_config(args, Path(tempfile.mkdtemp(dir=tmp)), args.steps), args.steps), 1)
        print(f"train step alone: {out['step_samples_per_s']} samples/s", flush=True)
    if args.mode == "all":
        loops = {}
        for n in (1, args.nproc):
            d = Path(tempfile.mkdtemp(dir=tmp))
            env = {**os.environ, "MTAKD_BENCH_TMP": str(d), "OMP_NUM_THREADS": "1"}
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n), __file__, "loop",
                   "--config", args.config, "--steps", str(args.steps), "--json", str(d / "res.json")] + args.overrides
            subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
            loops[n] = json.loads((d / "res.json").read_text())
            print(f"loop on {n} process(es): {loops[n]['samples_per_s']:.1f} samples/s", flush=True)
        out["loop"] = loops
        out["speedup"] = round(loops[args.nproc]["samples_per_s"] / loops[1]["samples_per_s"], 2)
        out["machine_after"] = machine()
        print(f"speed-up 1 -> {args.nproc} processes: x{out['speedup']}")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
