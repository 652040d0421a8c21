"""Grow a trained student to a wider one that computes exactly the same output.

Why: the shipped student keeps about three quarters of its teacher's gain, and fine-tuning it
further has levelled off (docs/gpu_finetune_r8.md). The next lever is capacity, but a wider
student trained from scratch starts far behind one that has had hundreds of hours of
mixtures. Growing keeps everything the small student learned and adds units that training can
put to use (function-preserving widening, as in Net2Net, Chen et al. 2016, with the "new units
start silent" variant):

- every old unit keeps its weights and sees only old units (zero weights from new units), so the
  old units' activations are unchanged;
- new units get fresh random incoming weights (torch's default init for the layer, times
  ``init_scale``), so they are active and their outgoing weights receive gradients;
- every outgoing weight from a new unit (to the next layer, to the output layer) is zero, so the
  output is exactly the small student's.

If both sides of a new unit were zero it could never learn (both gradients would be zero).

The per-bin refinement of the mask (``local_head=k``, docs/local_head.md) is added the same way:
fresh weights into its hidden channels, a zero output layer, so the mask is unchanged; a wider
kernel keeps the old taps in the middle and adds zero taps at both ends.

Look-ahead (``lookahead=L``, docs/lookahead.md) is grown the same way: ``fc_ahead`` reads
the features of ``L`` more frames, with zero weights, so the mask of frame ``t`` is the small
student's (tested, offline and streamed; the stream comes ``L`` hops later). The new weights
get gradients at once (their inputs, the next frames' features, are not zero).

    grow_student(model, hidden=120)                           # -> a wider Student, same output
    grow_checkpoint("small.safetensors", "wide.safetensors", hidden=120)
    mtakd grow pretrained:student --hidden 127 -o runs/wide.safetensors    # grow_cli.py

then fine-tune it as usual: ``mtakd distill -c configs/student_finetune.yaml
init=runs/wide.safetensors model.args.hidden=127``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from .student import Student

GATES = {"gru": 3, "lstm": 4}  # gate blocks stacked along the rows of torch's recurrent weights


def _fresh(shape: tuple[int, ...], fan: int, scale: float, gen: torch.Generator) -> torch.Tensor:
    """torch's default init for Linear/GRU/LSTM weights, U(-1/sqrt(fan), 1/sqrt(fan)), times ``scale``."""
    bound = scale / fan**0.5
    return (torch.rand(shape, generator=gen) * 2 - 1) * bound


def _grow_rows(old: torch.Tensor, gates: int, h_old: int, h_new: int, cols_new: int, fan: int,
               scale: float, gen: torch.Generator) -> torch.Tensor:
    """A recurrent weight ``(gates*h_old, c_old)`` -> ``(gates*h_new, cols_new)`` (1-D for biases):
    old rows keep their old columns (zeros for new columns), new rows are fresh."""
    shape = (gates * h_new,) + ((cols_new,) if old.dim() == 2 else ())
    out = _fresh(shape, fan, scale, gen)
    for g in range(gates):
        new_block = out[g * h_new: g * h_new + h_old]
        old_block = old[g * h_old: (g + 1) * h_old]
        if old.dim() == 2:
            new_block.zero_()
            new_block[:, : old.shape[1]] = old_block
        else:
            new_block.copy_(old_block)
    return out


def grow_student(model: Student, hidden: int | None = None, input_size: int | None = None,
                 init_scale: float = 1.0, seed: int = 0, lookahead: int | None = None,
                 local_head: int | None = None) -> Student:
    """A copy of ``model`` with ``hidden`` recurrent units per layer, ``input_size`` input
    features, ``lookahead`` frames of look-ahead and a per-bin refinement ``local_head`` bins
    wide (each at least the current value; None keeps it), whose output equals ``model``'s for
    every input (offline and streaming; the state grows to ``(L, B, hidden)``; more look-ahead
    and the refinement: see the module docstring).

    Raises ``ValueError`` for a size below the current one or a model that is not a Student.
    """
    if not isinstance(model, Student):
        raise ValueError(f"grow_student grows a Student, got {type(model).__name__}")
    c = model.cfg
    H, I = hidden or c.hidden, input_size or c.input_size
    A = c.lookahead if lookahead is None else lookahead
    K = c.local_head if local_head is None else local_head
    shrinking = [f"{name} {was} -> {now}" for name, was, now in (("hidden", c.hidden, H), ("input_size", c.input_size, I),
                 ("lookahead", c.lookahead, A), ("local_head", c.local_head, K)) if now < was]
    if shrinking:
        raise ValueError(f"grow_student only grows: {', '.join(shrinking)} must not shrink")
    if not init_scale > 0:
        raise ValueError(f"grow_student: init_scale must be > 0 (new units need non-zero incoming weights), got {init_scale}")
    gen = torch.Generator().manual_seed(seed)
    cfg = dataclasses.replace(c, hidden=H, input_size=I, lookahead=A, local_head=K)  # checks K
    big = Student(cfg)
    old, new = model.state_dict(), {}
    G = GATES[c.cell]

    # fc_ahead (the look-ahead frames' weights): the old frames keep theirs, new frames (last:
    # windows are oldest first) and new input features start at zero, so nothing changes
    if A:
        D = model.frame_features
        ahead = torch.zeros(I, A * D)
        if c.lookahead:
            ahead[: c.input_size, : c.lookahead * D] = old["fc_ahead.weight"]
        new["fc_ahead.weight"] = ahead
    # fc_in: old features keep their rows, new features are fresh (nothing old reads them)
    w = old["fc_in.weight"]
    new["fc_in.weight"] = torch.cat([w, _fresh((I - c.input_size, w.shape[1]), w.shape[1], init_scale, gen)])
    new["fc_in.bias"] = torch.cat([old["fc_in.bias"], _fresh((I - c.input_size,), w.shape[1], init_scale, gen)])
    new["act.weight"] = old["act.weight"]
    for l in range(c.layers):
        cols = I if l == 0 else H  # layer l reads fc_in's features or layer l-1's units
        for name, ncols in (("weight_ih", cols), ("weight_hh", H), ("bias_ih", 0), ("bias_hh", 0)):
            key = f"{c.cell}.{name}_l{l}"
            new[key] = _grow_rows(old[key], G, c.hidden, H, ncols, H, init_scale, gen)
        if c.cell == "lstm" and c.lstm_forget_bias is not None:  # new units' forget gates as a fresh LSTM's
            for b in ("bias_ih", "bias_hh"):
                new[f"lstm.{b}_l{l}"][H + c.hidden: 2 * H] = c.lstm_forget_bias / 2
    # fc_out: new units' outgoing weights are zero, so the mask is unchanged
    w = old["fc_out.weight"]
    new["fc_out.weight"] = torch.cat([w, torch.zeros(w.shape[0], H - c.hidden)], dim=1)
    new["fc_out.bias"] = old["fc_out.bias"]
    if K:  # the per-bin refinement: old taps centred in a wider kernel, or fresh in, zero out
        w_in = big.local_in.weight  # (channels, 1 + mask channels, K)
        if c.local_head:
            pad = (K - c.local_head) // 2
            new["local_in.weight"] = torch.nn.functional.pad(old["local_in.weight"], (pad, pad))
            for key in ("local_in.bias", "local_act.weight", "local_out.weight", "local_out.bias"):
                new[key] = old[key]
        else:
            fan = w_in.shape[1] * K
            new["local_in.weight"] = _fresh(tuple(w_in.shape), fan, init_scale, gen)
            new["local_in.bias"] = _fresh((w_in.shape[0],), fan, init_scale, gen)
            new["local_act.weight"] = big.local_act.weight.detach().clone()
            new["local_out.weight"] = torch.zeros_like(big.local_out.weight)
            new["local_out.bias"] = torch.zeros_like(big.local_out.bias)
    big.load_state_dict(new)
    return big.train(model.training)


def grow_checkpoint(src: str | Path, out: str | Path, hidden: int | None = None, input_size: int | None = None,
                    init_scale: float = 1.0, seed: int = 0, overwrite: bool = False,
                    lookahead: int | None = None, local_head: int | None = None) -> Student:
    """Read a student checkpoint (a path or ``pretrained:student``), grow it, write ``out``
    (atomically; refuses to replace a file unless ``overwrite``). The new file's training record
    says what it was grown from; its run config is the source's, with the new model size."""
    from ..checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint

    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out}: already exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out}: output folder '{out.parent}' does not exist; create it first")
    path = resolve_checkpoint(str(src), key="checkpoint")
    model, meta, _ = load_checkpoint(path)
    if meta["model"]["name"] != "student":
        raise ValueError(f"{path}: holds a {meta['model']['name']}, and only a student can be grown")
    big = grow_student(model, hidden=hidden, input_size=input_size, init_scale=init_scale, seed=seed,
                       lookahead=lookahead, local_head=local_head)
    config = dict(meta.get("config") or {})
    if isinstance(config.get("model"), dict):
        config["model"] = {**config["model"], "args": {**(config["model"].get("args") or {}),
                                                         "hidden": big.cfg.hidden, "input_size": big.cfg.input_size,
                                                         "lookahead": big.cfg.lookahead,
                                                         "local_head": big.cfg.local_head}}
    train = {"grown_from": str(path), "grown_from_args": meta["model"]["args"], "grow_seed": seed,
             "grow_init_scale": init_scale}
    save_checkpoint(out, big, config=config, train=train)
    return big
