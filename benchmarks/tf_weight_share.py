"""How much of the weighted T-F loss lands on noise-dominated units, per input SNR.

``mtakd.losses.TFWeight`` weights each unit by ``floor + (1 - floor) r^gamma`` (``r`` the ideal
ratio mask), normalised to mean 1 per utterance. In a noise-dominated unit (``r < 0.5``) the
error of a mask estimate is mostly residual noise, so the share of the weight those units get
is how much the loss cares about removing noise. Per input SNR of a dev set (its manifest),
over all files' units: the fraction of units that are noise-dominated (= their share of the
unweighted loss's weight) and their share of the weight under each ``(gamma, floor)``, with
an optional SNR ramp ``(lo, hi)`` (``loss.tf_snr_ramp``)::

    PYTHONPATH=src python benchmarks/tf_weight_share.py --devset data/devset \
        --weighting 0.5,0.1 --weighting 0.5,0.5 --weighting 0.5,0.1,0,10 [--out docs/tf_weight_share.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from bench_common import devset_snrs, emit
from mtakd.config import ConfigError
from mtakd.data import PairedDataset
from mtakd.losses import TFWeight
from mtakd.stft import STFT


Weighting = tuple  # (gamma, floor) or (gamma, floor, (lo, hi)): TFWeight's arguments


def _tf_weight(w: Weighting) -> TFWeight:
    return TFWeight(w[0], w[1], snr_ramp=w[2] if len(w) > 2 else None)


def _label(w: Weighting) -> str:
    ramp = f" ramp {w[2][0]:g}..{w[2][1]:g} dB" if len(w) > 2 and w[2] is not None else ""
    return f"gamma {w[0]:g} floor {w[1]:g}{ramp}"


@torch.inference_mode()
def shares(clean: np.ndarray, noisy: np.ndarray, weightings: list[Weighting],
           stft: STFT | None = None) -> tuple[int, int, list[float]]:
    """For one file: ``(noise-dominated units, all units, [their summed weight per weighting])``.

    The weights are TFWeight's own (mean 1 over the file's units), so the summed weight of all
    units is the number of units and a share is ``summed weight / all units``."""
    stft = stft or STFT()
    s = stft(torch.from_numpy(np.asarray(clean, dtype=np.float32))[None])
    y = stft(torch.from_numpy(np.asarray(noisy, dtype=np.float32))[None])
    ps, pn = s[:, 0] ** 2 + s[:, 1] ** 2, (y - s)[:, 0] ** 2 + (y - s)[:, 1] ** 2
    noise_dom = (ps / (ps + pn + 1e-8)) < 0.5  # (1, T, F)
    sums = [float(_tf_weight(w)(s, y)[noise_dom].sum()) for w in weightings]
    return int(noise_dom.sum()), int(noise_dom.numel()), sums


def run(devset: Path, weightings: list[Weighting], max_files: int | None = None) -> dict:
    """``{input snr or None: (noise units, units, [weight on them per weighting])}`` summed over files."""
    snr = devset_snrs(devset)
    pairs, stft = PairedDataset(devset, max_files), STFT()
    acc: dict = {}
    for i in range(len(pairs)):
        it = pairs[i]
        n, tot, sums = shares(it["clean"], it["noisy"], weightings, stft)
        a = acc.setdefault(snr[it["name"]], [0, 0, [0.0] * len(weightings)])
        a[0] += n
        a[1] += tot
        a[2] = [x + y for x, y in zip(a[2], sums)]
    return acc


def table(acc: dict, weightings: list[Weighting]) -> str:
    keys = sorted(k for k in acc if k is not None) + ([None] if None in acc else [])
    head = "| input SNR | noise-dominated units (unweighted share) | " + " | ".join(
        f"their weight, {_label(w)}" for w in weightings) + " |"
    lines = ["Share of the T-F loss weight on noise-dominated units (ideal ratio mask < 0.5), "
             "all units of the files at each input SNR:", "", head, "|---" * (2 + len(weightings)) + "|"]
    for k in keys:
        n, tot, sums = acc[k]
        cells = [f"{100 * n / tot:.0f} %"] + [f"{100 * w / tot:.0f} %" for w in sums]
        lines.append(f"| {'all' if k is None else f'{k:+g} dB'} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _weighting(text: str) -> Weighting:
    parts = text.split(",")
    try:
        if len(parts) not in (2, 4):
            raise ValueError
        nums = [float(p) for p in parts]
        w: Weighting = (nums[0], nums[1]) if len(nums) == 2 else (nums[0], nums[1], (nums[2], nums[3]))
        _tf_weight(w)  # the library's own range checks (gamma >= 0, floor in [0, 1], lo < hi)
    except ConfigError as e:  # a ValueError too: caught first
        raise argparse.ArgumentTypeError(f"--weighting {text}: {e}") from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GAMMA,FLOOR or GAMMA,FLOOR,LO,HI such as 0.5,0.1 or "
                                         f"0.5,0.1,0,10, got '{text}'") from None
    return w


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devset", type=Path, required=True, help="folder with clean/ and noisy/ (and manifest.csv)")
    ap.add_argument("--weighting", type=_weighting, action="append", metavar="GAMMA,FLOOR[,LO,HI]",
                    help="a TFWeight setting, optionally with an SNR ramp in dB (repeat; default: the "
                         "library's 0.5,0.1)")
    ap.add_argument("--max-files", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None, help="also write the table to this markdown file")
    a = ap.parse_args(argv)
    weightings = a.weighting or [(0.5, 0.1)]
    if not (a.devset / "clean").is_dir() or not (a.devset / "noisy").is_dir():
        ap.error(f"{a.devset}: no clean/ and noisy/ folders of paired files")
    torch.set_num_threads(1)
    text = table(run(a.devset, weightings, a.max_files), weightings)
    emit(text, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
