"""``mtakd demo``: the whole pipeline at tiny scale on generated audio, in a few minutes.

Needs neither a corpus nor the network: builds a synthetic paired dev set, trains a tiny
teacher, distils three students (no KD, fixed-weight KD, multi-task adaptive KD with the
weighted T-F loss), scores all of them on the same files, prints the comparison table and
enhances one example. When a trained student is shipped in ``mtakd/pretrained`` it also
enhances an example with it and prints before/after metrics. Numbers at this scale only
show that the pipeline works; docs/results.md has the real-data results.
"""
from __future__ import annotations

import time
from pathlib import Path

from .config import ConfigError, TrainConfig, load_config

# tiny scale: ~1-2 minutes of training in all on 2 cores
_COMMON = [
    "data.source=synthetic", "data.segment_s=2.0", "data.items_per_epoch=192", "optim.batch_size=16",
    "optim.warmup_steps=10", "optim.checkpoint_every=0", "valid.synthetic_items=6", "threads=2",
]
_TEACHER = ["model.name=teacher", "model.args={input_size: 96, hidden: 96, layers: 2}", "optim.lr=0.003", "optim.epochs=6"]
_STUDENT = ["model.name=student", "model.args={input_size: 24, hidden: 32, layers: 1}", "optim.lr=0.004", "optim.epochs=4"]
STUDENT_VARIANTS = {
    "student_none": ["loss.kd=none"],
    "student_fixed": ["loss.kd=fixed", "loss.alpha=0.5"],
    "student_mtakd": ["loss.kd=mtakd", "loss.tf_weight=true"],
}


def _train(run_dir: Path, overrides: list[str]) -> Path:
    from .train import train

    cfg = load_config(TrainConfig, None, _COMMON + overrides + [f"run_dir={run_dir}"])
    t0 = time.time()
    best = train(cfg, progress=False)
    print(f"  trained {run_dir.name} in {time.time() - t0:.0f} s")
    return best


def run_demo(out: str | Path = "runs/demo", data_root: str | None = "../shared/data") -> dict[str, dict]:
    """Run the tiny pipeline in ``out`` (refuses a non-empty folder); returns the results.
    ``data_root``: corpus for the shipped student's real example (skipped when absent)."""
    from .config import DataConfig
    from .data import build_devset
    from .evaluate import evaluate

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"demo folder {out} is not empty; remove it (make clean-runs) or pass --out elsewhere")
    t_start = time.time()
    print(f"[1/5] synthetic paired dev set (5 SNRs) in {out / 'devset'}")
    build_devset(DataConfig(source="synthetic"), out / "devset", snrs=(-5, 0, 5, 10, 15), per_snr=3, seed=7)
    print("[2/5] teacher (supervised)")
    teacher = _train(out / "teacher", _TEACHER)
    print("[3/5] students: no KD, fixed KD, multi-task adaptive KD + weighted T-F loss")
    ckpts = {"teacher": teacher}
    for name, extra in STUDENT_VARIANTS.items():
        kd = [f"teacher={teacher}"] if "kd=none" not in extra[0] else []
        ckpts[name] = _train(out / name, _STUDENT + extra + kd)
    print("[4/5] evaluation on the same dev files")
    results = {"noisy": evaluate(None, out / "devset", progress=False, with_efficiency=False)}
    for name, ck in ckpts.items():
        results[name] = evaluate(ck, out / "devset", out / f"{name}.csv", progress=False)
    print(comparison_table(results))
    print("[5/5] enhancing an example")
    _enhance_examples(out, ckpts["student_mtakd"], data_root)
    print(f"demo finished in {time.time() - t_start:.0f} s; everything is in {out}")
    return results


def comparison_table(results: dict[str, dict]) -> str:
    head = f"{'system':<15}{'params':>10}{'MMAC/s':>9}{'RTF@1':>9}{'PESQ':>7}{'STOI':>7}{'SI-SDR':>8}{'SI-SDRi':>8}"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        s, e = r["summary"], r["efficiency"]
        eff = f"{e['params']:>10,}{e['macs_per_s'] / 1e6:>9.1f}{e['rtf_1thread']:>9.4f}" if e else f"{'-':>10}{'-':>9}{'-':>9}"
        lines.append(f"{name:<15}{eff}{s['pesq']:>7.3f}{s['stoi']:>7.3f}{s['si_sdr']:>8.2f}{s['si_sdr_i']:>8.2f}")
    return "\n".join(lines)


SYNTHETIC = "synthetic speech and noise"


def _example(out: Path, data_root: str | None) -> tuple[Path, Path, str]:
    """(noisy, clean, description) of the example the shipped student enhances: a real dev
    utterance in real dev noise at 5 dB when the corpus is at ``data_root``, else the first
    synthetic dev file."""
    from .config import DataConfig
    from .corpus import DataError
    from .data import build_devset

    if data_root and Path(data_root).is_dir():
        try:
            build_devset(DataConfig(source="corpus", root=str(data_root)), out / "example", snrs=(5,), per_snr=1, seed=11)
            noisy = sorted((out / "example" / "noisy").glob("*.wav"))[0]
            return noisy, out / "example" / "clean" / noisy.name, f"real speech + real noise at 5 dB from {data_root}"
        except DataError as e:
            print(f"  (corpus at {data_root} not usable: {e}; using a synthetic example)")
    return _synthetic_example(out)


def _synthetic_example(out: Path) -> tuple[Path, Path, str]:
    noisy = sorted((out / "devset" / "noisy").glob("*.wav"))[0]
    return noisy, out / "devset" / "clean" / noisy.name, SYNTHETIC


def _enhance_examples(out: Path, student_ckpt: Path, data_root: str | None = None) -> None:
    from .audio import load_audio
    from .batch import enhance_files
    from .metrics import evaluate_pair

    jobs = [("demo student", student_ckpt, *_synthetic_example(out))]
    from .checkpoint import PRETRAINED_DIR

    shipped = PRETRAINED_DIR / "student.safetensors"
    if shipped.is_file():
        jobs.append(("shipped student", shipped, *_example(out, data_root)))
    for label, ck, noisy, clean, what in jobs:
        dest = out / ("enhanced_" + label.split()[0])
        enhance_files([noisy], dest, model=ck)
        ref, x = load_audio(clean)[0], load_audio(noisy)[0]
        before = evaluate_pair(ref, x, noisy=x)
        after = evaluate_pair(ref, load_audio(dest / noisy.name)[0], noisy=x)
        print(f"  {label} on {what}: {noisy} -> {dest / noisy.name}")
        print(f"    PESQ {before['pesq']:.2f} -> {after['pesq']:.2f}   STOI {before['stoi']:.3f} -> {after['stoi']:.3f}   "
              f"SI-SDR {before['si_sdr']:.1f} -> {after['si_sdr']:.1f} dB")
        if label == "shipped student" and what == SYNTHETIC:
            # the generated "speech" (harmonics under formants) is not recorded speech: a model trained
            # on real speech need not help on it, and a user should not read this number as its quality
            print("    (no corpus found: this example is generated, not recorded speech, and says little about "
                  "the shipped student; --data DIR gives a real one, MODEL_CARD.md has its measured quality)")


def register_cli(sub) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline at tiny scale on generated audio")
    p.add_argument("--out", default="runs/demo", help="folder for everything the demo makes (must be empty)")
    p.add_argument("--data", default="../shared/data",
                   help="corpus root for the shipped student's real example (a synthetic one when absent)")
    p.set_defaults(func=lambda a: (run_demo(a.out, a.data), 0)[1])
