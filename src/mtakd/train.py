"""One training loop for the teacher (supervised) and the student (distillation).

``train(cfg, resume=False)``: the model in ``cfg.model`` learns from on-the-fly mixtures;
when ``cfg.loss.kd != "none"`` a frozen teacher (``cfg.teacher``, eval mode, no gradients)
supplies the distillation target. Each step: STFT -> model(s) -> ``MultiTaskLoss`` dict ->
AdamW with warm-up + cosine LR and gradient clipping. Each epoch: validation (PESQ-WB,
SI-SDR), ``last`` and ``best`` checkpoints (atomic safetensors; ``valid.select`` says which
epoch is best: highest PESQ-WB, highest SI-SDR, or simply the last), CSV logs with the learned
task weights. ``resume=True`` restores weights, optimiser, scheduler, loss parameters,
counters and RNG from ``train_state.safetensors`` and continues with the same data order.

Under ``torchrun`` (see ``distributed.py`` and docs/scaling.md) every process builds the same
Trainer: model and loss module are wrapped together in DistributedDataParallel, each rank
draws a disjoint share of every global batch (``optim.batch_size`` is global), the teacher
is replicated per rank, and only rank 0 validates, logs and writes checkpoints.
``optim.grad_accum`` and ``optim.amp`` (bf16/fp16 autocast) are plain config switches.
"""
from __future__ import annotations

import copy
import gc
import math
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from . import distributed as dist
from .atomic import os_error_reason
from .checkpoint import load_checkpoint, load_train_state, resolve_checkpoint, save_checkpoint, save_train_state
from .config import ConfigError, TrainConfig, save_config, to_dict
from .data import collate
from .losses import MultiTaskLoss
from .training_data import training_set
from .models import build_model, model_args, model_name
from .schedule import EpochSampler, lr_factor, step_groups
from .runlog import RunLog, prepare_run_dir, print_epoch, progress_bar
from .stft import STFT, apply_mask
from .validate import SELECT_MODES, selection_score, validate, validation_items


class TrainingError(RuntimeError):
    """Training cannot go on; the message says why and what survives."""


AMP_MODES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class TrainStep(nn.Module):
    """Model + loss module as one ``nn.Module``: the loss has parameters too (uncertainty
    log-variances, feature-KD projection), and wrapping both in one DDP module averages their
    gradients over ranks exactly like the network's. ``forward`` is the trainable part of a
    step: student forward (under autocast when enabled), mask, loss terms in float32."""

    def __init__(self, model: nn.Module, objective: MultiTaskLoss, stft, autocast, need_wav: bool):
        super().__init__()
        self.model, self.objective = model, objective
        # plain attributes, not submodules: the STFT holds no trainable state and stays out of DDP
        self.inverse, self.autocast, self.need_wav = stft.inverse, autocast, need_wav

    def forward(self, y, s, clean, t_est=None, h_t=None) -> dict[str, torch.Tensor]:
        need_hidden = self.objective.feature is not None
        with self.autocast():
            out = self.model(y, return_hidden=need_hidden)
        mask, h_s = out if need_hidden else (out, None)
        est = apply_mask(y, mask.float())
        h_s = h_s.float() if h_s is not None else None
        est_wav = self.inverse(est, clean.shape[-1]) if self.need_wav else None
        t_wav = None
        if self.objective.uses_teacher_wav and t_est is not None:
            with torch.no_grad():
                t_wav = self.inverse(t_est, clean.shape[-1])
        return self.objective(est, s, y, teacher=t_est, h_s=h_s, h_t=h_t, est_wav=est_wav, clean_wav=clean,
                              teacher_wav=t_wav)


class Trainer:
    def __init__(self, cfg: TrainConfig, resume: bool = False, progress: bool = True):
        self.cfg = cfg
        self.ctx = dist.init(cfg.device)  # no process group unless launched by torchrun
        self.device, main = self.ctx.device, self.ctx.is_main
        self.progress = progress and main
        self.run_dir = Path(cfg.run_dir)
        if cfg.valid.select not in SELECT_MODES:
            raise ConfigError(f"valid.select must be one of {', '.join(SELECT_MODES)}, got '{cfg.valid.select}'")
        dist.on_main(lambda: prepare_run_dir(self.run_dir, resume))
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        world, accum, amp = self.ctx.world, cfg.optim.grad_accum, cfg.optim.amp
        if accum < 1 or cfg.optim.batch_size % (world * accum):
            raise ConfigError(f"optim.batch_size ({cfg.optim.batch_size}) is the global batch: it must be a multiple of "
                              f"the number of processes ({world}) x optim.grad_accum ({accum})")
        self.micro_batch = cfg.optim.batch_size // (world * accum)
        if amp not in AMP_MODES:
            raise ConfigError(f"optim.amp must be one of {', '.join(AMP_MODES)}, got '{amp}'")
        if amp == "fp16" and self.device.type != "cuda":
            raise ConfigError("optim.amp=fp16 needs a CUDA GPU; on the CPU use optim.amp=bf16")
        # fp16 gradients underflow without loss scaling; bf16 has float32's range and needs none
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
        self.stft = STFT().to(self.device)
        self.model = build_model(cfg.model.name, cfg.model.args).to(self.device)
        if cfg.init and not resume:
            self._warm_start(cfg.init)
        self.teacher = self._load_teacher() if cfg.loss.kd != "none" else None
        self.objective = MultiTaskLoss(
            cfg.loss,
            student_dim=getattr(self.model, "hidden_size", None),
            teacher_dim=getattr(self.teacher, "hidden_size", None),
        ).to(self.device)
        scales = lr_scales(cfg.optim.lr_scale, [n for n, _ in self.model.named_parameters()])
        decay, no_decay, log_vars, scaled = [], [], [], {}
        for n, p in list(self.model.named_parameters()) + [("loss." + n, p) for n, p in self.objective.named_parameters()]:
            # biases, norms and PReLU slopes are not decayed; the uncertainty log-variances
            # get neither decay (it would pull the task weights to 1) nor the base learning rate
            if n in scales:
                scaled.setdefault((scales[n], p.dim() > 1), []).append(p)
                continue
            (log_vars if "log_vars" in n else no_decay if p.dim() <= 1 else decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        for (scale, decayed), params in sorted(scaled.items()):
            groups.append({"params": params, "weight_decay": cfg.optim.weight_decay if decayed else 0.0,
                           "lr": cfg.optim.lr * scale})
        if log_vars:
            groups.append({"params": log_vars, "weight_decay": 0.0, "lr": cfg.optim.lr * cfg.loss.log_var_lr_scale})
        self.opt = torch.optim.AdamW(groups, lr=cfg.optim.lr)
        self.train_set = training_set(cfg.data, "train", seed=cfg.seed)
        self.steps_per_epoch = len(self.train_set) // cfg.optim.batch_size
        if self.steps_per_epoch < 1:
            raise ConfigError(f"data.items_per_epoch ({len(self.train_set)}) is smaller than optim.batch_size ({cfg.optim.batch_size})")
        self.total_steps = self.steps_per_epoch * cfg.optim.epochs
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, cfg.optim.warmup_steps, self.total_steps, cfg.optim.min_lr_ratio)
        )
        self.sampler = EpochSampler(len(self.train_set), cfg.seed, self.ctx.rank, world,
                                    total=self.steps_per_epoch * cfg.optim.batch_size)
        self.step, self.epoch, self.best = 0, 0, -math.inf
        # global batches taken from the current epoch's sampler, skipped non-finite ones
        # included: the resume position (``step`` lags behind it after skipped batches)
        self.batches_in_epoch = 0
        self.skipped = ""  # why train_step's last ``None`` came back: "loss" or "gradient"
        self.log = RunLog(self.run_dir, enabled=main, tensorboard=cfg.tensorboard)
        self.valid_items = validation_items(cfg) if main else []
        if resume:
            self._restore()  # on every rank: each replica starts from the same saved state
        if main:
            self._write_log(save_config, cfg, self.run_dir / "config.yaml")
        self.net = dist.wrap_ddp(TrainStep(self.model, self.objective, self.stft, self._autocast, cfg.loss.sisdr_weight > 0), self.ctx)

    # ------------------------------------------------------------------ setup
    def _load_teacher(self):
        if not self.cfg.teacher:
            raise ConfigError(f"loss.kd={self.cfg.loss.kd} needs a teacher checkpoint: pass --teacher PATH")
        teacher = load_checkpoint(resolve_checkpoint(self.cfg.teacher, "teacher"))[0].to(self.device)
        if getattr(teacher.cfg, "n_freq", None) != getattr(self.model.cfg, "n_freq", None):
            raise ConfigError("teacher and student use different spectra (n_freq); they cannot be distilled")
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher.eval()

    def _warm_start(self, spec: str) -> None:
        """Copy the weights of checkpoint ``spec`` into ``self.model`` (fine-tuning)."""
        path = resolve_checkpoint(spec)
        source = load_checkpoint(path)[0]
        want = (self.cfg.model.name, model_args(self.model))
        have = (model_name(source), model_args(source))
        if want != have:
            raise ConfigError(f"init={spec}: the checkpoint holds model '{have[0]}' with args {have[1]}, but this run "
                              f"builds '{want[0]}' with args {want[1]}; set model.name and model.args to the checkpoint's")
        self.model.load_state_dict(source.state_dict())
        if self.ctx.is_main:
            print(f"initialised {want[0]} from {path}")

    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "best": self.best,
            "batches_in_epoch": self.batches_in_epoch,
            "torch_rng": torch.get_rng_state(),
            **({"scaler": self.scaler.state_dict()} if self.scaler is not None else {}),
        }

    def _restore(self) -> None:
        s = load_train_state(self.run_dir / "train_state.safetensors")
        self.model.load_state_dict(s["model"])
        self.objective.load_state_dict(s["objective"])
        self.opt.load_state_dict(s["opt"])
        self.sched.load_state_dict(s["sched"])
        self.step, self.epoch, self.best = int(s["step"]), int(s["epoch"]), float(s["best"])
        # a train_state written before batches_in_epoch existed: the position from the step
        # count (right unless batches were skipped in this epoch)
        self.batches_in_epoch = int(s.get("batches_in_epoch", max(0, self.step - self.epoch * self.steps_per_epoch)))
        torch.set_rng_state(s["torch_rng"])
        if self.scaler is not None and "scaler" in s:
            self.scaler.load_state_dict(s["scaler"])
        # ``epoch`` counts finished epochs, whose rows (numbered 1..epoch) are kept
        self._write_log(self.log.rewind, self.step, self.epoch)
        if self.ctx.is_main:
            print(f"resumed {self.run_dir} at epoch {self.epoch + 1}, step {self.step}")

    def aux_tensors(self) -> dict[str, torch.Tensor]:
        """Loss parameters stored beside the weights (the learned uncertainty weights)."""
        return {f"loss.{k}": v for k, v in self.objective.state_dict().items()}

    def save(self, which: str, extra: dict[str, Any] | None = None) -> None:
        if not self.ctx.is_main:  # replicas are identical; one writer
            return
        for name, t in list(self.model.state_dict().items()) + list(self.aux_tensors().items()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise TrainingError(f"weights became non-finite at step {self.step} ('{name}' has NaN or Inf); they were "
                                    f"not saved: the last good checkpoint in {self.run_dir} is kept. Lower optim.lr or check the data")
        train = {"step": self.step, "epoch": self.epoch, **(extra or {})}
        try:
            save_checkpoint(self.run_dir / f"{which}.safetensors", self.model, to_dict(self.cfg), self.aux_tensors(), train)
            if which == "last":
                save_train_state(self.run_dir / "train_state.safetensors", self._state())
        except OSError as e:
            raise TrainingError(f"could not write a checkpoint in {self.run_dir} ({e.strerror}); the previous checkpoint is intact") from None

    def _write_log(self, write, *args) -> None:
        """A write of the CSV logs or config.yaml; an ``OSError`` (full disk, read-only folder)
        stops training with one line instead of a traceback."""
        try:
            write(*args)
        except OSError as e:
            where = e.filename or self.run_dir
            raise TrainingError(f"could not write {where} ({os_error_reason(e)}) at step {self.step}; stopping. The "
                                f"checkpoints in {self.run_dir} are intact: free some space or fix the folder, then "
                                "continue with --resume") from None

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        dtype = AMP_MODES[self.cfg.optim.amp]
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def compute(self, noisy: torch.Tensor, clean: torch.Tensor) -> dict[str, torch.Tensor]:
        """Forward both models and the objective for a batch ``(B, N)``."""
        noisy, clean = noisy.to(self.device, non_blocking=True), clean.to(self.device, non_blocking=True)
        y, s = self.stft(noisy), self.stft(clean)
        need_hidden = self.objective.feature is not None
        t_est = h_t = None
        if self.teacher is not None:
            with torch.no_grad(), self._autocast():
                t_out = self.teacher(y, return_hidden=need_hidden)
            t_mask, h_t = t_out if need_hidden else (t_out, None)
            t_est = apply_mask(y, t_mask.float())
            h_t = h_t.float() if h_t is not None else None
        return self.net(y, s, clean, t_est, h_t)

    def _loader(self) -> DataLoader:
        return DataLoader(
            self.train_set, batch_size=self.micro_batch, sampler=self.sampler, collate_fn=collate,
            num_workers=self.cfg.data.num_workers, drop_last=True, persistent_workers=False,
            pin_memory=self.device.type == "cuda",
        )

    def train_step(self, group: list[dict]) -> tuple[dict[str, float] | None, float]:
        """One optimiser step on ``grad_accum`` micro-batches -> (loss terms averaged over the
        global batch, gradient norm), or ``(None, nan)`` when a loss was non-finite on any rank
        (then no rank steps: they agree because the check uses the all-reduced losses), or
        ``(None, norm)`` when the loss was finite but its gradient norm is not (every rank sees
        the same all-reduced gradients, so they agree too). ``self.skipped`` says which."""
        self.opt.zero_grad(set_to_none=True)
        total = None
        for j, batch in enumerate(group):
            # gradients are all-reduced once, in the backward of the last micro-batch
            sync = j == len(group) - 1 or not isinstance(self.net, nn.parallel.DistributedDataParallel)
            with nullcontext() if sync else self.net.no_sync():
                out = self.compute(batch["noisy"], batch["clean"])
                keys = list(out)
                vals = dist.all_reduce_mean(torch.stack([v.detach().float() for v in out.values()]))
                if not torch.isfinite(vals[keys.index("loss")]):
                    self.opt.zero_grad(set_to_none=True)
                    self.skipped = "loss"
                    return None, float("nan")
                loss = out["loss"] / len(group)
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            total = vals if total is None else total + vals
        params = [p for g in self.opt.param_groups for p in g["params"]]
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        gnorm = torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        if self.scaler is None and not torch.isfinite(gnorm):
            # a NaN/Inf gradient from a finite loss: no update. (With fp16 loss scaling the
            # GradScaler skips such steps itself and lowers its scale; a few are normal then.)
            self.opt.zero_grad(set_to_none=True)
            self.skipped = "gradient"
            return None, float(gnorm)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        return dict(zip(keys, (total / len(group)).tolist())), float(gnorm)

    def _validate(self) -> dict[str, float]:
        # validation enhances on the CPU (PESQ is CPU code anyway); a GPU model is copied there
        model = self.model if self.device.type == "cpu" else copy.deepcopy(self.model).cpu()
        return validate(model, self.valid_items)

    # ------------------------------------------------------------------ loop
    def fit(self) -> Path:
        cfg = self.cfg
        bad_run = 0
        main = self.ctx.is_main
        bad_kinds: set[str] = set()
        while self.epoch < cfg.optim.epochs:
            start = self.batches_in_epoch  # 0, or where a resumed epoch left off
            self.train_set.set_epoch(self.epoch)
            self.sampler.set_epoch(self.epoch, start * cfg.optim.batch_size)
            self.model.train()
            sums: dict[str, float] = {}
            n_ok, t0 = 0, time.time()
            bar = progress_bar(self.steps_per_epoch, start, f"epoch {self.epoch + 1}/{cfg.optim.epochs}", self.progress)
            for group in step_groups(self._loader(), cfg.optim.grad_accum):
                out, gnorm = self.train_step(group)
                self.batches_in_epoch += 1
                if bar is not None:
                    bar.update(1)
                if out is None:
                    bad_run += 1
                    bad_kinds.add(self.skipped)
                    if main:
                        warnings.warn(f"step {self.step}: non-finite {self.skipped}, batch skipped ({bad_run} in a row)")
                    if bad_run > cfg.optim.nonfinite_patience:
                        what = " and ".join(sorted(k + ("es" if k == "loss" else "s") for k in bad_kinds))
                        raise TrainingError(
                            f"{bad_run} consecutive non-finite {what} at step {self.step}; stopping. "
                            f"The last good checkpoint in {self.run_dir} is kept: lower optim.lr or check the data"
                        )
                    continue
                bad_run = 0
                bad_kinds.clear()
                self.step += 1
                n_ok += 1
                for k, v in out.items():
                    sums[k] = sums.get(k, 0.0) + v
                if bar is not None:
                    bar.set_postfix(loss=f"{out['loss']:.4f}")
                if self.step % cfg.optim.log_every == 0:
                    row = {"step": self.step, "epoch": self.epoch + 1, "lr": self.sched.get_last_lr()[0], "grad_norm": gnorm}
                    row.update(out)
                    self._write_log(self.log.step, row)
                if cfg.optim.checkpoint_every and self.step % cfg.optim.checkpoint_every == 0:
                    self.save("last")
            if bar is not None:
                bar.close()
            self.epoch += 1
            self.batches_in_epoch = 0
            if main:  # the train means are already over all ranks (all-reduced per step)
                means = {f"train_{k}": v / max(1, n_ok) for k, v in sums.items()}
                val = self._validate()
                score = selection_score(val, cfg.valid.select, self.epoch)
                is_best = score > self.best
                if is_best:
                    self.best = score
                row = {"epoch": self.epoch, "step": self.step, "lr": self.sched.get_last_lr()[0], **means, **val,
                       "epoch_s": time.time() - t0, "best": int(is_best)}
                self._write_log(self.log.epoch, row)
                self.save("last", val)
                if is_best:
                    self.save("best", val)
                print_epoch(row, self.objective.uncertainty)
            dist.barrier()  # the other ranks wait for rank 0's validation and checkpoints
        return self.run_dir / "best.safetensors"


def lr_scales(table: dict, names: list[str]) -> dict[str, float]:
    """``optim.lr_scale`` (name prefix -> multiplier) -> ``{parameter name: multiplier}`` for the
    parameters it covers (the longest matching prefix wins). ``ConfigError`` for a multiplier
    that is not a positive number or a prefix that matches no parameter."""
    out: dict[str, tuple[int, float]] = {}
    for prefix, scale in table.items():
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0:
            raise ConfigError(f"optim.lr_scale.{prefix} must be a number > 0, got {scale!r}")
        hits = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            tops = sorted({n.split(".")[0] for n in names})
            raise ConfigError(f"optim.lr_scale.{prefix} matches no parameter of the model; its parameters are under: "
                              f"{', '.join(tops)}")
        for n in hits:
            if n not in out or len(prefix) > out[n][0]:
                out[n] = (len(prefix), float(scale))
    return {n: v for n, (_, v) in out.items()}


def train(cfg: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train according to ``cfg``; returns the path of the best checkpoint.

    Under torchrun this joins the process group, trains on every rank and leaves the group
    again (a group the caller created is left open)."""
    try:
        return Trainer(cfg, resume=resume, progress=progress).fit()
    finally:
        # a DDP replica holds its own reference to the process group, and destroying the group
        # only drops c10d's: collect a trainer left in a reference cycle first, so no gloo
        # thread outlives the group into interpreter shutdown (where it can abort the process)
        gc.collect()
        dist.cleanup()
