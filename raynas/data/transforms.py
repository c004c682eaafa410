"""Batch transforms on tensors, on whatever device the batch lives: seeded augmentation,
normalisation and resizing. Evaluation and exported models share :func:`prepare_inputs`, so an
exported model sees exactly the inputs its reported accuracy was measured on."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from raynas.rng import as_rng


def augment_params(rng: Union[np.random.Generator, int], batch: int, pad: int = 4,
                   flip: bool = True):
    """The random crop offsets (top, left) and flip flags of :func:`augment` for ``batch`` images,
    as numpy arrays drawn from ``rng`` in a fixed order. Data-parallel ranks draw them for the
    global batch and each applies its own slice, so a split batch is augmented exactly as the
    whole batch would be."""
    rng = as_rng(rng)
    pad = max(int(pad), 0)
    top = rng.integers(0, 2 * pad + 1, size=batch)
    left = rng.integers(0, 2 * pad + 1, size=batch)
    flips = rng.random(batch) < 0.5 if flip else np.zeros(batch, dtype=bool)
    return top, left, flips


def apply_augment(x_u8: torch.Tensor, top, left, flips, pad: int = 4) -> torch.Tensor:
    """Crop (after zero padding ``pad``) at the given offsets and flip where ``flips`` is set,
    per image, in one gather. Returns a tensor of the same shape and dtype."""
    b, c, h, w = x_u8.shape
    pad = max(int(pad), 0)
    dev = x_u8.device
    top_t = torch.as_tensor(top).to(dev)
    left_t = torch.as_tensor(left).to(dev)
    flips_t = torch.as_tensor(flips).to(dev)
    padded = F.pad(x_u8, (pad, pad, pad, pad)) if pad else x_u8
    ar_h = torch.arange(h, device=dev)
    ar_w = torch.arange(w, device=dev)
    rows = top_t[:, None] + ar_h[None, :]                                     # [B, H]
    cols = left_t[:, None] + torch.where(flips_t[:, None], (w - 1) - ar_w[None, :], ar_w[None, :])  # [B, W]
    # one gather over flattened pixels (5x faster on CPU than broadcast advanced indexing)
    flat = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, flat).view(b, c, h, w)


def augment(x_u8: torch.Tensor, rng: Union[np.random.Generator, int], pad: int = 4,
            flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding ``pad`` and random horizontal flip, per image, in one gather.

    The random offsets come from the numpy ``rng`` (then move to the batch's device), so a seed
    gives the same augmentation on CPU and GPU. Returns a tensor of the same shape and dtype.
    """
    rng = as_rng(rng)
    b = x_u8.shape[0]
    if b == 0 or (pad <= 0 and not flip):
        return x_u8.clone()
    return apply_augment(x_u8, *augment_params(rng, b, pad, flip), pad=pad)


def cutout(x: torch.Tensor, rng: Union[np.random.Generator, int], length: int = 16) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017), as DARTS applies it: zero a ``length`` x ``length`` square
    (clipped at the border) centred on a uniformly drawn pixel of each image."""
    rng = as_rng(rng)
    b, _, h, w = x.shape
    cy, cx = draw_cutout(rng, b, h, w)
    return cutout_at(x, torch.from_numpy(cy).to(x.device), torch.from_numpy(cx).to(x.device), length)


def draw_cutout(rng: np.random.Generator, n: int, height: int, width: int) -> Tuple[np.ndarray, np.ndarray]:
    """The random centres of :func:`cutout` for ``n`` images."""
    return rng.integers(0, height, size=n), rng.integers(0, width, size=n)


def cutout_at(x: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, length: int = 16) -> torch.Tensor:
    """Zero the square ``[cy - length//2, cy + length//2) x [cx - length//2, cx + length//2)``
    (clipped) of each image; centres are tensors on the batch's device."""
    _, _, h, w = x.shape
    half = int(length) // 2
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    in_rows = (rows >= (cy[:, None] - half)) & (rows < (cy[:, None] + half))     # [B, H]
    in_cols = (cols >= (cx[:, None] - half)) & (cols < (cx[:, None] + half))     # [B, W]
    hole = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]                   # [B, 1, H, W]
    return x.masked_fill(hole, 0)


def to_float(x_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float],
             dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 images -> normalised floats ``(x/255 - mean) / std`` per channel."""
    mean_t = torch.as_tensor(mean, dtype=dtype, device=x_u8.device).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=dtype, device=x_u8.device).view(1, -1, 1, 1)
    return (x_u8.to(dtype) / 255.0 - mean_t) / std_t


def resize(x: torch.Tensor, resolution: Optional[int]) -> torch.Tensor:
    """Bilinear resize of a float batch to ``resolution`` x ``resolution`` (antialias off, as in
    OFA's elastic-resolution evaluation); a no-op when the size already matches or is None."""
    if resolution is None or (x.shape[-2] == resolution and x.shape[-1] == resolution):
        return x
    return F.interpolate(x, size=(int(resolution), int(resolution)), mode="bilinear",
                         align_corners=False, antialias=False)


def resize_uint8(images: Union[torch.Tensor, np.ndarray], size: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 [N, C, H, W] -> uint8 [N, C, size, size], once for a whole set (area averaging when
    downsampling, bilinear otherwise), in chunks so the float copies stay small."""
    images = torch.as_tensor(images)
    out = torch.empty((len(images), images.shape[1], size, size), dtype=torch.uint8)
    down = size <= min(images.shape[-2:])
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].float()
        if down:
            y = F.interpolate(x, size=(size, size), mode="area")
        else:
            y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        out[start:start + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def prepare_inputs(x_u8: torch.Tensor, mean: Sequence[float], std: Sequence[float],
                   resolution: Optional[int] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """What a model is fed at evaluation: normalise, then resize to its input resolution."""
    return resize(to_float(x_u8, mean, std, dtype), resolution)
