"""Supernet training: sampled subnets per step (sandwich rule with in-place distillation by
default), one optimizer step per batch, atomic checkpoints, and a final weight-inherited
evaluation of the largest and smallest subnets.

``train_supernet(config)`` runs in the current process. Subnet choices and data order come from
RNGs seeded by (seed, step), so any process given the same config trains the same subnets.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas.checkpoint import save_supernet_checkpoint
from raynas.data import ImageDataset, augment, load_dataset, resize, to_float
from raynas.evaluators.weight_inherited import WeightInheritedEvaluator
from raynas.registry import create_space
from raynas.rng import derive_rng
from raynas.supernet import Supernet
from raynas.training import SubnetTask, SupernetTrainConfig, make_sampling_strategy

CHECKPOINT_DIR = "checkpoint"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def soft_cross_entropy(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Distillation loss: cross-entropy against the teacher's softened distribution (x T^2)."""
    t = float(temperature)
    target = F.softmax(teacher_logits.float() / t, dim=1)
    return -(target * F.log_softmax(logits.float() / t, dim=1)).sum(dim=1).mean() * (t * t)


def param_groups(model: nn.Module, weight_decay: float) -> List[Dict[str, Any]]:
    """No weight decay on BN/LayerNorm parameters and biases (their scale carries no capacity)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def learning_rate(config: SupernetTrainConfig, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """Linear warm-up then cosine decay to zero, per step."""
    warmup = int(config.warmup_epochs * steps_per_epoch)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


class SupernetTrainer:
    """Holds the model, optimizer, data and sampling strategy of one training run."""

    def __init__(self, config: SupernetTrainConfig, dataset: Optional[ImageDataset] = None) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        if config.cpu_threads:
            torch.set_num_threads(int(config.cpu_threads))
        self.space = create_space(config.space, **config.space_options)
        self.data = dataset or load_dataset(config.data, seed=config.seed, **config.data_options)
        # the initial weights come from torch's generator, seeded so a run is reproducible
        torch.manual_seed(config.seed)
        model = self.space.build_supernet(self.data.num_classes, **config.supernet_options)
        self.model: Supernet = model.to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if config.compile else self.model
        self.optimizer = torch.optim.SGD(param_groups(self.model, config.weight_decay), lr=config.lr,
                                         momentum=config.momentum, nesterov=True)
        self.strategy = make_sampling_strategy(config.sampler, **config.sampler_options)
        self.train_split = self.data.split("train")
        self.steps_per_epoch = len(self.train_split) // config.batch_size
        if self.steps_per_epoch == 0:
            from raynas.errors import ConfigError
            raise ConfigError(f"batch_size {config.batch_size} exceeds the {len(self.train_split)} training images")
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps is not None:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.step = 0
        self.history: List[Dict[str, float]] = []

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.config.bf16 and self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _inputs(self, x_u8: torch.Tensor, step: int) -> torch.Tensor:
        if self.config.augment:
            x_u8 = augment(x_u8, derive_rng(self.config.seed, "augment", step))
        x = to_float(x_u8, self.data.mean, self.data.std)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def train_step(self, tasks: List[SubnetTask], x: torch.Tensor, y: torch.Tensor,
                   teacher: Optional[nn.Module] = None) -> Dict[str, float]:
        """Forward/backward every task, accumulating gradients; one optimizer step."""
        cfg = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad(), self._autocast():
                teacher_logits = teacher(x).detach()
        losses: Dict[str, float] = {}
        for k, task in enumerate(tasks):
            arch = self.model.activate(task.arch)
            xin = resize(x, self.space.input_resolution(arch))
            with self._autocast():
                logits = self.forward(xin)
            if task.target == "labels":
                loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            else:
                if teacher_logits is None:
                    raise RuntimeError("a distillation task came before any teacher task")
                loss = soft_cross_entropy(logits, teacher_logits, cfg.kd_temperature)
            loss.backward()
            if task.is_teacher and teacher is None:
                teacher_logits = logits.detach()
            losses[f"loss{k}"] = float(loss.detach())
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return losses

    # ------------------------------------------------------------------ the loop
    def batches(self, epoch: int) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        return self.train_split.batches(self.config.batch_size, rng=derive_rng(self.config.seed, "shuffle", epoch),
                                        shuffle=True, drop_last=True, device=self.device)

    def fit(self, progress: bool = True, on_epoch_end=None) -> List[Dict[str, float]]:
        from tqdm.auto import tqdm

        cfg = self.config
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train supernet", unit="step",
                   file=sys.stderr, disable=not progress, dynamic_ncols=True)
        start_epoch = self.step // self.steps_per_epoch
        for epoch in range(start_epoch, cfg.epochs):
            skip = self.step - epoch * self.steps_per_epoch
            epoch_losses: List[float] = []
            for i, (x_u8, y) in enumerate(self.batches(epoch)):
                if i < skip:
                    continue
                if self.step >= self.total_steps:
                    break
                lr = learning_rate(cfg, self.step, self.steps_per_epoch * cfg.epochs, self.steps_per_epoch)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                tasks = self.strategy.plan(self.space, self.step, cfg.seed)
                losses = self.train_step(tasks, self._inputs(x_u8, self.step), y)
                epoch_losses.append(losses["loss0"])
                self.step += 1
                bar.update(1)
                bar.set_postfix(epoch=epoch, lr=f"{lr:.3g}", loss=f"{losses['loss0']:.3f}", refresh=False)
            record = {"epoch": epoch, "step": self.step,
                      "train_loss": float(sum(epoch_losses) / max(1, len(epoch_losses)))}
            self.history.append(record)
            if on_epoch_end is not None:
                on_epoch_end(self, record)
            if self.step >= self.total_steps:
                break
        bar.close()
        return self.history

    # ------------------------------------------------------------------ results
    def evaluate_extremes(self) -> Dict[str, float]:
        """Weight-inherited accuracy (BN recalibrated) of the largest and smallest subnets."""
        cfg = self.config
        calib = len(self.data.split("calib")) // cfg.eval_batch_size
        evaluator = WeightInheritedEvaluator.from_dataset(
            self.model, self.data, batch_size=cfg.eval_batch_size if calib else max(1, len(self.data.split("calib"))),
            calib_batches=max(1, min(cfg.eval_calib_batches, calib or 1)), device=self.device,
            bf16=cfg.bf16)
        largest, smallest = evaluator.evaluate([self.space.largest(), self.space.smallest()])
        return {"largest_accuracy": largest["accuracy"], "smallest_accuracy": smallest["accuracy"]}

    def save(self, path: Union[str, Path], metrics: Optional[Mapping[str, float]] = None) -> Path:
        meta = {"num_classes": self.data.num_classes, "supernet_options": dict(self.config.supernet_options),
                "dataset": self.data.spec, "config": self.config.to_dict(), "step": self.step,
                "epoch": self.step // self.steps_per_epoch, "history": self.history,
                "metrics": dict(metrics or {})}
        model = self.model
        return save_supernet_checkpoint(
            path, model, meta,
            optimizer_state={"optimizer": self.optimizer.state_dict()},
            extra_state={"sampler": self.strategy.state_dict(), "step": self.step})


def train_supernet(config: Union[SupernetTrainConfig, Mapping[str, Any], str, None] = None, *,
                   progress: bool = True, dataset: Optional[ImageDataset] = None, **overrides: Any
                   ) -> Tuple[Path, Dict[str, float]]:
    """Train a supernet in this process; returns (checkpoint directory, final metrics)."""
    cfg = SupernetTrainConfig.from_any(config, **overrides)
    trainer = SupernetTrainer(cfg, dataset)
    checkpoint = Path(cfg.output) / CHECKPOINT_DIR

    def on_epoch_end(t: SupernetTrainer, record: Dict[str, float]) -> None:
        if (record["epoch"] + 1) % cfg.checkpoint_every == 0:
            t.save(checkpoint)

    start = time.perf_counter()
    trainer.fit(progress=progress, on_epoch_end=on_epoch_end)
    metrics = trainer.evaluate_extremes()
    metrics["train_seconds"] = time.perf_counter() - start
    trainer.save(checkpoint, metrics)
    return checkpoint, metrics
