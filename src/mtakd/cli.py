"""``mtakd <verb>``: thin subcommands, each calling one library function.

User mistakes (bad config, bad audio, bad checkpoint) print one line ``mtakd: error: ...``
and exit 2; nothing a user owns is overwritten. Training errors and unexpected OS errors
(``mtakd: error: <file>: <reason>``) exit 1, Ctrl-C exits 130; warnings print as one line
``mtakd: warning: ...``. No traceback for any of these.

The verb modules are imported here for their arguments; each imports torch and other heavy
packages only inside its functions, so ``mtakd --help`` starts without loading torch.
"""
from __future__ import annotations

import argparse
import sys
import warnings

from . import averaging, demo, enhance_cli, evaluate, export, grow_cli, manifests, shard, stream_cli

#: verbs that live in their own modules (each has ``register_cli(subparsers)``)
_VERB_MODULES = (enhance_cli, evaluate, stream_cli, export, grow_cli, averaging, demo, manifests, shard)


def _add_train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", "-c", help="YAML config (see configs/); defaults apply where silent")
    p.add_argument("--run-dir", help="run folder (shortcut for run_dir=...)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--init", help="fine-tune: start from this checkpoint's weights (or pretrained:student, "
                   "pretrained:teacher); shortcut for init=...")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs only)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. optim.lr=3e-4 data.root=../shared/data")


def _train_overrides(args: argparse.Namespace, extra: list[str]) -> list[str]:
    out = list(args.overrides)
    if args.run_dir:
        out.append(f"run_dir={args.run_dir}")
    if args.init:
        out.append(f"init={args.init}")
    return out + extra


def _print_main(line: str) -> None:
    from .distributed import is_main

    if is_main():  # under torchrun: once, not once per process
        print(line)


#: train-teacher's model where neither the config nor an override names one (the config
#: dataclass defaults to the student, which ``distill`` wants)
TEACHER_DEFAULTS = {"model.name": "teacher"}


def cmd_train_teacher(args: argparse.Namespace) -> int:
    from .config import TrainConfig, load_config
    from .train import train

    cfg = load_config(TrainConfig, args.config, _train_overrides(args, []), defaults=TEACHER_DEFAULTS)
    if cfg.loss.kd != "none":
        from .config import ConfigError

        raise ConfigError("train-teacher trains without distillation: remove loss.kd or use 'mtakd distill'")
    best = train(cfg, resume=args.resume, progress=not args.no_progress)
    _print_main(f"best checkpoint: {best}")
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    from .config import TrainConfig, load_config
    from .train import train

    extra = []
    if args.teacher:
        extra.append(f"teacher={args.teacher}")
    if args.kd:
        extra.append(f"loss.kd={args.kd}")
    if args.tf_weight:
        extra.append(f"loss.tf_weight={'true' if args.tf_weight == 'on' else 'false'}")
    cfg = load_config(TrainConfig, args.config, _train_overrides(args, extra))
    best = train(cfg, resume=args.resume, progress=not args.no_progress)
    _print_main(f"best checkpoint: {best}")
    return 0


def cmd_build_devset(args: argparse.Namespace) -> int:
    from .config import DataConfig
    from .data import build_devset

    cfg = DataConfig(source="synthetic" if args.synthetic else "corpus", root=args.root or "")
    snrs = tuple(float(s) for s in args.snrs.split(","))
    n = build_devset(cfg, args.out, snrs=snrs, per_snr=args.per_snr, seed=args.seed, overwrite=args.overwrite,
                     noise_match=tuple(args.noise_match or ()))
    print(f"wrote {n} noisy/clean pairs to {args.out}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint, resolve_checkpoint
    from .efficiency import algorithmic_latency_ms, efficiency_report

    model, meta, aux = load_checkpoint(resolve_checkpoint(args.checkpoint, key="checkpoint"))
    rep = efficiency_report(model)
    print(f"model: {meta['model']['name']} {meta['model']['args']}")
    print(f"parameters: {rep['params']:,}   MACs/s: {rep['macs_per_s'] / 1e6:.1f} M")
    latency = algorithmic_latency_ms(model)
    print(f"algorithmic latency: {latency:.0f} ms" if latency == latency else "algorithmic latency: none (offline: "
          "sees the whole utterance)")
    train = dict(meta.get("train") or {})
    sources = train.pop("averaged_from", None)  # `mtakd average`: one line per ingredient
    if train:
        print("training: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in train.items()))
    if isinstance(sources, list):
        print(f"averaged from {len(sources)} checkpoints (weight, file, step, epoch):")
        for src in sources:
            print(f"  {src.get('weight', float('nan')):.4g}  {src.get('path')}  step={src.get('step')}  "
                  f"epoch={src.get('epoch')}")
    if "loss.uncertainty.log_vars" in aux:
        from .losses import UncertaintyWeighting

        lv = aux["loss.uncertainty.log_vars"]
        print("learned log sigma^2 (sup, kd[, feat]): " + ", ".join(f"{v:.3f}" for v in lv.tolist()))
        w = UncertaintyWeighting.task_weights(lv).tolist()
        # with Adam the scale of the weights hardly matters; their ratio shapes training
        share = f" (KD share w_kd / (w_sup + w_kd) {w[1] / (w[0] + w[1]):.2f})" if len(w) >= 2 else ""
        print("learned task weights w = exp(-s) / 2: " + ", ".join(f"{v:.3g}" for v in w) + share)
    print(f"versions: {meta.get('versions')}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mtakd", description="Speech enhancement by multi-task adaptive knowledge distillation")
    from . import __version__

    ap.add_argument("--version", action="version", version=f"mtakd {__version__}")
    sub = ap.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("train-teacher", help="train the teacher (supervised)")
    _add_train_args(p)
    p.set_defaults(func=cmd_train_teacher)

    p = sub.add_parser("distill", help="train a student from a frozen teacher")
    p.add_argument("--teacher", "-t", help="teacher checkpoint (.safetensors), or pretrained:teacher for the shipped one")
    p.add_argument("--kd", choices=["none", "fixed", "mtakd"], help="distillation mode (loss.kd)")
    p.add_argument("--tf-weight", choices=["on", "off"], help="weighted T-F loss (loss.tf_weight)")
    _add_train_args(p)
    p.set_defaults(func=cmd_distill)

    p = sub.add_parser("build-devset", help="write a fixed paired dev set from speech/dev x noise/dev")
    p.add_argument("--root", help="corpus root (../shared/data layout)")
    p.add_argument("--synthetic", action="store_true", help="use generated audio instead of a corpus")
    p.add_argument("-o", "--out", required=True, help="output folder (gets noisy/, clean/, manifest.csv)")
    p.add_argument("--snrs", default="-5,0,5,10,15", help="comma-separated SNRs in dB")
    p.add_argument("--per-snr", type=int, default=20, help="utterances per SNR")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--overwrite", action="store_true", help="replace an existing dev set in --out")
    p.add_argument("--noise-match", action="append", metavar="GLOB",
                   help="use only the dev noise files whose name matches (repeatable; e.g. '*rain*')")
    p.set_defaults(func=cmd_build_devset)

    p = sub.add_parser("info", help="describe a checkpoint: parameters, MACs/s, latency, training state")
    p.add_argument("checkpoint")
    p.set_defaults(func=cmd_info)

    for module in _VERB_MODULES:
        module.register_cli(sub)
    return ap


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``warnings.showwarning`` while ``main`` runs: one line, no source location."""
    try:
        print(f"mtakd: warning: {_one_line(message)}", file=file or sys.stderr, flush=True)
    except (OSError, ValueError):  # stderr closed: a warning is not worth a crash
        pass


def _is(e: BaseException, module: str, name: str) -> bool:
    """``isinstance(e, module.name)`` without importing ``module``: if it was never imported,
    ``e`` cannot be one of its exceptions (so checking ``CheckpointError`` needs no torch)."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(e, getattr(mod, name))


def _os_error(e: OSError) -> str:
    """``<file>: <reason>`` (or just the reason when the error names no file)."""
    from .atomic import is_disk_full

    reason = e.strerror or _one_line(e) or type(e).__name__
    if is_disk_full(e):
        reason = f"{reason} (the disk is full; free some space and run the command again)"
    files = [str(f) for f in (e.filename, e.filename2) if f is not None]
    return ": ".join([" -> ".join(files), reason] if files else [reason])


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    saved = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("mtakd: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if any(_is(e, m, n) for m, n in (("mtakd.config", "ConfigError"), ("mtakd.audio", "AudioError"),
                                          ("mtakd.checkpoint", "CheckpointError"))):
            print(f"mtakd: error: {e}", file=sys.stderr)
            return 2
        if _is(e, "mtakd.train", "TrainingError"):  # carries its own one-line message
            print(f"mtakd: error: {e}", file=sys.stderr)
            return 1
        if isinstance(e, OSError):
            print(f"mtakd: error: {_os_error(e)}", file=sys.stderr)
            return 1
        raise
    finally:
        warnings.showwarning = saved


if __name__ == "__main__":
    sys.exit(main())
