"""One torchrun launch that exercises every distributed path (imports are the slow part on a
busy 2-core machine, so tests/test_distributed.py launches this once and checks its results).

Usage: torchrun --nproc_per_node 2 tests/dist_worker.py WORKDIR   (WORKDIR prepared by the test)

1. ``mtakd distill`` through the CLI entry point (the path ``torchrun -m mtakd distill`` takes);
2. a run that crashes mid-epoch on every rank, resumed with ``Trainer(resume=True)``;
   the replicas are compared with each other and with run 1;
3. sharded enhancement of WORKDIR/audio, then the same command again (everything skipped),
   through the API, ``mtakd enhance-sharded`` and ``mtakd enhance --distributed``.
Rank 0 writes WORKDIR/results.json.
"""
from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

T0 = time.perf_counter()

import torch
import torch.distributed as tdist

from mtakd.checkpoint import load_checkpoint
from mtakd.cli import main as cli_main
from mtakd.config import TrainConfig, load_config
from mtakd.shard import enhance_sharded
from mtakd.train import Trainer

work = Path(sys.argv[1])
spec = json.loads((work / "spec.json").read_text())
torch.set_num_threads(1)
# a group created here (not by mtakd.distributed.init) is left open by train() and the CLI,
# so the three parts below share one group
tdist.init_process_group("gloo")
rank, world = tdist.get_rank(), tdist.get_world_size()
results: dict = {"world": world, "seconds": {"imports_and_group": time.perf_counter() - T0}}


def lap(name: str) -> None:
    results["seconds"][name] = time.perf_counter() - T0

# 1. the CLI under torchrun
rc = cli_main(["distill", "--no-progress", "--run-dir", str(work / "full")] + spec["cli"])
results["cli_rc"] = rc
lap("cli_distill")


# 2. crash at step 5 (after the step-3 checkpoint, mid-epoch 2), then resume on every rank
class Crash(RuntimeError):
    pass


class CrashingTrainer(Trainer):
    def compute(self, noisy, clean):
        if self.step == 5:
            raise Crash()
        return super().compute(noisy, clean)


cfg = load_config(TrainConfig, None, spec["overrides"] + [f"run_dir={work / 'part'}"])
try:
    CrashingTrainer(cfg, progress=False).fit()
except Crash:
    pass
tdist.barrier()
resumed = Trainer(cfg, resume=True, progress=False)
results["resumed_at"] = resumed.step
resumed.fit()
flat = torch.cat([p.detach().flatten() for p in list(resumed.model.parameters()) + list(resumed.objective.parameters())])
replicas = [torch.zeros_like(flat) for _ in range(world)]
tdist.all_gather(replicas, flat)
results["replica_max_diff"] = max(float((r - replicas[0]).abs().max()) for r in replicas)
full_model, _, full_aux = load_checkpoint(work / "full" / "last.safetensors")
results["resume_vs_full_max_diff"] = max(float((a - b).detach().abs().max()) for a, b in zip(full_model.parameters(), resumed.model.parameters()))
results["log_vars_resumed"] = resumed.objective.uncertainty.log_vars.tolist()
results["log_vars_full"] = full_aux["loss.uncertainty.log_vars"].tolist()
lap("crash_and_resume")

# 3. sharded enhancement, then a re-run that must skip every finished file
model = str(work / "full" / "last.safetensors")
first = enhance_sharded([work / "audio"], work / "enhanced", model=model)
# the summary is every rank's list, concatenated: a file written twice would appear twice
results["first"] = {"enhanced": [str(d) for _, d in first.enhanced], "failed": [m for _, m in first.failed]}
second = enhance_sharded([work / "audio"], work / "enhanced", model=model)
results["second"] = {"enhanced": len(second.enhanced), "skipped": len(second.skipped), "failed": len(second.failed)}
rc2 = cli_main(["enhance-sharded", "-q", str(work / "audio"), "-o", str(work / "enhanced"), "--model", model])
results["cli_enhance_rc"] = rc2
# the same through 'torchrun -m mtakd enhance --distributed'
results["cli_enhance_distributed_rc"] = cli_main(["enhance", "--distributed", str(work / "audio"), "-o", str(work / "enhanced"),
                                                  "--model", model])
lap("sharded_enhancement")

tdist.barrier()
if rank == 0:
    (work / "results.json").write_text(json.dumps(results, indent=1))
# the resumed trainer's DDP replica holds the group: release it before the group is destroyed, so
# no gloo thread lives on into interpreter shutdown (seen once: SIGABRT on rank 1 after all the work)
del resumed
gc.collect()
tdist.destroy_process_group()
