"""On-the-fly mixer throughput at one thread, with the lazy decoded-audio cache and with
``data.preload`` (the whole split decoded up front).

    PYTHONPATH=src python benchmarks/loader_speed.py --root ../shared/data --items 200

Items are 3 s training mixtures of ``configs/student.yaml``'s data settings; the first
``--warm`` items of each pass are untimed.
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from mtakd.config import TrainConfig, load_config
from mtakd.training_data import training_set


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="../shared/data")
    ap.add_argument("--config", default="configs/student.yaml")
    ap.add_argument("--items", type=int, default=200)
    ap.add_argument("--warm", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    data = dataclasses.replace(load_config(TrainConfig, args.config).data, root=args.root, items_per_epoch=100000)
    for preload in (False, True):
        t0 = time.perf_counter()
        ds = training_set(dataclasses.replace(data, preload=preload), "train", seed=0)
        for i in range(args.warm):
            ds[i]
        t1 = time.perf_counter()
        for i in range(args.warm, args.warm + args.items):
            ds[i]
        dt = time.perf_counter() - t1
        print(f"preload={preload}: {args.items / dt:.0f} items/s ({data.segment_s:g} s mixtures, 1 thread); "
              f"set-up + {args.warm} warm-up items {t1 - t0:.1f} s")


if __name__ == "__main__":
    main()
