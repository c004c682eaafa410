"""PreNAS zero-cost selector (Wang et al., ICML 2023, Sec. 3.2 and Appendix B).

Picks "preferred" archs before any training, from one forward and backward pass of the randomly
initialised supernet at its largest arch on one data-free batch (images drawn from the ImageNet
mean / std, objective = sum of logits):

1. per supernet weight, the plain SNIP map ``|θ ⊙ g|`` and the layer-normalised one
   ``|θ ⊙ g| / (‖θ‖₁ ‖g‖₁)`` (Eq. 13), both from that single gradient;
2. per isomer group (same fixed decisions and counts of each per-layer choice), one member:
   the larger choices go to the layers whose step (the weights the larger choice adds) has the
   highest layer-normalised score (Algorithm 1; :func:`raynas.selectors.isomers.allocate`);
3. each group's member is scored by plain SNIP over the weights it inherits from the supernet,
   with the supernet's gradient (every subnet inherits both; no per-arch pass);
4. members are bucketed by cost (params by default) with margin ε and the top N by plain SNIP of
   each bucket are kept: the candidates file the preferred supernet training reads.

Model-family knowledge (which weights a step or a subnet uses) comes from the space's
:class:`raynas.selectors.isomers.IsomerStructure` (``space.isomer_structure()``).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from raynas.arch import Arch, arch_id
from raynas.errors import ConfigError, DataError
from raynas.io import atomic_write_json
from raynas.selectors.buckets import ResourceBuckets
from raynas.selectors.isomers import IsomerGroup, IsomerStructure, ParamBox, allocate

FORMAT = "raynas.candidates/1"
ISOMER_PROXY = "snip_layernorm"   # picks the member of each isomer group (Eq. 13)
RANK_PROXY = "snip"               # ranks the members inside a cost bucket


def isomer_structure_of(space) -> IsomerStructure:
    """The space's isomer structure, or a clear error for spaces without reorderable layers."""
    make = getattr(space, "isomer_structure", None)
    if not callable(make):
        raise ConfigError(f"space '{space.name}' has no isomer structure, so the PreNAS selector "
                          "cannot run on it: use a ViT space (autoformer_tiny/small/base, vit_cifar, "
                          "vit) or give the space an isomer_structure() method")
    return make()


class SupernetSaliency:
    """The supernet's plain and layer-normalised SNIP maps, summed over weight blocks.

    Sums run in float64 and are cached per block: thousands of groups share a few hundred blocks.
    """

    def __init__(self, plain: Mapping[str, Any], normalised: Mapping[str, Any]) -> None:
        self.maps = {RANK_PROXY: dict(plain), ISOMER_PROXY: dict(normalised)}
        self._cache: Dict[Tuple[str, str, Tuple[Tuple[int, int], ...]], float] = {}

    @classmethod
    def of_space(cls, space, structure: IsomerStructure, *, batch_size: int = 64, seed: int = 0,
                 device: str = "cpu", num_classes: Optional[int] = None) -> "SupernetSaliency":
        """Build the supernet (init seeded by ``seed``, global RNG untouched), activate the
        largest arch and take both maps from one data-free pass of ``batch_size`` images."""
        import torch

        from raynas.proxies import data_free_batch, snip_saliency_pair
        from raynas.proxies.evaluator import resolve_device

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            supernet = space.build_supernet() if num_classes is None else space.build_supernet(num_classes)
        supernet.to(resolve_device(device))
        supernet.activate(structure.supernet_arch())
        batch = data_free_batch(batch_size, structure.input_shape(), seed=int(seed))
        plain, normalised = snip_saliency_pair(supernet, batch, None,
                                               param_names=structure.saliency_params())
        return cls(plain, normalised)

    def box_sum(self, kind: str, box: ParamBox) -> float:
        name, ranges = box
        key = (kind, name, ranges)
        value = self._cache.get(key)
        if value is None:
            tensor = self.maps[kind][name]
            index = tuple(slice(a, b) for a, b in ranges)
            value = float(tensor[index].sum(dtype=_float64()).item())
            self._cache[key] = value
        return value

    def total(self, kind: str, boxes: Iterable[ParamBox]) -> float:
        return sum(self.box_sum(kind, b) for b in boxes)


def _float64():
    import torch
    return torch.float64


@dataclass
class Candidate:
    """One selected (or scored) arch and why: ``score`` is its plain SNIP, ``isomer_score`` the
    layer-normalised SNIP that chose it within its isomer ``group``."""

    arch: Arch
    arch_id: str
    group: str
    params: float
    flops: float
    score: float
    isomer_score: float
    bucket: Optional[int] = None
    bucket_range: Optional[List[float]] = None
    rank: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class Selection:
    """The selector's output: candidates per bucket, plus every group representative scored."""

    space: Dict[str, Any]
    buckets: ResourceBuckets
    per_bucket: int
    candidates: List[Candidate]
    representatives: List[Candidate]
    settings: Dict[str, Any] = field(default_factory=dict)
    seconds: Dict[str, float] = field(default_factory=dict)

    def bucket_summary(self) -> List[Dict[str, Any]]:
        out = []
        for i in range(len(self.buckets)):
            out.append({"bucket": i, "range": list(self.buckets.bounds(i)), "label": self.buckets.label(i),
                        "groups": sum(1 for r in self.representatives if r.bucket == i),
                        "selected": sum(1 for c in self.candidates if c.bucket == i)})
        return out

    def to_dict(self) -> Dict[str, Any]:
        """The candidates JSON: ``{"space", "candidates": [{"arch", "params", "score", "bucket",
        ...}], ...}`` -- what ``raynas train --sampling preferred`` reads."""
        return {"format": FORMAT, "space": self.space,
                "selector": {"method": "prenas", "isomer_proxy": ISOMER_PROXY, "rank_proxy": RANK_PROXY,
                             "buckets": self.buckets.to_dict(), "per_bucket": self.per_bucket,
                             "num_groups": len(self.representatives), **self.settings,
                             "seconds": dict(self.seconds)},
                "buckets": self.bucket_summary(),
                "candidates": [c.to_dict() for c in self.candidates]}

    def write(self, path: Union[str, Path]) -> Path:
        """Write the candidates JSON atomically (a reader never sees half a file)."""
        for c in self.candidates:
            if not (np.isfinite(c.score) and np.isfinite(c.isomer_score)):
                raise DataError(f"candidate {c.arch_id} has a non-finite score ({c.score}); the "
                                "supernet's gradient overflowed or vanished: check the space / batch")
        atomic_write_json(path, self.to_dict())
        return Path(path)

    def table(self) -> str:
        lines = [f"{'bucket':<18}{'rank':>5}{'params':>12}{'FLOPs':>10}{'snip':>12}  arch"]
        for c in self.candidates:
            arch = c.arch
            short = (f"e={arch.get('embed_dim')} d={arch.get('depth')} "
                     f"h={_run_length(arch.get('num_heads', []))} r={_run_length(arch.get('mlp_ratio', []))}"
                     if "embed_dim" in arch else json.dumps(arch, sort_keys=True)[:60])
            lines.append(f"{self.buckets.label(c.bucket):<18}{c.rank:>5}{c.params / 1e6:>11.3f}M"
                         f"{c.flops / 1e9:>9.3f}G{c.score:>12.4g}  {short}")
        empty = [s["label"] for s in self.bucket_summary() if s["groups"] == 0]
        if empty:
            lines.append(f"no isomer group falls in bucket(s) {', '.join(empty)}")
        return "\n".join(lines)


def _run_length(values: Sequence[Any]) -> str:
    """``[4, 4, 3, 3, 3]`` -> ``"4x2,3x3"`` (compact per-layer lists for a table)."""
    out: List[str] = []
    for v in values:
        text = f"{v:g}" if isinstance(v, float) else str(v)
        if out and out[-1].split("x")[0] == text:
            head, count = out[-1].split("x")
            out[-1] = f"{head}x{int(count) + 1}"
        else:
            out.append(f"{text}x1")
    return ",".join(out)


def read_candidates(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a candidates JSON written by :meth:`Selection.write` (checks its shape)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"candidates file not found: {p}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"candidates file {p} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("candidates"), list):
        raise DataError(f"{p} is not a candidates file: it needs a 'candidates' list")
    return data


class PreNASSelector:
    """Zero-cost selection of preferred archs for a space with an isomer structure.

    ``batch_size`` data-free images (64 as the reference), init and batch seeded by ``seed``;
    ``device`` for the single supernet pass ("cpu", "cuda", "auto").
    """

    def __init__(self, space, *, batch_size: int = 64, seed: int = 0, device: str = "cpu",
                 structure: Optional[IsomerStructure] = None,
                 saliency: Optional[SupernetSaliency] = None) -> None:
        self.space = space
        self.structure = structure or isomer_structure_of(space)
        self.batch_size, self.seed, self.device = int(batch_size), int(seed), str(device)
        self._saliency = saliency
        self._step_scores: Dict[Tuple[Any, ...], np.ndarray] = {}
        self.seconds: Dict[str, float] = {}

    @property
    def saliency(self) -> SupernetSaliency:
        if self._saliency is None:
            start = time.perf_counter()
            self._saliency = SupernetSaliency.of_space(self.space, self.structure, batch_size=self.batch_size,
                                                       seed=self.seed, device=self.device)
            self.seconds["supernet_pass"] = time.perf_counter() - start
        return self._saliency

    # ------------------------------------------------------------------ scores
    def step_scores(self, group: IsomerGroup, dimension: str) -> np.ndarray:
        """``[layer, step]`` layer-normalised scores of the weights each step adds (they depend
        on the group's fixed decisions only, so groups sharing them share one matrix)."""
        key = (group.fixed, group.num_layers, dimension)
        cached = self._step_scores.get(key)
        if cached is not None:
            return cached
        steps = len(self.structure.choices(dimension)) - 1
        out = np.zeros((group.num_layers, max(steps, 0)))
        for layer in range(group.num_layers):
            for step in range(steps):
                out[layer, step] = self.saliency.total(
                    ISOMER_PROXY, self.structure.step_boxes(group, layer, dimension, step))
        out.setflags(write=False)
        self._step_scores[key] = out
        return out

    def representative(self, group: IsomerGroup) -> Arch:
        """The member of ``group`` the allocation picks (highest layer-normalised SNIP)."""
        allocation = {dim: allocate(self.step_scores(group, dim), counts) for dim, counts in group.counts}
        return self.structure.arch_of(group, allocation)

    def isomer_score(self, arch: Arch) -> float:
        """Layer-normalised SNIP (Eq. 13) of the weights ``arch`` inherits."""
        return self.saliency.total(ISOMER_PROXY, self.structure.subnet_boxes(arch))

    def snip_score(self, arch: Arch) -> float:
        """Plain SNIP of the weights ``arch`` inherits, with the supernet's gradient."""
        return self.saliency.total(RANK_PROXY, self.structure.subnet_boxes(arch))

    def candidate(self, arch: Arch, group: Optional[IsomerGroup] = None) -> Candidate:
        """``arch`` with its cost and both scores."""
        cost = self.space.cost(arch)
        group = group or self.structure.group_of(arch)
        boxes = self.structure.subnet_boxes(arch)
        return Candidate(arch=arch, arch_id=arch_id(arch), group=group.key,
                         params=float(cost.get("params", float("nan"))),
                         flops=float(cost.get("flops", float("nan"))),
                         score=self.saliency.total(RANK_PROXY, boxes),
                         isomer_score=self.saliency.total(ISOMER_PROXY, boxes))

    # ------------------------------------------------------------------ selection
    def select(self, buckets: ResourceBuckets, per_bucket: int = 1, *, progress: bool = False) -> Selection:
        """One representative per isomer group, bucketed by ``buckets.metric``; the top
        ``per_bucket`` by plain SNIP of each bucket become the candidates."""
        if per_bucket < 1:
            raise ConfigError(f"per_bucket must be >= 1, got {per_bucket}")
        start = time.perf_counter()
        self.saliency  # noqa: B018 - the one supernet pass, timed on its own
        groups = list(self.structure.groups())
        iterator: Iterable[IsomerGroup] = groups
        if progress:
            from tqdm.auto import tqdm
            iterator = tqdm(groups, desc="isomer groups", unit="group", mininterval=0.5)
        scored = time.perf_counter()
        representatives: List[Candidate] = []
        for group in iterator:
            arch = self.representative(group)
            cand = self.candidate(arch, group)
            value = cand.params if buckets.metric == "params" else float(self.space.cost(arch)[buckets.metric])
            cand.bucket = buckets.index(value)
            if cand.bucket is not None:
                cand.bucket_range = list(buckets.bounds(cand.bucket))
            representatives.append(cand)
        self.seconds["groups"] = time.perf_counter() - scored
        chosen: List[Candidate] = []
        for b in range(len(buckets)):
            inside = [c for c in representatives if c.bucket == b]
            inside.sort(key=lambda c: (-c.score, c.arch_id))
            for rank, c in enumerate(inside[:per_bucket], start=1):
                c.rank = rank
                chosen.append(c)
        self.seconds["total"] = time.perf_counter() - start
        settings = {"batch_size": self.batch_size, "seed": self.seed, "device": self.device,
                    "data_free": True, "objective": "sum of logits"}
        return Selection(self.space.spec(), buckets, int(per_bucket), chosen, representatives,
                         settings, dict(self.seconds))

    # ------------------------------------------------------------------ evaluation
    def isomer_best_ranks(self, groups: Sequence[IsomerGroup], truth: Any, metric: str = "accuracy",
                          max_group_size: int = 5000) -> Dict[str, Any]:
        """mBR (:mod:`raynas.proxies.best_rank`) of plain and layer-normalised SNIP inside
        isomer groups: every member of each group is scored by both and evaluated by ``truth``
        (an Evaluator reporting ``metric``, e.g. weight-inherited accuracy from a pool)."""
        from raynas.proxies.best_rank import best_ranks, mean_best_rank

        archs: List[Arch] = []
        labels: List[str] = []
        for g in groups:
            if g.size > max_group_size:
                raise ConfigError(f"isomer group {g.key} has {g.size} members (> {max_group_size}); "
                                  "pick smaller groups or raise max_group_size")
            for arch in self.structure.members(g):
                archs.append(arch)
                labels.append(g.key)
        rows = truth.evaluate(archs)
        if any(metric not in r for r in rows):
            raise ConfigError(f"the truth evaluator does not report '{metric}'")
        t = [float(r[metric]) for r in rows]
        out: Dict[str, Any] = {"metric": metric, "num_groups": len(groups), "num_archs": len(archs)}
        for kind, fn in ((RANK_PROXY, self.snip_score), (ISOMER_PROXY, self.isomer_score)):
            s = [fn(a) for a in archs]
            out[kind] = {"mbr": mean_best_rank(s, t, labels),
                         "ranks": [{"group": r.group, "rank": r.rank, "size": r.size}
                                   for r in best_ranks(s, t, labels)]}
        return out


def select_candidates(space, buckets: Union[str, ResourceBuckets], per_bucket: int = 1, *,
                      output: Optional[Union[str, Path]] = None, batch_size: int = 64, seed: int = 0,
                      device: str = "cpu", metric: str = "params", progress: bool = False) -> Selection:
    """Run the PreNAS selector on ``space`` and (with ``output``) write the candidates JSON."""
    from raynas.registry import create_space
    from raynas.space import SearchSpace

    space = space if isinstance(space, SearchSpace) else create_space(str(space))
    if isinstance(buckets, str):
        buckets = ResourceBuckets.parse(buckets, metric)
    selection = PreNASSelector(space, batch_size=batch_size, seed=seed, device=device).select(
        buckets, per_bucket, progress=progress)
    if output is not None:
        selection.write(output)
    return selection


__all__ = ["Candidate", "PreNASSelector", "Selection", "SupernetSaliency", "isomer_structure_of",
           "read_candidates", "select_candidates"]
