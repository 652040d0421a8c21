"""Self-describing checkpoints: safetensors weights + JSON metadata, never pickle.

A model file is one ``.safetensors`` file whose tensors are ``model.*`` (the weights) and
optionally ``aux.*`` (e.g. the learned uncertainty weights of the loss), and whose header
metadata ``mtakd`` holds JSON: ``{format, format_version, model: {name, args}, config,
versions, train}``. A path is enough to rebuild the model (asteroid's habit); nothing in the
file is executed, and its description is checked against the tensors' shapes on the ``meta``
device before any weight memory is allocated. Files are serialised in memory, written to a
temporary name with plain ``os.write`` (so a full disk is an ``OSError``, never a silently
short file), fsynced and renamed: an interrupted write never leaves a broken file under the
final name, and a temporary file left by a killed writer is removed by the next save.

Training state for ``--resume`` (optimiser, scheduler, counters, RNG) goes in a second file,
``<run>/train_state.safetensors``, built with the same flattening of nested state dicts.
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from . import __version__
from .atomic import atomic_file, os_error_reason
from .atomic import write_all as _write_all  # a module attribute: tests patch it to simulate a full disk
from .config import ConfigError
from .models import build_model, model_args, model_name

FORMAT = "mtakd-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A model/checkpoint file cannot be used; the message names the file and what to do."""


#: the models shipped inside the package (``pretrained:NAME`` names ``NAME.safetensors`` here)
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def resolve_checkpoint(spec: str, key: str = "init") -> Path:
    """``pretrained:NAME`` -> the shipped ``PRETRAINED_DIR/NAME.safetensors``; else a path.

    ``key`` names the setting in the error (``init``, ``teacher``) when no such model is shipped.
    """
    if spec.startswith("pretrained:"):
        name = spec.split(":", 1)[1]
        path = PRETRAINED_DIR / f"{name}.safetensors"
        if not path.is_file():
            shipped = sorted(p.stem for p in PRETRAINED_DIR.glob("*.safetensors"))
            raise ConfigError(f"{key}={spec}: no shipped model '{name}'; shipped: {', '.join(shipped) or 'none'}")
        return path
    return Path(spec)


def versions() -> dict[str, str]:
    return {"mtakd": __version__, "torch": torch.__version__, "python": platform.python_version()}


def atomic_save_tensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically (``mtakd.atomic``: temporary file, fsync, rename).

    Raises ``OSError`` (strerror says "disk full" when it is) with nothing left behind: the
    file under ``path``, if any, is the previous complete one.
    """
    path = Path(path)
    # serialised in memory: safetensors' own file writer drops write errors (a full disk gives a
    # short file and no exception), plain os.write reports them
    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, mode=0o644) as f:  # model files are meant to be shared
            _write_all(f.fd, data)
    except OSError as e:
        raise OSError(e.errno, os_error_reason(e), str(path)) from None


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors and header metadata; any defect becomes a one-line ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file; check the path")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(9)
    # a safetensors file starts with a little-endian u64 header length, then a JSON '{'
    n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
    if not (len(head) == 9 and head[8:9] == b"{" and 0 < n <= size - 8):
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise CheckpointError(f"{path}: looks like a pickle/PyTorch .pt file; mtakd only loads safetensors checkpoints (nothing in a model file is executed)")
        raise CheckpointError(f"{path}: not a safetensors file (it may be truncated or of another format); use a checkpoint written by mtakd")
    try:
        tensors = load_file(str(path))
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]}); it may be truncated or of another format") from None
    return tensors, meta


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: dict[str, Any] | None = None,
    aux: dict[str, torch.Tensor] | None = None,
    train: dict[str, Any] | None = None,
) -> None:
    """Save ``model`` (a registry model) with its name, args, run config and versions."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update({f"aux.{k}": v for k, v in (aux or {}).items()})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": {"name": model_name(model), "args": model_args(model)},
        "config": config or {},
        "versions": versions(),
        "train": train or {},
    }
    atomic_save_tensors(tensors, path, {"mtakd": json.dumps(meta)})


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return ``(tensors, meta)`` after checking the header describes an mtakd model."""
    tensors, raw = read_safetensors(path)
    try:
        meta = json.loads(raw["mtakd"])
        name, args = meta["model"]["name"], meta["model"]["args"]
    except (KeyError, TypeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{path}: safetensors file without mtakd metadata (model name/args); it was not written by mtakd") from None
    if meta.get("format") != FORMAT or int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{path}: unsupported checkpoint format {meta.get('format')} v{meta.get('format_version')}; upgrade mtakd")
    if not isinstance(name, str) or not isinstance(args, dict):
        raise CheckpointError(f"{path}: malformed model description in the metadata")
    return tensors, meta


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict[str, Any], dict[str, torch.Tensor]]:
    """Rebuild the model from the file alone: ``(model in eval mode, meta, aux tensors)``.

    Refuses files whose weights do not match the described model (missing, extra or
    mis-shaped tensors) with a message naming the first offending tensor.
    """
    tensors, meta = read_checkpoint(path)
    name, args = meta["model"]["name"], meta["model"]["args"]
    try:
        # on the meta device first: no memory is allocated, so a description with huge sizes
        # cannot exhaust memory before the shapes are compared with the file's tensors
        with torch.device("meta"):
            expected = {k: v for k, v in build_model(name, args).state_dict().items()}
    except (ValueError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{path}: its model description does not build ({' '.join(str(e).split())})") from None
    weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    aux = {k[len("aux."):]: v for k, v in tensors.items() if k.startswith("aux.")}
    other = sorted(k for k in tensors if not k.startswith(("model.", "aux.")))
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected)) + other
    if missing or extra:
        what = f"missing tensor '{missing[0]}'" if missing else f"unexpected tensor '{extra[0]}'"
        raise CheckpointError(f"{path}: weights do not match the model described in its metadata ({what}); the file is damaged or was edited")
    for k, v in weights.items():
        if v.shape != expected[k].shape:
            raise CheckpointError(f"{path}: tensor '{k}' has shape {tuple(v.shape)} but the model described in its metadata "
                                  f"needs {tuple(expected[k].shape)}; the file is damaged or was edited")
        if v.is_floating_point() != expected[k].is_floating_point():
            raise CheckpointError(f"{path}: tensor '{k}' has dtype {v.dtype} but the model needs {expected[k].dtype}; "
                                  "the file is damaged or was edited")
        if v.is_floating_point() and not bool(torch.isfinite(v).all()):
            raise CheckpointError(f"{path}: tensor '{k}' contains NaN or Inf; the file is damaged (or training diverged)")
    model = build_model(name, args)
    model.load_state_dict(weights)
    model.to(map_location).eval()
    return model, meta, aux


def load_model(path: str | Path) -> nn.Module:
    """Load a registry model from an mtakd checkpoint (or a shipped one: ``pretrained:NAME``),
    in eval mode on the CPU."""
    return load_checkpoint(resolve_checkpoint(str(path), key="model"))[0]


# ----------------------------------------------------------------------------- train state
def flatten_state(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors in a nested dict/list by ``{"__tensor__": name}``, collecting them."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(v, f"{prefix}.{i}", tensors)] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):  # kept apart from lists: optimisers compare betas as tuples
        return {"__tuple__": [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten_state(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__tuple__" in obj:
        return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


def save_train_state(path: str | Path, state: dict[str, Any]) -> None:
    """Save a nested training state (optimiser, scheduler, counters, RNG) atomically."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten_state(state, "s", tensors)
    atomic_save_tensors(tensors, path, {"mtakd_train_state": json.dumps(skeleton)})


def load_train_state(path: str | Path) -> dict[str, Any]:
    tensors, meta = read_safetensors(path)
    if "mtakd_train_state" not in meta:
        raise CheckpointError(f"{path}: not an mtakd training-state file")
    return unflatten_state(json.loads(meta["mtakd_train_state"]), tensors)
