"""``mtakd enhance INPUT... -o OUTDIR``: batch enhancement of files and folders.

``--distributed`` splits the files over torchrun's processes (``torchrun --nproc_per_node N
-m mtakd enhance --distributed INPUT... -o OUTDIR``; ``mtakd.shard``, the same as
``mtakd enhance-sharded``).

Exit status: 0 when every file was enhanced (or skipped because its output exists), 1 when
any file failed (the others are still done; each failure is one line), 2 for usage errors
(bad arguments, unusable model, an output folder that would overwrite inputs).
"""
from __future__ import annotations

import argparse
import sys


def _say(line: str, err: bool = False) -> None:
    """Print one line; characters the stream cannot encode (e.g. file names that are not valid
    UTF-8) are shown as backslash escapes instead of raising ``UnicodeEncodeError``."""
    stream = sys.stderr if err else sys.stdout
    enc = getattr(stream, "encoding", None) or "utf-8"
    stream.write(line.encode(enc, "backslashreplace").decode(enc, "replace") + "\n")
    stream.flush()


def cmd_enhance(args: argparse.Namespace) -> int:
    if args.distributed:  # the files split over torchrun's processes (resumable; see shard.py)
        from .shard import cmd_enhance_sharded

        return cmd_enhance_sharded(args)
    from .batch import enhance_files

    def progress(i, n, status, src, dst, detail):
        where = f"[{i}/{n}]" if i else "[-]"
        if status == "failed":
            _say(f"{where} FAILED {detail}")
        elif status == "skipped":
            _say(f"{where} skipped {src} ({dst} exists)")
        else:
            _say(f"{where} {src} -> {dst} ({detail})")

    summary = enhance_files(args.inputs, args.output, model=args.model, overwrite=args.overwrite,
                            backend=args.backend, progress=progress)
    # stderr: warnings, then one line per failed file, then the count; stdout ends with the summary
    for w in summary.warnings:
        _say(f"mtakd: warning: {w}", err=True)
    for _, msg in summary.failed:
        _say(f"mtakd: error: {msg}", err=True)
    if summary.not_attempted:
        _say(f"mtakd: stopped: the disk is full; {len(summary.not_attempted)} file(s) not attempted. Free some space "
             "and run the same command again (outputs already written are skipped)", err=True)
    if not summary.ok:
        total = len(summary.enhanced) + len(summary.failed) + len(summary.skipped) + len(summary.not_attempted)
        _say(f"mtakd: {len(summary.failed)} of {total} file(s) failed ({summary})", err=True)
    _say(str(summary))
    return 0 if summary.ok else 1


def register_cli(sub) -> None:
    p = sub.add_parser("enhance", help="enhance audio files or folders (recursively) into an output folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".wav/.flac/.ogg files or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder; folder structure and names are kept, written as 16-bit .wav at the input rate")
    p.add_argument("--model", "-m", help="checkpoint (.safetensors) or ONNX file; default: the shipped student")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never overwritten)")
    p.add_argument("--distributed", action="store_true",
                   help="split the files over the processes of 'torchrun --nproc_per_node N -m mtakd enhance --distributed ...' "
                        "(existing outputs are skipped, so a re-run finishes what is missing)")
    p.set_defaults(func=cmd_enhance)
