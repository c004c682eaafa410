"""Train one arch from scratch (DARTS' evaluation recipe), in the current process.

The network is the space's ``build_static(arch)``; for the ``darts`` space that is DARTS'
NetworkCIFAR (20 cells, 36 channels, auxiliary head). Each epoch: SGD with a cosine learning rate,
random crop + flip (+ cutout), drop-path growing linearly to ``drop_path_prob`` (as DARTS:
p·epoch/epochs), the auxiliary loss weighted by ``auxiliary_weight``; then test accuracy.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas.arch import arch_id
from raynas.data import ImageDataset, load_dataset
from raynas.data.device import DeviceSplit
from raynas.differentiable.config import RetrainConfig
from raynas.accuracy import top1
from raynas.device import bf16_autocast, resolve_device
from raynas.differentiable.search import cosine_schedule
from raynas.errors import ConfigError
from raynas.registry import create_space
from raynas.rng import derive_rng

EpochCallback = Callable[[Dict[str, Any]], None]


class Retrainer:
    """Holds the model, optimizer and data of one from-scratch training run."""

    def __init__(self, config: RetrainConfig, dataset: Optional[ImageDataset] = None) -> None:
        self.config = cfg = config
        self.device = resolve_device(cfg.device)
        if cfg.cpu_threads:
            torch.set_num_threads(int(cfg.cpu_threads))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.space = create_space(cfg.space, **cfg.space_options)
        self.arch = self.space.validate(cfg.arch)
        # evaluating on 'test' trains on every training image; on 'val' a validation split is carved
        carve = {"val_size": 0} if cfg.eval_split == "test" else {}
        self.data = dataset or load_dataset(cfg.data, seed=cfg.data_seed, calib_size=0, train_size=cfg.train_size,
                                            **carve, **cfg.data_options)
        if cfg.eval_split not in self.data.splits:
            raise ConfigError(f"dataset '{self.data.spec}' has no '{cfg.eval_split}' split to evaluate on; use "
                              "a source with an official test set (cifar10, imagefolder with test/) or "
                              "eval_split 'val'")
        self.train = DeviceSplit(self.data.split("train"), self.device, self.data.mean, self.data.std)
        self.test = DeviceSplit(self.data.split(cfg.eval_split), self.device, self.data.mean, self.data.std)
        self.steps_per_epoch = self.train.steps(cfg.batch_size)
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(self.train)} training images")
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = self.space.build_static(self.arch, self.data.num_classes)
        self.model: nn.Module = model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if hasattr(self.model, "drop_path_generator"):
            self.model.drop_path_generator = torch.Generator(self.device).manual_seed(
                int(derive_rng(cfg.seed, "drop-path").integers(2 ** 62)))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay)
        self.lr_schedule = cosine_schedule(self.optimizer, cfg)
        self.params = int(getattr(self.model, "inference_parameters", lambda: sum(
            p.numel() for p in self.model.parameters()))())
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []

    def _autocast(self):
        return bf16_autocast(self.config.bf16, self.device)

    def _forward(self, x: torch.Tensor):
        with_aux = getattr(self.model, "forward_with_aux", None)
        if callable(with_aux) and self.config.auxiliary_weight > 0:
            return with_aux(x)
        return self.model(x), None

    def run_epoch(self) -> Dict[str, Any]:
        cfg, model, epoch = self.config, self.model, self.epoch
        if epoch >= cfg.epochs:
            raise ConfigError(f"the training already ran its {cfg.epochs} epochs")
        start = time.perf_counter()
        lr = self.lr_schedule.get_last_lr()[0]
        if hasattr(model, "drop_path_prob"):
            model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs
        model.train()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)
        for x, y in self.train.epoch(cfg.batch_size, derive_rng(cfg.seed, "retrain", epoch),
                                     steps=self.steps_per_epoch, augment=cfg.augment, cutout=cfg.cutout):
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self._autocast():
                logits, logits_aux = self._forward(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if logits_aux is not None:
                loss = loss + cfg.auxiliary_weight * F.cross_entropy(
                    logits_aux.float(), y, label_smoothing=cfg.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            sums += torch.stack([loss.detach().double(), (logits.argmax(1) == y).sum().double()])
        train_loss, correct = sums.tolist()
        train_seconds = time.perf_counter() - start
        self.lr_schedule.step()
        self.epoch += 1
        record: Dict[str, Any] = {
            "epoch": self.epoch, "lr": lr, "drop_path_prob": float(getattr(model, "drop_path_prob", 0.0)),
            "train_loss": train_loss / self.steps_per_epoch,
            "train_accuracy": 100.0 * correct / (self.steps_per_epoch * cfg.batch_size),
            "params": self.params, "arch_id": arch_id(self.arch), "train_seconds": train_seconds,
            "steps": self.steps_per_epoch}
        if self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs:
            record.update(self.evaluate())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        record["epoch_seconds"] = time.perf_counter() - start
        self.history.append(record)
        return record

    def evaluate(self) -> Dict[str, float]:
        """Top-1 accuracy (percent) and loss on the evaluation split (reported as ``test_*``)."""
        def batches():
            for x, y in self.test.batches(self.config.eval_batch_size):
                if self.config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                yield x, y

        with self._autocast():
            result = top1(self.model, batches(), with_loss=True)
        return {"test_loss": result.loss, "test_accuracy": result.accuracy}

    def fit(self, on_epoch: Optional[EpochCallback] = None) -> List[Dict[str, Any]]:
        """Train the remaining epochs (``on_epoch(record)`` after each), then export if asked."""
        while self.epoch < self.config.epochs:
            record = self.run_epoch()
            if self.config.export_dir and self.epoch == self.config.epochs:
                record["export"] = str(self.export(self.config.export_dir))
            if on_epoch is not None:
                on_epoch(record)
        return self.history

    def export(self, directory: str) -> Path:
        """Save the trained model as a raynas export (rebuilt by ``raynas.export.load_exported``)."""
        from raynas.export import save_exported

        last = self.history[-1] if self.history else {}
        metrics = {k: last[k] for k in ("test_accuracy", "test_loss") if k in last}
        path = Path(directory) / f"{arch_id(self.arch)}-seed{self.config.seed}"
        return save_exported(path, self.model, space=self.space, arch=self.arch,
                             num_classes=self.data.num_classes, mean=self.data.mean, std=self.data.std,
                             metrics=metrics, dataset=self.data.spec, image_size=self.data.image_size,
                             evaluation={"split": self.config.eval_split, "epochs": self.epoch,
                                         "seed": self.config.seed})

    def result(self) -> Dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {"config": self.config.to_dict(), "arch": self.arch, "arch_id": arch_id(self.arch),
                "params": self.params, "test_accuracy": last.get("test_accuracy"),
                "history": [dict(r) for r in self.history]}


def run_retrain(config: Any = None, dataset: Optional[ImageDataset] = None,
                on_epoch: Optional[EpochCallback] = None, **overrides: Any) -> Dict[str, Any]:
    """Train ``config.arch`` from scratch in this process and return :meth:`Retrainer.result`."""
    trainer = Retrainer(RetrainConfig.from_any(config, **overrides), dataset)
    trainer.fit(on_epoch)
    return trainer.result()
