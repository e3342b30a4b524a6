"""Carrying chroma along the flow and fusing candidates (pure functions).

Chroma (Lab ab) with a per-pixel confidence is carried frame to frame: the
colour of frame ``t`` is the colour of frame ``t - 1`` (or ``t + 1``, going
backward) warped along the flow, and its confidence is the smaller of the
carried confidence and the warp's reliability, so a pixel is only as trusted
as the weakest link of its chain.  Between two coloured keyframes, the
forward and backward candidates are blended by confidence and temporal
distance (the nearer keyframe weighs more), as L-C4 fuses overlapping clips
with distance-based weights.
"""

from __future__ import annotations

import numpy as np

from chromaflow.temporal.warp import backward_warp


def carry(
    ab: np.ndarray,
    confidence: np.ndarray,
    flow_to_source: np.ndarray,
    reliability: np.ndarray,
    decay: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Carry chroma one frame along the flow.

    The step's reliability goes through a soft threshold (1 above ``0.6``, 0
    under ``0.2``, linear between) before it caps the carried confidence, so
    the small reliability dips that noise and compression cause on every frame
    do not pile up along a long chain; occlusions and flow failures, which
    drive reliability towards 0, still do.

    Args:
        ab: ``(H, W, 2)`` chroma of the source frame.
        confidence: ``(H, W)`` confidence of ``ab`` in ``[0, 1]``.
        flow_to_source: ``(H, W, 2)`` flow from the target frame to the source frame.
        reliability: ``(H, W)`` reliability of that warp (see
            :func:`~chromaflow.temporal.reliability.warp_reliability`).
        decay: factor applied to the confidence per step (``<= 1``).

    Returns:
        ``(ab, confidence)`` of the target frame.
    """
    warped = backward_warp(np.dstack([ab, confidence]), flow_to_source)
    gate = np.clip((reliability - 0.2) / 0.4, 0.0, 1.0)
    conf = np.minimum(warped[..., 2], gate) * decay
    return np.ascontiguousarray(warped[..., :2]), np.clip(conf, 0.0, 1.0).astype(np.float32)


def fuse(
    ab_fwd: np.ndarray,
    conf_fwd: np.ndarray,
    dist_fwd: int,
    ab_bwd: np.ndarray,
    conf_bwd: np.ndarray,
    dist_bwd: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend the forward and backward candidates of one frame.

    Weights are ``confidence * (1 - d / (d_fwd + d_bwd))``: the candidate whose
    keyframe is nearer weighs more, and an unreliable candidate gives way.

    Args:
        ab_fwd, ab_bwd: ``(H, W, 2)`` chroma carried from the previous and next keyframe.
        conf_fwd, conf_bwd: ``(H, W)`` their confidences.
        dist_fwd, dist_bwd: frames to the previous and next keyframe (``>= 0``).

    Returns:
        ``(ab, confidence)``: the blend, and the confidence-weighted mean of
        the two confidences (with the same distance weights).
    """
    total = max(dist_fwd + dist_bwd, 1)
    tf = 1.0 - dist_fwd / total
    tb = 1.0 - dist_bwd / total
    wf = conf_fwd * tf + 1e-6 * tf
    wb = conf_bwd * tb + 1e-6 * tb
    norm = wf + wb
    ab = (ab_fwd * wf[..., None] + ab_bwd * wb[..., None]) / norm[..., None]
    conf = (conf_fwd * wf + conf_bwd * wb) / norm
    return ab.astype(np.float32), conf.astype(np.float32)
