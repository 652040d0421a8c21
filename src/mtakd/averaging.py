"""Average the weights of several checkpoints of one model ("model soup", checkpoint averaging).

Why: fine-tuning runs that start from the same checkpoint (other seeds, other epochs of one
run) end near each other in weight space, and the average of their weights often scores
better than any one of them: the seed-to-seed noise of each run partly cancels (Wortsman et
al. 2022, "Model soups"; checkpoint averaging in fairseq, ESPnet and speechbrain). It costs no
training and no inference time: the result is one model of the same size.

It only makes sense for runs that share a starting point. Two students trained from scratch
are permuted differently, and their average is a bad model; so are runs from two different
shipped models. Score the average like any candidate (``mtakd evaluate``,
benchmarks/finetune_study.py) before using it; docs/soup.md is how mtakd did.

    average_checkpoints(["runs/a/best.safetensors", "runs/b/best.safetensors"], "runs/soup.safetensors")
    mtakd average runs/a/best.safetensors runs/b/best.safetensors -o runs/soup.safetensors

Every input must describe the same model (name and args); the output has that model, the run
config of the first input, no loss tensors (the learned task weights belong to one run) and a
training record listing what was averaged, with which weight.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch is imported inside the functions, so ``mtakd --help`` stays light
    import torch
    from torch import nn


def average_state(states: Sequence[dict[str, torch.Tensor]], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """Weighted mean of state dicts with the same keys and shapes (``weights`` sum to 1).

    Floating tensors are summed in float64 and cast back; any other tensor (an integer buffer)
    must be equal in every input, since a mean of counters or indices means nothing."""
    import torch

    out = {}
    for k, ref in states[0].items():
        if ref.is_floating_point():
            acc = sum(w * s[k].to(torch.float64) for s, w in zip(states, weights))
            out[k] = acc.to(ref.dtype)
        else:
            for i, s in enumerate(states[1:], 1):
                if not torch.equal(s[k], ref):
                    raise ValueError(f"non-floating tensor '{k}' differs between input 1 and input {i + 1}; it cannot be averaged")
            out[k] = ref.clone()
    return out


def average_checkpoints(paths: Sequence[str | Path], out: str | Path, weights: Sequence[float] | None = None,
                        overwrite: bool = False) -> nn.Module:
    """Read the checkpoints ``paths`` (files or ``pretrained:NAME``), write the weighted mean of
    their weights to ``out`` atomically and return the averaged model (eval mode).

    ``weights``: one positive number per input, normalised to sum to 1 (default: equal).
    Raises ``ValueError`` (one line, naming the file) for fewer than two inputs, the same file
    twice, inputs that describe different models, bad weights, or an existing ``out`` without
    ``overwrite``; ``CheckpointError`` (a ``ValueError``) for an unreadable input."""
    from .checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
    from .models import model_args, model_name

    out = Path(out)
    if len(paths) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(paths)}")
    if weights is None:
        weights = [1.0] * len(paths)
    if len(weights) != len(paths):
        raise ValueError(f"--weights gives {len(weights)} numbers for {len(paths)} checkpoints; give one per checkpoint")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"--weights must all be positive numbers, got {list(weights)}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: output folder '{out.parent}' does not exist; create it first")
    resolved = [resolve_checkpoint(str(p), key="checkpoint") for p in paths]
    seen: dict[Path, int] = {}
    for i, p in enumerate(resolved):
        key = p.resolve()
        if key in seen:
            raise ValueError(f"{p}: given twice (inputs {seen[key] + 1} and {i + 1}); to count a checkpoint more, use --weights")
        seen[key] = i
    models, metas = [], []
    for p in resolved:
        model, meta, _ = load_checkpoint(p)
        if models and (model_name(model), model_args(model)) != (model_name(models[0]), model_args(models[0])):
            a, b = model_args(models[0]), model_args(model)
            diff = {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}
            what = (f"a {model_name(model)}, not a {model_name(models[0])}" if model_name(model) != model_name(models[0])
                    else "other model args: " + ", ".join(f"{k} {v[1]!r} (first input: {v[0]!r})" for k, v in diff.items()))
            raise ValueError(f"{p}: {what}; only checkpoints of the same model can be averaged")
        models.append(model)
        metas.append(meta)
    total = float(sum(weights))
    norm = [w / total for w in weights]
    # a convex combination of finite inputs (load_checkpoint refuses others) lies between them: finite
    avg = average_state([m.state_dict() for m in models], norm)
    result = models[0]
    result.load_state_dict(avg)
    train = {"averaged_from": [{"path": str(p), "weight": w, "step": (m.get("train") or {}).get("step"),
                                "epoch": (m.get("train") or {}).get("epoch")}
                               for p, w, m in zip(resolved, norm, metas)]}
    save_checkpoint(out, result, config=dict(metas[0].get("config") or {}), train=train)
    return result.eval()


def cmd_average(args) -> int:
    import sys

    try:
        model = average_checkpoints(args.checkpoints, args.output, weights=args.weights, overwrite=args.overwrite)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"mtakd: error: {e}", file=sys.stderr)
        return 2
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.output}: the {'weighted ' if args.weights else ''}mean of {len(args.checkpoints)} checkpoints "
          f"({type(model).__name__.lower()}, {n:,} parameters). Score it before use: mtakd evaluate {args.output} DEVSET")
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("average", help="average the weights of checkpoints of one model (runs from a common start)")
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoints (.safetensors or pretrained:NAME) of the same model")
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument("--weights", type=float, nargs="+", help="one positive weight per checkpoint (default: equal)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_average)
