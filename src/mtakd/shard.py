"""Batch enhancement sharded over torchrun processes: ``mtakd enhance-sharded``.

``torchrun --nproc_per_node N -m mtakd enhance-sharded INPUT... -o OUT [--model CKPT]``

Every rank plans the same job (``batch.plan_outputs``: the same sorted list of
(input, output) pairs from the same inputs) and takes the pairs ``i`` with ``i % N == rank``,
so each output has exactly one writer and no coordination is needed while working. Outputs
are written to a hidden temporary file and renamed (``enhance.enhance_file``), so a killed
run leaves only complete files; an existing output is skipped (unless ``--overwrite``), so
re-running the same command finishes only what is missing. At the end the per-rank results
are gathered and rank 0 prints one summary with every failure. Enhancement runs on the CPU
(the ``gloo`` backend only carries that final gather).

Plain ``python -m mtakd enhance-sharded`` (no torchrun) is one shard of one: a resumable
``enhance``.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # batch/enhance pull in torch; the CLI imports this module at start-up
    from .batch import EnhanceSummary

# torch and the enhancement engine are imported inside the functions: the CLI imports this
# module for its arguments, and ``mtakd --help`` should not load torch


def shard(items: list, rank: int, world: int) -> list:
    """Items ``i`` with ``i % world == rank``: disjoint shards that together cover ``items``."""
    return items[rank::world]


def enhance_sharded(inputs, out_dir, model=None, rank: int | None = None, world: int | None = None,
                    overwrite: bool = False, backend: str = "torch",
                    progress: Callable[[int, int, str, Path, Path, str], None] | None = None) -> EnhanceSummary:
    """Enhance this rank's shard of ``inputs`` into ``out_dir``; returns the summary of *all*
    ranks (gathered when a process group exists, else this shard's own).

    ``rank``/``world`` default to the process group's (0/1 without one). Model problems and
    outputs that would overwrite an input raise before any file is touched, on every rank
    alike (every rank checks the same things).
    """
    from . import distributed as dist
    from .batch import EnhanceSummary, check_output_folder, plan_outputs, run_pairs
    from .enhancement import FILE_HOPS, get_engine

    rank = dist.rank() if rank is None else rank
    world = dist.world_size() if world is None else world
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    root = Path(out_dir)
    engine = get_engine(model, backend, FILE_HOPS)
    pairs, planning_failures = plan_outputs(inputs, root)
    check_output_folder(root)  # every rank creates/probes it (exist_ok): same answer everywhere
    pairs = sorted(pairs, key=lambda p: str(p[1]))  # one order on every rank, whatever the input order
    mine = shard(pairs, rank, world)
    # planning failures are the same on every rank: report them once
    local = run_pairs(mine, engine, EnhanceSummary(failed=list(planning_failures) if rank == 0 else []), overwrite, progress)
    total = EnhanceSummary()
    for part in dist.all_gather_objects(local):  # every rank learns the whole outcome
        total.enhanced += part.enhanced
        total.skipped += part.skipped
        total.failed += part.failed
        total.warnings += part.warnings
        total.not_attempted += part.not_attempted
    return total


def cmd_enhance_sharded(args: argparse.Namespace) -> int:
    """CLI body; also what ``mtakd enhance --distributed`` calls (same argument names:
    inputs, output, model, backend, overwrite). Exit 0: every file done or skipped; 1: some
    failed (listed once, by rank 0); 2 (raised): unusable model or output folder."""
    from . import distributed as dist

    ctx = dist.init("cpu")  # enhancement runs on the CPU; gloo carries the final gather
    tag = f"r{ctx.rank} " if ctx.distributed else ""

    def progress(i, n, status, src, dst, detail):
        if status == "failed":
            print(f"[{tag}{i}/{n}] FAILED {detail}", flush=True)
        elif status == "enhanced" and not getattr(args, "quiet", False):
            print(f"[{tag}{i}/{n}] {src} -> {dst} ({detail})", flush=True)

    try:
        summary = enhance_sharded(args.inputs, args.output, model=args.model, overwrite=args.overwrite,
                                  backend=args.backend, progress=progress)
    finally:
        dist.cleanup()
    if ctx.is_main:
        for w in summary.warnings:
            print(f"mtakd: warning: {w}", file=sys.stderr)
        where = f" by {ctx.world} processes" if ctx.distributed else ""
        print(f"{summary}{where}", flush=True)
        if summary.failed:
            print(f"mtakd: {len(summary.failed)} file(s) failed:", file=sys.stderr)
            for _, msg in summary.failed:
                print(f"mtakd: error: {msg}", file=sys.stderr)
    return 0 if summary.ok else 1


def register_cli(sub) -> None:
    p = sub.add_parser("enhance-sharded", help="enhance files/folders split over torchrun processes (resumable)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".wav/.flac/.ogg files or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder (structure kept, 16-bit .wav)")
    p.add_argument("--model", "-m", help="checkpoint (.safetensors) or ONNX file; default: the shipped student")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--overwrite", action="store_true", help="redo existing outputs (default: skip them, so a re-run resumes)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only failures and the summary")
    p.set_defaults(func=cmd_enhance_sharded)
