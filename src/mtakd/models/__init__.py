"""Model registry: a model is rebuilt from ``(name, args)`` alone, as checkpoints store it."""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from torch import nn

from ..config import ConfigError, from_dict
from .student import Student, StudentConfig
from .teacher import Teacher, TeacherConfig

MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "student": (Student, StudentConfig),
    "teacher": (Teacher, TeacherConfig),
}


def build_model(name: str, args: dict[str, Any] | None = None) -> nn.Module:
    """Construct model ``name`` from a plain dict of its config fields (unknown keys rejected)."""
    if name not in MODELS:
        raise ConfigError(f"unknown model '{name}'; available: {', '.join(sorted(MODELS))}")
    cls, cfg_cls = MODELS[name]
    cfg = from_dict(cfg_cls, dict(args or {}), prefix="model.args.")
    return cls(cfg)


def model_args(model: nn.Module) -> dict[str, Any]:
    """The full constructor args of a registry model (defaults filled in)."""
    return asdict(model.cfg)


def model_lookahead(model: nn.Module) -> int:
    """Frames of look-ahead of a model (``cfg.lookahead``; 0 for a model without one): what the
    stream, the step graph and the latency figures must account for."""
    return int(getattr(getattr(model, "cfg", None), "lookahead", 0) or 0)


def model_name(model: nn.Module) -> str:
    for name, (cls, _) in MODELS.items():
        if type(model) is cls:
            return name
    raise ValueError(f"{type(model).__name__} is not a registered mtakd model")


__all__ = ["MODELS", "Student", "StudentConfig", "Teacher", "TeacherConfig", "build_model", "model_args", "model_lookahead", "model_name"]
