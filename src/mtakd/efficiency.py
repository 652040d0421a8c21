"""Model cost: parameter count, MACs per second of audio (counted, not hand-derived), RTF.

MACs are counted by *running* the model under ``torch.utils.flop_counter.FlopCounterMode``
(which sees every aten matmul / addmm / bmm / convolution; elementwise ops, norms and
activations are not counted, as is usual for MAC figures), with FLOPs / 2 = MACs.

Recurrent layers need care because the flop counter's coverage of them depends on the
backend (checked on CPU, torch 2.13): ``nn.GRU``, ``nn.RNN``, projected ``nn.LSTM`` and the
``*Cell`` modules run as composites of ``addmm``/``mm`` calls that the counter *does* see
(exactly the analytic count below), while a plain ``nn.LSTM`` goes to the fused oneDNN kernel,
which the counter does *not* see (0 FLOPs); the counter's registry has no RNN kernel at
all, so fused cuDNN RNNs on GPU are not seen either. So that
no case is missed or counted twice, every ``nn.RNNBase`` / ``nn.RNNCellBase`` module gets a
pre-/post-forward hook pair: whatever the counter recorded *during* that module's forward
is removed, and the analytic count is added instead (per time step, layer and direction):

* LSTM ``4 (in + r) h`` with ``r = proj_size or h``, plus ``r h`` for the projection;
* GRU ``3 (in + h) h``; vanilla RNN ``(in + h) h``
  (the gate matmuls only, like the counter's ``addmm`` accounting, which ignores bias adds).

Not covered: recurrences hand-written with ``torch._VF`` calls outside these modules, and
custom CUDA/C++ kernels (neither exists in mtakd).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from mtakd import stft as _stft

__all__ = ["count_params", "macs_per_second", "stft_macs_per_second", "efficiency_report", "real_time_factor",
           "algorithmic_latency_ms"]


def count_params(model: nn.Module) -> int:
    """Number of parameters, trainable and frozen (shared tensors once); buffers excluded."""
    return int(sum(p.numel() for p in model.parameters()))


# ----------------------------------------------------------------------------- RNN MACs
def _steps_times_batch(module: nn.Module, x: Any) -> int:
    """Number of (time step, batch element) pairs the recurrence is evaluated for."""
    if isinstance(x, nn.utils.rnn.PackedSequence):
        return int(x.data.shape[0])  # only the valid steps of each sequence are computed
    if isinstance(module, nn.RNNCellBase):
        return int(x.shape[0]) if x.dim() == 2 else 1  # one step, (B, in) or unbatched (in,)
    if x.dim() == 2:  # unbatched (T, in)
        return int(x.shape[0])
    return int(x.shape[0] * x.shape[1])  # (B, T, in) or (T, B, in): same product


def _rnn_macs_per_step(module: nn.Module) -> int:
    """Gate-matmul MACs of one time step for one batch element, all layers and directions."""
    h = module.hidden_size
    if isinstance(module, nn.RNNCellBase):
        gates = {nn.LSTMCell: 4, nn.GRUCell: 3, nn.RNNCell: 1}[type(module)]
        return gates * (module.input_size + h) * h
    proj = getattr(module, "proj_size", 0) or 0
    out = proj if proj > 0 else h  # size of the recurrent state fed back / passed upward
    dirs = 2 if module.bidirectional else 1
    if isinstance(module, nn.LSTM):
        gates = 4
    elif isinstance(module, nn.GRU):
        gates = 3
    elif isinstance(module, nn.RNN):
        gates = 1
    else:
        raise TypeError(f"unsupported recurrent module {type(module).__name__}")
    total = 0
    for layer in range(module.num_layers):
        inp = module.input_size if layer == 0 else out * dirs
        per_dir = gates * (inp + out) * h + (out * h if proj > 0 else 0)
        total += per_dir * dirs
    return total


def _count_macs(fn: Callable[[], Any], module: nn.Module | None) -> float:
    """MACs of ``fn()`` (matmul-like aten ops + analytic recurrent layers of ``module``)."""
    rnns = [m for m in module.modules() if isinstance(m, (nn.RNNBase, nn.RNNCellBase))] if module is not None else []
    starts: list[int] = []
    seen = {"flops": 0, "rnn_macs": 0}
    counter = FlopCounterMode(display=False)

    def pre(mod: nn.Module, args: tuple) -> None:
        starts.append(counter.get_total_flops())

    def post(mod: nn.Module, args: tuple, output: Any) -> None:
        # FLOPs the counter attributed to this recurrence (GRU on CPU: all of them,
        # LSTM: none) are replaced by the analytic count, so nothing is counted twice
        seen["flops"] += counter.get_total_flops() - starts.pop()
        seen["rnn_macs"] += _steps_times_batch(mod, args[0]) * _rnn_macs_per_step(mod)

    handles = []
    try:
        for m in rnns:
            handles.append(m.register_forward_pre_hook(pre))
            handles.append(m.register_forward_hook(post))
        with counter, torch.no_grad():
            fn()
    finally:
        for hd in handles:
            hd.remove()
    return (counter.get_total_flops() - seen["flops"]) / 2.0 + seen["rnn_macs"]


def _frames_per_second(sample_rate: int) -> int:
    if sample_rate % _stft.HOP:
        raise ValueError(f"sample_rate {sample_rate} is not a whole number of {_stft.HOP}-sample hops")
    return sample_rate // _stft.HOP


def stft_macs_per_second(sample_rate: int = 16000) -> float:
    """MACs of :class:`mtakd.stft.STFT` analysis + synthesis of ``sample_rate`` samples.

    Counted by running ``STFT()`` forward and ``inverse`` on one second of zeros, so it
    follows whatever framing ``stft.py`` uses (including any extra flush frame, which makes
    it slightly more than the steady-state ``sample_rate / HOP`` frames per second).
    """
    st = _stft.STFT()
    wav = torch.zeros(1, sample_rate)
    return _count_macs(lambda: st.inverse(st(wav), sample_rate), None)


def macs_per_second(model: nn.Module, sample_rate: int = 16000, include_stft: bool = True) -> float:
    """Multiply-accumulates to process one second of audio, counted by running the model.

    The model is run once in eval mode under ``torch.no_grad`` on a random spectrum
    ``(1, 2, sample_rate // HOP, N_FREQ)`` (100 frames at 16 kHz); its train/eval flag is
    restored afterwards. For a causal frame-recursive model this equals the streaming cost
    of one second; models with quadratic-in-length parts (attention over all frames) are
    counted at exactly 1 s of context.

    Parameters
    ----------
    model : nn.Module, ``forward(spec (B, 2, T, F)) -> mask (B, 2, T, F)``
    sample_rate : int, audio samples per second (must be a multiple of ``HOP``)
    include_stft : bool, also count STFT analysis + inverse STFT (``stft_macs_per_second``)

    Returns
    -------
    float, MACs per second of audio.
    """
    t = _frames_per_second(sample_rate)
    p = next(iter(model.parameters()), None)
    spec = torch.randn(1, 2, t, _stft.N_FREQ, dtype=p.dtype if p is not None else torch.float32,
                       device=p.device if p is not None else "cpu")
    was_training = model.training
    model.eval()
    try:
        macs = _count_macs(lambda: model(spec), model)
    finally:
        model.train(was_training)
    if include_stft:
        macs += stft_macs_per_second(sample_rate)
    return float(macs)


def efficiency_report(model: nn.Module, sample_rate: int = 16000) -> dict[str, float]:
    """Summary of a model's cost.

    Returns
    -------
    dict with ``params`` (all parameters), ``params_trainable``, ``param_bytes`` (storage of
    the parameters at their dtype), ``macs_per_s`` (model + STFT/iSTFT), ``macs_per_s_model``,
    ``macs_per_s_stft``, ``gmacs_per_s`` (``macs_per_s / 1e9``).
    """
    model_macs = macs_per_second(model, sample_rate, include_stft=False)
    stft_macs = stft_macs_per_second(sample_rate)
    total = model_macs + stft_macs
    return {
        "params": count_params(model),
        "params_trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
        "param_bytes": int(sum(p.numel() * p.element_size() for p in model.parameters())),
        "macs_per_s": total,
        "macs_per_s_model": model_macs,
        "macs_per_s_stft": stft_macs,
        "gmacs_per_s": total / 1e9,
    }


def algorithmic_latency_ms(model: nn.Module) -> float:
    """Algorithmic latency of a causal model (one with ``step``) in ms: the STFT's window
    (``stft.ALGORITHMIC_LATENCY_MS``, 20 ms) plus one hop (10 ms) per frame of look-ahead
    (``cfg.lookahead``); ``nan`` for a model that sees the whole utterance (the teacher)."""
    if not callable(getattr(model, "step", None)):
        return float("nan")
    from .models import model_lookahead

    ahead = model_lookahead(model)
    return _stft.ALGORITHMIC_LATENCY_MS + ahead * 1000.0 * _stft.HOP / _stft.SAMPLE_RATE


# ----------------------------------------------------------------------------- RTF
def real_time_factor(fn: Callable[[Any], Any], wav: Any, sr: int = 16000, threads: int = 1, repeats: int = 3) -> float:
    """Processing time / audio duration of ``fn(wav)`` (< 1 means faster than real time).

    One untimed warm-up call (allocator, lazy init, oneDNN primitive caches), then the
    minimum of ``repeats`` timed calls: the minimum is the least noisy estimate on a shared
    machine. Calls run under ``torch.no_grad``.

    Parameters
    ----------
    fn : callable taking ``wav`` (e.g. an offline enhancement function)
    wav : torch.Tensor or np.ndarray, shape (N,) or (B, N); duration = ``N / sr``
    sr : int, sample rate of ``wav``
    threads : int, ``torch.set_num_threads`` for the measurement (the previous value is
        restored afterwards); ``0`` leaves the current setting alone, i.e. torch's default
        unless this process changed it
    repeats : int >= 1

    Returns
    -------
    float, best-of-``repeats`` RTF.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    duration = wav.shape[-1] / float(sr)
    if duration <= 0:
        raise ValueError("wav is empty")
    previous = torch.get_num_threads()
    try:
        if threads > 0:
            torch.set_num_threads(threads)
        with torch.no_grad():
            fn(wav)  # warm-up
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                fn(wav)
                best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return best / duration
