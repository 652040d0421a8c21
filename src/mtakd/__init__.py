"""mtakd: small, fast, streaming speech enhancement by multi-task adaptive knowledge distillation.

Public API (imported lazily so that ``import mtakd`` stays cheap; the module holding
``enhance`` is ``mtakd.enhancement``, named apart so that importing it never shadows the
function ``mtakd.enhance``):

- ``mtakd.enhance(x, model=None, sr=None)``: enhance a path, numpy array or tensor
- ``mtakd.load_model(path)``: rebuild a model from an mtakd checkpoint
- ``mtakd.enhance_files(inputs, out_dir, model=None)``: files/folders into a folder, past bad files
- ``mtakd.StreamingEnhancer``: ``feed(samples) -> samples`` / ``flush()`` around ``Student.step``
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "enhance": ("mtakd.enhancement", "enhance"),
    "load_model": ("mtakd.checkpoint", "load_model"),
    "StreamingEnhancer": ("mtakd.streaming", "StreamingEnhancer"),
    "enhance_files": ("mtakd.batch", "enhance_files"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'mtakd' has no attribute '{name}'")


__all__ = ["__version__", *_LAZY]
