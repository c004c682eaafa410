"""PreNAS "preferred" training: only a candidate list of archs, with performance balancing.

PreNAS (ICML 2023) selects a few preferred archs with a zero-cost proxy before training and
trains the supernet on them alone. Candidates are grouped by a key (``(embed_dim, depth)`` for
ViTs); each draw picks a group uniformly, then a candidate inside it uniformly, so groups with
many candidates do not crowd out the others.

The candidates come from a JSON file (or inline): a list of archs, a list of
``{"arch": ..., ...}`` records, or a mapping with such a list under ``"candidates"`` -- what the
zero-cost selector writes.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from raynas.arch import Arch, arch_id
from raynas.errors import ArchError, ConfigError
from raynas.rng import derive_rng
from raynas.training.sampling import SamplingStrategy, SubnetTask, register_sampling_strategy
from raynas.training.schedule import Phase
from raynas.training.subspace import dimension_value

DEFAULT_GROUP_BY = ("embed_dim", "depth")


def load_candidates(source: Union[str, Path, Sequence[Any], Mapping[str, Any]]) -> List[Arch]:
    """The archs of a candidates file / structure, in their order."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"candidates file {path} does not exist; pass a JSON list of archs")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"candidates file {path} is not valid JSON: {exc}") from exc
    else:
        data = source
    if isinstance(data, Mapping):
        if "candidates" not in data:
            raise ConfigError("a candidates mapping needs a 'candidates' list")
        data = data["candidates"]
    if not isinstance(data, (list, tuple)) or not data:
        raise ConfigError(f"candidates must be a non-empty list of archs, got {type(data).__name__}")
    out = []
    for i, item in enumerate(data):
        arch = item.get("arch") if isinstance(item, Mapping) and isinstance(item.get("arch"), Mapping) else item
        if not isinstance(arch, Mapping):
            raise ConfigError(f"candidate {i} is not an arch (a JSON object), got {item!r}")
        out.append(dict(arch))
    return out


class PreferredSampling(SamplingStrategy):
    """Train only on ``candidates``, balanced over groups keyed by ``group_by``.

    ``group_by``: arch fields or space dimensions (a dimension without a top-level field counts
    as the sum of its decisions, e.g. OFA's total depth); default ``("embed_dim", "depth")``
    where the archs have them, else one group per candidate. ``num_subnets`` draws per step.
    """

    name = "preferred"

    def __init__(self, candidates: Union[str, Sequence[Any], Mapping[str, Any]],
                 group_by: Optional[Sequence[str]] = None, num_subnets: int = 1) -> None:
        if isinstance(num_subnets, bool) or not isinstance(num_subnets, int) or num_subnets < 1:
            raise ConfigError(f"num_subnets must be an integer >= 1, got {num_subnets!r}")
        if group_by is not None and (isinstance(group_by, str) or not all(isinstance(g, str) for g in group_by)):
            raise ConfigError(f"group_by must be a list of field names, got {group_by!r}")
        self.source = candidates
        self.raw_candidates = load_candidates(candidates)
        self.group_by = None if group_by is None else tuple(group_by)
        self.num_subnets = num_subnets
        self.groups: List[Tuple[Any, List[Arch]]] = []
        self._space = None

    def bind(self, space) -> None:
        seen, archs = set(), []
        for i, raw in enumerate(self.raw_candidates):
            try:
                arch = space.validate(raw)
            except ArchError as exc:
                raise ConfigError(f"candidate {i} is not an arch of space '{space.name}': {exc}") from exc
            if arch_id(arch) not in seen:
                seen.add(arch_id(arch))
                archs.append(arch)
        keys = self.group_by
        if keys is None:
            keys = DEFAULT_GROUP_BY if all(k in archs[0] for k in DEFAULT_GROUP_BY) else ()
        grouped: Dict[Any, List[Arch]] = {}
        for k, arch in enumerate(archs):
            key = tuple(dimension_value(space, arch, name) for name in keys) if keys else (k,)
            grouped.setdefault(key, []).append(arch)
        # a fixed group order (sorted keys), so every process builds the same table
        self.groups = [(key, grouped[key]) for key in sorted(grouped, key=repr)]
        self.group_keys = tuple(keys)
        self._space = space

    @property
    def candidates(self) -> List[Arch]:
        return [a for _, members in self.groups for a in members]

    def draw(self, seed: int, step: int, k: int) -> Tuple[int, Arch]:
        """(group index, candidate) of draw ``k`` at ``step``: a uniform group, then a uniform
        member of it."""
        rng = derive_rng(seed, "preferred", step, k)
        g = int(rng.integers(len(self.groups)))
        members = self.groups[g][1]
        return g, members[int(rng.integers(len(members)))]

    def plan(self, space, step: int, seed: int, phase: Optional[Phase] = None) -> List[SubnetTask]:
        if self._space is not space:
            self.bind(space)
        return [SubnetTask.labels(self.draw(seed, step, k)[1]) for k in range(self.num_subnets)]

    def state_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "num_candidates": len(self.candidates),
                "groups": [repr(key) for key, _ in self.groups]}


register_sampling_strategy("preferred", PreferredSampling)
register_sampling_strategy("prenas", PreferredSampling)
