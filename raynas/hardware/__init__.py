"""Hardware-aware search: latency from lookup tables (read or built here by timing each
operator), from a table column (:class:`raynas.evaluators.tabular.TabularCost`), or measured on
a Ray actor pinned to the target device. Lookup tables and columns are cost functions usable in
constraints and objectives before evaluation (``raynas.search(cost_functions=[...])``)."""
from raynas.hardware.lut import Entry, LatencyLUT, LatencyTable
from raynas.hardware.lut_builder import build_latency_tables, collect_descriptors
from raynas.hardware.measure import Timing, time_module
from raynas.hardware.measured import MeasuredLatencyEvaluator

__all__ = ["Entry", "LatencyLUT", "LatencyTable", "build_latency_tables", "collect_descriptors",
           "Timing", "time_module", "MeasuredLatencyEvaluator"]
