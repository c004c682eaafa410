"""``SupernetPool``: Ray actors that each hold one model (one per GPU, or a few CPU actors) and
serve batched evaluations, behind one dispatcher that caches results by ``arch_id``.

The dispatcher is an async actor: many Tune trials call it at once; it splits their batches into
chunks, hands each chunk to the next idle worker, deduplicates archs already evaluated or in
flight, and replaces a worker that dies (its chunk is retried on a live worker a bounded number
of times, then recorded as failed with the reason). Every arch is evaluated once.

What a worker holds is built inside the worker by a picklable ``factory() -> Evaluator``;
:meth:`SupernetPool.from_checkpoint` builds the weight-inherited-accuracy evaluator from a
supernet checkpoint that travels through Ray's object store (no shared filesystem needed).
"""
from __future__ import annotations

import asyncio
import functools
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import ray

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError, EvaluationError
from raynas.evaluators.base import Evaluator, Metrics

EvaluatorFactory = Callable[[], Evaluator]
#: most archs a worker gets at once (the unit of work the dispatcher hands out)
DEFAULT_MAX_CHUNK = 8
#: Tune trials feeding a pool at once: one being evaluated, the next queued behind it, and one
#: being prepared or reported by Tune
TRIALS_IN_FLIGHT = 3
# CPUs left free on a CPU-only machine for the Tune trials (0.01 CPU each) that relay batches
TRIAL_CPU_RESERVE = 0.1


class _PoolWorker:
    """Holds one in-process evaluator (e.g. a supernet on one GPU) and evaluates chunks."""

    def __init__(self, factory: EvaluatorFactory, index: int, cpu_threads: Optional[int]) -> None:
        if cpu_threads:
            import torch
            torch.set_num_threads(int(cpu_threads))
        self.index = index
        self.evaluator = factory()

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        try:
            results = self.evaluator.evaluate(list(archs))
            if len(results) == len(archs):
                return results
        except Exception:  # noqa: BLE001 - isolate the failing arch below
            if len(archs) == 1:
                raise
        out: List[Metrics] = []
        for arch in archs:  # one bad arch must not fail its whole chunk
            try:
                out.append(self.evaluator.evaluate([arch])[0])
            except Exception as exc:  # noqa: BLE001
                out.append({"error": f"{type(exc).__name__}: {exc}"[:500]})
        return out

    def info(self) -> Dict[str, Any]:
        import resource
        return {"index": self.index, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


class _Dispatcher:
    """Async actor in front of the workers: cache, in-flight dedup, scheduling, replacement."""

    def __init__(self, factory: EvaluatorFactory, num_workers: int, worker_options: Mapping[str, Any],
                 cpu_threads: Optional[int], max_retries: int, max_chunk: int) -> None:
        self.factory = factory
        self.worker_options = dict(worker_options)
        self.cpu_threads = cpu_threads
        self.max_retries = int(max_retries)
        self.max_chunk = int(max_chunk)
        self.workers: List[Any] = []
        self.busy_seconds: List[float] = []
        self.idle: "asyncio.Queue[int]" = asyncio.Queue()
        self.cache: Dict[str, Metrics] = {}
        self.inflight: Dict[str, "asyncio.Future"] = {}
        self.failed: Dict[str, Metrics] = {}
        self.stats = {"restarts": 0, "retries": 0, "failures": 0, "evaluated": 0, "cache_hits": 0}
        self.started = time.monotonic()
        for i in range(int(num_workers)):
            self.workers.append(self._spawn(i))
            self.busy_seconds.append(0.0)
            self.idle.put_nowait(i)

    def _spawn(self, index: int):
        cls = ray.remote(_PoolWorker).options(**self.worker_options)
        return cls.remote(self.factory, index, self.cpu_threads)

    async def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        keys = [arch_id(a) for a in archs]
        todo: Dict[str, Arch] = {}
        waits: Dict[str, "asyncio.Future"] = {}
        loop = asyncio.get_running_loop()
        for key, arch in zip(keys, archs):
            if key in self.cache:
                self.stats["cache_hits"] += 1
            elif key in self.inflight:
                waits[key] = self.inflight[key]
            elif key not in todo:
                todo[key] = arch
                self.inflight[key] = waits[key] = loop.create_future()
        if todo:
            items = list(todo.items())
            size = max(1, min(self.max_chunk, -(-len(items) // max(1, len(self.workers)))))
            chunks = [items[i:i + size] for i in range(0, len(items), size)]
            await asyncio.gather(*(self._run_chunk(chunk) for chunk in chunks))
        for key, fut in waits.items():
            await fut
        return [dict(self.cache[key]) if key in self.cache else dict(self.failed[key]) for key in keys]

    async def _run_chunk(self, chunk: List) -> None:
        archs = [a for _, a in chunk]
        last_error = ""
        for attempt in range(self.max_retries + 1):
            index = await self.idle.get()
            worker = self.workers[index]
            start = time.monotonic()
            try:
                results = await worker.evaluate.remote(archs)
            except (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                    ray.exceptions.WorkerCrashedError) as exc:
                # the worker died (killed, node lost, OOM): replace it, retry the chunk
                last_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                self.workers[index] = self._spawn(index)
                self.stats["restarts"] += 1
                if attempt < self.max_retries:
                    self.stats["retries"] += 1
                self.idle.put_nowait(index)
                continue
            except ray.exceptions.RayTaskError as exc:
                # the evaluator itself raised for a single-arch chunk: deterministic, no retry
                self.busy_seconds[index] += time.monotonic() - start
                self.idle.put_nowait(index)
                results = [{"error": str(exc.cause if hasattr(exc, "cause") else exc).splitlines()[0][:500]}]
            else:
                self.busy_seconds[index] += time.monotonic() - start
                self.idle.put_nowait(index)
            self._settle(chunk, results)
            return
        self.stats["failures"] += len(chunk)
        self._settle(chunk, [{"error": f"evaluation failed after {self.max_retries} retries: {last_error}"}] * len(chunk))

    def _settle(self, chunk: List, results: List[Metrics]) -> None:
        for (key, _), metrics in zip(chunk, results):
            if "error" in metrics:
                self.failed[key] = metrics
            else:
                self.cache[key] = metrics
                self.stats["evaluated"] += 1
            fut = self.inflight.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def health(self) -> Dict[str, Any]:
        infos = await asyncio.gather(*(self._probe(w) for w in self.workers))
        wall = time.monotonic() - self.started
        return {"workers": len(self.workers), "alive": sum(i is not None for i in infos),
                **self.stats, "cached": len(self.cache), "inflight": len(self.inflight),
                "busy_seconds": list(self.busy_seconds), "uptime_seconds": wall,
                "worker_info": [i for i in infos if i is not None]}

    async def _probe(self, worker):
        try:
            return await asyncio.wait_for(worker.info.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - a dead or wedged worker counts as not alive
            return None

    def reset_stats(self) -> None:
        self.busy_seconds = [0.0] * len(self.workers)
        self.started = time.monotonic()

    def worker_handles(self) -> List[Any]:
        return list(self.workers)


class PoolEvaluator(Evaluator):
    """The picklable face of a pool that Tune trials hold: a handle to the dispatcher."""

    def __init__(self, dispatcher, num_workers: int, metrics: Sequence[str] = (),
                 max_chunk: int = DEFAULT_MAX_CHUNK) -> None:
        self.dispatcher = dispatcher
        self.num_workers = num_workers
        self.metrics = tuple(metrics)
        # Tune spends tenths of a second per trial on a busy head node, and every trial in
        # flight is a process. So: a few large trials, each a full chunk for every worker; while
        # one trial's chunks run, the next trials' chunks wait in the dispatcher's queue, and Tune
        # has a whole chunk's evaluation time to turn a finished trial into a new one
        # (benchmarks/orchestration.py measures the pool's utilisation with these defaults).
        self.preferred_batch_size = max(1, num_workers * max_chunk)
        self.preferred_concurrency = TRIALS_IN_FLIGHT
        self.trial_resources = {"cpu": 0.01}

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        return ray.get(self.dispatcher.evaluate.remote(list(archs)))


class SupernetPool:
    """A pool of Ray actors serving evaluations (weight-inherited accuracy, proxies, ...).

    Args:
        factory: picklable ``() -> Evaluator`` run inside each worker to build what it holds.
        num_actors: workers; default one per GPU in the cluster, else 2 CPU workers.
        gpus_per_actor / cpus_per_actor: resources of each worker (CPU workers default to an
            equal share of the CPUs and use that many torch threads).
        max_retries: how often a chunk is retried after its worker died.
        max_chunk: most archs sent to one worker at once.
        spread: place workers on different nodes when possible.
    """

    def __init__(self, factory: EvaluatorFactory, num_actors: Optional[int] = None, *,
                 gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None,
                 max_retries: int = 3, max_chunk: int = DEFAULT_MAX_CHUNK, spread: bool = True, metrics: Sequence[str] = (),
                 resources: Optional[Mapping[str, float]] = None, address: Optional[str] = None) -> None:
        from raynas.runtime import ensure_ray

        ensure_ray(address)
        cluster = ray.cluster_resources()
        cluster_gpus, cluster_cpus = int(cluster.get("GPU", 0)), float(cluster.get("CPU", 1))
        if gpus_per_actor is None:
            gpus_per_actor = 1.0 if cluster_gpus > 0 else 0.0
        if num_actors is None:
            num_actors = max(1, int(cluster_gpus / gpus_per_actor)) if gpus_per_actor > 0 else (2 if cluster_cpus >= 2 else 1)
        if num_actors <= 0:
            raise ConfigError(f"a pool needs at least one actor, got num_actors={num_actors}")
        if cpus_per_actor is None:
            # CPU workers share the machine, leaving TRIAL_CPU_RESERVE for the Tune trials that
            # only relay batches to the dispatcher
            cpus_per_actor = 1.0 if gpus_per_actor > 0 else max(
                0.1, min(8.0, (cluster_cpus - TRIAL_CPU_RESERVE) / num_actors))
        options: Dict[str, Any] = {"num_cpus": cpus_per_actor, "num_gpus": gpus_per_actor, "max_restarts": 0}
        if resources:
            options["resources"] = dict(resources)
        if spread:
            options["scheduling_strategy"] = "SPREAD"
        # torch threads per CPU worker: its CPU share, but never more than the physical cores of
        # a node divided among the workers (Ray's logical CPUs may exceed them, and oversubscribed
        # OpenMP threads spin and slow everything down by an order of magnitude)
        cores = os.cpu_count() or 1
        cpu_threads = max(1, min(int(cpus_per_actor + 0.05), cores // num_actors)) if gpus_per_actor == 0 else None
        dispatcher_cls = ray.remote(_Dispatcher).options(num_cpus=0, max_concurrency=10_000)
        self.num_actors = int(num_actors)
        self.max_chunk = int(max_chunk)
        self.dispatcher = dispatcher_cls.remote(factory, self.num_actors, options, cpu_threads, max_retries, max_chunk)
        self._metrics = tuple(metrics)

    @classmethod
    def from_checkpoint(cls, checkpoint: str, data: Optional[str] = None, *, seed: int = 0,
                        calib_batches: Optional[int] = None, batch_size: int = 128, device: Optional[str] = None,
                        **pool_options: Any) -> "SupernetPool":
        """Pool serving weight-inherited accuracy (BN recalibrated) of a trained supernet.

        ``data`` defaults to the checkpoint's dataset; only its calibration and validation splits
        travel to the workers (through the object store, like the checkpoint itself).
        ``calib_batches`` of ``batch_size`` calibration images (default: all full batches)
        re-estimate BN statistics per arch, as :func:`raynas.export.export_subnet` does.
        """
        from raynas.checkpoint import checkpoint_to_bytes, read_checkpoint_meta
        from raynas.data import load_dataset

        meta = read_checkpoint_meta(checkpoint)
        dataset = load_dataset(data or meta.get("dataset") or "digits", seed=seed)
        blobs = ray.put(checkpoint_to_bytes(checkpoint))
        eval_data = ray.put(dataset.eval_splits())
        factory = functools.partial(_weight_inherited_factory, blobs, eval_data, calib_batches, batch_size, device)
        return cls(factory, metrics=("accuracy", "params", "macs", "flops"), **pool_options)

    def evaluator(self) -> PoolEvaluator:
        return PoolEvaluator(self.dispatcher, self.num_actors, self._metrics, self.max_chunk)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        return ray.get(self.dispatcher.evaluate.remote(list(archs)))

    def health(self) -> Dict[str, Any]:
        return ray.get(self.dispatcher.health.remote())

    def reset_stats(self) -> None:
        ray.get(self.dispatcher.reset_stats.remote())

    def worker_handles(self) -> List[Any]:
        return ray.get(self.dispatcher.worker_handles.remote())

    def shutdown(self) -> None:
        for worker in self.worker_handles():
            ray.kill(worker)
        ray.kill(self.dispatcher)

    def __enter__(self) -> "SupernetPool":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _weight_inherited_factory(blobs_ref, eval_data_ref, calib_batches: int, batch_size: int,
                              device: Optional[str]) -> Evaluator:
    """Runs inside a pool worker: rebuild the supernet from bytes and hold the eval splits."""
    from raynas.checkpoint import load_supernet_from_bytes
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

    blobs = ray.get(blobs_ref) if isinstance(blobs_ref, ray.ObjectRef) else blobs_ref
    splits = ray.get(eval_data_ref) if isinstance(eval_data_ref, ray.ObjectRef) else eval_data_ref
    supernet, meta = load_supernet_from_bytes(blobs)
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return WeightInheritedEvaluator.from_dataset(supernet, splits, calib_batches=calib_batches,
                                                 batch_size=batch_size, device=device)
