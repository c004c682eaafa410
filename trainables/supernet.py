"""Supernet training, in this process or data-parallel on Ray Train.

:class:`SupernetTrainer` holds one rank's model, optimizers, data and sampling strategy. Every
choice a step makes comes from (seed, step): the subnets (the strategy), the data order
(``seed, epoch``), the augmentation of the global batch (``seed, step``; each rank applies its
slice), dropout (``seed, step, rank``) and the hybrid space's op draws (``set_step``). So all ranks
train the same subnets at every step, and a run resumed from a checkpoint continues exactly where
it stopped.

Entry points:

* :func:`train_supernet` -- ``num_workers=0`` trains in this process (world size 1); ``N`` runs
  :func:`train_loop_per_worker` on N workers with Ray Train's ``TorchTrainer`` (DDP; NCCL on GPUs,
  gloo on CPU; any number of nodes), restarting from the latest checkpoint up to
  ``max_failures`` times.
* :func:`train_standalone` -- one arch as a static model from scratch, same loop and recipe.

The model is always a :class:`raynas.supernet.Supernet` (a standalone run's static model is
wrapped in :class:`~raynas.supernet.FixedArchSupernet`); the loop calls the capabilities the
base declares (α parameters, channel sorting, splitting, per-step op draws, arch mode) and checks
up front that every phase's request is one the supernet has.

Data parallelism: ``batch_size`` is the global batch, split evenly over ranks; gradients of
every subnet of a step accumulate locally (DDP ``no_sync``) and are all-reduced once, and with
``sync_bn`` batch statistics are global, so N workers compute what one process computes.
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from raynas.accuracy import top1
from raynas.arch import Arch, arch_id
from raynas.checkpoint import (load_training_state, read_checkpoint_meta,
                               save_supernet_checkpoint)
from raynas.data import ImageDataset, apply_augment, augment_params, load_dataset, resize, to_float
from raynas.device import bf16_autocast, resolve_device
from raynas.errors import CheckpointError, ConfigError
from raynas.io import atomic_directory, atomic_write_json
from raynas.registry import create_space
from raynas.rng import derive_rng
from raynas.integrity import FILES_KEY
from raynas.serialization import FileSource, load_state_strict, parse_safetensors
from raynas.supernet import FixedArchSupernet, Supernet, frozen_teacher
from raynas.training import SubnetTask, SupernetTrainConfig, make_sampling_strategy
from raynas.training.recipe import dropout_modules, param_groups, regularization, soft_cross_entropy
from raynas.training.schedule import PhasePlan
from trainables.sessions import CHECKPOINT_DIR, LocalSession, RayTrainSession

log = logging.getLogger("raynas.training")

STANDALONE_DIR = "model"
SUBNET_LOG_DIR = "subnets"


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# ------------------------------------------------------------------------------ the trainer
class SupernetTrainer:
    """One rank's model, optimizers, data and sampling strategy (world size 1 in-process)."""

    def __init__(self, config: SupernetTrainConfig, dataset: Optional[ImageDataset] = None, *,
                 rank: int = 0, world_size: int = 1, device: Optional[torch.device] = None) -> None:
        cfg = self.config = config
        self.rank, self.world_size = int(rank), int(world_size)
        if cfg.batch_size % self.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the {self.world_size} workers")
        if cfg.cpu_threads:
            torch.set_num_threads(int(cfg.cpu_threads))
        self.device = device or resolve_device(cfg.device)
        self.space = create_space(cfg.space, **cfg.space_options)
        self.data = dataset or load_dataset(cfg.data, seed=cfg.seed, **cfg.data_options)
        self.strategy = make_sampling_strategy(cfg.sampler, **cfg.sampler_options)
        self.strategy.bind(self.space)
        self.standalone_arch: Optional[Arch] = None
        self.standalone_model: Optional[nn.Module] = None  # what a standalone run saves
        self.module = self._build_model()
        self.alpha_params: List[nn.Parameter] = list(self.module.alpha_parameters())
        alpha_ids = {id(p) for p in self.alpha_params}
        self.weight_params = [(n, p) for n, p in self.module.named_parameters() if id(p) not in alpha_ids]
        self.ddp = self._wrap_ddp()
        net = self.ddp if self.ddp is not None else self.module
        self.net = torch.compile(net) if cfg.compile else net
        self.optimizer = self._make_optimizer()
        self.alpha_optimizer = (torch.optim.Adam(self.alpha_params, lr=cfg.alpha_lr, betas=(0.5, 0.999))
                                if self.alpha_params else None)

        if not cfg.standalone:  # the final report's calibration size, checked before training
            from raynas.evaluators.weight_inherited import resolve_calib_images

            resolve_calib_images(len(self.data.split("calib")), cfg.calib_images)
        train = self.data.split("train")
        self.train_split = train.to(self.device) if cfg.data_on_device else train
        self.steps_per_epoch = len(train) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(f"batch_size {cfg.batch_size} exceeds the {len(train)} training images")
        self.local_batch = cfg.batch_size // self.world_size
        # per-dataset augmentation: flips only where a mirrored image keeps its label
        self.flip = self.data.hflip if cfg.flip is None else cfg.flip
        self.crop_pad = self.data.image_size // 8 if cfg.crop_pad is None else cfg.crop_pad
        self.plan = PhasePlan.build(self.strategy.phases(cfg.epochs, cfg.lr, cfg.warmup_epochs),
                                    self.steps_per_epoch)
        self.strategy.bind_schedule(self.plan)
        self.total_steps = self.plan.total_steps
        if any(p.split_supernet for p in self.plan.phases) and not self.module.can_split:
            # found now, not when the split phase starts halfway through the run
            raise ConfigError(f"sampler '{cfg.sampler}' splits the supernet, but the supernet of space "
                              f"'{self.space.name}' cannot split; build it with a split option "
                              "(nb201: supernet_options {'split_edge': 0})")
        for phase in self.plan.phases:
            if phase.sort_channels not in (False, "auto") and not self.module.supports_channel_sorting:
                raise ConfigError(f"phase '{phase.name}' asks for channel sorting but the supernet of "
                                  f"space '{self.space.name}' cannot sort channels; drop sort_channels "
                                  "from the phase (or set it to \"auto\")")
        self.stop_step = min(self.total_steps, cfg.max_steps) if cfg.max_steps else self.total_steps

        self.step = 0
        self.start_step = 0
        self.phase_index: Optional[int] = None   # the phase whose entry actions have run
        self.width_sorts = 0
        self.teacher: Optional[nn.Module] = None
        self.history: List[Dict[str, Any]] = []
        self.events: List[Dict[str, Any]] = []
        self.subnet_log: List[List[Any]] = []
        self._order: Optional[Tuple[int, torch.Tensor]] = None
        self._bn_sync = None
        if self.world_size > 1 and cfg.sync_bn:
            from raynas.training.sync_bn import SyncBatchNormMode

            self._bn_sync = SyncBatchNormMode
        self._loss_sum = torch.zeros((), device=self.device)
        self._loss_count = 0
        self._dropouts = dropout_modules(self.module)  # found once: a step must not walk the model

    # ------------------------------------------------------------------ construction
    def _build_model(self) -> Supernet:
        """The space's supernet, or for a standalone run its static model of the one arch."""
        cfg = self.config
        # spaces that initialise from torch's generator get one seeded by the run (restored after,
        # so building a trainer leaves the caller's generator alone); OFA takes the seed itself
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.standalone:
                self.standalone_arch = self.strategy.plan(self.space, 0, cfg.seed)[0].arch
                kwargs = {"seed": cfg.seed} if _accepts(self.space.build_static, "seed") else {}
                static = self.space.build_static(self.standalone_arch, self.data.num_classes, **kwargs)
                self.standalone_model = static
                model: nn.Module = FixedArchSupernet(self.space, self.standalone_arch, static)
                self.build_options: Dict[str, Any] = {}
            else:
                self.build_options = dict(cfg.supernet_options)
                if "seed" not in self.build_options and _accepts(self.space.build_supernet, "seed"):
                    self.build_options["seed"] = cfg.seed
                model = self.space.build_supernet(self.data.num_classes, **self.build_options)
                if not isinstance(model, Supernet):
                    raise ConfigError(f"space '{self.space.name}': build_supernet returned a "
                                      f"{type(model).__name__}, not a raynas.supernet.Supernet; "
                                      "subclass Supernet (activate, export) to train it")
        model = model.to(self.device)
        if self.config.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _wrap_ddp(self):
        if self.world_size <= 1:
            return None
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index if self.device.index is not None else torch.cuda.current_device()] \
            if self.device.type == "cuda" else None
        # subnets leave parameters unused: DDP must look for them when it syncs; buffers are
        # either synchronised by sync BN or recalibrated before evaluation, so never broadcast
        no_buffer_sync = ({"forward_sync_buffers": False}
                          if _accepts(DistributedDataParallel.__init__, "forward_sync_buffers")
                          else {"broadcast_buffers": False})
        return DistributedDataParallel(self.module, device_ids=ids, find_unused_parameters=True,
                                       gradient_as_bucket_view=True, **no_buffer_sync)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        cfg = self.config
        groups = param_groups(self.weight_params, cfg.weight_decay)
        fused = {"fused": True} if self.device.type == "cuda" else {}
        if cfg.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, **fused)
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, **fused)

    @property
    def optimizers(self) -> List[torch.optim.Optimizer]:
        return [self.optimizer] + ([self.alpha_optimizer] if self.alpha_optimizer is not None else [])

    # ------------------------------------------------------------------ data
    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if self._order is None or self._order[0] != epoch:
            perm = derive_rng(self.config.seed, "shuffle", epoch).permutation(len(self.train_split))
            self._order = (epoch, torch.from_numpy(perm).to(self.train_split.labels.device))
        return self._order[1]

    def batch(self, step: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of global batch ``step``: (uint8 images, labels) on the device."""
        epoch, i = divmod(step, self.steps_per_epoch)
        B, b = self.config.batch_size, self.local_batch
        start = i * B + self.rank * b
        positions = self._epoch_order(epoch)[start:start + b]
        x = self.train_split.take(positions)
        y = self.train_split.labels.index_select(0, positions)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def inputs(self, x_u8: torch.Tensor, step: int) -> torch.Tensor:
        """Augment (offsets drawn for the global batch, this rank's slice applied), normalise."""
        if self.config.augment and (self.crop_pad or self.flip):
            params = augment_params(derive_rng(self.config.seed, "augment", step), self.config.batch_size,
                                    self.crop_pad, self.flip)
            lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
            x_u8 = apply_augment(x_u8, *(p[lo:hi] for p in params), pad=self.crop_pad)
        x = to_float(x_u8, self.data.mean, self.data.std)
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        return bf16_autocast(self.config.bf16, self.device)

    def _resolution(self, arch: Arch) -> Optional[int]:
        return self.space.input_resolution(arch)

    def train_step(self, tasks: List[SubnetTask], x: torch.Tensor, y: torch.Tensor,
                   teacher: Optional[nn.Module] = None) -> torch.Tensor:
        """Forward/backward every task, gradients accumulating; one optimizer step (and one
        gradient all-reduce in DDP). Returns the per-task losses (a device tensor, no sync)."""
        cfg = self.config
        self.module.train()
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)
        teacher_logits = None
        if teacher is not None:
            with torch.no_grad(), self._autocast():
                teacher_logits = teacher(resize(x, self._resolution(self.space.largest()))).float()
        losses = []
        activated = []
        last = len(tasks) - 1
        for k, task in enumerate(tasks):
            arch = self.module.activate(task.arch)
            activated.append(arch)
            xin = resize(x, self._resolution(arch))
            defer_sync = self.ddp is not None and cfg.ddp_sync == "no_sync" and k < last
            with (self.ddp.no_sync() if defer_sync else contextlib.nullcontext()):
                with (self._bn_sync() if self._bn_sync is not None else contextlib.nullcontext()), \
                        regularization(self._dropouts, task.regularize), self._autocast():
                    logits = self.net(xin)
                loss = logits.new_zeros((), dtype=torch.float32)
                if task.label_weight:
                    loss = loss + task.label_weight * F.cross_entropy(
                        logits.float(), y, label_smoothing=cfg.label_smoothing)
                if task.distill_weight:
                    if teacher_logits is None:
                        raise ConfigError("a distillation task came before any teacher task; put the "
                                          "teacher task first or give the phase a fixed teacher")
                    loss = loss + task.distill_weight * soft_cross_entropy(
                        logits, teacher_logits, cfg.kd_temperature)
                loss.backward()
            if task.is_teacher and teacher is None:
                teacher_logits = logits.detach().float()
            losses.append(loss.detach())
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_([p for _, p in self.weight_params], cfg.grad_clip)
        for opt in self.optimizers:
            opt.step()
        self.last_activated = activated
        return torch.stack(losses)

    # ------------------------------------------------------------------ phases
    def _enter_phase(self, index: int) -> None:
        """Entry actions of a phase: fresh optimizer, fixed teacher, channel sorting (logged)."""
        phase = self.plan.phases[index]
        start, steps = self.plan.starts[index], self.plan.lengths[index]
        message = (f"phase {index + 1}/{len(self.plan.phases)} '{phase.name}' starts at step {self.step} "
                   f"({steps} steps from {start}, peak lr {phase.lr:g})")
        unlock = phase.options.get("unlock")
        if unlock is not None:
            message += f", sampling {', '.join(sorted(unlock))}" if unlock else ", the largest subnet only"
        self._event("phase", message, phase=phase.name, index=index)
        # "auto": sort where the supernet can (checked up front where a phase insists)
        sort = self.module.supports_channel_sorting if phase.sort_channels == "auto" else bool(phase.sort_channels)
        if sort:
            width_phase = self._sort_channels()
            self._event("sort_channels", f"sorted channels by importance (width phase {width_phase})",
                        phase=phase.name, width_phase=width_phase)
        if phase.split_supernet and self.module.split():
            self._event("split", f"split the supernet into sub-supernets (few-shot) at step {self.step}",
                        phase=phase.name)
        if phase.reset_optimizer or sort:
            # sorting permutes weights under the momentum buffers: start the phase afresh, as OFA does
            self.optimizer = self._make_optimizer()
        if phase.fixed_teacher and self.teacher is None:
            self.teacher = self._snapshot_teacher()
            self._event("teacher", "fixed teacher: the largest subnet as trained so far",
                        phase=phase.name)
        self.phase_index = index

    def _sort_channels(self) -> int:
        width_phase = min(self.width_sorts, max(0, self.module.num_width_phases - 1))
        self.module.sort_channels(width_phase=width_phase)
        self.width_sorts += 1
        return width_phase

    def _snapshot_teacher(self) -> Supernet:
        # a standalone run's one arch is its largest
        largest = self.standalone_arch if self.config.standalone else self.space.largest()
        return frozen_teacher(self.module, largest)

    def _event(self, kind: str, message: str, **fields: Any) -> None:
        self.events.append({"event": kind, "step": self.step, **fields})
        if self.rank == 0:
            log.info(message)

    # ------------------------------------------------------------------ the loop
    def run_step(self) -> torch.Tensor:
        cfg, step = self.config, self.step
        index = self.plan.index(step)
        if index != self.phase_index:
            self._enter_phase(index)
        phase = self.plan.phases[index]
        lr = self.plan.learning_rate(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        torch.manual_seed(int(derive_rng(cfg.seed, "torch", step, self.rank).integers(2 ** 62)))
        self.module.set_step(step)
        tasks = self.strategy.plan(self.space, step, cfg.seed, phase)
        x_u8, y = self.batch(step)
        losses = self.train_step(tasks, self.inputs(x_u8, step), y,
                                 teacher=self.teacher if phase.fixed_teacher else None)
        if cfg.record_subnets:
            entry: List[Any] = [step, [arch_id(a) for a in self.last_activated]]
            ops = self.module.last_forward_ops()
            if ops:
                entry.append(ops)
            self.subnet_log.append(entry)
        return losses

    def fit(self, session: Optional[Any] = None, progress: bool = False,
            callback: Optional[Callable[["SupernetTrainer"], None]] = None) -> List[Dict[str, Any]]:
        """Train from ``self.step`` to the stop step, checkpointing through ``session``;
        ``callback(trainer)`` runs after every step (e.g. to record α trajectories), after the
        epoch's entry in ``history`` when the step ends an epoch."""
        from tqdm.auto import tqdm

        cfg = self.config
        session = session or LocalSession(Path(cfg.output) / CHECKPOINT_DIR)
        if cfg.fail_at_step is not None and cfg.checkpoint_every_steps and \
                cfg.fail_at_step % cfg.checkpoint_every_steps:
            raise ConfigError("fail_at_step must be a multiple of checkpoint_every_steps, so the "
                              "restarted run resumes at the failed step and does not fail again")
        bar = tqdm(total=self.stop_step, initial=self.step, desc="train supernet", unit="step",
                   file=sys.stderr, disable=not progress or self.rank != 0, dynamic_ncols=True)
        epoch_start = time.perf_counter()
        while self.step < self.stop_step:
            if cfg.fail_at_step == self.step and self.start_step < self.step:
                raise RuntimeError(f"injected failure at step {self.step} (fail_at_step)")
            losses = self.run_step()
            self._loss_sum += losses[0]
            self._loss_count += 1
            self.step += 1
            bar.update(1)
            if self.step % cfg.log_every == 0 and progress:
                bar.set_postfix(loss=f"{float(self._loss_sum) / max(1, self._loss_count):.3f}",
                                lr=f"{self.plan.learning_rate(self.step - 1):.3g}", refresh=False)
            epoch_end = self.step % self.steps_per_epoch == 0
            if epoch_end or self.step == self.stop_step:
                self._close_epoch(time.perf_counter() - epoch_start)
            if callback is not None:  # after the epoch's record, so the callback can read it
                callback(self)
            if epoch_end or self.step == self.stop_step:
                epoch_start = time.perf_counter()
            if self.step == self.stop_step or self.config.standalone:
                continue  # the final checkpoint carries the metrics
            due = (epoch_end and (self.step // self.steps_per_epoch) % cfg.checkpoint_every == 0) or (
                cfg.checkpoint_every_steps and self.step % cfg.checkpoint_every_steps == 0)
            if due:
                self.write_subnet_log()
                session.report(self.progress_metrics(), self.save)
        bar.close()
        return self.history

    def _close_epoch(self, seconds: float) -> None:
        loss = float(self._loss_sum) / max(1, self._loss_count)  # one device sync per epoch
        record = {"epoch": (self.step - 1) // self.steps_per_epoch, "step": self.step,
                  "train_loss": loss, "lr": self.plan.learning_rate(self.step - 1),
                  "phase": self.plan.phase(self.step - 1).name, "seconds": seconds}
        alpha = self.module.alpha_values()
        if alpha:
            record["alpha"] = alpha
        self.history.append(record)
        self._loss_sum.zero_()
        self._loss_count = 0

    def progress_metrics(self) -> Dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {"step": self.step, "epoch": self.step / self.steps_per_epoch,
                "train_loss": last.get("train_loss", float("nan")), "phase": last.get("phase", "")}

    # ------------------------------------------------------------------ results
    def evaluate_extremes(self) -> Dict[str, float]:
        """Weight-inherited accuracy (BN recalibrated) of the largest and smallest subnets; a
        standalone run reports its model's validation accuracy."""
        cfg = self.config
        if cfg.standalone:
            return {"accuracy": evaluate_accuracy(self.module, self.data, "val", self.device,
                                                  self._resolution(self.standalone_arch),
                                                  cfg.eval_batch_size, cfg.bf16)}
        from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

        # recalibration rewrites BN statistics: keep the training ones (a resumed run, the fixed
        # teacher and the checkpoint continue from them)
        with self.module.arch_mode(), preserved_buffers(self.module):
            evaluator = WeightInheritedEvaluator.from_dataset(
                self.module, self.data, batch_size=cfg.eval_batch_size, calib_images=cfg.calib_images,
                device=self.device, bf16=cfg.bf16, channels_last=cfg.channels_last)
            largest, smallest = evaluator.evaluate([self.space.largest(), self.space.smallest()])
            out = {"largest_accuracy": largest["accuracy"], "smallest_accuracy": smallest["accuracy"],
                   "calib_images": evaluator.calib_images}
            derived = self.module.derive_arch()
            if derived is not None:
                out["derived_accuracy"] = evaluator.evaluate([derived])[0]["accuracy"]
        return out

    def meta(self, metrics: Optional[Mapping[str, float]] = None) -> Dict[str, Any]:
        options = dict(self.module.build_options or self.build_options)
        if "mode" in options:
            options["mode"] = "arch"  # a checkpoint serves evaluation of archs; training mode is in config
        return {"num_classes": self.data.num_classes, "supernet_options": options,
                "dataset": self.data.spec, "config": self.config.to_dict(), "step": self.step,
                "augmentation": {"enabled": self.config.augment, "flip": self.flip,
                                 "crop_pad": self.crop_pad},
                "epoch": self.step / self.steps_per_epoch, "total_steps": self.total_steps,
                "phase": self.plan.phase(max(0, self.step - 1)).name, "phases": self.plan.describe(),
                "history": self.history, "events": self.events, "metrics": dict(metrics or {})}

    def save(self, path: Union[str, Path], metrics: Optional[Mapping[str, float]] = None) -> Path:
        """A checkpoint with everything resuming needs (model, optimizers, teacher, progress)."""
        if self.config.standalone:
            from raynas.export import save_exported

            return save_exported(path, self.standalone_model, space=self.space, arch=self.standalone_arch,
                                 num_classes=self.data.num_classes, mean=self.data.mean,
                                 std=self.data.std, metrics=metrics, dataset=self.data.spec,
                                 image_size=self.data.image_size)
        optim = {"weights": self.optimizer.state_dict()}
        if self.alpha_optimizer is not None:
            optim["alpha"] = self.alpha_optimizer.state_dict()
        extra = {"step": self.step, "phase_index": self.phase_index, "width_sorts": self.width_sorts,
                 "sampler": self.strategy.state_dict(),
                 "teacher": None if self.teacher is None else self.teacher.state_dict()}
        return save_supernet_checkpoint(path, self.module, self.meta(metrics), optimizer_state=optim,
                                        extra_state=extra)

    def load(self, path: Union[str, Path]) -> None:
        """Continue from a checkpoint of the same training (same config up to run control)."""
        if self.config.standalone:
            raise ConfigError("standalone runs save only their final model; they cannot resume")
        meta = read_checkpoint_meta(path)
        saved = SupernetTrainConfig.from_any(meta.get("config") or {})
        diff = self.config.training_differences(saved)
        if diff:
            raise ConfigError(f"cannot resume from {path}: it was trained with other settings "
                              f"({', '.join(f'{k}: {b!r} there, {a!r} here' for k, (a, b) in diff.items())})")
        source = FileSource(path, "supernet checkpoint")
        load_state_strict(self.module, parse_safetensors(source, "model.safetensors", meta.get(FILES_KEY),
                                                         source.where("meta.json")),
                          source.where("model.safetensors"), str(path))
        state = load_training_state(path, map_location=self.device)
        extra, optim = state["extra_state"], state["optimizer_state"]
        if extra is None or optim is None:
            raise CheckpointError(f"{path} holds no training state (optimizer.pt / trainer_state.pt); "
                                  "it cannot be resumed")
        self.strategy.load_state_dict(extra.get("sampler") or {})
        self.step = self.start_step = int(extra["step"])
        self.phase_index = extra.get("phase_index")
        self.width_sorts = int(extra.get("width_sorts", 0))
        self.optimizer.load_state_dict(optim["weights"])
        if self.alpha_optimizer is not None and "alpha" in optim:
            self.alpha_optimizer.load_state_dict(optim["alpha"])
        if extra.get("teacher") is not None:
            self.teacher = self._snapshot_teacher()
            self.teacher.load_state_dict(extra["teacher"])
        self.history = list(meta.get("history") or [])
        self.events = list(meta.get("events") or [])
        log.info(f"resumed from {path} at step {self.step}")

    def write_subnet_log(self) -> Optional[Path]:
        if not self.config.record_subnets:
            return None
        # one file per rank and attempt: a run restarted after a failure adds a file from the
        # step it resumed at, so together they cover every step
        path = Path(self.config.output) / SUBNET_LOG_DIR / f"rank{self.rank}-from{self.start_step}.json"
        atomic_write_json(path, {"rank": self.rank, "world_size": self.world_size,
                                 "start_step": self.start_step, "steps": self.subnet_log})
        return path


def read_subnet_logs(output: Union[str, Path]) -> Dict[int, Dict[int, List[Any]]]:
    """What ``record_subnets`` wrote: {rank: {step: [arch ids (, hybrid ops)]}}, every attempt of
    a restarted run merged (a later attempt wins where they overlap)."""
    out: Dict[int, Dict[int, List[Any]]] = {}
    files = sorted(Path(output, SUBNET_LOG_DIR).glob("rank*-from*.json"),
                   key=lambda p: int(p.stem.split("-from")[1]))
    for path in files:
        import json

        data = json.loads(path.read_text())
        steps = out.setdefault(int(data["rank"]), {})
        for entry in data["steps"]:
            steps[int(entry[0])] = entry[1:]
    return out


@contextlib.contextmanager
def preserved_buffers(model: nn.Module) -> Iterator[None]:
    """Restore every buffer (BN running statistics) of ``model`` when the block exits."""
    saved = {name: b.detach().clone() for name, b in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(saved[name])


def evaluate_accuracy(model: nn.Module, data: ImageDataset, split: str, device: torch.device,
                      resolution: Optional[int], batch_size: int = 256, bf16: bool = True) -> float:
    """Top-1 accuracy (%) of a model (eval mode, its own BN statistics) on a split."""
    batches = ((resize(to_float(x_u8, data.mean, data.std), resolution), y)
               for x_u8, y in data.split(split).batches(batch_size, device=device))
    with bf16_autocast(bf16, device):
        return top1(model, batches).accuracy


# ------------------------------------------------------------------------------ one rank's run
def run_training(config: SupernetTrainConfig, session, *, dataset: Optional[ImageDataset] = None,
                 device: Optional[torch.device] = None, progress: bool = False
                 ) -> Tuple[SupernetTrainer, Dict[str, Any]]:
    """Build, restore (if the session has a checkpoint), train, evaluate and save (rank 0)."""
    start = time.perf_counter()
    trainer = SupernetTrainer(config, dataset, rank=session.rank, world_size=session.world_size,
                              device=device)
    with session.restore_dir() as restore:
        if restore is not None:
            trainer.load(restore)
    trainer.fit(session, progress=progress)
    trainer.write_subnet_log()
    metrics: Dict[str, Any] = {}
    if session.rank == 0:
        metrics = trainer.evaluate_extremes()
        metrics["train_seconds"] = time.perf_counter() - start
        metrics["steps"] = trainer.step
    session.report({**trainer.progress_metrics(), **metrics},
                   (lambda path: trainer.save(path, metrics)) if session.rank == 0 else None)
    return trainer, metrics


def train_loop_per_worker(loop_config: Dict[str, Any]) -> None:
    """Ray Train entry point: ``{"config": SupernetTrainConfig dict, "resume": path or None}``."""
    import ray.train.torch

    config = SupernetTrainConfig.from_any(loop_config["config"])
    device = ray.train.torch.get_device() if config.use_gpu else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    resume = loop_config.get("resume")
    run_training(config, RayTrainSession(Path(resume) if resume else None), device=device)


# ------------------------------------------------------------------------------ entry points
def _config_for(config, resume: Optional[Path], overrides: Mapping[str, Any]) -> SupernetTrainConfig:
    if config is None and resume is not None:
        meta = read_checkpoint_meta(resume)
        if not meta.get("config"):
            raise CheckpointError(f"{resume} does not record its training config; pass --config too")
        config = meta["config"]
    return SupernetTrainConfig.from_any(config, **overrides)


def train_supernet(config: Union[SupernetTrainConfig, Mapping[str, Any], str, None] = None, *,
                   num_workers: Optional[int] = None, resume: Union[str, Path, None] = None,
                   progress: bool = True, dataset: Optional[ImageDataset] = None, **overrides: Any
                   ) -> Tuple[Path, Dict[str, Any]]:
    """Train a supernet; returns (checkpoint directory, final metrics).

    ``num_workers`` 0/None trains in this process; N > 0 on N Ray Train workers (overrides the
    config's ``num_workers``). ``resume``: a checkpoint directory to continue from (its config is
    used when ``config`` is None; run-control options may change, training options may not).
    """
    resume_path = Path(resume) if resume is not None else None
    if num_workers is not None:
        overrides = {**overrides, "num_workers": num_workers}
    cfg = _config_for(config, resume_path, overrides)
    out_dir = STANDALONE_DIR if cfg.standalone else CHECKPOINT_DIR
    checkpoint = Path(cfg.output) / out_dir
    if cfg.num_workers == 0:
        _, metrics = run_training(cfg, LocalSession(checkpoint, resume_path), dataset=dataset,
                                  progress=progress)
        return checkpoint, metrics
    if dataset is not None:
        raise ConfigError("a dataset object cannot be shipped to Ray Train workers; give its spec "
                          "(config.data) so every worker loads it")
    return _train_on_ray(cfg, checkpoint, resume_path)


def _train_on_ray(cfg: SupernetTrainConfig, checkpoint: Path, resume: Optional[Path]
                  ) -> Tuple[Path, Dict[str, Any]]:
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from raynas.runtime import ensure_ray

    ensure_ray()
    use_gpu = cfg.use_gpu
    if use_gpu is None:
        use_gpu = cfg.device != "cpu" and ray.cluster_resources().get("GPU", 0) >= 1
    if use_gpu and cfg.device == "cpu":
        raise ConfigError("use_gpu=True contradicts device='cpu'")
    cfg = SupernetTrainConfig.from_any(cfg, use_gpu=bool(use_gpu),
                                       device="cuda" if use_gpu else "cpu")
    storage = Path(cfg.storage_path or Path(cfg.output).resolve() / "ray_train")
    name = f"supernet-{time.strftime('%Y%m%d-%H%M%S')}-{abs(hash((cfg.seed, time.time_ns()))) % 10**6:06d}"
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"config": cfg.to_dict(), "resume": str(resume.resolve()) if resume else None},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.num_workers, use_gpu=bool(use_gpu),
                                     resources_per_worker={"CPU": float(cfg.cpu_threads or 1),
                                                           **({"GPU": 1.0} if use_gpu else {})}),
        run_config=RunConfig(name=name, storage_path=str(storage),
                             failure_config=FailureConfig(max_failures=cfg.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=2)))
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    if result.checkpoint is None:
        raise CheckpointError(f"the Ray Train run {name} reported no checkpoint")
    with atomic_directory(checkpoint) as tmp:
        result.checkpoint.to_directory(str(tmp))
    metrics = {k: v for k, v in (result.metrics or {}).items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return checkpoint, metrics


def train_standalone(arch: Union[Arch, str], config: Union[SupernetTrainConfig, Mapping[str, Any], str, None] = None,
                     *, progress: bool = False, dataset: Optional[ImageDataset] = None,
                     **overrides: Any) -> Tuple[Path, Dict[str, Any]]:
    """Train ``arch`` as a static model from scratch with the supernet recipe (same loop, data,
    schedule); saves it as an exported model under OUTPUT/model and returns its accuracy."""
    cfg = SupernetTrainConfig.from_any(config, **{**overrides, "sampler": "fixed",
                                                  "sampler_options": {"arch": arch},
                                                  "standalone": True})
    return train_supernet(cfg, progress=progress, dataset=dataset)
