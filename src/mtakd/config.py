"""The one configuration mechanism: typed dataclasses, strict YAML, dotted overrides.

``load_config(TrainConfig, "configs/teacher.yaml", ["optim.lr=3e-4", "loss.kd=mtakd"])``
builds a ``TrainConfig`` from the file, applies the overrides (values parsed as YAML, so
``3e-4`` is a float and ``[0, 5]`` a list), and rejects any key that no dataclass field
declares, naming the key and the allowed ones. ``save_config`` writes the resolved result
beside a run so that every run states exactly what it did.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .atomic import write_bytes_atomic


class ConfigError(ValueError):
    """A user's configuration is wrong; the message says which key and what to do."""


# ----------------------------------------------------------------------------- schema
@dataclass
class DataConfig:
    #: ``synthetic`` (generated audio, for demo/tests), ``corpus`` (manifests/folders, mixed on
    #: the fly), ``paired`` (``root/pairs.csv`` of noisy/clean files, e.g. VoiceBank-DEMAND,
    #: written by ``mtakd make-manifest paired``)
    source: str = "synthetic"
    #: root of the corpus (``../shared/data`` layout: speech.csv, noise.csv, rir.csv; or pairs.csv)
    root: str = ""
    #: optional plain folders instead of manifests
    speech_dirs: list[str] = field(default_factory=list)
    noise_dirs: list[str] = field(default_factory=list)
    rir_dirs: list[str] = field(default_factory=list)
    segment_s: float = 4.0
    snr_range: list[float] = field(default_factory=lambda: [-5.0, 20.0])
    level_range_db: list[float] = field(default_factory=lambda: [-35.0, -15.0])
    p_babble: float = 0.15
    p_colored: float = 0.15
    p_reverb: float = 0.2
    items_per_epoch: int = 2000
    #: DataLoader worker processes per training process (rank)
    num_workers: int = 0
    #: decoded-audio cache per process (MiB, LRU); ``preload`` decodes the whole split once in
    #: the main process before the workers fork, so they share it and never decode again
    cache_mb: float = 512.0
    preload: bool = False


@dataclass
class ModelConfig:
    name: str = "student"
    args: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    weight_decay: float = 1e-4
    #: the *global* batch of one optimiser step, over all processes and accumulation steps:
    #: each process loads batch_size / (world_size * grad_accum) items per forward pass, so a
    #: run on N processes follows the same curve as one on 1 (must divide evenly)
    batch_size: int = 16
    #: forward/backward passes whose gradients are summed before one optimiser step (fits a
    #: large global batch into a small GPU); 1: none
    grad_accum: int = 1
    #: mixed precision of the model forward passes: ``off`` (float32), ``bf16`` (autocast;
    #: CPU or GPU), ``fp16`` (autocast + gradient scaling; CUDA only). Losses stay float32.
    amp: str = "off"
    epochs: int = 10
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    grad_clip: float = 5.0
    #: consecutive non-finite batches tolerated before training stops
    nonfinite_patience: int = 20
    #: also save ``last`` every this many steps (0: only at epoch ends)
    checkpoint_every: int = 200
    #: write a row to steps.csv every this many steps
    log_every: int = 20
    #: learning-rate multipliers by model-parameter name prefix, e.g. ``{fc_ahead: 10}``: new
    #: weights that start at zero in a warm-started model (``mtakd grow --lookahead``) learn at a
    #: higher rate than the trained ones around them (docs/lookahead.md). Every key must match
    #: a parameter; a parameter matching several keys takes the longest
    lr_scale: dict[str, float] = field(default_factory=dict)


@dataclass
class LossConfig:
    #: ``none`` (supervised only), ``fixed`` (alpha-weighted KD), ``mtakd`` (learned uncertainty weights)
    kd: str = "none"
    #: weight of the distillation term when ``kd == fixed``: (1-alpha)*sup + alpha*kd
    alpha: float = 0.5
    #: weighted T-F loss on/off, and its shape parameter / floor (docs/method.md)
    tf_weight: bool = False
    tf_gamma: float = 0.5
    tf_floor: float = 0.1
    #: [lo, hi] dB: the weighting's strength follows each utterance's SNR, uniform weights at
    #: SNR <= lo, the full weighting (tf_floor) at >= hi, linear between; [] (the default):
    #: the same strength at every SNR (docs/method.md)
    tf_snr_ramp: list[float] = field(default_factory=list)
    #: compression power and the magnitude share of the compressed-spectrum loss
    compress: float = 0.3
    mag_weight: float = 0.7
    #: optional SI-SDR term (weight; 0 disables)
    sisdr_weight: float = 0.0
    #: the distillation task carries the SI-SDR term too, against the teacher's waveform, so
    #: both tasks are the same composite loss with different targets. Without it the SI-SDR
    #: term rides on the supervised task's weight alone and shrinks as the KD share grows
    #: (docs/method.md); needs ``sisdr_weight > 0``; does nothing with ``kd: none``
    kd_sisdr: bool = False
    #: feature distillation through a learned projection (needs hidden features)
    feature_kd: bool = False
    #: per-unit teacher-reliability gate in the distillation term
    gate: bool = False
    gate_tau: float = 1.0
    #: mtakd only: the distillation task's variance also counts the teacher's own error
    #: against the clean target, sigma_kd^2 -> L_kd + L_T, so w_kd <= 1/(2 L_T): a teacher that
    #: is wrong everywhere cannot win the weight by being easy to imitate (docs/method.md)
    kd_teacher_error: bool = False
    #: initial log(sigma^2) of each task in mtakd
    init_log_var: float = 0.0
    #: learning-rate multiplier for the log(sigma^2) parameters: they must track the task
    #: losses within a few hundred steps, faster than the network weights move
    log_var_lr_scale: float = 10.0


@dataclass
class ValidConfig:
    #: paired folder (noisy/ + clean/) used for PESQ/SI-SDR each epoch; empty: synthetic
    dir: str = ""
    max_files: int = 40
    #: synthetic validation set size when ``dir`` is empty
    synthetic_items: int = 8
    #: what ``best.safetensors`` keeps: ``pesq`` (highest validation PESQ-WB; SI-SDR where PESQ
    #: cannot be computed), ``si_sdr`` (highest validation SI-SDR) or ``last`` (the last epoch;
    #: with a few validation files, the end of a cosine schedule is often the safer pick)
    select: str = "pesq"


@dataclass
class TrainConfig:
    run_dir: str = "runs/run"
    seed: int = 0
    #: path of a frozen teacher checkpoint (distillation only); ``pretrained:teacher`` is the shipped one
    teacher: str = ""
    #: warm start (fine-tuning): a checkpoint whose weights initialise ``model`` (same model
    #: name and args); ``pretrained:student`` / ``pretrained:teacher`` name the shipped models.
    #: Optimiser, schedule and learned task weights start fresh; ``--resume`` ignores it
    init: str = ""
    threads: int = 0
    #: ``auto`` (this process's GPU, ``cuda:LOCAL_RANK``, when CUDA is available, else CPU),
    #: ``cpu`` or ``cuda``
    device: str = "auto"
    tensorboard: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    valid: ValidConfig = field(default_factory=ValidConfig)


# ----------------------------------------------------------------------------- loading
def positive_int(text: str) -> int:
    """``argparse`` type for counts such as ``--hops``: an integer >= 1, else a usage error."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got '{text}'")
    return value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one value against a field type; raise ``ConfigError`` naming ``where``."""
    origin = typing.get_origin(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}' must be a mapping, got {value!r}")
        return from_dict(tp, value, prefix=where + ".")
    if tp is Any:
        return value
    if origin in (list,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}' must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin in (dict,):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{where}' must be a mapping, got {value!r}")
        return dict(value)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{where}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{where}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads '3e-4' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{where}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"config key '{where}' must be a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; unknown keys raise ``ConfigError``."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; allowed under '{prefix or '<top>'}': {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` strings to a nested dict (values parsed as YAML)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key.subkey=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{p}' is not a section")
        # model.args is a free-form mapping: keep its nested keys, everything else is checked later
        try:
            node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            # e.g. an unquoted 'model.args={a: 1, b: 2}' split by the shell into several words
            raise ConfigError(f"override '{item}': the value is not valid YAML ({str(e).splitlines()[0]}); "
                              "quote the whole override, or set one key at a time (model.args.hidden=64)") from None
    return data


def load_config(cls: type, path: str | Path | None = None, overrides: list[str] | None = None,
                defaults: dict[str, Any] | None = None) -> Any:
    """Read YAML ``path`` (optional), apply dotted ``overrides``, return a checked ``cls``.

    ``defaults`` (dotted key -> value) fill keys that neither the file nor an override set: a
    verb's own default, e.g. ``train-teacher``'s ``{"model.name": "teacher"}`` where the
    dataclass default (the student) suits ``distill``.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file '{p}' does not exist")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"config file '{p}' is not valid YAML: {str(e).splitlines()[0]}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file '{p}' must hold a mapping at the top level")
        data = loaded
    data = apply_overrides(data, overrides or [])
    for key, value in (defaults or {}).items():
        *sections, last = key.split(".")
        node = data
        for sec in sections:
            node = node.setdefault(sec, {})
            if not isinstance(node, dict):
                break  # a malformed section: from_dict reports it
        else:
            node.setdefault(last, value)
    return from_dict(cls, data)


def save_config(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as YAML, atomically (a kill never leaves half a config); raises ``OSError``."""
    write_bytes_atomic(path, yaml.safe_dump(to_dict(obj), sort_keys=False).encode("utf-8"))
