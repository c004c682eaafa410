"""OFA progressive shrinking (Cai et al., ICLR 2020) as a declarative phase schedule.

Train the full network first, then unlock the elastic dimensions one after another (kernel, then
depth, then expand ratio); each later phase distils from a fixed teacher, the full network as it
was at the end of the first phase, and starts a fresh optimizer. Within a phase only the unlocked
dimensions are sampled; the others stay at their largest choice. At the start of each width phase
the trainer sorts channels by importance (``supernet.sort_channels``) so every expand ratio keeps
the most important ones.

The schedule is a JSON or YAML file (or the same structure inline)::

    {"always_unlocked": ["resolution"],      # optional: sampled in every phase (OFA: resolution)
     "num_subnets": 2, "kd_ratio": 1.0,      # optional defaults of the phases below
     "phases": [
       {"name": "full",   "epochs": 4, "lr": 0.05, "kd_ratio": 0},
       {"name": "kernel", "epochs": 2, "lr": 0.02, "unlock": ["kernel"], "num_subnets": 1},
       {"name": "depth",  "epochs": 2, "lr": 0.01, "unlock": {"kernel": null, "depth": [3, 4]}},
       {"name": "expand", "epochs": 2, "lr": 0.01, "warmup_epochs": 0.1,
        "unlock": ["kernel", "depth", "expand"], "sort_channels": true}]}

Per phase: ``epochs`` (may be fractional), ``lr`` or ``lr_scale`` (times the config's ``lr``),
``warmup_epochs``, ``unlock`` (dimension names, or a mapping to allowed choices; null = all),
``num_subnets`` (random subnets per step, default 1), ``kd_ratio`` (distillation weight from the
fixed teacher; default 1, except 0 in a first phase), ``sort_channels`` (default: when the phase
unlocks ``expand`` and the supernet can sort), ``reset_optimizer`` (default: every phase but the
first). Without a schedule, :func:`default_schedule` spreads the config's epochs over OFA's phases
in OFA's proportions (other spaces: the full network, then every dimension at once).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

from raynas.errors import ConfigError
from raynas.rng import derive_rng
from raynas.training.sampling import SamplingStrategy, SubnetTask, register_sampling_strategy
from raynas.training.schedule import Phase
from raynas.training.subspace import SubSpace, space_dimensions

PHASE_KEYS = {"name", "epochs", "lr", "lr_scale", "warmup_epochs", "unlock", "num_subnets",
              "kd_ratio", "sort_channels", "reset_optimizer"}
TOP_KEYS = {"phases", "always_unlocked", "num_subnets", "kd_ratio"}
WIDTH_DIMENSION = "expand"

# OFA's ImageNet schedule (epochs 180 / 120 / 25 + 120 / 25 + 120, learning rates relative to
# the elastic-kernel phase's), as fractions of the run and of the configured peak learning rate
_OFA_PHASES = (
    ("full", 0.30, 1.0, (), 1),
    ("kernel", 0.20, 0.5, ("kernel",), 1),
    ("depth-1", 0.05, 0.05, ("kernel", ("depth", 2)), 2),
    ("depth-2", 0.15, 0.15, ("kernel", "depth"), 2),
    ("expand-1", 0.05, 0.05, ("kernel", "depth", ("expand", 2)), 2),
    ("expand-2", 0.25, 0.15, ("kernel", "depth", "expand"), 2),
)


def load_schedule(source: Union[str, Path, Mapping[str, Any], Sequence[Mapping[str, Any]]]) -> Dict[str, Any]:
    """A schedule dict from a JSON/YAML file path, a dict, or a bare list of phases."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"progressive-shrinking schedule {path} does not exist; pass the path "
                              "of a JSON or YAML file (see raynas.training.progressive)")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError
            raise ConfigError(f"cannot parse the schedule {path}: {exc}") from exc
    else:
        data = source
    if isinstance(data, (list, tuple)):
        data = {"phases": list(data)}
    if not isinstance(data, Mapping) or not isinstance(data.get("phases"), (list, tuple)) \
            or not data["phases"]:
        raise ConfigError("a progressive-shrinking schedule is a mapping with a non-empty 'phases' "
                          f"list, got {type(data).__name__}")
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown schedule key(s) {unknown}; known: {sorted(TOP_KEYS)}")
    for i, phase in enumerate(data["phases"]):
        if not isinstance(phase, Mapping):
            raise ConfigError(f"schedule phase {i} must be a mapping, got {phase!r}")
        bad = sorted(set(phase) - PHASE_KEYS)
        if bad:
            raise ConfigError(f"schedule phase {i} ({phase.get('name')!r}) has unknown key(s) {bad}; "
                              f"known: {sorted(PHASE_KEYS)}")
    return dict(data)


def default_schedule(space, epochs: float) -> Dict[str, Any]:
    """OFA's phases in OFA's proportions of ``epochs`` (``lr_scale`` relative to the config's lr)
    for spaces with OFA's kernel / depth / expand dimensions ("(dim, k)": the k largest choices).
    Any other space: the full network for 30% of the epochs, then every dimension at once."""
    dims = space_dimensions(space)
    always = ["resolution"] if "resolution" in dims else []
    if not {"kernel", "depth", "expand"} <= set(dims):
        elastic = {dim: None for dim in dims}
        return {"always_unlocked": always, "phases": [
            {"name": "full", "epochs": 0.3 * epochs, "lr_scale": 1.0, "unlock": {}, "num_subnets": 1},
            {"name": "elastic", "epochs": 0.7 * epochs, "lr_scale": 0.3, "unlock": elastic,
             "num_subnets": 2}]}
    phases = []
    for name, fraction, scale, unlock, subnets in _OFA_PHASES:
        spec: Dict[str, Any] = {}
        for item in unlock:
            dim, top = (item, None) if isinstance(item, str) else item
            spec[dim] = None if top is None else list(dims[dim][-top:])
        phases.append({"name": name, "epochs": fraction * epochs, "lr_scale": scale, "unlock": spec,
                       "num_subnets": subnets})
    return {"always_unlocked": always, "phases": phases}


class ProgressiveShrinking(SamplingStrategy):
    """OFA progressive shrinking; see the module docstring for the schedule format."""

    name = "progressive_shrinking"

    def __init__(self, schedule: Union[str, Mapping[str, Any], Sequence[Mapping[str, Any]], None] = None) -> None:
        self.schedule_source = schedule
        self._schedule: Optional[Dict[str, Any]] = None if schedule is None else load_schedule(schedule)
        self._space = None
        self._subspaces: Dict[str, SubSpace] = {}

    def bind(self, space) -> None:
        self._space = space
        if self._schedule is not None:
            self._check_dimensions(space, self._schedule)

    @staticmethod
    def _unlock_spec(phase: Mapping[str, Any], always: Sequence[str]) -> Dict[str, Optional[list]]:
        unlock = phase.get("unlock", [])
        if isinstance(unlock, Mapping):
            spec = {str(k): (None if v is None else list(v)) for k, v in unlock.items()}
        elif isinstance(unlock, (list, tuple)):
            spec = {str(k): None for k in unlock}
        else:
            raise ConfigError(f"phase {phase.get('name')!r}: 'unlock' must be a list of dimensions or a "
                              f"mapping dimension -> choices, got {unlock!r}")
        for dim in always:
            spec.setdefault(dim, None)
        return spec

    def _check_dimensions(self, space, schedule: Mapping[str, Any]) -> None:
        always = list(schedule.get("always_unlocked", []))
        for phase in schedule["phases"]:
            SubSpace(space, self._unlock_spec(phase, always))  # raises ConfigError naming the problem

    def phases(self, epochs: float, lr: float, warmup_epochs: float) -> List[Phase]:
        if self._space is None:
            raise ConfigError("bind(space) the progressive-shrinking strategy before asking its phases")
        schedule = self._schedule or default_schedule(self._space, epochs)
        always = list(schedule.get("always_unlocked", []))
        default_subnets = schedule.get("num_subnets", 1)
        default_kd = schedule.get("kd_ratio", 1.0)
        out: List[Phase] = []
        for i, spec in enumerate(schedule["phases"]):
            name = str(spec.get("name", f"phase{i}"))
            if "lr" in spec and "lr_scale" in spec:
                raise ConfigError(f"phase '{name}': give 'lr' or 'lr_scale', not both")
            peak = float(spec["lr"]) if "lr" in spec else lr * float(spec.get("lr_scale", 1.0))
            if "epochs" not in spec:
                raise ConfigError(f"phase '{name}' needs 'epochs'")
            unlock = self._unlock_spec(spec, always)
            kd = float(spec.get("kd_ratio", 0.0 if i == 0 else default_kd))
            subnets = spec.get("num_subnets", default_subnets)
            if isinstance(subnets, bool) or not isinstance(subnets, int) or subnets < 1:
                raise ConfigError(f"phase '{name}': num_subnets must be an integer >= 1, got {subnets!r}")
            if kd < 0:
                raise ConfigError(f"phase '{name}': kd_ratio must be >= 0, got {kd}")
            sort = spec.get("sort_channels")
            if sort is None and WIDTH_DIMENSION in unlock:
                sort = "auto"  # sort when the supernet can (OFA spaces)
            out.append(Phase(
                name=name, epochs=float(spec["epochs"]), lr=peak,
                warmup_epochs=float(spec.get("warmup_epochs", 0.0)), fixed_teacher=kd > 0,
                sort_channels=sort if sort == "auto" else bool(sort),
                reset_optimizer=bool(spec.get("reset_optimizer", i > 0)),
                options={"unlock": unlock, "num_subnets": subnets, "kd_ratio": kd}))
        return out

    def subspace(self, space, phase: Phase) -> SubSpace:
        key = phase.name
        if key not in self._subspaces or self._subspaces[key].space is not space:
            self._subspaces[key] = SubSpace(space, phase.options["unlock"])
        return self._subspaces[key]

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        if phase is None:
            raise ConfigError("progressive shrinking plans need the step's phase")
        sub = self.subspace(space, phase)
        kd = phase.options["kd_ratio"]
        return [SubnetTask(sub.sample(derive_rng(seed, "subnet", step, k)), 1.0, kd)
                for k in range(phase.options["num_subnets"])]

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "schedule": self._schedule}


register_sampling_strategy("progressive_shrinking", ProgressiveShrinking)
register_sampling_strategy("ofa", ProgressiveShrinking)
