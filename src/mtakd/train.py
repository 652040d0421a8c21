"""One training loop for the teacher (supervised) and the student (distillation).

``train(cfg, resume=False)``: the model in ``cfg.model`` learns from on-the-fly mixtures;
when ``cfg.loss.kd != "none"`` a frozen teacher (``cfg.teacher``, eval mode, no gradients)
supplies the distillation target. Each step: STFT -> model(s) -> ``MultiTaskLoss`` dict ->
AdamW with warm-up + cosine LR and gradient clipping. Each epoch: validation (PESQ-WB,
SI-SDR), ``last`` and ``best`` checkpoints (atomic safetensors), CSV logs with the learned
task weights. ``resume=True`` restores weights, optimiser, scheduler, loss parameters,
counters and RNG from ``train_state.safetensors`` and continues with the same data order.
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from .checkpoint import load_checkpoint, load_train_state, save_checkpoint, save_train_state
from .config import ConfigError, TrainConfig, save_config, to_dict
from .data import MixingDataset, collate
from .losses import MultiTaskLoss
from .models import build_model
from .runlog import RunLog
from .stft import STFT, apply_mask
from .validate import validate, validation_items

class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what survives."""


class EpochSampler(Sampler):
    """A seeded permutation per epoch, starting at ``start`` (so a resumed epoch continues)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch, self.start = n, seed, 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g)[self.start :].tolist())

    def __len__(self) -> int:
        return self.n - self.start


def lr_factor(step: int, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True):
        self.cfg, self.progress = cfg, progress
        self.run_dir = Path(cfg.run_dir)
        self._prepare_run_dir(resume)
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.stft = STFT()
        self.model = build_model(cfg.model.name, cfg.model.args)
        self.teacher = self._load_teacher() if cfg.loss.kd != "none" else None
        self.objective = MultiTaskLoss(
            cfg.loss,
            student_dim=getattr(self.model, "hidden_size", None),
            teacher_dim=getattr(self.teacher, "hidden_size", None),
        )
        decay, no_decay, log_vars = [], [], []
        for n, p in list(self.model.named_parameters()) + [("loss." + n, p) for n, p in self.objective.named_parameters()]:
            # biases, norms and PReLU slopes are not decayed; the uncertainty log-variances
            # get neither decay (it would pull the task weights to 1) nor the base learning rate
            (log_vars if "log_vars" in n else no_decay if p.dim() <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        if log_vars:
            groups.append({"params": log_vars, "weight_decay": 0.0, "lr": cfg.optim.lr * cfg.loss.log_var_lr_scale})
        self.opt = torch.optim.AdamW(groups, lr=cfg.optim.lr)
        self.train_set = MixingDataset(cfg.data, "train", seed=cfg.seed)
        self.steps_per_epoch = len(self.train_set) // cfg.optim.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"data.items_per_epoch ({len(self.train_set)}) is smaller than optim.batch_size ({cfg.optim.batch_size})")
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.optim.warmup_steps, self.total_steps, cfg.optim.min_lr_ratio)
        )
        self.sampler = EpochSampler(len(self.train_set), cfg.seed)
        self.step, self.epoch, self.best = 0, 0, -math.inf
        self.log = RunLog(self.run_dir, tensorboard=cfg.tensorboard)
        self.valid_items = validation_items(cfg)
        if resume:
            self._restore()
        save_config(cfg, self.run_dir / "config.yaml")

    # ------------------------------------------------------------------ setup
    def _prepare_run_dir(self, resume: bool) -> None:
        state = self.run_dir / "train_state.safetensors"
        if resume and not state.exists():
            raise ConfigError(f"--resume: {state} does not exist; start without --resume")
        if not resume and self.run_dir.exists() and any(self.run_dir.iterdir()):
            raise ConfigError(f"run folder {self.run_dir} already holds a run; use --resume to continue it or choose another run_dir")
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            probe = self.run_dir / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise ConfigError(f"run folder {self.run_dir} is not writable ({e.strerror}); choose another run_dir") from None

    def _load_teacher(self):
        if not self.cfg.teacher:
            raise ConfigError(f"loss.kd={self.cfg.loss.kd} needs a teacher checkpoint: pass --teacher PATH")
        teacher = load_checkpoint(self.cfg.teacher)[0]
        if getattr(teacher.cfg, "n_freq", None) != getattr(self.model.cfg, "n_freq", None):
            raise ConfigError("teacher and student use different spectra (n_freq); they cannot be distilled")
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher.eval()

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
            "torch_rng": torch.get_rng_state(),
        }

    def _restore(self) -> None:
        s = load_train_state(self.run_dir / "train_state.safetensors")
        self.model.load_state_dict(s["model"])
        self.objective.load_state_dict(s["objective"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.step, self.epoch, self.best = int(s["step"]), int(s["epoch"]), float(s["best"])
        torch.set_rng_state(s["torch_rng"])
        self.log.rewind(self.step, self.epoch - 1)
        print(f"resumed {self.run_dir} at epoch {self.epoch + 1}, step {self.step}")

    def aux_tensors(self) -> dict[str, torch.Tensor]:
        """Loss parameters stored beside the weights (the learned uncertainty weights)."""
        return {f"loss.{k}": v for k, v in self.objective.state_dict().items()}

    def save(self, which: str, extra: dict[str, Any] | None = None) -> None:
        train = {"step": self.step, "epoch": self.epoch, **(extra or {})}
        try:
            save_checkpoint(self.run_dir / f"{which}.safetensors", self.model, to_dict(self.cfg), self.aux_tensors(), train)
            if which == "last":
                save_train_state(self.run_dir / "train_state.safetensors", self._state())
        except OSError as e:
            raise TrainingError(f"could not write a checkpoint in {self.run_dir} ({e.strerror}); the previous checkpoint is intact") from None

    # ------------------------------------------------------------------ one step
    def compute(self, noisy: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward both models and the objective for a batch ``(B, N)``."""
        y, s = self.stft(noisy), self.stft(clean)
        need_hidden = self.objective.feature is not None
        t_est = h_t = None
        if self.teacher is not None:
            with torch.no_grad():
                t_out = self.teacher(y, return_hidden=need_hidden)
                t_mask, h_t = t_out if need_hidden else (t_out, None)
                t_est = apply_mask(y, t_mask)
        out = self.model(y, return_hidden=need_hidden)
        mask, h_s = out if need_hidden else (out, None)
        est = apply_mask(y, mask)
        est_wav = self.stft.inverse(est, noisy.shape[-1]) if self.cfg.loss.sisdr_weight > 0 else None
        return self.objective(est, s, y, teacher=t_est, h_s=h_s, h_t=h_t, est_wav=est_wav, clean_wav=clean)

    def _loader(self) -> DataLoader:
        return DataLoader(
            self.train_set, batch_size=self.cfg.optim.batch_size, sampler=self.sampler, collate_fn=collate,
            num_workers=self.cfg.data.num_workers, drop_last=True, persistent_workers=False,
        )

    # ------------------------------------------------------------------ loop
    def fit(self) -> Path:
        cfg = self.cfg
        bad_run = 0
        while self.epoch < cfg.optim.epochs:
            start = self.step - self.epoch * self.steps_per_epoch
            self.train_set.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch, start * cfg.optim.batch_size)
            self.model.train()
            sums: dict[str, float] = {}
            n_ok, t0 = 0, time.time()
            bar = _bar(self.steps_per_epoch, start, f"epoch {self.epoch + 1}/{cfg.optim.epochs}", self.progress)
            for batch in self._loader():
                out = self.compute(batch["noisy"], batch["clean"])
                loss = out["loss"]
                if not torch.isfinite(loss):
                    bad_run += 1
                    warnings.warn(f"step {self.step}: non-finite loss, batch skipped ({bad_run} in a row)")
                    if bad_run > cfg.optim.nonfinite_patience:
                        raise TrainingError(
                            f"{bad_run} consecutive non-finite losses at step {self.step}; stopping. "
                            f"The last good checkpoint in {self.run_dir} is kept: lower optim.lr or check the data"
                        )
                    self.opt.zero_grad(set_to_none=True)
                    continue
                bad_run = 0
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                params = [p for g in self.opt.param_groups for p in g["params"]]
                gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip)
                self.opt.step()
                self.sched.step()
                self.step += 1
                n_ok += 1
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + float(v.detach())
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{float(loss):.4f}")
                if self.step % cfg.optim.log_every == 0:
                    row = {"step": self.step, "epoch": self.epoch + 1, "lr": self.sched.get_last_lr()[0], "grad_norm": float(gnorm)}
                    row.update({k: float(v.detach()) for k, v in out.items()})
                    self.log.step(row)
                if cfg.optim.checkpoint_every and self.step % cfg.optim.checkpoint_every == 0:
                    self.save("last")
            if bar is not None:
                bar.close()
            self.epoch += 1
            means = {f"train_{k}": v / max(1, n_ok) for k, v in sums.items()}
            val = validate(self.model, self.valid_items)
            score = val["val_pesq"] if math.isfinite(val["val_pesq"]) else val["val_si_sdr"] / 10
            is_best = score > self.best
            if is_best:
                self.best = score
            row = {"epoch": self.epoch, "step": self.step, "lr": self.sched.get_last_lr()[0], **means, **val,
                   "epoch_s": time.time() - t0, "best": int(is_best)}
            self.log.epoch(row)
            self.save("last", val)
            if is_best:
                self.save("best", val)
            _print_epoch(row, self.objective)
        return self.run_dir / "best.safetensors"


def _bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, dynamic_ncols=True)


def _print_epoch(row: dict[str, Any], objective: MultiTaskLoss) -> None:
    parts = [f"epoch {row['epoch']}", f"step {row['step']}", f"loss {row.get('train_loss', float('nan')):.4f}"]
    parts += [f"val PESQ {row['val_pesq']:.3f}", f"SI-SDR {row['val_si_sdr']:.2f} dB"]
    if objective.uncertainty is not None:
        parts += [f"w_{n} {row.get('train_w_' + n, float('nan')):.3f}" for n in objective.uncertainty.names]
    print(" | ".join(parts) + (" *" if row["best"] else ""), flush=True)


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train according to ``cfg``; returns the path of the best checkpoint."""
    return Trainer(cfg, resume=resume, progress=progress).fit()
