"""``mtakd enhance INPUT... -o OUTDIR``: batch enhancement of files and folders.

Exit status: 0 when every file was enhanced (or skipped because its output exists), 1 when
any file failed (the others are still done; each failure is one line), 2 for usage errors
(bad arguments, unusable model, an output folder that would overwrite inputs).
"""
from __future__ import annotations

import argparse
import sys


def cmd_enhance(args: argparse.Namespace) -> int:
    from .enhance import enhance_files

    def progress(i, n, status, src, dst, detail):
        where = f"[{i}/{n}]" if i else "[-]"
        if status == "failed":
            print(f"{where} FAILED {detail}", flush=True)
        elif status == "skipped":
            print(f"{where} skipped {src} ({dst} exists)", flush=True)
        else:
            print(f"{where} {src} -> {dst} ({detail})", flush=True)

    summary = enhance_files(args.inputs, args.output, model=args.model, overwrite=args.overwrite,
                            backend=args.backend, progress=progress)
    for w in summary.warnings:
        print(f"mtakd: warning: {w}", file=sys.stderr)
    print(summary)
    for _, msg in summary.failed:
        print(f"mtakd: error: {msg}", file=sys.stderr)
    return 0 if summary.ok else 1


def register_cli(sub) -> None:
    p = sub.add_parser("enhance", help="enhance audio files or folders (recursively) into an output folder")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=".wav/.flac/.ogg files or folders")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR",
                   help="output folder; folder structure and names are kept, written as 16-bit .wav at the input rate")
    p.add_argument("--model", "-m", help="checkpoint (.safetensors) or ONNX file; default: the shipped student")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (inputs are never overwritten)")
    p.set_defaults(func=cmd_enhance)
