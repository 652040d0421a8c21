"""Process groups for runs launched by ``torchrun`` (PyTorch's own engine, nothing home-made).

``torchrun --nproc_per_node N -m mtakd ...`` starts N processes and gives each the variables
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``. ``init()`` joins the
group they describe (``nccl`` when the process drives a GPU, ``gloo`` on CPU) and returns a
``Context``; without those variables (a plain ``python -m mtakd``) it creates no group and
every helper below is a no-op, so single-process code paths stay exactly as they were.

Helpers: ``is_main()`` (rank 0: the only one that logs and writes checkpoints), ``barrier()``,
``all_reduce_mean()``, ``all_gather_objects()``, ``on_main()`` (run a check on rank 0 and raise
its exception on every rank, so that no rank waits forever for one that gave up),
``wrap_ddp()`` and ``cleanup()``.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

#: how long a collective waits for a late rank before failing (rank 0 validates and writes
#: checkpoints while the others wait at a barrier; PESQ on a large dev set takes minutes)
TIMEOUT = datetime.timedelta(minutes=30)

_owned = False  # True when init() created the group (then cleanup() destroys it)


@dataclass(frozen=True)
class Context:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when not launched by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: this rank's GPU (``cuda:LOCAL_RANK``) when CUDA is available, else the CPU."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            from .config import ConfigError

            raise ConfigError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
        return torch.device("cuda", local % max(1, torch.cuda.device_count()))
    if device == "cpu":
        return torch.device("cpu")
    from .config import ConfigError

    raise ConfigError(f"device must be auto, cpu or cuda, got '{device}'")


def init(device: str = "auto") -> Context:
    """Join torchrun's process group (idempotent) and pick this rank's device."""
    global _owned
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)  # before the group exists, so nccl binds the right GPU
    world = env_world_size()
    if world > 1 and not dist.is_initialized():
        # env:// reads MASTER_ADDR/PORT, RANK and WORLD_SIZE as torchrun set them
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
        _owned = True
    if dist.is_initialized():
        return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), dev)
    return Context(device=dev)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (also true in a single process); still right after ``cleanup()`` under torchrun."""
    return rank() == 0


def barrier() -> None:
    if is_initialized():
        if dist.get_backend() == "nccl":  # nccl wants to know the GPU, else it guesses and warns
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` over ranks (a new tensor; ``t`` itself in a single process)."""
    if not is_initialized():
        return t
    out = t.clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def on_main(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on rank 0 only; if it raises, every rank raises the same exception.

    For checks with side effects (creating the run folder): the other ranks must neither
    repeat them nor wait at the next collective for a rank 0 that has already given up.
    """
    if not is_initialized():
        return fn()
    box: list[Any] = [None]
    result = None
    if dist.get_rank() == 0:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - re-raised below on every rank
            box[0] = e
    try:
        dist.broadcast_object_list(box, src=0)
    except Exception:  # noqa: BLE001 - an exception that does not pickle: keep its words
        box = [RuntimeError("rank 0 failed")]
    if box[0] is not None:
        raise box[0]
    return result


def wrap_ddp(module: nn.Module, ctx: Context) -> nn.Module:
    """``DistributedDataParallel(module)`` when distributed, else ``module`` unchanged.

    Every parameter of ``module`` (network, uncertainty log-variances, feature projection)
    has its gradient averaged over ranks in the backward pass and starts from rank 0's
    values, so all replicas stay identical.
    """
    if not ctx.distributed:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def cleanup() -> None:
    """Destroy the group if ``init()`` created it (a group made by the caller is left alone)."""
    global _owned
    if _owned and is_initialized():
        dist.destroy_process_group()
    _owned = False
