"""Latency measured directly: each arch's standalone model timed on a Ray actor pinned to the
target device.

The actor asks for a custom resource naming the device (start that node with e.g.
``ray start --resources '{"pixel3": 1}'``), so every measurement runs on the same hardware
whichever node the search driver and its trials run on. The model is the arch's static network
(``space.build_static``), i.e. the exported model's structure; timing does not depend on the
weights' values, so no checkpoint has to travel. A device nobody offers fails at construction.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.evaluators.base import Evaluator, Metrics


class _LatencyActor:
    """Runs on the target device's node with the space object Ray shipped to it."""

    def __init__(self, space: Any, device: str, batch_size: int, warmup: int,
                 repeats: int, num_classes: Optional[int], threads: Optional[int]) -> None:
        self.threads = threads
        self.space = space
        self.device, self.batch_size = device, int(batch_size)
        self.warmup, self.repeats, self.num_classes = int(warmup), int(repeats), num_classes

    def measure(self, archs: Sequence[Arch]) -> List[Metrics]:
        from raynas.hardware.measure import input_shape_for, time_module

        out = []
        for arch in archs:
            kwargs = {} if self.num_classes is None else {"num_classes": self.num_classes}
            model = self.space.build_static(arch, **kwargs)
            timing = time_module(model, input_shape_for(self.space, arch, self.batch_size), self.device,
                                 warmup=self.warmup, repeats=self.repeats, threads=self.threads)
            out.append({"latency_ms": timing.median_ms, "latency_mean_ms": timing.mean_ms,
                        "latency_std_ms": timing.std_ms})
        return out

    def where(self) -> Dict[str, Any]:
        import os

        import ray
        return {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "device": self.device}


class MeasuredLatencyEvaluator(Evaluator):
    """Reports ``latency_ms`` (median of ``repeats`` timed runs) measured on a pinned actor.

    Args:
        space: the space (the object travels to the actor).
        resource: custom Ray resource of the target device's node (None: any node).
        device: torch device on that node (``"cpu"``, ``"cuda"``).
        batch_size: images per timed forward pass.
        num_classes: classifier size of the timed model (default: the space's).
    """

    metrics = ("latency_ms", "latency_mean_ms", "latency_std_ms")
    preferred_batch_size = 4
    trial_resources = {"cpu": 0.01}

    def __init__(self, space, *, resource: Optional[str] = None, device: str = "cpu", batch_size: int = 1,
                 warmup: int = 3, repeats: int = 10, num_classes: Optional[int] = None,
                 threads: Optional[int] = 1, cpus: float = 1.0, address: Optional[str] = None) -> None:
        import ray

        from raynas.runtime import ensure_ray

        ensure_ray(address)
        options: Dict[str, Any] = {"num_cpus": cpus, "num_gpus": 1 if device.startswith("cuda") else 0}
        if resource is not None:
            offered = ray.cluster_resources().get(resource, 0)
            if offered <= 0:
                raise ConfigError(f"no node of this Ray cluster offers the resource '{resource}' that names "
                                  f"the latency device; start that node with ray start --resources "
                                  f"'{{\"{resource}\": 1}}' (or pass resource=None to time on any node)")
            # one unit of the device: measurements never share it with another actor's runs
            options["resources"] = {resource: 1.0}
        self.resource = resource
        self.actor = ray.remote(_LatencyActor).options(**options).remote(
            space, device, batch_size, warmup, repeats, num_classes, threads)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        import ray
        return ray.get(self.actor.measure.remote(list(archs)))

    def where(self) -> Dict[str, Any]:
        """Node id, pid and device of the measuring actor."""
        import ray
        return ray.get(self.actor.where.remote())

    def close(self) -> None:
        import ray
        ray.kill(self.actor)
