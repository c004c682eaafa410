"""The calls an Optuna study received, in order, as plain data, and their replay.

An Optuna sampler's state is its study (the trials) plus private random state that no public
API exposes: rebuilding the trials with ``create_trial``/``add_trial`` gives a sampler that knows
the same results but proposes different archs next (its RNG never advanced). Some samplers also
keep serialised Python objects in trial attributes (CMA-ES keeps its optimizer there). So the state saved is the
*history* of calls - each ask with the params it returned, each tell with its values or failure,
each finished trial added from outside - and restoring replays that history into a fresh sampler
with the same seed. A sampler is deterministic given its seed and its call sequence, so the
replayed asks return the recorded params again and the next suggestion equals an uninterrupted
run's (checked for tpe, nsga2, cmaes, gp, random and qmc by ``tests/test_search.py``).

Replay costs the sampler time of the original run (no evaluations). If a replayed ask returns
other params than recorded (a different Optuna version, or a sampler whose numerics vary between
machines), the study is rebuilt with every recorded ask forced to its recorded params: the trials
and results are exactly the recorded ones, but the sampler's random state is not, so the next
suggestions may differ from an uninterrupted run's. That is reported with a ``RuntimeWarning``.
"""
from __future__ import annotations

import json
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

HISTORY_FORMAT = 1


class OptunaHistory:
    """Records the calls made to a Tune ``OptunaSearch`` (``inner``) so they can be replayed.

    Every interaction of the wrapper with its ``OptunaSearch`` goes through :meth:`ask`,
    :meth:`tell` and :meth:`add`; their order is the order the sampler saw.
    """

    def __init__(self) -> None:
        self.calls: List[Dict[str, Any]] = []

    # ------------------------------------------------------------------ recorded calls
    def ask(self, inner, trial_id: str) -> Dict[str, Any]:
        params = dict(inner.suggest(trial_id))
        self.calls.append({"op": "ask", "trial": trial_id, "params": params})
        return params

    def tell(self, inner, trial_id: str, values: Optional[Sequence[float]]) -> None:
        """``values`` (one per objective, in the study's order) or None for a failed trial."""
        if values is None:
            self.calls.append({"op": "tell", "trial": trial_id, "failed": True})
        else:
            self.calls.append({"op": "tell", "trial": trial_id, "values": [float(v) for v in values]})
        _tell(inner, trial_id, values)

    def add(self, inner, params: Mapping[str, Any], values: Sequence[float]) -> None:
        """A finished trial the sampler did not propose joins the study."""
        self.calls.append({"op": "add", "params": dict(params), "values": [float(v) for v in values]})
        _add(inner, params, values)

    # ------------------------------------------------------------------ plain data
    def to_json(self, inner) -> Dict[str, Any]:
        import optuna
        from optuna.distributions import distribution_to_json

        return {"format": HISTORY_FORMAT, "optuna_version": optuna.__version__,
                "distributions": {k: json.loads(distribution_to_json(d)) for k, d in inner._space.items()},
                "calls": [dict(c) for c in self.calls]}

    def replay(self, state: Mapping[str, Any], make_inner: Callable[[], Any]):
        """Replay a saved history into ``make_inner()`` (a fresh ``OptunaSearch`` with the same
        seeded sampler); returns that ``OptunaSearch``. Raises ``ValueError``/``KeyError``/
        ``TypeError`` for a damaged history (the caller reports it as a damaged checkpoint)."""
        import optuna

        if int(state["format"]) != HISTORY_FORMAT:
            raise ValueError(f"Optuna history format {state['format']} is not {HISTORY_FORMAT}")
        calls = [_checked_call(c) for c in state["calls"]]
        inner = make_inner()
        _check_distributions(state["distributions"], inner._space)
        for call in calls:
            _check_params(call, inner._space)
        diverged = _replay(inner, calls, forced=False)
        if diverged is not None:
            saved = state.get("optuna_version")
            why = (f"the state was saved with Optuna {saved}, this is {optuna.__version__}"
                   if saved != optuna.__version__ else "the sampler is not deterministic on this machine")
            warnings.warn(
                f"replaying the Optuna study diverged at call {diverged} ({why}): the study was rebuilt "
                "from the recorded trials, but the sampler's random state differs, so the next "
                "suggestions may differ from the uninterrupted run's", RuntimeWarning, stacklevel=2)
            inner = make_inner()
            _replay(inner, calls, forced=True)
        self.calls = calls
        return inner


def _tell(inner, trial_id: str, values: Optional[Sequence[float]]) -> None:
    if values is None:
        inner.on_trial_complete(trial_id, result=None, error=True)
        return
    metrics = inner.metric if isinstance(inner.metric, list) else [inner.metric]
    inner.on_trial_complete(trial_id, result=dict(zip(metrics, values)))


def _add(inner, params: Mapping[str, Any], values: Sequence[float]) -> None:
    import optuna

    values = list(values)
    trial = optuna.trial.create_trial(params=dict(params), distributions=inner._space,
                                      **({"values": values} if len(values) > 1 else {"value": values[0]}))
    inner._ot_study.add_trial(trial)


def _replay(inner, calls: List[Dict[str, Any]], forced: bool) -> Optional[int]:
    """Apply ``calls`` to ``inner``; the index of the first ask that returned other params than
    recorded (None if none did). ``forced`` makes every ask return its recorded params."""
    for index, call in enumerate(calls):
        op = call["op"]
        if op == "ask":
            if forced:
                inner._ot_study.enqueue_trial(call["params"])
            if dict(inner.suggest(call["trial"])) != call["params"]:
                if forced:
                    raise ValueError(f"call {index}: Optuna did not accept the recorded params {call['params']}")
                return index
        elif op == "tell":
            _tell(inner, call["trial"], None if call.get("failed") else call["values"])
        else:
            _add(inner, call["params"], call["values"])
    return None


def _checked_call(call: Any) -> Dict[str, Any]:
    if not isinstance(call, dict) or call.get("op") not in ("ask", "tell", "add"):
        raise ValueError(f"not an Optuna history call: {call!r}")
    if call["op"] in ("ask", "tell") and not isinstance(call["trial"], str):
        raise TypeError(f"trial id of {call!r} is not a string")
    if call["op"] in ("ask", "add") and not isinstance(call["params"], dict):
        raise TypeError(f"params of {call!r} are not a mapping")
    if (call["op"] == "add" or (call["op"] == "tell" and not call.get("failed"))):
        values = call["values"]
        if not isinstance(values, list) or not values or not all(isinstance(v, (int, float)) for v in values):
            raise TypeError(f"values of {call!r} are not a list of numbers")
    return dict(call)


def _check_distributions(saved: Mapping[str, Any], space: Mapping[str, Any]) -> None:
    from optuna.distributions import json_to_distribution

    restored = {k: json_to_distribution(json.dumps(v)) for k, v in saved.items()}
    if restored != dict(space):
        raise ValueError("the saved Optuna study has other decisions than this search space")


def _check_params(call: Mapping[str, Any], space: Mapping[str, Any]) -> None:
    if call["op"] == "tell":
        return
    params = call["params"]
    if set(params) != set(space):
        raise ValueError(f"recorded params {sorted(params)} are not the space's decisions {sorted(space)}")
    for name, value in params.items():
        distribution = space[name]
        try:
            ok = distribution._contains(distribution.to_internal_repr(value))
        except (ValueError, TypeError):
            ok = False
        if not ok:
            raise ValueError(f"recorded value {value!r} of '{name}' is outside {distribution}")
