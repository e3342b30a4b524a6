"""The noise schedule shared by training and sampling.

Continuous time ``t`` in [0, 1]; cosine schedule (Nichol and Dhariwal 2021):
``alpha_bar(t) = cos^2(((t + s) / (1 + s)) * pi / 2)`` with ``s = 0.008``,
clipped so that ``t = 1`` is (almost) pure noise.  A noisy sample is
``x_t = sqrt(alpha_bar) * x_0 + sqrt(1 - alpha_bar) * eps``.
"""

from __future__ import annotations

import math

import torch

_S = 0.008
_MIN_ALPHA_BAR = 1e-4


def alpha_bar(t: torch.Tensor) -> torch.Tensor:
    """Signal share ``alpha_bar(t)`` for ``t`` in [0, 1] (any shape), in ``[1e-4, 1]``."""
    f = torch.cos((t.float() + _S) / (1 + _S) * math.pi / 2) ** 2
    f0 = math.cos(_S / (1 + _S) * math.pi / 2) ** 2
    return (f / f0).clamp(_MIN_ALPHA_BAR, 1.0)


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Noise ``x0`` (``(B, ...)``) to level ``t`` (``(B,)``) with ``noise`` (shaped like ``x0``)."""
    a = alpha_bar(t).view(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise
