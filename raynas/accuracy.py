"""Top-1 accuracy of a classifier over labelled batches: the one evaluation loop of raynas.

The trainer, the weight-inherited and fine-tune evaluators and DARTS retraining all score a
model this way, so their numbers are comparable: eval mode for the loop (the training flag is
restored after it), no gradients, hits summed on the batches' device and read once at the end
(no host synchronisation per batch).
"""
from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

Batch = Tuple[torch.Tensor, torch.Tensor]


class Top1(NamedTuple):
    """Top-1 accuracy (percent), mean cross-entropy (NaN unless asked for) and image count."""

    accuracy: float
    loss: float
    count: int


def top1(model: nn.Module, batches: Iterable[Batch], *, with_loss: bool = False) -> Top1:
    """Score ``model`` on ``(inputs, labels)`` batches prepared by the caller (normalised,
    resized, on the model's device; autocast is the caller's context). ``with_loss`` also sums
    the cross-entropy of the float32 logits, in float64."""
    was_training = model.training
    model.eval()
    correct, loss_sum, count = None, None, 0
    try:
        # no_grad, not inference_mode: a module that caches a tensor in forward must still be
        # trainable after an evaluation in the middle of a run
        with torch.no_grad():
            for x, y in batches:
                logits = model(x)
                hits = (logits.argmax(dim=1) == y).sum()
                correct = hits if correct is None else correct + hits
                if with_loss:
                    loss = F.cross_entropy(logits.float(), y, reduction="sum").double()
                    loss_sum = loss if loss_sum is None else loss_sum + loss
                count += len(y)
    finally:
        model.train(was_training)
    hits_total = 0 if correct is None else int(correct)
    mean_loss = float(loss_sum) / count if with_loss and count else math.nan
    return Top1(100.0 * hits_total / max(1, count), mean_loss, count)
