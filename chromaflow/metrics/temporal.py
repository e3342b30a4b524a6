"""Temporal-consistency metrics: colour distribution consistency and warping error.

* CDC (colour distribution consistency, Liu et al., "Temporally Consistent
  Video Colorization with Deep Feature Propagation and Self-regularization
  Learning", TCVC): Jensen-Shannon divergence between per-channel colour
  histograms of frames ``d`` apart, averaged.  Lower is more consistent.
* Warping error (Lai et al., ECCV 2018, "Learning Blind Video Temporal
  Consistency"): mean squared difference between a frame and its warped
  predecessor over non-occluded pixels.  Lower is more consistent.

Flow and occlusion are computed on ground-truth (or input) gray frames, never
on the prediction being scored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from chromaflow.temporal.flow import DISFlow
from chromaflow.temporal.warp import backward_warp, forward_backward_occlusion

#: Frame distances averaged by :func:`cdc_from_histograms` (as in TCVC).
CDC_DISTANCES: tuple[int, ...] = (1, 2, 4)


def channel_histograms(rgb: np.ndarray) -> np.ndarray:
    """Per-channel 256-bin histograms.

    Args:
        rgb: ``uint8`` ``(H, W, 3)`` image (channel order is kept as given).

    Returns:
        ``float64`` ``(3, 256)``; row ``c`` counts the values of channel ``c``
        divided by ``H * W`` (each row sums to 1).
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError("channel_histograms expects a uint8 (H, W, 3) image")
    n = rgb.shape[0] * rgb.shape[1]
    return np.stack(
        [np.bincount(rgb[..., c].ravel(), minlength=256) for c in range(3)]
    ).astype(np.float64) / n


def js_divergence(p: np.ndarray, q: np.ndarray) -> float | np.ndarray:
    """Jensen-Shannon divergence (natural log) along the last axis.

    ``JS = 0.5 KL(p || m) + 0.5 KL(q || m)`` with ``m = (p + q) / 2`` and
    ``0 log 0 = 0``.  Inputs are used as given (pass normalised histograms);
    the result lies in ``[0, ln 2]`` for probability vectors.

    Args:
        p, q: non-negative arrays of equal shape ``(..., K)``.

    Returns:
        A float for 1-D inputs, otherwise a ``float64`` array of shape ``(...)``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"p and q differ in shape: {p.shape} vs {q.shape}")
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> np.ndarray:
        pos = a > 0
        ratio = np.divide(a, m, out=np.ones_like(a), where=pos)
        return np.sum(np.where(pos, a * np.log(ratio), 0.0), axis=-1)

    js = 0.5 * kl(p) + 0.5 * kl(q)
    return float(js) if js.ndim == 0 else js


def cdc_from_histograms(
    hists: np.ndarray, distances: Sequence[int] = CDC_DISTANCES
) -> float:
    """Colour distribution consistency from per-frame channel histograms.

    For each channel and each distance ``d`` with ``T > d``: the mean over
    ``t = 0 .. T-1-d`` of ``JS(H_t, H_{t+d})``; then the mean over those
    distances, then over the 3 channels.

    Args:
        hists: ``(T, 3, 256)`` normalised histograms (see
            :func:`channel_histograms`).
        distances: frame distances to average.

    Returns:
        CDC as a float (lower is better), or ``nan`` if no distance fits.
    """
    h = np.asarray(hists, dtype=np.float64)
    if h.ndim != 3:
        raise ValueError(f"hists must be (T, C, K), got {h.shape}")
    t = h.shape[0]
    per_d = [js_divergence(h[:-d], h[d:]).mean(axis=0) for d in distances if 0 < d < t]
    if not per_d:
        return float("nan")
    return float(np.mean(np.mean(per_d, axis=0)))


def cdc(frames: Sequence[np.ndarray], distances: Sequence[int] = CDC_DISTANCES) -> float:
    """CDC of a list of ``uint8`` ``(H, W, 3)`` frames (see :func:`cdc_from_histograms`)."""
    if len(frames) == 0:
        return float("nan")
    return cdc_from_histograms(np.stack([channel_histograms(f) for f in frames]), distances)


def warp_error_pair(
    pred_prev: np.ndarray,
    pred_cur: np.ndarray,
    flow_cur_to_prev: np.ndarray,
    noc_mask: np.ndarray,
) -> float:
    """Lai et al. (2018) warping error of one frame pair.

    Args:
        pred_prev, pred_cur: ``uint8`` ``(H, W, 3)`` predicted frames t-1, t
            (scaled to ``[0, 1]`` here).
        flow_cur_to_prev: ``(H, W, 2)`` flow with ``cur(x) ~ prev(x + f(x))``.
        noc_mask: ``(H, W)`` bool/0-1 mask, 1 on non-occluded pixels.

    Returns:
        ``sum(noc * (pred_cur - warp(pred_prev))^2) / (3 * sum(noc))`` over
        pixels and the 3 channels, in ``[0, 1]``.  If the mask is empty the
        denominator is ``3 H W`` (so the result is 0), as in Lai et al.'s code.
    """
    if pred_prev.shape != pred_cur.shape or pred_cur.ndim != 3 or pred_cur.shape[2] != 3:
        raise ValueError("pred_prev and pred_cur must both be (H, W, 3) of equal size")
    if noc_mask.shape != pred_cur.shape[:2]:
        raise ValueError(f"noc_mask must be (H, W) = {pred_cur.shape[:2]}, got {noc_mask.shape}")
    prev = pred_prev.astype(np.float32) / 255.0
    cur = pred_cur.astype(np.float64) / 255.0
    warped = backward_warp(prev, flow_cur_to_prev).astype(np.float64)
    noc = noc_mask.astype(np.float64)[..., None]
    sq = noc * (cur - warped) ** 2
    n = 3.0 * float(noc.sum())
    if n == 0.0:
        n = float(sq.size)
    return float(sq.sum() / n)


class PairFlow(NamedTuple):
    """Flow between consecutive ground-truth frames and the non-occlusion mask.

    Attributes:
        cur_to_prev: ``float32`` ``(H, W, 2)``, ``cur(x) ~ prev(x + f(x))``.
        prev_to_cur: ``float32`` ``(H, W, 2)``, ``prev(x) ~ cur(x + f(x))``.
        noc_mask: ``bool`` ``(H, W)`` on frame t, True where not occluded.
    """

    cur_to_prev: np.ndarray
    prev_to_cur: np.ndarray
    noc_mask: np.ndarray


class WarpErrorFlow:
    """Computes :class:`PairFlow` from consecutive gray ground-truth frames.

    Args:
        preset, max_side: passed to :class:`~chromaflow.temporal.flow.DISFlow`.
    """

    def __init__(self, preset: str = "medium", max_side: int | None = None) -> None:
        self._flow = DISFlow(preset, max_side)

    def __call__(self, gt_prev: np.ndarray, gt_cur: np.ndarray) -> PairFlow:
        """Flow both ways and the forward-backward non-occlusion mask.

        Args:
            gt_prev, gt_cur: ``uint8`` ``(H, W)`` gray frames t-1 and t.
        """
        cur_to_prev = self._flow(gt_cur, gt_prev)
        prev_to_cur = self._flow(gt_prev, gt_cur)
        noc = ~forward_backward_occlusion(cur_to_prev, prev_to_cur)
        return PairFlow(cur_to_prev, prev_to_cur, noc)

    def warp_error(
        self,
        pred_prev: np.ndarray,
        pred_cur: np.ndarray,
        gt_prev: np.ndarray,
        gt_cur: np.ndarray,
    ) -> float:
        """Warping error of a predicted pair, flow from the gray GT pair."""
        pf = self(gt_prev, gt_cur)
        return warp_error_pair(pred_prev, pred_cur, pf.cur_to_prev, pf.noc_mask)
