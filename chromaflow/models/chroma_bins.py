"""Chroma as a distribution over ab bins: targets, prior, and the annealed-mean read-out.

The chroma plane is cut into a square grid of ``n x n`` bins of ``step`` Lab
units centred on ab = 0 (``n = 22``, ``step = 10``: centres -105 ... 105, which
covers the ab gamut of sRGB).  A network head gives ``(B, n*n, H, W)`` logits;

* :func:`soft_targets` spreads each ground-truth ab over its four nearest bin
  centres (bilinear weights), so the cross-entropy target is exact in its mean;
* :func:`bin_prior` is the smoothed bin frequency of the training data;
* :func:`annealed_mean` reads a colour out of the distribution: the mean of
  ``p ** (1 / T)`` (Zhang et al. 2016), optionally divided by ``prior ** beta``
  first (a rebalancing towards rare colours chosen at inference instead of
  during training).  Where the distribution is peaked the read-out is vivid;
  where it is spread over opposite colours it stays near gray.

All ab values are CIE Lab units (about [-128, 127]); the functions know
nothing of images, files or networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bin_centers(n: int, step: float) -> torch.Tensor:
    """``(n * n, 2)`` ab centres, bin ``i * n + j`` at ``(a_i, b_j)``, ``a_i = (i - (n - 1) / 2) * step``."""
    c = (torch.arange(n, dtype=torch.float32) - (n - 1) / 2) * step
    a, b = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)


def soft_targets(ab: torch.Tensor, n: int, step: float) -> torch.Tensor:
    """Bilinear assignment of ab to the four nearest bin centres.

    Args:
        ab: ``(B, 2, H, W)`` chroma in Lab units (clamped to the grid).

    Returns:
        ``(B, n * n, H, W)`` non-negative weights summing to 1 per pixel, whose
        mean over :func:`bin_centers` equals the (clamped) ab.
    """
    b, _, h, w = ab.shape
    pos = (ab / step + (n - 1) / 2).clamp(0, n - 1)  # continuous bin coordinates
    lo = pos.floor().clamp(max=n - 2)
    frac = pos - lo
    lo = lo.long()
    out = torch.zeros(b, n * n, h, w, dtype=ab.dtype, device=ab.device)
    for da in (0, 1):
        wa = frac[:, 0] if da else 1 - frac[:, 0]
        for db in (0, 1):
            wb = frac[:, 1] if db else 1 - frac[:, 1]
            idx = (lo[:, 0] + da) * n + (lo[:, 1] + db)
            out.scatter_add_(1, idx[:, None], (wa * wb)[:, None])
    return out


def bin_prior(ab: torch.Tensor, n: int, step: float, sigma: float = 5.0, uniform: float = 0.01) -> torch.Tensor:
    """Smoothed frequency of each bin in ``ab``.

    Args:
        ab: chroma samples, Lab units, as ``(B, 2, H, W)``.
        sigma: Gaussian smoothing of the histogram, in Lab units.
        uniform: share of a uniform distribution mixed in, so that no bin has
            a vanishing prior (it is divided by at inference).

    Returns:
        ``(n * n,)`` probabilities (sum 1, each at least ``uniform / n**2``).
    """
    hist = torch.zeros(n * n, dtype=ab.dtype, device=ab.device)
    for start in range(0, ab.shape[0], 16):  # in chunks: the soft targets are n * n times the size of ab
        hist += soft_targets(ab[start:start + 16], n, step).sum(dim=(0, 2, 3))
    hist = hist.reshape(1, 1, n, n)
    radius = max(1, int(round(3 * sigma / step)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32) * step
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = (k[:, None] * k[None, :]) / k.sum() ** 2
    hist = F.conv2d(hist, k[None, None].to(hist.dtype), padding=radius).reshape(-1)
    hist = hist / hist.sum()
    return (1 - uniform) * hist + uniform / hist.numel()


def annealed_mean(
    logits: torch.Tensor, n: int, step: float, temperature: float = 0.38,
    prior: torch.Tensor | None = None, prior_power: float = 0.0,
) -> torch.Tensor:
    """The annealed mean of the bin distribution.

    Args:
        logits: ``(B, n * n, H, W)``.
        temperature: ``T`` in (0, 1]: 1 gives the mean, towards 0 the mode.
        prior: ``(n * n,)`` bin prior (:func:`bin_prior`), used when ``prior_power > 0``.
        prior_power: ``beta``: the distribution is divided by ``prior ** beta``
            before annealing (0: no rebalancing).

    Returns:
        ``(B, 2, H, W)`` ab in Lab units.
    """
    z = logits.float()
    if prior is not None and prior_power > 0:
        z = z - prior_power * torch.log(prior.to(z.device, z.dtype))[None, :, None, None]
    p = torch.softmax(z / temperature, dim=1)
    centers = bin_centers(n, step).to(p.device)
    return torch.einsum("bqhw,qc->bchw", p, centers)

