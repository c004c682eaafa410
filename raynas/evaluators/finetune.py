"""Fine-tuned accuracy: a subnet inherits the supernet's weights (BN recalibrated), then trains
for a few epochs on its own; validation accuracy after each epoch is one fidelity.

Schedulers such as ASHA read the per-epoch accuracies and stop poor archs after an epoch or two
(``raynas.search(..., scheduler="asha")``). The evaluator runs inside the trial's process: it
pickles as a checkpoint path and a dataset spec and loads both once per process.
"""
from __future__ import annotations

import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError
from raynas.evaluators.base import Evaluator, Metrics


class FineTuneEvaluator(Evaluator):
    """Validation accuracy (%) of each arch after 1..``epochs`` epochs of fine-tuning.

    Args:
        supernet: a supernet checkpoint folder (picklable; loaded lazily) or a ``Supernet``
            object (in-process use only).
        data: dataset spec (default: the checkpoint's) or an ``ImageDataset``.
        epochs: fine-tuning epochs, i.e. fidelities.
        steps_per_epoch: optimizer steps per epoch (default: one pass over ``train``).
        lr / momentum / weight_decay: SGD settings; batch_size: images per step.
        seed: data order and BN-calibration batches (the same for every arch, per epoch).
    """

    metrics = ("accuracy", "epoch", "params", "macs", "flops")
    trial_resources = {"cpu": 1.0}
    preferred_batch_size = 1

    def __init__(self, supernet: Any, data: Any = None, *, epochs: int = 3, steps_per_epoch: Optional[int] = None,
                 lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0, batch_size: int = 64,
                 calib_batches: Optional[int] = None, seed: int = 0, device: Optional[str] = None) -> None:
        if epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {epochs}")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise ConfigError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        if not lr > 0 or batch_size < 1:
            raise ConfigError(f"need lr > 0 and batch_size >= 1, got {lr}, {batch_size}")
        self.checkpoint: Optional[str] = None
        self._supernet = None
        if isinstance(supernet, (str, os.PathLike)):
            self.checkpoint = os.fspath(supernet)
        else:
            self._supernet = supernet
        self.data = data
        self.epochs, self.steps_per_epoch = int(epochs), steps_per_epoch
        self.lr, self.momentum, self.weight_decay = float(lr), float(momentum), float(weight_decay)
        self.batch_size, self.calib_batches, self.seed = int(batch_size), calib_batches, int(seed)
        self.device = device
        self._state: Optional[Dict[str, Any]] = None

    def __getstate__(self) -> Dict[str, Any]:
        if self.checkpoint is None:
            raise TypeError("a FineTuneEvaluator built from a Supernet object holds a model; build it "
                            "from a checkpoint folder to send it to Tune trials")
        state = dict(self.__dict__)
        state["_state"] = None     # reloaded in the receiving process
        return state

    @property
    def num_fidelities(self) -> int:
        return self.epochs

    # ------------------------------------------------------------------ loading
    def _load(self) -> Dict[str, Any]:
        if self._state is not None:
            return self._state
        import torch

        from raynas.data import load_dataset
        from raynas.data.dataset import ImageDataset
        from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

        supernet, spec = self._supernet, None
        if supernet is None:
            from raynas.checkpoint import load_supernet_checkpoint
            supernet, meta = load_supernet_checkpoint(self.checkpoint)
            spec = meta.get("dataset")
        data = self.data if self.data is not None else spec
        if data is None:
            raise ConfigError("FineTuneEvaluator needs data=<dataset spec or ImageDataset>")
        dataset = data if isinstance(data, ImageDataset) else load_dataset(str(data), seed=self.seed)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        inherited = WeightInheritedEvaluator.from_dataset(
            supernet, dataset, calib_batches=self.calib_batches, batch_size=max(self.batch_size, 64),
            device=device, calib_seed=self.seed)
        self._state = {"supernet": supernet, "dataset": dataset, "device": torch.device(device),
                       "inherited": inherited}
        return self._state

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        out = []
        for arch in archs:
            last: Metrics = {}
            for last in self.evaluate_fidelities(arch):
                pass
            out.append(last)
        return out

    def evaluate_fidelities(self, arch: Arch) -> Iterator[Metrics]:
        import torch
        import torch.nn.functional as F

        from raynas.data import iterate_batches, prepare_inputs
        from raynas.rng import derive_rng

        state = self._load()
        supernet, dataset, device = state["supernet"], state["dataset"], state["device"]
        arch = supernet.space.validate(arch)
        inherited = state["inherited"].evaluate_one(arch)  # activates arch with recalibrated BN
        cost = {k: v for k, v in inherited.items() if k != "accuracy"}
        model = supernet.export(arch).to(device)
        resolution = supernet.input_resolution(arch)
        mean, std = dataset.mean, dataset.std
        optimizer = torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum,
                                    weight_decay=self.weight_decay)
        train, val = dataset.split("train"), dataset.split("val")
        key = arch_id(arch)
        for epoch in range(1, self.epochs + 1):
            model.train()
            batches = iterate_batches(train, None, self.batch_size, rng=derive_rng(self.seed, "finetune", key, epoch),
                                      shuffle=True, drop_last=True, device=device)
            for step, (x, y) in enumerate(batches):
                if self.steps_per_epoch is not None and step >= self.steps_per_epoch:
                    break
                loss = F.cross_entropy(model(prepare_inputs(x, mean, std, resolution)), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            yield {"accuracy": self._accuracy(model, val, device, mean, std, resolution),
                   "epoch": float(epoch), "inherited_accuracy": inherited["accuracy"], **cost}

    def _accuracy(self, model, split, device, mean, std, resolution) -> float:
        from raynas.accuracy import top1
        from raynas.data import iterate_batches, prepare_inputs

        batches = iterate_batches(split, None, 256, shuffle=False, device=device)
        return top1(model, ((prepare_inputs(x, mean, std, resolution), y) for x, y in batches)).accuracy
