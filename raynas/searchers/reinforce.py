"""REINFORCE (Williams 1992) with a per-decision categorical policy, as NAS-Bench-201 runs it.

The policy holds one vector of logits per decision of ``space.decisions()``; an arch is drawn by
sampling every decision independently. After each evaluation the logits take a policy-gradient
step on ``advantage * grad log pi(arch) + entropy_coef * grad H(pi)``, the advantage being the
reward minus a moving-average baseline (divided by a running reward scale, so the learning rate
does not depend on the metric's units). Decisions the arch switches off (e.g. layers beyond a
stage's depth) get no gradient. The policy sees only decisions and rewards, never a model.
"""
from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from raynas.arch import Arch
from raynas.errors import ConfigError
from raynas.searchers.base import ArchSearcher

OPTIMIZERS = ("adam", "sgd")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max())
    return z / z.sum()


class ReinforceSearcher(ArchSearcher):
    """Policy-gradient controller over the space's flat categorical decisions.

    Args:
        learning_rate: step size of the logits' update.
        baseline_decay: the baseline follows ``b <- decay * b + (1 - decay) * reward``.
        entropy_coef: weight of the entropy bonus (keeps the policy from collapsing early).
        optimizer: ``"adam"`` (default) or ``"sgd"``.
        normalize_rewards: divide advantages by a running standard deviation of the rewards.
        reuse_duplicates: a proposal already evaluated (or equivalent to one) is not evaluated
            again, but its known reward still updates the policy.
    """

    strategy_name = "reinforce"

    def __init__(self, learning_rate: float = 0.1, baseline_decay: float = 0.9, entropy_coef: float = 0.0,
                 optimizer: str = "adam", normalize_rewards: bool = True, reuse_duplicates: bool = True) -> None:
        super().__init__()
        if not learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {learning_rate}")
        if not 0.0 <= baseline_decay < 1.0:
            raise ConfigError(f"baseline_decay must be within [0, 1), got {baseline_decay}")
        if entropy_coef < 0:
            raise ConfigError(f"entropy_coef must be >= 0, got {entropy_coef}")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        self.learning_rate = float(learning_rate)
        self.baseline_decay = float(baseline_decay)
        self.entropy_coef = float(entropy_coef)
        self.optimizer = optimizer
        self.normalize_rewards = bool(normalize_rewards)
        self.reuse_duplicates = bool(reuse_duplicates)
        self.logits: List[np.ndarray] = []
        self._m: List[np.ndarray] = []
        self._v: List[np.ndarray] = []
        self._steps = 0
        self.baseline: Optional[float] = None
        self._reward_mean = 0.0
        self._reward_var = 0.0
        self._num_rewards = 0
        self._known: Dict[str, float] = {}  # dedup key -> reward, for duplicate proposals

    def on_setup(self) -> None:
        decisions = self.space.decisions()
        self.logits = [np.zeros(len(d.choices)) for d in decisions]
        self._m = [np.zeros_like(l) for l in self.logits]
        self._v = [np.zeros_like(l) for l in self.logits]

    # ------------------------------------------------------------------ policy
    def probabilities(self) -> Dict[str, List[float]]:
        """Decision name -> current choice probabilities."""
        return {d.name: softmax(l).tolist() for d, l in zip(self.space.decisions(), self.logits)}

    def most_likely(self) -> Arch:
        """The arch of every decision's most probable choice."""
        return self.space.from_decisions({d.name: d.choices[int(np.argmax(l))]
                                          for d, l in zip(self.space.decisions(), self.logits)})

    def propose(self) -> Arch:
        values = {}
        for d, logits in zip(self.space.decisions(), self.logits):
            values[d.name] = d.choices[int(self.rng.choice(len(d.choices), p=softmax(logits)))]
        return self.space.from_decisions(values)

    def observe(self, arch: Arch, metrics: Optional[Mapping[str, float]]) -> None:
        reward = self.fitness(metrics)
        if not math.isfinite(reward):
            return  # a failed evaluation carries no signal about the choices
        self._known[self.dedup_key(arch)] = reward
        self._update(arch, reward)

    def on_rejected(self, arch: Arch, reason: str) -> None:
        if reason == "duplicate" and self.reuse_duplicates:
            reward = self._known.get(self.dedup_key(arch))
            if reward is not None:
                self._update(arch, reward)

    def _update(self, arch: Arch, reward: float) -> None:
        self._track_reward(reward)
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * reward
        if self.normalize_rewards:
            advantage /= self._reward_scale()
        values = self.space.to_decisions(arch)
        self._steps += 1
        for i, d in enumerate(self.space.decisions()):
            value = values.get(d.name)
            if value is None:
                continue  # switched off by the arch: the choice had no effect on the reward
            p = softmax(self.logits[i])
            grad = -p
            grad[d.index(value)] += 1.0
            grad *= advantage
            if self.entropy_coef:
                entropy = -float(np.sum(p * np.log(p + 1e-12)))
                grad += self.entropy_coef * (-p * (np.log(p + 1e-12) + entropy))
            self.logits[i] = self.logits[i] + self._step(i, grad)

    def _step(self, i: int, grad: np.ndarray) -> np.ndarray:
        """Ascent step for decision ``i`` (Adam with bias correction, or plain SGD)."""
        if self.optimizer == "sgd":
            return self.learning_rate * grad
        beta1, beta2 = 0.9, 0.999
        self._m[i] = beta1 * self._m[i] + (1 - beta1) * grad
        self._v[i] = beta2 * self._v[i] + (1 - beta2) * grad * grad
        m_hat = self._m[i] / (1 - beta1 ** self._steps)
        v_hat = self._v[i] / (1 - beta2 ** self._steps)
        return self.learning_rate * m_hat / (np.sqrt(v_hat) + 1e-8)

    def _track_reward(self, reward: float) -> None:
        # Welford's running mean and variance
        self._num_rewards += 1
        delta = reward - self._reward_mean
        self._reward_mean += delta / self._num_rewards
        self._reward_var += delta * (reward - self._reward_mean)

    def _reward_scale(self) -> float:
        if self._num_rewards < 2:
            return 1.0
        std = math.sqrt(self._reward_var / (self._num_rewards - 1))
        return std if std > 1e-12 else 1.0

    # ------------------------------------------------------------------ state
    def get_strategy_state(self) -> Dict[str, Any]:
        return {"logits": [l.tolist() for l in self.logits], "adam_m": [m.tolist() for m in self._m],
                "adam_v": [v.tolist() for v in self._v], "steps": self._steps, "baseline": self.baseline,
                "reward_mean": self._reward_mean, "reward_var": self._reward_var,
                "num_rewards": self._num_rewards, "known": self._known}

    def set_strategy_state(self, state: Mapping[str, Any]) -> None:
        self.logits = [np.asarray(l, dtype=np.float64) for l in state["logits"]]
        self._m = [np.asarray(m, dtype=np.float64) for m in state["adam_m"]]
        self._v = [np.asarray(v, dtype=np.float64) for v in state["adam_v"]]
        self._steps = int(state["steps"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self._reward_mean = float(state["reward_mean"])
        self._reward_var = float(state["reward_var"])
        self._num_rewards = int(state["num_rewards"])
        self._known = {k: float(v) for k, v in state["known"].items()}
