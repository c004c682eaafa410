"""Supernet training building blocks: subnet sampling strategies, losses and the config.

The loop that runs them (single process or Ray Train workers) is ``trainables/supernet.py``.
"""
from raynas.training.config import SupernetTrainConfig
from raynas.training.sampling import (SamplingStrategy, SandwichSampling, SubnetTask, UniformSampling,
                                      list_sampling_strategies, make_sampling_strategy,
                                      register_sampling_strategy)

__all__ = ["SupernetTrainConfig", "SamplingStrategy", "SandwichSampling", "SubnetTask", "UniformSampling",
           "list_sampling_strategies", "make_sampling_strategy", "register_sampling_strategy"]
