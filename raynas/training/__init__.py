"""Supernet training building blocks: the config, phases, subnet sampling strategies and
restricted sub-spaces.

The loop that runs them (single process or Ray Train workers) is ``trainables/supernet.py``.
OFA progressive shrinking (``raynas.training.progressive``) and PreNAS preferred sampling
(``raynas.training.preferred``) register themselves when first asked for by name.
"""
from raynas.training.config import SupernetTrainConfig
from raynas.training.sampling import (FixedArchSampling, SamplingStrategy, SandwichSampling, SubnetTask,
                                      UniformSampling, list_sampling_strategies, make_sampling_strategy,
                                      register_sampling_strategy)
from raynas.training.schedule import Phase, PhasePlan
from raynas.training.subspace import SubSpace, decision_dimension, space_dimensions

__all__ = ["SupernetTrainConfig", "SamplingStrategy", "SandwichSampling", "SubnetTask", "UniformSampling",
           "FixedArchSampling", "Phase", "PhasePlan", "SubSpace", "decision_dimension", "space_dimensions",
           "list_sampling_strategies", "make_sampling_strategy", "register_sampling_strategy"]
