"""One differentiable architecture search (DARTS / TD-DARTS), run in the current process.

The training set is split into two halves: the weights train on one, the architecture (α) on
the other, alternating one α step and one weight step per batch pair as in DARTS. Each epoch
runs at the temperature its schedule gives, then derives the discrete arch and logs it
(temperature, arch, skip connections, supernet train/val accuracy; optionally the arch's
accuracy from a benchmark table).
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from raynas.arch import Arch, arch_id, canonical_json
from raynas.data import ImageDataset, Split, load_dataset
from raynas.data.device import DeviceSplit
from raynas.data.splits import stratified_split
from raynas.device import bf16_autocast, resolve_device
from raynas.differentiable.architect import Architect
from raynas.differentiable.config import DartsSearchConfig
from raynas.differentiable.mixed import mean_normalised_entropy
from raynas.differentiable.temperature import make_schedule
from raynas.errors import ConfigError
from raynas.registry import create_space
from raynas.rng import derive_rng

SKIP_OP = "skip_connect"
EpochCallback = Callable[[Dict[str, Any]], None]


def cosine_schedule(optimizer: torch.optim.Optimizer, config: Any) -> torch.optim.lr_scheduler.LRScheduler:
    """DARTS' cosine schedule, stepped once per epoch: from ``config.lr`` down to
    ``config.lr_min`` over ``config.epochs``."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.lr_min)


def count_op(arch: Any, op: str = SKIP_OP) -> int:
    """How many times ``op`` names an edge anywhere in an arch (any space's JSON)."""
    if isinstance(arch, str):
        return int(arch == op)
    if isinstance(arch, dict):
        return sum(count_op(v, op) for v in arch.values())
    if isinstance(arch, (list, tuple)):
        return sum(count_op(v, op) for v in arch)
    return 0


def split_halves(dataset: ImageDataset, half_size: Optional[int], seed: int) -> Tuple[Split, Split]:
    """Two disjoint class-stratified halves of the training split (weights, α)."""
    full = dataset.split("train")
    half = len(full) // 2 if half_size is None else int(half_size)
    if half < 1 or 2 * half > len(full):
        raise ConfigError(f"half_size {half_size} does not fit twice in the {len(full)} training images")
    idx = stratified_split(full.labels.numpy(), {"val": half}, derive_rng(seed, "darts-halves"),
                           rest="train", rest_size=half, source=f"dataset '{dataset.spec}'")

    def part(rows):
        positions = torch.from_numpy(rows)
        return Split(full.take(positions).contiguous(), full.labels.index_select(0, positions))

    return part(idx["train"]), part(idx["val"])


class DartsSearch:
    """Holds the supernet, both optimizers, the architect and the two data halves."""

    def __init__(self, config: DartsSearchConfig, dataset: Optional[ImageDataset] = None) -> None:
        self.config = config
        cfg = config
        self.device = resolve_device(cfg.device)
        if cfg.cpu_threads:
            torch.set_num_threads(int(cfg.cpu_threads))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.space = create_space(cfg.space, **cfg.space_options)
        if not callable(getattr(self.space, "build_search_network", None)):
            raise ConfigError(f"space '{self.space.name}' has no differentiable supernet "
                              "(build_search_network); differentiable search supports nb201 and darts")
        self.data = dataset or load_dataset(cfg.data, seed=cfg.data_seed, val_size=0, calib_size=0,
                                            **cfg.data_options)
        if cfg.image_size:
            self.data = self.data.resized(cfg.image_size)
        # random-crop padding in proportion to the image side (4 pixels at 32x32)
        self.crop_padding = max(1, round(4 * self.data.image_size / 32))
        train, val = split_halves(self.data, cfg.half_size, cfg.data_seed)
        self.train = DeviceSplit(train, self.device, self.data.mean, self.data.std)
        self.val = DeviceSplit(val, self.device, self.data.mean, self.data.std)
        self.eval_split = None
        if cfg.eval_images:
            # a seeded random subset in random order: the halves are stored class by class, and
            # BN layers without running statistics normalise each evaluation batch by itself
            rows = torch.from_numpy(derive_rng(cfg.data_seed, "darts-eval").permutation(len(val))
                                    [:min(cfg.eval_images, len(val))])
            self.eval_split = DeviceSplit(Split(val.images.index_select(0, rows).contiguous(),
                                                val.labels.index_select(0, rows)),
                                          self.device, self.data.mean, self.data.std)
        self.steps_per_epoch = min(self.train.steps(cfg.batch_size), self.val.steps(cfg.batch_size))
        if self.steps_per_epoch < 1:
            raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(train)} images of a half")
        if cfg.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps_per_epoch)

        # initial weights from a forked torch generator (the global one is left as it was)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = self.space.build_search_network(self.data.num_classes, **cfg.supernet_options)
        alpha_seed = int(derive_rng(cfg.seed, "alpha-init").integers(2 ** 62))
        model.init_alphas(torch.Generator().manual_seed(alpha_seed), cfg.alpha_init_scale)
        model.relaxation = cfg.relaxation
        self.model = model.to(self.device)
        self.weight_optimizer = torch.optim.SGD(self.model.weight_parameters(), lr=cfg.lr,
                                                momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.lr_schedule = cosine_schedule(self.weight_optimizer, cfg)
        self.arch_optimizer = torch.optim.Adam(self.model.arch_parameters(), lr=cfg.arch_lr,
                                               betas=tuple(cfg.arch_betas),
                                               weight_decay=cfg.arch_weight_decay)
        self.latency_table = None
        penalty = None
        if cfg.latency_table:
            from raynas.differentiable.latency import latency_penalty, resolve_latency_table

            self.latency_table = resolve_latency_table(cfg.latency_table, self.model, device=str(self.device),
                                                       threads=cfg.cpu_threads or 1)
            if cfg.latency_lambda > 0:  # λ = 0 leaves the α step exactly as plain DARTS
                penalty = latency_penalty(self.model, self.latency_table, cfg.latency_lambda)
        self.architect = Architect(self.model, self.arch_optimizer, cfg.order, self._autocast, penalty=penalty)
        self.schedule = make_schedule(cfg.schedule)
        self.table = None
        if cfg.table:
            from raynas.evaluators.tabular import TabularEvaluator

            self.table = TabularEvaluator(cfg.table, space=self.space, key=cfg.table_key,
                                          metrics=cfg.table_metrics or None).check()
        self.epoch = 0
        self.history: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------ helpers
    def _autocast(self):
        return bf16_autocast(self.config.bf16, self.device)

    def derive(self) -> Arch:
        """The discrete arch of the current α at ``derive_temperature`` (default: the current T)."""
        return self.model.derive(self.config.derive_temperature)

    # ------------------------------------------------------------------ one epoch
    def run_epoch(self) -> Dict[str, Any]:
        cfg, model, epoch = self.config, self.model, self.epoch
        if epoch >= cfg.epochs:
            raise ConfigError(f"the search already ran its {cfg.epochs} epochs")
        start = time.perf_counter()
        model.temperature = self.schedule.at(epoch, cfg.epochs)
        if cfg.relaxation == "gumbel":  # the epoch's op draws, reproducible per (seed, epoch)
            model.gumbel_generator = torch.Generator().manual_seed(
                int(derive_rng(cfg.seed, "gumbel", epoch).integers(2 ** 62)))
        lr = self.lr_schedule.get_last_lr()[0]
        # sums on the device, read once per epoch: no synchronisation per step
        sums = torch.zeros(4, dtype=torch.float64, device=self.device)
        model.train()
        batches = zip(
            self.train.epoch(cfg.batch_size, derive_rng(cfg.seed, "darts-train", epoch),
                             steps=self.steps_per_epoch, augment=cfg.augment, pad=self.crop_padding),
            self.val.epoch(cfg.batch_size, derive_rng(cfg.seed, "darts-val", epoch),
                           steps=self.steps_per_epoch, augment=cfg.augment, pad=self.crop_padding))
        for train, val in batches:
            val_loss, val_logits = self.architect.step(train, val, self.weight_optimizer)
            x, y = train
            self.weight_optimizer.zero_grad(set_to_none=True)
            with model.alphas_frozen(), self._autocast():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.weight_parameters(), cfg.grad_clip)
            self.weight_optimizer.step()
            sums += torch.stack([loss.detach().double(), (logits.argmax(1) == y).sum().double(),
                                 val_loss.double(), (val_logits.argmax(1) == val[1]).sum().double()])
        train_loss, train_correct, val_loss, val_correct = sums.tolist()
        n = self.steps_per_epoch * cfg.batch_size
        self.lr_schedule.step()
        self.epoch += 1
        record = self._record(epoch, lr, start)
        record.update(train_loss=train_loss / self.steps_per_epoch, train_accuracy=100.0 * train_correct / n,
                      val_loss=val_loss / self.steps_per_epoch, val_accuracy=100.0 * val_correct / n)
        self.history.append(record)
        return record

    def _record(self, epoch: int, lr: float, start: float) -> Dict[str, Any]:
        arch = self.derive()
        skips = {key: count_op(value) for key, value in arch.items()}
        record: Dict[str, Any] = {
            "epoch": epoch + 1, "temperature": self.model.temperature, "lr": lr,
            "arch": arch, "arch_id": arch_id(arch), "arch_str": self.space.describe(arch),
            "skip_connections": sum(skips.values()),
            "alpha_entropy": mean_normalised_entropy(self.model.mixing_weights()),
            "steps": self.steps_per_epoch,
            "alphas": self.model.alpha_state(),
        }
        if self.eval_split is not None:
            record["search_val_accuracy"] = self.evaluate()
            with self.model.relaxed("argmax"):
                record["derived_val_accuracy"] = self.evaluate()
        if len(skips) > 1:
            record.update({f"skip_connections_{k}": v for k, v in skips.items()})
        if self.table is not None:
            record.update(self.table.lookup(arch))
        if self.latency_table is not None:
            from raynas.differentiable.latency import latency_record

            record["latency_lambda"] = float(self.config.latency_lambda)
            record.update(latency_record(self.model, self.latency_table, arch))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        record["epoch_seconds"] = time.perf_counter() - start
        return record

    @torch.no_grad()
    def evaluate(self, batch_size: int = 256) -> float:
        """Top-1 accuracy (%) of the supernet as it is now relaxed on the evaluation images
        (eval mode, no augmentation; a Gumbel relaxation evaluates its argmax cell instead)."""
        if self.eval_split is None:
            raise ConfigError("set eval_images > 0 to evaluate the supernet during the search")
        model = self.model
        was_training = model.training
        model.eval()
        correct = 0
        relaxation = "argmax" if model.relaxation == "gumbel" else model.relaxation
        with model.relaxed(relaxation), self._autocast():
            for x, y in self.eval_split.batches(batch_size):
                correct += int((model(x).argmax(1) == y).sum())
        model.train(was_training)
        return 100.0 * correct / len(self.eval_split)

    def fit(self, on_epoch: Optional[EpochCallback] = None) -> List[Dict[str, Any]]:
        """Run the remaining epochs, calling ``on_epoch(record)`` after each."""
        while self.epoch < self.config.epochs:
            record = self.run_epoch()
            if on_epoch is not None:
                on_epoch(record)
        return self.history

    def result(self) -> Dict[str, Any]:
        """The derived arch, α, final mixing weights and the per-epoch history (JSON-able)."""
        arch = self.history[-1]["arch"] if self.history else self.derive()
        return {"method": self.config.method, "config": self.config.to_dict(),
                "arch": arch, "arch_id": arch_id(arch), "arch_str": self.space.describe(arch),
                "temperature": self.model.temperature, "alphas": self.model.alpha_state(),
                "mixing_weights": {g: w.detach().cpu().tolist()
                                   for g, w in self.model.mixing_weights().items()},
                "history": [dict(r) for r in self.history],
                **({"latency_table": self.latency_table.to_json()} if self.latency_table is not None else {})}


def run_search(config: Any = None, dataset: Optional[ImageDataset] = None,
               on_epoch: Optional[EpochCallback] = None, **overrides: Any) -> Dict[str, Any]:
    """Run one search in this process and return :meth:`DartsSearch.result`.

    ``run_search({"space": "nb201", "schedule": "linear", "data": "cifar10:<path>"})``.
    """
    search = DartsSearch(DartsSearchConfig.from_any(config, **overrides), dataset)
    search.fit(on_epoch)
    return search.result()


def flat_record(record: Dict[str, Any]) -> Dict[str, Any]:
    """A record for Tune: the arch as canonical JSON text, everything else as it is."""
    out = dict(record)
    out["arch"] = canonical_json(record["arch"])
    return out


def arch_from_record(record: Dict[str, Any]) -> Arch:
    value = record["arch"]
    return json.loads(value) if isinstance(value, str) else value
