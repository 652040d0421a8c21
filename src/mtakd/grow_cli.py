"""``mtakd grow``: widen a trained student without changing its output (``mtakd.models.grow``).

torch is imported only inside the command, so ``mtakd --help`` stays light.
"""
from __future__ import annotations


def cmd_grow(args) -> int:
    import sys

    from .models.grow import grow_checkpoint

    try:
        big = grow_checkpoint(args.checkpoint, args.output, hidden=args.hidden, input_size=args.input_size,
                              init_scale=args.init_scale, seed=args.seed, overwrite=args.overwrite,
                              lookahead=args.lookahead, local_head=args.local_head)
    except (FileExistsError, ValueError) as e:  # an existing output, a size that shrinks, not a student, a bad file
        print(f"mtakd: error: {e}", file=sys.stderr)
        return 2
    n = sum(p.numel() for p in big.parameters())
    c = big.cfg
    refine = f", per-bin refinement {c.local_head} bins" if c.local_head else ""
    print(f"wrote {args.output} (student {c.cell.upper()} {c.layers}x{c.hidden}, input {c.input_size}, "
          f"look-ahead {c.lookahead} frame(s){refine}, {n:,} parameters; the same output as {args.checkpoint}). "
          f"Fine-tune it with init={args.output} model.args.hidden={c.hidden} model.args.input_size={c.input_size}"
          + (f" model.args.lookahead={c.lookahead}" if c.lookahead else "")
          + (f" model.args.local_head={c.local_head}" if c.local_head else ""))
    return 0


def register_cli(sub) -> None:
    p = sub.add_parser("grow", help="widen a trained student or give it look-ahead without changing its output (then fine-tune it)")
    p.add_argument("checkpoint", help="student checkpoint (.safetensors), or pretrained:student")
    p.add_argument("-o", "--output", required=True, help="output .safetensors file")
    p.add_argument("--hidden", type=int, help="recurrent units per layer (at least the current number)")
    p.add_argument("--input-size", type=int, help="input features after fc_in (at least the current number)")
    p.add_argument("--lookahead", type=int,
                   help="frames of look-ahead (at least the current number; each adds 10 ms of latency)")
    p.add_argument("--local-head", type=int, metavar="K",
                   help="add (or widen) the per-bin refinement of the mask, K bins wide (odd); it starts at zero")
    p.add_argument("--init-scale", type=float, default=1.0,
                   help="scale of the new units' incoming weights, times torch's default init")
    p.add_argument("--seed", type=int, default=0, help="seed of the new units' weights")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=cmd_grow)
