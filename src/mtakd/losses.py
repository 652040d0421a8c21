"""Loss terms, each a small module with its weights in the constructor (docs/method.md).

Shapes: spectra ``(B, 2, T, F)`` (real/imag), per-unit maps ``(B, T, F)``, waveforms ``(B, N)``.

- ``CompressedSpectralLoss``: the base loss on an estimate, a mix of compressed-magnitude and
  compressed-complex squared errors, optionally weighted per T-F unit.
- ``TFWeight``: the per-unit weighting factor w(t,f) from the clean and noisy spectra.
- ``TeacherGate``: per-unit teacher reliability g(t,f) for the distillation term.
- ``FeatureKD``: student hidden features -> learned projection -> teacher hidden features.
- ``UncertaintyWeighting``: learned homoscedastic-uncertainty task weights.
- ``MultiTaskLoss``: puts them together according to ``LossConfig`` and returns a dict of
  named terms (``loss`` is the one to back-propagate).
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ConfigError, LossConfig

KD_MODES = ("none", "fixed", "mtakd")


def _check_same(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() != 4 or a.shape[1] != 2:
        raise ValueError(f"{what}: expected spectra (batch, 2, frames, freq), got {tuple(a.shape)}")


def _unit_power(spec: torch.Tensor) -> torch.Tensor:
    return spec[:, 0] ** 2 + spec[:, 1] ** 2  # (B, T, F)


def _normalise(w: torch.Tensor) -> torch.Tensor:
    """Scale each utterance's map to mean 1 so the weighting reshapes, not rescales, the loss."""
    return w / w.mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)


class CompressedSpectralLoss(nn.Module):
    """e(t,f) = beta * (|Ec| - |Sc|)^2 + (1 - beta) * |Ec - Sc|^2 with ``Xc = |X|^c e^{j angle X}``.

    ``forward(est, ref, weight=None)`` returns the (weighted) mean of e over all units.
    Identical inputs give exactly 0, the optimum.
    """

    def __init__(self, power: float = 0.3, mag_weight: float = 0.7, eps: float = 1e-8):
        super().__init__()
        if not 0.0 < power <= 1.0:
            raise ConfigError(f"loss.compress must be in (0, 1], got {power}")
        if not 0.0 <= mag_weight <= 1.0:
            raise ConfigError(f"loss.mag_weight must be in [0, 1], got {mag_weight}")
        self.power, self.mag_weight, self.eps = power, mag_weight, eps

    def unit_error(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Per-unit error ``(B, T, F)``."""
        _check_same(est, ref, "CompressedSpectralLoss")
        me = (_unit_power(est) + self.eps) ** (0.5 * self.power)
        mr = (_unit_power(ref) + self.eps) ** (0.5 * self.power)
        ce = est * (me / (_unit_power(est) + self.eps).sqrt()).unsqueeze(1)
        cr = ref * (mr / (_unit_power(ref) + self.eps).sqrt()).unsqueeze(1)
        return self.mag_weight * (me - mr) ** 2 + (1.0 - self.mag_weight) * _unit_power(ce - cr)

    def forward(self, est: torch.Tensor, ref: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        err = self.unit_error(est, ref)
        if weight is None:
            return err.mean()
        if weight.shape != err.shape:
            raise ValueError(f"weight shape {tuple(weight.shape)} does not match units {tuple(err.shape)}")
        return (weight * err).mean()


class TFWeight(nn.Module):
    """Per-unit importance w(t,f) from the clean ``S`` and noisy ``Y`` spectra.

    r(t,f) = |S|^2 / (|S|^2 + |Y - S|^2 + eps)          local speech dominance in [0, 1]
    w~(t,f) = floor + (1 - floor) * r(t,f)^gamma
    w(t,f) = w~(t,f) / mean_{t,f} w~                    mean 1 per utterance

    ``gamma`` shapes the weighting: 0 gives uniform weights; larger values concentrate the
    loss on speech-dominated units, which carry intelligibility and quality, while ``floor``
    keeps noise-dominated units (residual noise) in the loss. No gradient flows through w.

    ``snr_ramp = (lo, hi)`` (dB) makes the strength follow each utterance's SNR, measured on
    the same spectra as ``10 log10(sum |S|^2 / sum |Y - S|^2)``: the utterance's floor is 1
    (uniform weights) at SNR <= lo, ``floor`` at SNR >= hi, and linear in between. The idea:
    the weighting trades residual noise for less speech distortion, and at low SNR the residual
    decides the outcome (docs/results_cpu_tf_notes.md). Tried with [0, 10] dB, it moved the
    trade for every input SNR alike, not per SNR (docs/results_cpu_ramp.md), so it is off by
    default.
    """

    def __init__(self, gamma: float = 0.5, floor: float = 0.1, eps: float = 1e-8,
                 snr_ramp: tuple[float, float] | None = None):
        super().__init__()
        if gamma < 0:
            raise ConfigError(f"loss.tf_gamma must be >= 0, got {gamma}")
        if not 0.0 <= floor <= 1.0:
            raise ConfigError(f"loss.tf_floor must be in [0, 1], got {floor}")
        if snr_ramp is not None:
            if len(snr_ramp) != 2 or not snr_ramp[0] < snr_ramp[1]:
                raise ConfigError(f"loss.tf_snr_ramp must be [lo, hi] in dB with lo < hi (or [] for no ramp), "
                                  f"got {list(snr_ramp)}")
            snr_ramp = (float(snr_ramp[0]), float(snr_ramp[1]))
        self.gamma, self.floor, self.eps, self.snr_ramp = gamma, floor, eps, snr_ramp

    def utterance_floor(self, clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """Each utterance's floor ``(B, 1, 1)``: ``floor`` everywhere without a ramp."""
        c, y = clean.float(), noisy.float()
        return self._floor(_unit_power(c), _unit_power(y - c)).to(clean.dtype)

    def _floor(self, ps: torch.Tensor, pn: torch.Tensor) -> torch.Tensor:
        # from the unit powers (B, T, F) of speech and noise, which forward has computed anyway
        if self.snr_ramp is None:
            return torch.full((ps.shape[0], 1, 1), self.floor, device=ps.device, dtype=ps.dtype)
        snr = 10.0 * torch.log10((ps.sum(dim=(1, 2)) + self.eps) / (pn.sum(dim=(1, 2)) + self.eps))
        lo, hi = self.snr_ramp
        strength = ((snr - lo) / (hi - lo)).clamp(0.0, 1.0)  # 0: uniform, 1: the full weighting
        return (1.0 - strength * (1.0 - self.floor)).view(-1, 1, 1)

    @torch.no_grad()
    def forward(self, clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        _check_same(clean, noisy, "TFWeight")
        # in float32 whatever the spectra's precision: a unit's power, and an utterance's sum of
        # them, can overflow half precision (65504); the weights go back in the input's dtype
        c, y = clean.float(), noisy.float()
        ps, pn = _unit_power(c), _unit_power(y - c)
        r = ps / (ps + pn + self.eps)
        floor = self._floor(ps, pn)
        return _normalise(floor + (1.0 - floor) * r.clamp(0, 1) ** self.gamma).to(clean.dtype)


class TeacherGate(nn.Module):
    """Teacher reliability per unit: g = exp(-e_T / (tau * mean e_T)), normalised to mean 1.

    e_T is the teacher's own unit error against the clean target; units where the teacher is
    far from the truth (relative to its average error in that utterance) count less in the
    distillation term, so the student does not copy the teacher's mistakes there.
    """

    def __init__(self, tau: float = 1.0):
        super().__init__()
        if tau <= 0:
            raise ConfigError(f"loss.gate_tau must be > 0, got {tau}")
        self.tau = tau

    @torch.no_grad()
    def forward(self, teacher_err: torch.Tensor) -> torch.Tensor:
        scale = teacher_err.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        return _normalise(torch.exp(-teacher_err / (self.tau * scale)))


class FeatureKD(nn.Module):
    """MSE between a learned projection of student features and (standardised) teacher features.

    ``forward(h_s (B, T, Hs), h_t (B, T, Ht))``. The projection is trained with the student and
    discarded at inference; teacher features are standardised per channel so their scale
    does not set the term's size.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, h_s: torch.Tensor, h_t: torch.Tensor) -> torch.Tensor:
        if h_s.shape[:2] != h_t.shape[:2]:
            raise ValueError(f"FeatureKD: batch/time differ, {tuple(h_s.shape)} vs {tuple(h_t.shape)}")
        target = h_t.detach()
        target = (target - target.mean(dim=(0, 1))) / target.std(dim=(0, 1)).clamp_min(1e-5)
        return ((self.proj(h_s) - target) ** 2).mean()


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018) homoscedastic uncertainty: sum_i L_i / (2 sigma_i^2) + log sigma_i.

    Parametrised by ``s_i = log sigma_i^2`` (``log_vars``), so the total is
    ``sum_i 0.5 * exp(-s_i) * L_i + 0.5 * s_i``; at the optimum sigma_i^2 = L_i, so a task
    whose loss stays high (e.g. imitating an unreliable teacher) is automatically weighted down.
    """

    def __init__(self, names: list[str], init_log_var: float = 0.0):
        super().__init__()
        self.names = list(names)
        self.log_vars = nn.Parameter(torch.full((len(self.names),), float(init_log_var)))

    @staticmethod
    def task_weights(log_vars: torch.Tensor) -> torch.Tensor:
        """The weight each task's loss gets, ``w_i = exp(-s_i) / 2`` (same shape as ``log_vars``)."""
        return 0.5 * torch.exp(-log_vars)

    def forward(self, losses: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        missing = [n for n in self.names if n not in losses]
        if missing:
            raise ValueError(f"UncertaintyWeighting: missing task losses {missing}")
        total = torch.zeros((), device=self.log_vars.device)
        info: dict[str, torch.Tensor] = {}
        for i, n in enumerate(self.names):
            s = self.log_vars[i]
            w = self.task_weights(s)
            total = total + w * losses[n] + 0.5 * s
            info[f"w_{n}"] = w.detach()
            info[f"logvar_{n}"] = s.detach()
        return total, info


def si_sdr_loss(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative SI-SDR in dB, averaged over the batch; ``est``/``ref`` ``(B, N)``."""
    if est.shape != ref.shape or est.dim() != 2:
        raise ValueError(f"si_sdr_loss: expected equal (batch, samples) shapes, got {tuple(est.shape)} vs {tuple(ref.shape)}")
    est = est - est.mean(-1, keepdim=True)
    ref = ref - ref.mean(-1, keepdim=True)
    proj = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps) * ref
    ratio = proj.pow(2).sum(-1) / ((est - proj).pow(2).sum(-1) + eps)
    return -(10 * torch.log10(ratio + eps)).mean()


class MultiTaskLoss(nn.Module):
    """Supervised + distillation (+ feature) terms combined by ``LossConfig.kd``.

    ``forward(est, clean, noisy, teacher=None, h_s=None, h_t=None, est_wav=None, clean_wav=None,
    teacher_wav=None)`` with spectra ``(B, 2, T, F)`` and waveforms ``(B, N)``; returns a dict:
    ``loss`` (to back-propagate), ``sup``, ``kd``/``feat`` (when used), ``sisdr`` and
    ``kd_sisdr`` (when used), and in ``mtakd`` mode the current task
    weights ``w_*`` and ``logvar_*`` (detached, for logging).
    """

    def __init__(self, cfg: LossConfig, student_dim: int | None = None, teacher_dim: int | None = None):
        super().__init__()
        if cfg.kd not in KD_MODES:
            raise ConfigError(f"loss.kd must be one of {', '.join(KD_MODES)}, got '{cfg.kd}'")
        if cfg.kd_teacher_error and cfg.kd != "mtakd":
            raise ConfigError("loss.kd_teacher_error=true acts on the learned task weights: it needs loss.kd=mtakd")
        # like the gate, kd_sisdr shapes the distillation task and does nothing without one
        # (so a config that sets it also serves --kd none); with KD it needs the SI-SDR term
        if cfg.kd_sisdr and cfg.kd != "none" and cfg.sisdr_weight <= 0:
            raise ConfigError("loss.kd_sisdr=true puts the SI-SDR term into the distillation task too: "
                              "it needs loss.sisdr_weight > 0 (or set loss.kd_sisdr=false)")
        if cfg.kd == "fixed" and not 0.0 <= cfg.alpha <= 1.0:
            raise ConfigError(f"loss.alpha must be in [0, 1], got {cfg.alpha}")
        self.cfg = cfg
        self.spectral = CompressedSpectralLoss(cfg.compress, cfg.mag_weight)
        # built (and so checked) even with the weighting off, where it does nothing: like
        # kd_sisdr, a config's shape settings may serve an ablation run that turns it off
        tf_weight = TFWeight(cfg.tf_gamma, cfg.tf_floor, snr_ramp=tuple(cfg.tf_snr_ramp) or None)
        self.tf_weight = tf_weight if cfg.tf_weight else None
        self.gate = TeacherGate(cfg.gate_tau) if (cfg.gate and cfg.kd != "none") else None
        self.feature = None
        if cfg.feature_kd and cfg.kd != "none":
            if student_dim is None or teacher_dim is None:
                raise ConfigError("loss.feature_kd needs the student's and teacher's hidden sizes")
            self.feature = FeatureKD(student_dim, teacher_dim)
        self.uncertainty = None
        if cfg.kd == "mtakd":
            tasks = ["sup", "kd"] + (["feat"] if self.feature is not None else [])
            self.uncertainty = UncertaintyWeighting(tasks, cfg.init_log_var)

    def sup_task_weight(self, out: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """Current weight of the supervised task in the total (detached in ``mtakd`` mode)."""
        if self.cfg.kd == "mtakd":
            return out["w_sup"]
        return 1.0 - self.cfg.alpha if self.cfg.kd == "fixed" else 1.0

    def kd_task_weight(self, out: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """Current weight of the distillation task (detached in ``mtakd`` mode; 0 without KD)."""
        if self.cfg.kd == "mtakd":
            return out["w_kd"]
        return self.cfg.alpha if self.cfg.kd == "fixed" else 0.0

    @property
    def uses_teacher(self) -> bool:
        return self.cfg.kd != "none"

    @property
    def uses_teacher_wav(self) -> bool:
        """``forward`` needs ``teacher_wav`` (the SI-SDR term in the distillation task)."""
        return self.cfg.kd_sisdr and self.uses_teacher and self.cfg.sisdr_weight > 0

    def forward(self, est, clean, noisy, teacher=None, h_s=None, h_t=None, est_wav=None, clean_wav=None,
                teacher_wav=None):
        out: dict[str, torch.Tensor] = {}
        w = self.tf_weight(clean, noisy) if self.tf_weight is not None else None
        out["sup"] = self.spectral(est, clean, w)
        terms = {"sup": out["sup"]}
        if self.uses_teacher:
            if teacher is None:
                raise ValueError(f"loss.kd={self.cfg.kd} needs the teacher's estimate")
            w_kd = w
            if self.gate is not None:
                g = self.gate(self.spectral.unit_error(teacher, clean))
                w_kd = g if w is None else _normalise(g * w)
            out["kd"] = self.spectral(est, teacher.detach(), w_kd)
            terms["kd"] = out["kd"]
            if self.cfg.kd_teacher_error and self.cfg.kd == "mtakd":
                # the teacher's own error is a constant for the student (no gradient to the
                # network) but part of how uncertain the imitation target is: with it the
                # optimum is sigma_kd^2 = L_kd + L_T, so w_kd stays below 1/(2 L_T) however well
                # the student imitates (without it, w_kd = 1/(2 L_kd) grows without bound)
                out["teacher_err"] = self.spectral(teacher.detach(), clean, w_kd).detach()
                terms["kd"] = out["kd"] + out["teacher_err"]
            if self.feature is not None:
                if h_s is None or h_t is None:
                    raise ValueError("loss.feature_kd needs student and teacher hidden features")
                out["feat"] = self.feature(h_s, h_t)
                terms["feat"] = out["feat"]
        if self.cfg.kd == "mtakd":
            total, info = self.uncertainty(terms)
            out.update(info)
        elif self.cfg.kd == "fixed":
            a = self.cfg.alpha
            total = (1 - a) * terms["sup"] + a * terms["kd"] + terms.get("feat", 0.0)
        else:
            total = terms["sup"]
        if self.cfg.sisdr_weight > 0:
            if est_wav is None or clean_wav is None:
                raise ValueError("loss.sisdr_weight > 0 needs the estimated and clean waveforms")
            out["sisdr"] = si_sdr_loss(est_wav, clean_wav)
            # SI-SDR belongs to the supervised task, so it takes that task's current weight (1,
            # 1 - alpha, or w_sup detached) and keeps the same share of it in every mode. It is
            # in dB (negative is good), so it cannot enter the uncertainty weighting itself,
            # whose optimum sigma^2 = L needs a positive loss; 1/100 puts dB on the spectral scale.
            total = total + self.sup_task_weight(out) * self.cfg.sisdr_weight * out["sisdr"] / 100.0
            if self.uses_teacher_wav:
                # the same term against the teacher's waveform, on the distillation task's weight:
                # whatever share the tasks settle at, SI-SDR keeps its share of the whole loss
                if teacher_wav is None:
                    raise ValueError("loss.kd_sisdr needs the teacher's waveform")
                out["kd_sisdr"] = si_sdr_loss(est_wav, teacher_wav.detach())
                total = total + self.kd_task_weight(out) * self.cfg.sisdr_weight * out["kd_sisdr"] / 100.0
        out["loss"] = total
        return out
