"""Guided upsampling of low-resolution chroma along full-resolution luminance edges.

Colorizers work at a reduced size; :func:`guided_upsample` restores full
resolution with the fast guided filter (He and Sun, 2015): the local linear
model ``ab = A * gray + B`` is fitted at low resolution, its coefficients are
upsampled bilinearly, and applied to the full-resolution gray, so colour edges
snap to luminance edges instead of bleeding across them.
"""

from __future__ import annotations

import cv2
import numpy as np


def guided_upsample(
    ab_low: np.ndarray,
    gray: np.ndarray,
    radius: int = 4,
    eps: float = 1e-3,
) -> np.ndarray:
    """Upsample chroma to the size of ``gray`` following its edges.

    Args:
        ab_low: ``(h, w, C)`` float chroma (Lab ab, about ``[-128, 127]``) at
            low resolution; ``C`` is usually 2.
        gray: ``(H, W)`` ``uint8`` (or float in ``[0, 1]``) full-resolution
            guide, ``H >= h`` and ``W >= w``.
        radius: box radius of the filter, in low-resolution pixels.
        eps: regularisation in squared guide units (guide scaled to ``[0, 1]``);
            larger values give smoother, less edge-following chroma.

    Returns:
        ``(H, W, C)`` ``float32`` chroma.
    """
    H, W = gray.shape[:2]
    h, w = ab_low.shape[:2]
    guide = gray.astype(np.float32) / 255.0 if gray.dtype == np.uint8 else gray.astype(np.float32)
    p = np.ascontiguousarray(ab_low, dtype=np.float32)
    if p.ndim == 2:
        p = p[..., None]
    if (h, w) == (H, W):
        guide_lo = guide
    else:
        guide_lo = cv2.resize(guide, (w, h), interpolation=cv2.INTER_AREA)
    ksize = (2 * radius + 1, 2 * radius + 1)

    def box(x: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(x, -1, ksize, borderType=cv2.BORDER_REFLECT)

    mean_i = box(guide_lo)
    var_i = box(guide_lo * guide_lo) - mean_i * mean_i
    coeffs = []
    for c in range(p.shape[2]):
        pc = p[..., c]
        mean_p = box(pc)
        cov_ip = box(guide_lo * pc) - mean_i * mean_p
        a = cov_ip / (var_i + eps)
        b = mean_p - a * mean_i
        coeffs.append((box(a), box(b)))
    out = np.empty((H, W, p.shape[2]), np.float32)
    for c, (a, b) in enumerate(coeffs):
        if (h, w) != (H, W):
            a = cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR)
            b = cv2.resize(b, (W, H), interpolation=cv2.INTER_LINEAR)
        out[..., c] = a * guide + b
    return out
