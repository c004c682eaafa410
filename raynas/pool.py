"""``SupernetPool``: Ray actors that each hold one model (one per GPU, or a few CPU actors) and
serve batched evaluations, behind one dispatcher that caches results by ``arch_id``.

The dispatcher is an async actor: many Tune trials call it at once; it splits their batches into
chunks, hands each chunk to the next idle worker, deduplicates archs already evaluated or in
flight, and replaces a worker that dies or hangs (its chunk is retried on a live worker a bounded
number of times, then recorded as failed with the reason). Every arch gets exactly one outcome.

Failure model: a worker may die (process killed, node lost, out of memory) or hang (a per-chunk
timeout kills it); either way a replacement starts and rebuilds what it holds, and the chunk is
retried. After a death a chunk of several archs is split into single archs, so an arch that kills
its worker every time fails alone. The dispatcher itself is restarted by Ray if it dies (its
callers' requests are retried on the new one); it is placed on the driver's node, which outlives
worker nodes in a cluster.

What a worker holds is built inside the worker by a picklable ``factory() -> Evaluator``;
:meth:`SupernetPool.from_checkpoint` builds the weight-inherited-accuracy evaluator from a
supernet checkpoint that travels through Ray's object store (no shared filesystem needed).
"""
from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import ray

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError, EvaluationError
from raynas.evaluators.base import Evaluator, Metrics
from raynas.evaluators.batch import evaluate_batch

EvaluatorFactory = Callable[[], Evaluator]
#: archs a worker gets at once (the unit of work the dispatcher hands out) until the pool has
#: measured how long an evaluation takes, and the fixed size before chunks were adaptive
DEFAULT_MAX_CHUNK = 8
#: an adaptive chunk lasts about this long: long enough that the dispatcher's round trip per
#: chunk (milliseconds, more on a busy head) is a few percent of a worker's time, short enough
#: that the last chunks of a run (the tail) and a retried chunk cost little
CHUNK_TARGET_S = 1.0
#: most archs in an adaptive chunk (an evaluator that takes microseconds per arch)
MAX_ADAPTIVE_CHUNK = 512
#: chunks a worker holds at once: one being evaluated and the next queued in the worker, so it
#: starts without waiting for the dispatcher's round trip (tens to hundreds of ms on a busy head)
PIPELINE_DEPTH = 2
#: chunks the dispatcher remembers for ``timeline()`` (a long-lived pool forgets the oldest)
TIMELINE_LENGTH = 200_000
#: seconds a pool's start waits with a worker not yet placed before it says which resources are short
RESOURCE_WARNING_AFTER_S = 30.0
#: Tune trials feeding a pool at once: one being evaluated, the next queued behind it, and one
#: being prepared or reported by Tune
TRIALS_IN_FLIGHT = 3
#: chunks per worker in one Tune trial: with TRIALS_IN_FLIGHT trials, the queue behind a finishing
#: trial holds 2 x ROUNDS_PER_TRIAL chunk times of work (about 4 s with adaptive chunks)
ROUNDS_PER_TRIAL = 4
# CPUs left free on a CPU-only machine for the Tune trials (0.01 CPU each) that relay batches
TRIAL_CPU_RESERVE = 0.1


class _PoolWorker:
    """Holds one in-process evaluator (e.g. a supernet on one GPU) and evaluates chunks."""

    def __init__(self, factory: EvaluatorFactory, index: int, cpu_threads: Optional[int],
                 placed: Any = None, generation: int = 0) -> None:
        from raynas.pool_refs import resolve_refs

        self.index = index
        if placed is not None:
            # Ray has given this worker its resources: tell the dispatcher before the (possibly
            # minute-long) evaluator build, so a slow start is not reported as a lack of resources
            placed.note_placed.remote(index, generation)
        self.evaluator = resolve_refs(factory)()
        # only an evaluator that uses torch pays for importing it (a replacement worker starts faster)
        if cpu_threads and "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(cpu_threads))

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        # one bad arch must not fail its whole chunk: it gets an error row of its own
        return evaluate_batch(self.evaluator, archs)

    def evaluate_timed(self, archs: Sequence[Arch]):
        """``(metrics, seconds, started)``: the seconds spent evaluating and the wall-clock start,
        measured here (the dispatcher's clock would add the round trip and the time a pipelined
        chunk waits behind the one before it); they size the adaptive chunks and the timeline."""
        started, start = time.time(), time.perf_counter()
        results = evaluate_batch(self.evaluator, archs)
        return results, time.perf_counter() - start, started

    # Evaluations run one at a time, in order (the actor's default group); ``info`` has a group
    # of its own so health probes answer while a chunk runs.
    @ray.method(concurrency_group="control")
    def info(self) -> Dict[str, Any]:
        return {"index": self.index, "pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                **_memory_mb()}


def _memory_mb() -> Dict[str, float]:
    """Current and peak resident memory of this process, in MiB."""
    import resource

    import psutil  # a Ray dependency

    return {"rss_mb": psutil.Process().memory_info().rss / 2**20,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}


async def _starting():
    return "starting", None


#: workers in a row whose evaluator failed to build before the pool declares itself broken
MAX_INIT_FAILURES = 2


def _init_error(exc: BaseException) -> str:
    """The exception a worker's constructor raised, from Ray's 'creation task' error text."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):
        if "Error" in line.split(":", 1)[0]:
            return line[:500]
    return lines[-1][:500] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""


# What a dead or unreachable worker raises to its caller: the process was killed, its node was
# lost or removed, or Ray's memory monitor killed it (OOM).
_WORKER_DEATH = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError,
                 ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                 ray.exceptions.OutOfMemoryError)


class _Dispatcher:
    """Async actor in front of the workers: cache, in-flight dedup, scheduling, replacement."""

    def __init__(self, factory: EvaluatorFactory, num_workers: int, worker_options: Mapping[str, Any],
                 cpu_threads: Optional[int], max_retries: int, max_chunk: Optional[int],
                 chunk_timeout_s: Optional[float] = None) -> None:
        import collections

        self.factory = factory
        self.worker_options = dict(worker_options)
        self.cpu_threads = cpu_threads
        self.max_retries = int(max_retries)
        # None: adaptive (see chunk_size); an int fixes the chunk size
        self.max_chunk = int(max_chunk) if max_chunk is not None else None
        # workers' own evaluation seconds and archs, for the adaptive chunk size
        self.eval_seconds: List[float] = []
        self.timed_archs = 0
        self.timed_seconds = 0.0
        # (worker, start, end, archs) per chunk answered, in wall-clock seconds of the worker's
        # clock (the evaluation itself, not the round trip), for utilisation, start-up and tail
        self.chunks: "collections.deque" = collections.deque(maxlen=TIMELINE_LENGTH)
        self.chunk_timeout_s = float(chunk_timeout_s) if chunk_timeout_s else None
        self.workers: List[Any] = []
        self.ready: Dict[int, Any] = {}
        self.busy_seconds: List[float] = []
        # A slot is (priority, sequence, worker index, generation, number): a worker has ``depth``
        # slots in the queue; a slot's priority is the chunks its worker held when it was offered,
        # so idle workers get chunks before busy ones get a second; a slot whose generation is old
        # belongs to a replaced worker, and one numbered past ``depth`` to a depth given up (both
        # are dropped when drawn). A chunk timeout counts from the moment a chunk is sent, so with
        # one a worker holds one chunk at a time (a queued chunk would be taken for hung). After a
        # worker dies, chunks are no longer pipelined: the answer of a chunk a worker finished
        # just before a pipelined chunk killed it can be lost, and an arch that kills workers
        # must cost no other arch more than one re-evaluation.
        self.depth = 1 if self.chunk_timeout_s else PIPELINE_DEPTH
        self.idle: "asyncio.PriorityQueue[tuple]" = asyncio.PriorityQueue()
        self.offers = 0
        self.generation: List[int] = []
        self.chunks_held: List[int] = []      # chunks sent to each worker and not answered yet
        self.busy_since: List[float] = []
        self.cache: Dict[str, Metrics] = {}
        self.inflight: Dict[str, "asyncio.Future"] = {}
        self.failed: Dict[str, Metrics] = {}
        self.stats = {"restarts": 0, "retries": 0, "timeouts": 0, "failures": 0, "evaluated": 0,
                      "cache_hits": 0}
        self.started = time.monotonic()
        # True when Ray restarted this dispatcher after it died (its cache and counters are new)
        self.reconstructed = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        # workers whose evaluator could not even be built, in a row: past MAX_INIT_FAILURES the
        # pool is broken (a bad checkpoint, a space not importable on the node) and says so at
        # once instead of restarting workers for every chunk
        self.init_failures = 0
        self.broken: Optional[str] = None
        # Only workers that have built their evaluator enter the idle queue: a replacement that
        # cannot be placed yet (no free GPU after a node loss) lowers the pool's capacity
        # instead of holding a retried chunk hostage. Watchers start with the event loop.
        self.is_ready: List[bool] = []
        # workers Ray has placed (their constructor runs), ready or still building their evaluator
        self.is_placed: List[bool] = []
        self._watchers_started = False
        # workers report their placement to this actor (see _PoolWorker)
        self._handle = ray.get_runtime_context().current_actor
        for i in range(int(num_workers)):
            self.busy_seconds.append(0.0)
            self.eval_seconds.append(0.0)
            self.generation.append(0)
            self.chunks_held.append(0)
            self.busy_since.append(0.0)
            self.is_ready.append(False)
            self.is_placed.append(False)
            self.workers.append(self._spawn(i))

    def _spawn(self, index: int):
        # ``info`` answers while ``evaluate`` runs (its own concurrency group); chunks queue in order
        cls = ray.remote(concurrency_groups={"control": 1})(_PoolWorker).options(**self.worker_options)
        worker = cls.remote(self.factory, index, self.cpu_threads, self._handle, self.generation[index])
        # resolves once the worker has built its evaluator (e.g. loaded the supernet): the chunk
        # timeout counts from there, so a slow start-up is not taken for a hang
        self.ready[index] = worker.info.remote()
        if self._watchers_started:
            asyncio.get_running_loop().create_task(self._watch_start(index, worker))
        return worker

    def _start_watchers(self) -> None:
        if not self._watchers_started:
            self._watchers_started = True
            loop = asyncio.get_running_loop()
            for index, worker in enumerate(self.workers):
                loop.create_task(self._watch_start(index, worker))

    async def _watch_start(self, index: int, worker) -> None:
        """Put worker ``index`` in the idle queue once it is ready; replace it if it dies first."""
        try:
            await self.ready[index]
        except _WORKER_DEATH as exc:
            if self.workers[index] is not worker:
                return
            self._note_death(exc)
            if self.broken is None:
                self._replace(index)
            else:
                self._offer(index, -1, -1, 0)  # wakes a waiting chunk, which reports the breakage
            return
        if self.workers[index] is worker:  # not replaced meanwhile
            self.init_failures = 0
            self.is_ready[index] = True
            for number in range(self.depth):
                self._offer(index, self.generation[index], number, number)

    def _offer(self, index: int, generation: int, priority: int, number: int) -> None:
        self.offers += 1
        self.idle.put_nowait((priority, self.offers, index, generation, number))

    def _replace(self, index: int) -> None:
        """Kill whatever is left of worker ``index`` (a hung or half-dead process) and start anew;
        the new worker rebuilds its evaluator (e.g. reloads the supernet) in its constructor."""
        try:
            ray.kill(self.workers[index], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.is_ready[index] = False
        self.is_placed[index] = False
        self.generation[index] += 1
        self.stats["restarts"] += 1
        self.workers[index] = self._spawn(index)

    async def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        self._start_watchers()
        keys = [arch_id(a) for a in archs]
        todo: Dict[str, Arch] = {}
        waits: Dict[str, "asyncio.Future"] = {}
        loop = asyncio.get_running_loop()
        for key, arch in zip(keys, archs):
            if key in self.cache or key in self.failed:
                # a failure is an outcome too: an arch that killed its workers is not tried again
                self.stats["cache_hits"] += 1
            elif key in self.inflight:
                waits[key] = self.inflight[key]
            elif key not in todo:
                todo[key] = arch
                self.inflight[key] = waits[key] = loop.create_future()
        if todo:
            items = list(todo.items())
            size = max(1, min(self.chunk_size(), -(-len(items) // max(1, len(self.workers)))))
            chunks = [items[i:i + size] for i in range(0, len(items), size)]
            await asyncio.gather(*(self._run_chunk(chunk) for chunk in chunks))
        for key, fut in waits.items():
            await fut
        return [dict(self.cache[key]) if key in self.cache else dict(self.failed[key]) for key in keys]

    def chunk_size(self) -> int:
        """Archs per chunk: the fixed ``max_chunk``, or (adaptive) as many as take about
        CHUNK_TARGET_S by the workers' measured seconds per arch, DEFAULT_MAX_CHUNK before any
        measurement."""
        if self.max_chunk is not None:
            return self.max_chunk
        if self.timed_archs == 0:
            return DEFAULT_MAX_CHUNK
        per_arch = self.timed_seconds / self.timed_archs
        if per_arch <= 0:
            return MAX_ADAPTIVE_CHUNK
        return int(max(1, min(MAX_ADAPTIVE_CHUNK, round(CHUNK_TARGET_S / per_arch))))

    def timeline(self) -> List[tuple]:
        """``(worker, start, end, archs)`` of the chunks remembered, in wall-clock seconds."""
        return list(self.chunks)

    async def wait_ready(self) -> Optional[str]:
        """Wait until every worker has built its evaluator; the reason if the pool is broken."""
        self._start_watchers()
        while self.broken is None and not all(self.is_ready):
            await asyncio.sleep(0.05)
        return self.broken

    def note_placed(self, index: int, generation: int) -> None:
        """Called by worker ``index`` as its constructor starts (a replaced worker's is ignored)."""
        if generation == self.generation[index]:
            self.is_placed[index] = True

    def start_counts(self) -> Tuple[int, int]:
        """(workers placed by Ray, workers ready): the driver's start-up progress."""
        return sum(self.is_placed), sum(self.is_ready)

    def _note_death(self, exc: BaseException) -> None:
        if getattr(exc, "actor_init_failed", False):
            self.init_failures += 1
            if self.init_failures >= MAX_INIT_FAILURES:
                self.broken = f"pool workers cannot start: {_init_error(exc)}"

    async def _run_chunk(self, chunk: List, retries_left: Optional[int] = None) -> None:
        """Evaluate ``chunk`` on the next idle worker; settle every arch of it, whatever happens."""
        if self.broken is not None:
            self._settle(chunk, [{"error": self.broken}] * len(chunk))
            return
        try:
            await self._try_chunk(chunk, self.max_retries if retries_left is None else retries_left)
        except BaseException as exc:  # a bug or cancellation must not leave waiters hanging
            self._settle(chunk, [{"error": f"pool dispatcher error: {type(exc).__name__}: {exc}"[:500]}] * len(chunk))
            if not isinstance(exc, Exception):
                raise
        finally:
            # anything still unsettled (e.g. cancelled mid-split) gets an outcome too
            self._settle([item for item in chunk if item[0] in self.inflight],
                         [{"error": "evaluation was interrupted"}] * len(chunk), only_pending=True)

    async def _try_chunk(self, chunk: List, retries_left: int) -> None:
        while True:
            slot = await self.idle.get()
            if self.broken is not None:
                self.idle.put_nowait(slot)  # pass the wake-up on to the next waiting chunk
                self._settle(chunk, [{"error": self.broken}] * len(chunk))
                return
            _, _, index, generation, number = slot
            if self.is_ready[index] and generation == self.generation[index] and number < self.depth:
                break
            # a stale slot: its worker was replaced (the successor enqueues its own once ready),
            # or pipelining was given up
        self._hold(index)
        death = None
        try:
            results, death = await self._call(index, [a for _, a in chunk])
        finally:
            self._release(index)
            if death is None:
                self._offer(index, generation, self.chunks_held[index], number)
            elif self.broken is None:
                self.depth = 1
                if generation == self.generation[index]:
                    # (another chunk held by the same dead worker may have replaced it already)
                    self._replace(index)  # the replacement enqueues its slots once ready
            else:
                self.idle.put_nowait(slot)
        if death is None:
            self._settle(chunk, results)
        elif self.broken is not None:
            self._settle(chunk, [{"error": self.broken}] * len(chunk))
        elif retries_left <= 0:
            self.stats["failures"] += len(chunk)
            self._settle(chunk, [{"error": f"evaluation failed after {self.max_retries} retries: {death}"}]
                         * len(chunk))
        else:
            self.stats["retries"] += 1
            if len(chunk) > 1:
                # retry arch by arch: an arch that kills its worker every time then fails alone
                await asyncio.gather(*(self._run_chunk([item], retries_left - 1) for item in chunk))
            else:
                await self._run_chunk(chunk, retries_left - 1)

    def _hold(self, index: int) -> None:
        if self.chunks_held[index] == 0:
            self.busy_since[index] = time.monotonic()
        self.chunks_held[index] += 1

    def _release(self, index: int) -> None:
        """A worker is busy while it holds at least one chunk (pipelined chunks overlap)."""
        self.chunks_held[index] -= 1
        if self.chunks_held[index] == 0:
            self.busy_seconds[index] += time.monotonic() - self.busy_since[index]

    async def _call(self, index: int, archs: List[Arch]):
        """``(results, None)``, or ``(None, reason)`` when the worker died or hung."""
        try:
            ref = self.workers[index].evaluate_timed.remote(archs)
            if self.chunk_timeout_s is None:
                answer = await ref
            else:
                answer = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout=self.chunk_timeout_s)
            results, seconds, started = answer
        except asyncio.TimeoutError:
            self.stats["timeouts"] += 1
            return None, f"no answer within chunk_timeout_s={self.chunk_timeout_s:g}s (worker killed)"
        except _WORKER_DEATH as exc:
            self._note_death(exc)
            return None, f"{type(exc).__name__}: {_first_line(exc)}"
        except ray.exceptions.RayTaskError as exc:
            # the evaluator itself raised for a single-arch chunk: deterministic, no retry
            cause = getattr(exc, "cause", None) or exc
            return [{"error": f"{type(cause).__name__}: {_first_line(cause)}"}] * len(archs), None
        if not isinstance(results, list) or len(results) != len(archs):
            got = len(results) if isinstance(results, list) else type(results).__name__
            return [{"error": f"evaluator returned {got} results for {len(archs)} archs"}] * len(archs), None
        self.eval_seconds[index] += float(seconds)
        self.timed_archs += len(archs)
        self.timed_seconds += float(seconds)
        self.chunks.append((index, float(started), float(started) + float(seconds), len(archs)))
        return results, None

    def _settle(self, chunk: List, results: List[Metrics], only_pending: bool = False) -> None:
        for (key, _), metrics in zip(chunk, results):
            if only_pending and key not in self.inflight:
                continue
            if not isinstance(metrics, Mapping):
                metrics = {"error": f"evaluator returned {type(metrics).__name__}, not a dict of metrics"}
            if "error" in metrics:
                self.failed[key] = dict(metrics)
            else:
                self.cache[key] = dict(metrics)
                self.failed.pop(key, None)
                self.stats["evaluated"] += 1
            fut = self.inflight.pop(key, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def health(self, probe_timeout_s: float = 10.0) -> Dict[str, Any]:
        self._start_watchers()
        probes = await asyncio.gather(*(self._probe(w, probe_timeout_s) if self.is_ready[i] else _starting()
                                        for i, w in enumerate(self.workers)))
        infos = []
        for index, (state, info) in enumerate(probes):
            infos.append(info)
            if state == "dead" and self.chunks_held[index] == 0 and self.is_ready[index]:
                # an idle worker died (e.g. its node was lost): replace it before work needs it
                self._replace(index)
        wall = time.monotonic() - self.started
        return {"workers": len(self.workers), "alive": sum(i is not None for i in infos),
                "starting": sum(state == "starting" for state, _ in probes),
                **self.stats, "cached": len(self.cache), "failed_archs": len(self.failed), "broken": self.broken,
                "inflight": len(self.inflight), "dispatcher_reconstructed": self.reconstructed,
                "dispatcher": {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                               **_memory_mb()},
                "busy_seconds": list(self.busy_seconds), "eval_seconds": list(self.eval_seconds),
                "chunk_size": self.chunk_size(), "uptime_seconds": wall,
                "worker_info": [i for i in infos if i is not None]}

    async def _probe(self, worker, timeout_s: float):
        try:
            info = await asyncio.wait_for(asyncio.wrap_future(worker.info.remote().future()), timeout=timeout_s)
            return "ok", info
        except _WORKER_DEATH:
            return "dead", None
        except Exception:  # noqa: BLE001 - a wedged worker counts as not alive
            return "unresponsive", None

    def reset_stats(self) -> None:
        """Zero the time counters and the timeline (the measured seconds per arch are kept)."""
        self.busy_seconds = [0.0] * len(self.workers)
        self.eval_seconds = [0.0] * len(self.workers)
        now = time.monotonic()
        self.busy_since = [now] * len(self.workers)   # a chunk held now counts from here
        self.chunks.clear()
        self.started = time.monotonic()

    def worker_handles(self) -> List[Any]:
        return list(self.workers)


class PoolEvaluator(Evaluator):
    """The picklable face of a pool that Tune trials hold: a handle to the dispatcher."""

    def __init__(self, dispatcher, num_workers: int, metrics: Sequence[str] = (),
                 max_chunk: Optional[int] = None, spec: Any = None) -> None:
        self.dispatcher = dispatcher
        self.spec = spec
        self.num_workers = num_workers
        self.metrics = tuple(metrics)
        self.max_chunk = max_chunk
        self.preferred_concurrency = TRIALS_IN_FLIGHT
        self.trial_resources = {"cpu": 0.01}

    @property
    def preferred_batch_size(self) -> int:
        """Archs per Tune trial: a chunk for every worker, ROUNDS_PER_TRIAL times over.

        Tune spends tenths of a second per trial on a busy head node, and every trial in flight
        is a process. So: a few large trials; while one trial's chunks run, the next trials'
        chunks wait in the dispatcher's queue, and Tune has their evaluation time (seconds) to
        turn a finished trial into a new one. The chunk is the pool's current size (adaptive: from
        the evaluations measured so far, e.g. a warm-up batch); benchmarks/orchestration.py
        measures the utilisation this gives."""
        chunk = self.max_chunk
        if chunk is None:
            chunk = int(ray.get(self.dispatcher.chunk_size.remote()))
        return max(1, self.num_workers * chunk * ROUNDS_PER_TRIAL)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        return ray.get(self.dispatcher.evaluate.remote(list(archs)))


def _cpu_share(num_actors: int) -> float:
    """Default CPUs of a CPU worker. On one machine: an equal share of it, leaving
    TRIAL_CPU_RESERVE for the Tune trials that only relay batches to the dispatcher (the share is
    also the worker's torch threads). On a cluster: 1 CPU, Ray's default for an actor, so that a
    replacement for a worker whose node was lost still fits beside the workers of a live node
    (a large share could leave it unplaceable, and the pool short of a worker for good)."""
    nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU")]
    if len(nodes) != 1:
        return 1.0
    return max(0.1, min(8.0, (nodes[0] - TRIAL_CPU_RESERVE) / num_actors))


class SupernetPool:
    """A pool of Ray actors serving evaluations (weight-inherited accuracy, proxies, ...).

    Args:
        factory: picklable ``() -> Evaluator`` run inside each worker to build what it holds.
        num_actors: workers; default one per GPU in the cluster, else 2 CPU workers.
        gpus_per_actor / cpus_per_actor: resources of each worker (CPU workers default to an
            equal share of the CPUs and use that many torch threads).
        max_retries: how often a chunk is retried after its worker died or timed out; then its
            archs are recorded as failed with the reason.
        max_chunk: archs sent to one worker at once; default (None): adaptive, as many as take
            about ``CHUNK_TARGET_S`` by the evaluations measured so far (8 before the first).
        chunk_timeout_s: a worker that has not answered a chunk within this time is treated as
            hung: it is killed, replaced, and the chunk retried (default: wait forever). Set it
            well above the slowest chunk, including a fresh worker's start-up.
        spread: place workers on different nodes when possible.
    """

    def __init__(self, factory: EvaluatorFactory, num_actors: Optional[int] = None, *,
                 gpus_per_actor: Optional[float] = None, cpus_per_actor: Optional[float] = None,
                 max_retries: int = 3, max_chunk: Optional[int] = None, chunk_timeout_s: Optional[float] = None,
                 spread: bool = True, metrics: Sequence[str] = (), resources: Optional[Mapping[str, float]] = None,
                 address: Optional[str] = None) -> None:
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
        if max_retries < 0 or (max_chunk is not None and max_chunk < 1) or \
                (chunk_timeout_s is not None and chunk_timeout_s <= 0):
            raise ConfigError(f"need max_retries >= 0, max_chunk >= 1 and chunk_timeout_s > 0 (or None); got "
                              f"{max_retries}, {max_chunk}, {chunk_timeout_s}")
        if cpus_per_actor is None:
            cpus_per_actor = 1.0 if gpus_per_actor > 0 else _cpu_share(num_actors)
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
        # The dispatcher lives beside the driver (the head node on a cluster: worker nodes may be
        # lost, and with them a dispatcher's cache and counters); if it dies anyway Ray restarts it
        # and retries the trials' pending requests on it. The affinity is hard: a soft one is only
        # a preference, and Ray places a zero-CPU actor on another node while this one is busy
        # starting workers (3 of 4 such actors landed on worker nodes of a 3-node test cluster).
        # It needs no resources, so the driver's node can always host it.
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        dispatcher_cls = ray.remote(_Dispatcher).options(num_cpus=0, max_concurrency=10_000, max_restarts=-1,
                                                         max_task_retries=-1, scheduling_strategy=here)
        self.num_actors = int(num_actors)
        self.max_chunk = int(max_chunk) if max_chunk is not None else None
        self._actor_resources = {"CPU": float(cpus_per_actor), "GPU": float(gpus_per_actor)}
        # the factory's ObjectRefs stay out of the restartable dispatcher's constructor (see raynas.pool_refs)
        from raynas.pool_refs import hold_refs

        held_factory, self._ref_holder = hold_refs(factory)
        self.dispatcher = dispatcher_cls.remote(held_factory, self.num_actors, options, cpu_threads, max_retries,
                                                max_chunk, chunk_timeout_s)
        self._metrics = tuple(metrics)
        self.evaluation: Optional[Dict[str, Any]] = None  # how the evaluator scores (from_checkpoint)
        #: how to rebuild the pool from files, as JSON (set by from_checkpoint; read by
        #: raynas.evaluators.spec, which records it for resuming)
        self.spec: Optional[Dict[str, Any]] = None
        # The driver owns the objects the factory refers to (checkpoint, data): holding their refs
        # here keeps them alive for the pool's lifetime, so a replacement worker started long after
        # (or by a restarted dispatcher) can still fetch them.
        self._pinned = [a for a in getattr(factory, "args", ()) if isinstance(a, ray.ObjectRef)]

    @classmethod
    def from_checkpoint(cls, checkpoint: str, data: Any = None, *, seed: Optional[int] = None,
                        calib_images: Optional[int] = None, batch_size: Optional[int] = None,
                        device: Optional[str] = None, wait: bool = True, val_size: Optional[int] = None,
                        **pool_options: Any) -> "SupernetPool":
        """Pool serving weight-inherited accuracy (BN recalibrated) of a trained supernet.

        ``data`` is a dataset spec or a loaded ``ImageDataset`` whose classes must be the
        checkpoint's. The dataset, its split seed and loading options (image size ...) and the BN
        calibration (``calib_images`` in batches of ``batch_size``) default to the training
        run's own (see :class:`~raynas.evaluators.weight_inherited.EvaluationSettings`), so the
        pool scores an arch exactly as the trainer's final report and
        :func:`raynas.export.export_subnet` do; ``pool.evaluation`` records them. Only the
        calibration and validation splits travel to the workers (through the object store, like
        the checkpoint itself). ``wait``: return once every worker holds the supernet (a
        checkpoint they cannot load is an error here rather than a failure of every evaluation).
        ``val_size``: measure accuracy on a seeded subset of that many validation images (see
        ``ImageDataset.eval_splits``).
        """
        from raynas.checkpoint import check_dataset_fits, checkpoint_to_bytes, read_checkpoint_meta
        from raynas.data import ImageDataset
        from raynas.evaluators.weight_inherited import EvaluationSettings
        from raynas.registry import space_from_spec

        meta = read_checkpoint_meta(checkpoint)
        # resolved here, through this process's registry; the workers get the space object
        # (so a space a user's module registered needs no import by name on their side)
        space = space_from_spec(meta["space"])
        blobs = checkpoint_to_bytes(checkpoint)
        _check_safetensors(blobs, checkpoint)  # a damaged file fails here, not in every worker
        given = isinstance(data, ImageDataset)
        settings = EvaluationSettings.for_checkpoint(
            meta, data=data.spec if given else data, seed=data.seed if given else seed,
            calib_images=calib_images, batch_size=batch_size)
        dataset = data if given else settings.load_dataset()
        check_dataset_fits(meta, dataset, checkpoint)
        evaluation = settings.to_dict(dataset)  # checks calib_images against the split, before Ray
        eval_data = dataset.eval_splits(val_size)  # a bad val_size fails before Ray starts
        from raynas.runtime import ensure_ray

        ensure_ray(pool_options.get("address"))
        factory = functools.partial(_weight_inherited_factory, ray.put(blobs), ray.put(eval_data),
                                    settings.calib_images, settings.batch_size, device, space,
                                    settings.channels_last)
        pool = cls(factory, metrics=("accuracy", "loss", "params", "macs", "flops"), **pool_options)
        pool.evaluation = {**evaluation, "val_size": val_size} if val_size is not None else evaluation
        # a spec rebuilds this pool to resume a search; it has no field for a validation subset,
        # so such a pool records none (a resume then needs the evaluator passed again)
        if (data is None or isinstance(data, str)) and val_size is None:   # a dataset object has no spec
            pool.spec = {"kind": "checkpoint", "checkpoint": str(Path(checkpoint).expanduser().resolve()),
                         "data": data, "actors": pool_options.get("num_actors"), "calib_images": calib_images,
                         "batch_size": batch_size, "device": device, "seed": seed}
        return pool.wait_ready() if wait else pool

    def wait_ready(self, progress: bool = True) -> "SupernetPool":
        """Block until every worker has built its evaluator (e.g. loaded the supernet); raise
        :class:`EvaluationError` with the workers' own error if they cannot. ``progress``: a
        bar of the workers ready, once the start takes more than a second (starting Ray
        worker processes and loading torch can take a minute on a busy machine)."""
        done_ref = self.dispatcher.wait_ready.remote()
        start, bar, warned = time.monotonic(), None, False
        try:
            while not ray.wait([done_ref], timeout=0.5)[0]:
                if progress and bar is None and time.monotonic() - start > 1.0:
                    from tqdm.auto import tqdm
                    bar = tqdm(total=self.num_actors, desc="starting pool actors", unit="actor",
                               file=sys.stderr, dynamic_ncols=True)
                if bar is not None:
                    placed, bar.n = ray.get(self.dispatcher.start_counts.remote())
                    bar.set_postfix_str(f"{placed} placed, building evaluators" if placed > bar.n else "", refresh=False)
                    bar.refresh()
                    if placed < self.num_actors and not warned and time.monotonic() - start > RESOURCE_WARNING_AFTER_S:
                        warned = self._say_if_waiting_for_resources(bar, placed)
            reason = ray.get(done_ref)
            if bar is not None and not reason:
                bar.n = self.num_actors
                bar.refresh()
        finally:
            if bar is not None:
                bar.close()
        if reason:
            self.shutdown()
            raise EvaluationError(reason)
        return self

    def _say_if_waiting_for_resources(self, bar, placed: int) -> bool:
        """When workers cannot be placed because the cluster's free CPUs/GPUs are short (e.g.
        another pool still holds them), say so once instead of waiting silently. Workers that
        were placed and are still building their evaluator (loading torch on a busy machine)
        hold resources of their own: only the unplaced ones are reported."""
        free = ray.available_resources()
        short = {k: v for k, v in self._actor_resources.items() if v > 0 and free.get(k, 0.0) + 1e-9 < v}
        if short:
            need = ", ".join(f"{v:g} {k}" for k, v in short.items())
            have = ", ".join(f"{free.get(k, 0.0):g} {k}" for k in short)
            bar.write(f"{self.num_actors - placed} of {self.num_actors} pool actors are waiting for resources: "
                      f"each needs {need}, {have} free now. Another pool or search may hold them: shut down "
                      "pools you no longer use (pool.shutdown()), or give fewer actors (--actors / num_actors)",
                      file=sys.stderr)   # beside the bar (tqdm.write's default is stdout)
        return True

    def evaluator(self) -> PoolEvaluator:
        return PoolEvaluator(self.dispatcher, self.num_actors, self._metrics, self.max_chunk, self.spec)

    def evaluate(self, archs: Sequence[Arch]) -> List[Metrics]:
        return ray.get(self.dispatcher.evaluate.remote(list(archs)))

    def health(self, probe_timeout_s: float = 10.0) -> Dict[str, Any]:
        """Workers alive (answering within ``probe_timeout_s``), restarts, retries, timeouts,
        failures, evaluations, cache size, per-worker pid/node/memory, and the dispatcher's."""
        return ray.get(self.dispatcher.health.remote(probe_timeout_s))

    def reset_stats(self) -> None:
        ray.get(self.dispatcher.reset_stats.remote())

    def timeline(self) -> List[tuple]:
        """``(worker, start, end, archs)`` per chunk since the last ``reset_stats`` (wall-clock
        seconds): what utilisation, start-up and tail are computed from."""
        return [tuple(c) for c in ray.get(self.dispatcher.timeline.remote())]

    def worker_handles(self) -> List[Any]:
        return ray.get(self.dispatcher.worker_handles.remote())

    def shutdown(self) -> None:
        try:
            workers = ray.get(self.dispatcher.worker_handles.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - a dead dispatcher's workers died with it
            workers = []
        for worker in workers:
            ray.kill(worker, no_restart=True)
        ray.kill(self.dispatcher, no_restart=True)
        if getattr(self, "_ref_holder", None) is not None:
            ray.kill(self._ref_holder, no_restart=True)

    def __enter__(self) -> "SupernetPool":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def check_checkpoint(path: str) -> None:
    """Refuse a damaged supernet checkpoint cheaply (meta.json and the weights' header), e.g.
    before a command starts Ray and a pool for it."""
    from raynas.checkpoint import checkpoint_to_bytes, read_checkpoint_meta

    read_checkpoint_meta(path)
    _check_safetensors(checkpoint_to_bytes(path), str(path))


def _check_safetensors(blobs: Mapping[str, bytes], where: str) -> None:
    """Check the weights against the sha256 ``meta.json`` records and parse their header (no
    tensor is read), so a damaged checkpoint is refused on the driver, before any worker starts."""
    import json
    import struct

    from raynas.checkpoint import META_FILE, MODEL_FILE
    from raynas.errors import CheckpointError
    from raynas.integrity import FILES_KEY, check_digest
    from raynas.serialization import FileSource, parse_json

    data = blobs.get(MODEL_FILE, b"")
    recorded = parse_json(FileSource(blobs, "supernet checkpoint"), META_FILE).get(FILES_KEY)
    source = FileSource(where, "supernet checkpoint")
    check_digest(MODEL_FILE, source.where(MODEL_FILE), data, recorded, source.where(META_FILE))
    problem = ""
    try:
        (size,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + size])
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        if 8 + size > len(data) or 8 + size + end > len(data):
            problem = f"is truncated ({len(data)} bytes, the header describes {8 + size + end})"
    except (struct.error, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        problem = f"is not a safetensors file ({type(exc).__name__}: {exc})"
    if problem:
        raise CheckpointError(f"{where}/{MODEL_FILE} {problem}; save the checkpoint again or pick another one")


def _weight_inherited_factory(blobs_ref, eval_data_ref, calib_images: Optional[int], batch_size: int,
                              device: Optional[str], space: Any = None, channels_last: bool = False) -> Evaluator:
    """Runs inside a pool worker: rebuild the supernet from bytes and hold the eval splits."""
    from raynas.checkpoint import load_supernet_from_bytes
    from raynas.evaluators.weight_inherited import WeightInheritedEvaluator

    blobs = ray.get(blobs_ref) if isinstance(blobs_ref, ray.ObjectRef) else blobs_ref
    splits = ray.get(eval_data_ref) if isinstance(eval_data_ref, ray.ObjectRef) else eval_data_ref
    supernet, meta = load_supernet_from_bytes(blobs, space=space)
    if device is None:
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return WeightInheritedEvaluator.from_dataset(supernet, splits, calib_images=calib_images,
                                                 batch_size=batch_size, device=device,
                                                 channels_last=channels_last)
