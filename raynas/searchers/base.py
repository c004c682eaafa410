"""``ArchSearcher``: the Tune ``Searcher`` base of raynas' strategies.

A strategy only proposes archs (``propose``) and learns from results (``observe``); this base
turns that into Tune's protocol: batching several archs into one trial, skipping archs already
proposed, enforcing pre-evaluation constraints by bounded rejection, limiting concurrency, and
recording every call that changes its state in the search's journal (what it proposed, what it
observed, in order), so a resumed search replays them into a fresh searcher and continues with
the very same suggestions (see :mod:`raynas.resume`). ``get_state``/``save`` give the state as
JSON for Tune's own checkpoints; raynas never resumes from them.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from ray.tune.search import Searcher

from raynas.arch import Arch, arch_id
from raynas.constraints import Constraint, CostModel, satisfies
from raynas.errors import ConfigError, InfeasibleConstraintError, RaynasError
from raynas.io import atomic_write_text
from raynas.objectives import Objective, scalar_fitness
from raynas.space import SearchSpace

# After this many duplicate proposals in a row, fall back to uniform samples for diversity.
DUPLICATE_FALLBACK = 32
STATE_VERSION = 1


class ArchSearcher(Searcher):
    """Base of every raynas strategy.

    Construct with the strategy's own hyperparameters; :func:`raynas.search` then calls
    :meth:`setup` with the space, objectives, constraints and budget.
    """

    #: name in the strategy registry
    strategy_name = "base"
    #: True when the strategy handles several objectives itself (Pareto-based)
    multi_objective = False
    #: after many duplicate proposals in a row, try uniform samples (off for strategies that
    #: walk the space systematically, e.g. grid)
    random_fallback = True
    #: "equivalence" skips archs equivalent to one already proposed (the space's
    #: ``equivalence_key``); "arch" skips only identical archs (e.g. to reproduce a protocol
    #: that queries isomorphic cells separately). Set through the strategy option ``dedup``.
    dedup = "equivalence"

    def __init__(self) -> None:
        super().__init__(metric=None, mode=None)
        self.space = None
        self.objectives: List[Objective] = []
        self.constraints: List[Constraint] = []
        self.cost_model: Optional[CostModel] = None
        self.budget = 0
        self.batch_size = 1
        self.max_concurrent = 1
        self.max_tries = 2000
        self.seed = 0
        self.rng = np.random.default_rng(0)
        self._proposed = 0
        self._seen: set = set()
        self._live: Dict[str, List[Tuple[str, Arch]]] = {}
        # cost rows the constraint check computed for archs in flight, by arch_id: the results
        # table and the observations reuse them instead of computing them again
        self._live_costs: Dict[str, Dict[str, float]] = {}
        self._last_result: Dict[str, Mapping[str, Any]] = {}
        self._num_observed = 0
        self._exhausted = False
        # the strategy had nothing to propose while trials were in flight: nothing changes until
        # a result arrives, so Tune's repeated suggest calls meanwhile are answered without it
        self._waiting = False
        self._journal = None                 # raynas.ledger.Journal of the search, if attached
        self._reissue: List[str] = []        # trials in flight when a resumed run's driver died

    # ------------------------------------------------------------------ configuration
    def setup(self, space, objectives: Sequence[Objective], *, constraints: Sequence[Constraint] = (),
              cost_model: Optional[CostModel] = None, budget: int, batch_size: int = 1,
              max_concurrent: int = 1, seed: int = 0, max_tries: int = 2000) -> "ArchSearcher":
        if budget <= 0:
            raise ConfigError(f"the search budget must be a positive number of archs, got {budget}")
        if batch_size <= 0 or max_concurrent <= 0:
            raise ConfigError("batch_size and max_concurrent must be positive")
        self.space = space
        self.objectives = list(objectives)
        self.constraints = list(constraints)
        self.cost_model = cost_model or CostModel(space)
        self.budget, self.batch_size = int(budget), int(batch_size)
        self.max_concurrent, self.max_tries, self.seed = int(max_concurrent), int(max_tries), int(seed)
        self.rng = np.random.default_rng(self.seed)
        # Tune validates reported results against these
        self._metric = self.objectives[0].metric
        self._mode = self.objectives[0].mode
        try:
            self.on_setup()
        except RaynasError:
            raise
        except (TypeError, ValueError, AttributeError) as exc:  # options of the wrong type, found late
            raise ConfigError(f"strategy '{self.strategy_name}' cannot start with its options: "
                              f"{type(exc).__name__}: {exc}") from exc
        return self

    def on_setup(self) -> None:
        """Hook: strategy-specific initialisation once the space is known."""

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        # raynas configures the searcher itself; accept Tune's call without overriding
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        self.max_concurrent = int(max_concurrent)
        return True

    # ------------------------------------------------------------------ strategy hooks
    def propose(self) -> Optional[Arch]:
        """Next candidate (may be a duplicate or infeasible; the base filters).

        ``None`` means "nothing to propose now": the current trial's batch closes early; with
        no trial in flight either, the search is over (e.g. a grid ran out).
        """
        raise NotImplementedError

    def observe(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        """Learn from an evaluated arch; ``metrics`` is None when its evaluation failed."""

    def on_rejected(self, arch: Arch, reason: str) -> None:
        """Hook: a proposal was dropped, ``reason`` being "duplicate" or "infeasible"."""

    def fitness(self, metrics: Optional[Mapping[str, float]]) -> float:
        """'Higher is better' value of the primary objective (-inf for failures)."""
        return scalar_fitness(metrics or {}, self.objectives[0])

    def dedup_key(self, arch: Arch) -> str:
        """Archs with equal keys are evaluated once: the space's ``equivalence_key`` (isomorphic
        cells compute the same function; ``arch_id`` for spaces without symmetries)."""
        if self._dedup_by_arch_id():
            return arch_id(arch)
        return self.space.equivalence_key(arch)

    def _dedup_by_arch_id(self) -> bool:
        key_fn = getattr(self.space, "equivalence_key", None)   # spaces not derived from SearchSpace
        return self.dedup == "arch" or not callable(key_fn)

    def _valid_arch_key_is_arch_id(self) -> bool:
        """Whether the dedup key of an arch *validated already* is its arch_id: dedup by arch, or
        a space keeping the base class's key (the arch_id of the validated arch)."""
        return self._dedup_by_arch_id() or \
            getattr(type(self.space), "equivalence_key", None) is SearchSpace.equivalence_key

    def known_costs(self, key: str) -> Optional[Dict[str, float]]:
        """The cost row of arch ``key`` if it is in flight and its costs were computed already."""
        return self._live_costs.get(key)

    def is_seen(self, arch: Arch) -> bool:
        """Whether ``arch`` (or an equivalent arch) was already proposed."""
        return self.dedup_key(arch) in self._seen

    # ------------------------------------------------------------------ Tune protocol
    def suggest(self, trial_id: str):
        if self.space is None:
            raise ConfigError(f"{type(self).__name__} was not set up; pass it to raynas.search()")
        if self._reissue:
            return self._reissue_trial(trial_id)
        if self._proposed >= self.budget or self._exhausted:
            return Searcher.FINISHED if not self._live else None
        if len(self._live) >= self.max_concurrent or self._waiting:
            return None
        n = min(self.batch_size, self.budget - self._proposed)
        batch: List[Tuple[str, Arch]] = []
        for _ in range(n):
            proposal = self._next_arch()
            if proposal is None:
                break
            key, arch, costs = proposal
            batch.append((key, arch))
            if costs is not None:
                self._live_costs[key] = costs
        if not batch:
            if self._live:
                self._waiting = True  # the strategy waits for results in flight
                self._record({"event": "suggest", "trial": trial_id, "arch_ids": []})
                return None
            self._exhausted = True
            self._record({"event": "suggest", "trial": trial_id, "arch_ids": [], "finished": True})
            return Searcher.FINISHED
        self._proposed += len(batch)
        self._live[trial_id] = batch
        self._record({"event": "suggest", "trial": trial_id, "arch_ids": [key for key, _ in batch]})
        return self._trial_config(batch)

    def _next_arch(self) -> Optional[Tuple[str, Arch, Optional[Dict[str, float]]]]:
        """A new feasible arch: its arch_id, the arch, and its cost row if the constraint check
        computed one; None when the strategy has nothing more to propose."""
        by_id = self._valid_arch_key_is_arch_id()   # one validation and one hash per proposal fewer
        duplicates = infeasible = 0
        for attempt in range(self.max_tries):
            if duplicates >= DUPLICATE_FALLBACK and self.random_fallback:
                arch = self.space.sample(self.rng)
            else:
                arch = self.propose()
                if arch is None:
                    return None
            arch = self.space.validate(arch)
            aid = arch_id(arch)
            key = aid if by_id else self.space.equivalence_key(arch)
            if key in self._seen:
                duplicates += 1
                self.on_rejected(arch, "duplicate")
                continue
            costs = self.cost_model(arch) if self.constraints else None
            if costs is not None and not satisfies(self.constraints, costs):
                infeasible += 1
                self.on_rejected(arch, "infeasible")
                continue
            self._seen.add(key)
            return aid, arch, costs
        if infeasible == 0:
            return None  # every proposal was a duplicate: the space is exhausted
        raise InfeasibleConstraintError(
            f"{type(self).__name__} found no new arch satisfying "
            f"{' and '.join(map(str, self.constraints))} in {self.max_tries} proposals "
            f"({infeasible} violated the constraints, {duplicates} were already evaluated). "
            "Relax the constraints or shrink the budget.")

    def on_trial_result(self, trial_id: str, result: Dict) -> None:
        if trial_id in self._live:
            self._last_result[trial_id] = result

    def _trial_config(self, batch: List[Tuple[str, Arch]]) -> Dict[str, Any]:
        config: Dict[str, Any] = {"archs": [a for _, a in batch], "arch_ids": [i for i, _ in batch]}
        if len(batch) == 1:
            # one arch per trial: its decisions show as the trial's hyperparameters in Tune's
            # dashboards (TensorBoard's HParams, the Ray dashboard)
            config["decisions"] = {k: v for k, v in self.space.to_decisions(batch[0][1]).items() if v is not None}
        return config

    def on_trial_complete(self, trial_id: str, result: Optional[Dict] = None, error: bool = False) -> None:
        batch = self._live.pop(trial_id, None)
        last = result if result is not None else self._last_result.get(trial_id)
        self._last_result.pop(trial_id, None)
        if batch is None:
            # a trial this searcher does not know (only when Tune itself restores an experiment
            # from its checkpoint; raynas resumes from the journal): count what it evaluated
            archs = (last or {}).get("config/archs") or ((last or {}).get("config") or {}).get("archs") or []
            rows = {row.get("arch_id"): row for row in (last or {}).get("batch", []) or [] if isinstance(row, dict)}
            for arch in archs:
                self.adopt(arch, self._with_costs(arch, _row_metrics(rows.get(arch_id(arch)))))
            return
        reported = None if last is None else [row for row in last.get("batch") or [] if isinstance(row, dict)]
        # journaled before it is applied: a kill in between replays it whole
        self._record({"event": "observe", "trial": trial_id, "batch": reported, "error": bool(error)})
        self._waiting = False
        rows = {row.get("arch_id"): row for row in reported or []}
        for key, arch in batch:
            self._num_observed += 1
            self.observe(arch, self._with_costs(arch, _row_metrics(rows.get(key)), self._live_costs.pop(key, None)))

    def _with_costs(self, arch: Arch, metrics: Optional[Dict[str, float]],
                    known: Optional[Dict[str, float]] = None) -> Optional[Dict[str, float]]:
        """Objectives may be cost metrics known before evaluation (a latency table, params): the
        evaluator need not report them, the cost model fills them in (``known``: its row for
        ``arch``, computed before)."""
        if metrics is None or self.cost_model is None:
            return metrics
        missing = [o.metric for o in self.objectives if o.metric not in metrics]
        if missing:
            costs = known if known is not None else self.cost_model(arch)
            metrics.update({m: costs[m] for m in missing if m in costs})
        return metrics

    # ------------------------------------------------------------------ journal and resume
    def attach_journal(self, journal) -> None:
        """Record every state-changing call from now on in ``journal`` (a
        :class:`raynas.ledger.Journal`; None stops recording)."""
        self._journal = journal

    def _record(self, event: Dict[str, Any]) -> None:
        if self._journal is not None:
            self._journal.append(event)

    @property
    def live_trials(self) -> List[str]:
        """Trials proposed and not yet observed, in the order they were proposed."""
        return list(self._live)

    def reissue_live(self) -> List[str]:
        """After a replay: hand the trials that were in flight when the driver died to the next
        ``suggest`` calls (the same archs, before anything new), as the uninterrupted run would
        still have been running them. Returns their ids."""
        self._reissue = list(self._live)
        return list(self._reissue)

    def _reissue_trial(self, trial_id: str) -> Dict[str, Any]:
        old = self._reissue.pop(0)
        self.rename_trial(old, trial_id)
        self._record({"event": "reissue", "trial": trial_id, "from": old})
        return self._trial_config(self._live[trial_id])

    def rename_trial(self, old: str, new: str) -> None:
        """Track the in-flight trial ``old`` under the id ``new`` (its re-run in a resumed search)."""
        if old not in self._live:
            raise ConfigError(f"no trial '{old}' is in flight")
        self._live = {(new if tid == old else tid): batch for tid, batch in self._live.items()}
        if old in self._last_result:
            self._last_result[new] = self._last_result.pop(old)

    def adopt(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> bool:
        """Count an arch evaluated for this search outside the suggestions this state knows (a
        killed driver's trials after its last checkpoint): it is seen, counts against the
        budget and is observed. False if the arch was already seen."""
        arch = self.space.validate(arch)
        key = self.dedup_key(arch)
        if key in self._seen:
            return False
        self._seen.add(key)
        self._proposed += 1
        self._num_observed += 1
        self.observe_external(arch, metrics)
        return True

    def observe_external(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        """Learn from an arch this searcher did not propose (default: :meth:`observe`); strategies
        that pair proposals with pending state (e.g. an Optuna trial) override it."""
        self.observe(arch, metrics)

    # ------------------------------------------------------------------ state
    def get_state(self) -> Dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "strategy": self.strategy_name,
            "rng": _rng_state_to_json(self.rng),
            "proposed": self._proposed,
            "seen": sorted(self._seen),
            "live": {tid: [[k, a] for k, a in batch] for tid, batch in self._live.items()},
            "num_observed": self._num_observed,
            "exhausted": self._exhausted,
            "waiting": self._waiting,
            "strategy_state": self.get_strategy_state(),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        if not isinstance(state, Mapping):
            raise TypeError(f"the searcher state is a {type(state).__name__}, not a JSON object")
        if state.get("strategy") != self.strategy_name:
            raise ConfigError(f"cannot restore a '{state.get('strategy')}' searcher state into "
                              f"'{self.strategy_name}'")
        _check_state_fields(state)
        for batch in state["live"].values():
            for _, arch in batch:
                self.space.validate(arch)  # an ArchError is a ValueError: reported as damage
        self.rng.bit_generator.state = _rng_state_from_json(state["rng"])
        self._proposed = int(state["proposed"])
        self._seen = set(state["seen"])
        self._live = {tid: [(k, a) for k, a in batch] for tid, batch in state["live"].items()}
        self._num_observed = int(state["num_observed"])
        self._exhausted = bool(state["exhausted"])
        self._waiting = bool(state.get("waiting", False))
        self.set_strategy_state(state["strategy_state"])

    def get_strategy_state(self) -> Dict[str, Any]:
        """Strategy-specific JSON-able state (population, policy, ...)."""
        return {}

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        atomic_write_text(checkpoint_path, json.dumps(self.get_state(), allow_nan=True))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "r", encoding="utf-8") as f:
            text = f.read()
        try:
            state = json.loads(text)
        except json.JSONDecodeError as exc:
            from raynas.errors import CheckpointError
            raise CheckpointError(f"searcher state {checkpoint_path} is not valid JSON ({exc}); "
                                  "the experiment directory is damaged") from exc
        try:
            self.set_state(state)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, ConfigError):
                raise
            from raynas.errors import CheckpointError
            raise CheckpointError(f"searcher state {checkpoint_path} is damaged or from another raynas version "
                                  f"({type(exc).__name__}: {exc})") from exc

    # ------------------------------------------------------------------ introspection
    @property
    def num_proposed(self) -> int:
        return self._proposed

    @property
    def num_observed(self) -> int:
        return self._num_observed

    @property
    def exhausted(self) -> bool:
        """Whether the strategy ran out of new archs before its budget (a grid walked the whole
        space, or every proposal was already evaluated)."""
        return self._exhausted


def _check_state_fields(state: Mapping[str, Any]) -> None:
    """Refuse a damaged state (``ValueError``) instead of restoring it into nonsense: a count that
    is not a count, keys that are not strings, a flag that is not a flag."""
    def bad(key: str, what: str) -> ValueError:
        return ValueError(f"'{key}' is {str(state.get(key))[:80]!r}, not {what}")

    if state.get("version") != STATE_VERSION:
        raise bad("version", f"{STATE_VERSION} (another raynas version wrote it)")
    for key in ("proposed", "num_observed"):
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(key, "a count")
    for key in ("exhausted", "waiting"):
        if not isinstance(state.get(key, False), bool):
            raise bad(key, "true or false")
    if not isinstance(state["seen"], list) or not all(isinstance(k, str) for k in state["seen"]):
        raise bad("seen", "a list of arch keys")
    live = state["live"]
    if not isinstance(live, dict) or not all(
            isinstance(batch, list) and batch and all(isinstance(item, list) and len(item) == 2
                                                      and isinstance(item[0], str) for item in batch)
            for batch in live.values()):
        raise bad("live", "trials' batches of [arch key, arch]")
    for key in ("rng", "strategy_state"):
        if not isinstance(state[key], dict):
            raise bad(key, "a JSON object")


def _row_metrics(row: Optional[Mapping[str, Any]]) -> Optional[Dict[str, float]]:
    """The numbers of a reported row, or None for a failed (or missing) evaluation."""
    if row is None or row.get("error"):
        return None
    return {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _rng_state_to_json(rng: np.random.Generator) -> Dict[str, Any]:
    return json.loads(json.dumps(rng.bit_generator.state))


def _rng_state_from_json(state: Mapping[str, Any]) -> Dict[str, Any]:
    return dict(state)

