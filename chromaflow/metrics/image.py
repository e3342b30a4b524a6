"""Per-image quality metrics on ``uint8`` ``(H, W, 3)`` RGB arrays."""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

#: PSNR (dB) reported for identical images, where the true value is infinite.
PSNR_CAP = 100.0


def _check_pair(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"pred and gt differ in shape: {pred.shape} vs {gt.shape}")
    if pred.ndim != 3 or pred.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) RGB images, got {pred.shape}")


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB.

    Args:
        pred, gt: ``uint8`` ``(H, W, 3)`` images in ``[0, 255]``.

    Returns:
        ``10 log10(255^2 / MSE)`` with the MSE taken in float64 over all pixels
        and channels; identical images give :data:`PSNR_CAP` (100 dB) instead of
        infinity, and no value exceeds the cap.
    """
    _check_pair(pred, gt)
    mse = float(np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2))
    if mse == 0.0:
        return PSNR_CAP
    return min(PSNR_CAP, 10.0 * math.log10(255.0**2 / mse))


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Structural similarity, as ``skimage.metrics.structural_similarity``.

    Args:
        pred, gt: ``uint8`` ``(H, W, 3)`` images (each side at least 7 px).

    Returns:
        Mean SSIM over the image and channels (``channel_axis=2``,
        ``data_range=255``, skimage's default 7x7 uniform window); 1.0 for
        identical images.
    """
    _check_pair(pred, gt)
    return float(structural_similarity(pred, gt, channel_axis=2, data_range=255))


def colorfulness(rgb: np.ndarray, absolute: bool = False) -> float:
    """Hasler & Suesstrunk (2003) colourfulness M(3).

    With opponent channels ``rg = R - G`` and ``yb = (R + G) / 2 - B`` computed
    in float64 on ``[0, 255]`` values::

        M = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2)

    (population standard deviations over all pixels).  The channels are
    *signed*, as in the paper.  Some repositories use ``|R - G|`` and
    ``|(R + G) / 2 - B|`` instead, which gives lower numbers for images whose
    opponent values change sign; ``absolute=True`` reproduces that variant for
    comparison only.

    Args:
        rgb: ``uint8`` ``(H, W, 3)`` RGB image.

    Returns:
        Non-negative float; 0 for any gray image.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got {rgb.shape}")
    a = rgb.astype(np.float64)
    rg = a[..., 0] - a[..., 1]
    yb = 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    if absolute:
        rg, yb = np.abs(rg), np.abs(yb)
    std = math.sqrt(float(np.var(rg)) + float(np.var(yb)))
    mean = math.sqrt(float(np.mean(rg)) ** 2 + float(np.mean(yb)) ** 2)
    return std + 0.3 * mean
