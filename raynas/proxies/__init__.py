"""Zero-cost proxies: score an untrained network from one minibatch (or none).

``compute_proxy(name, model, batch, loss_fn)`` works on any ``nn.Module``; ``list_proxies()``
names them; ``register_proxy`` adds one. ``ProxyEvaluator`` scores archs of a space, and
``validate_proxies`` checks proxies against trained accuracies before a search trusts them.
"""
from raynas.proxies.registry import (ProxyBatch, ProxyContext, ProxySpec, compute_proxies, compute_proxy,
                                     list_proxies, proxy_spec, register_proxy, scored_layers)
from raynas.proxies.state import preserved_state
from raynas.proxies.gradient import group_scores, layer_scores, snip_saliency, snip_saliency_pair
from raynas.proxies.ranking import rank_correlations, rank_ensemble, top_precision
from raynas.proxies.best_rank import best_ranks, mean_best_rank
from raynas.proxies.evaluator import ProxyEvaluator, data_free_batch
from raynas.proxies.validate import ProxyValidation, validate_proxies

__all__ = [
    "ProxyBatch", "ProxyContext", "ProxySpec", "compute_proxies", "compute_proxy", "list_proxies",
    "proxy_spec", "register_proxy", "scored_layers", "preserved_state", "group_scores",
    "layer_scores", "snip_saliency", "snip_saliency_pair", "rank_correlations", "rank_ensemble",
    "top_precision",
    "best_ranks", "mean_best_rank", "ProxyEvaluator",
    "data_free_batch", "ProxyValidation", "validate_proxies",
]
