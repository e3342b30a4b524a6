"""Carrying chroma along the flow and fusing candidates (pure functions).

Chroma (Lab ab) with a per-pixel confidence is carried frame to frame along
chained flow (a :class:`Track` maps each pixel back into its anchor frame, so
colours are sampled once, not blurred by a warp per frame), and its
confidence is the smaller of the carried confidence and the warp's
reliability, so a pixel is only as trusted as the weakest link of its chain.  Between two coloured keyframes, the
forward and backward candidates are blended by confidence and temporal
distance (the nearer keyframe weighs more), as L-C4 fuses overlapping clips
with distance-based weights.  At a keyframe derived from propagation, the
colours of an earlier coloured frame (a reference frame, a colorizer's
keyframe) warped straight onto it (:func:`warp_directly`) stand wherever they
are more reliable than the chained ones (:func:`more_reliable`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from chromaflow.color.lab import gray_to_lightness
from chromaflow.temporal.flow import FlowEstimator
from chromaflow.temporal.reliability import step_reliability
from chromaflow.temporal.warp import backward_warp


@dataclass(frozen=True)
class Track:
    """Chroma carried from an anchor frame, as a chained mapping into that frame.

    Carrying colours by warping them frame after frame would resample (and
    blur) them at every step.  A track instead chains the flow: it carries,
    per pixel, the position in the anchor frame its colour comes from, and the
    colour is sampled from the anchor once.  Pixels re-coloured by a
    correction carry their colour directly instead (``weight`` 0).

    Attributes:
        coords: ``(H, W, 2)`` ``float32`` ``(x, y)`` position in the anchor frame.
        weight: ``(H, W)`` ``float32`` share of the colour sampled from the anchor
            at ``coords``; the rest is ``ab``.
        ab: ``(H, W, 2)`` ``float32`` chroma carried directly.
        confidence: ``(H, W)`` ``float32`` in ``[0, 1]``.
    """

    coords: np.ndarray
    weight: np.ndarray
    ab: np.ndarray
    confidence: np.ndarray


def start_track(anchor_ab: np.ndarray, anchor_confidence: np.ndarray) -> Track:
    """A track at its anchor frame: every pixel maps to itself."""
    h, w = anchor_confidence.shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return Track(
        coords=np.dstack([gx, gy]),
        weight=np.ones((h, w), np.float32),
        ab=np.ascontiguousarray(anchor_ab, dtype=np.float32),
        confidence=np.ascontiguousarray(anchor_confidence, dtype=np.float32),
    )


def reliability_gate(reliability: np.ndarray) -> np.ndarray:
    """Soft threshold of a step's reliability: 1 above ``0.6``, 0 under ``0.2``, linear between.

    The small dips that noise and compression cause on every frame then do
    not pile up along a long chain, while occlusions and flow failures, which
    drive reliability towards 0, still cut it.
    """
    return np.clip((reliability - 0.2) / 0.4, 0.0, 1.0).astype(np.float32)


def carry_track(track: Track, flow_to_source: np.ndarray, reliability: np.ndarray) -> Track:
    """Move a track one frame along the flow.

    Args:
        track: the track at the source frame.
        flow_to_source: ``(H, W, 2)`` flow from the target frame to the source frame.
        reliability: ``(H, W)`` reliability of that warp (see
            :func:`~chromaflow.temporal.reliability.warp_reliability`).

    Returns:
        The track at the target frame; its confidence is the smaller of the
        carried confidence and the gated reliability of this step.
    """
    stacked = np.dstack([track.coords, track.weight, track.ab, track.confidence])
    warped = backward_warp(stacked, flow_to_source)
    conf = np.minimum(warped[..., 5], reliability_gate(reliability))
    return Track(
        coords=np.ascontiguousarray(warped[..., 0:2]),
        weight=np.clip(warped[..., 2], 0.0, 1.0),
        ab=np.ascontiguousarray(warped[..., 3:5]),
        confidence=np.clip(conf, 0.0, 1.0).astype(np.float32),
    )


def track_colors(track: Track, anchor_ab: np.ndarray) -> np.ndarray:
    """``(H, W, 2)`` chroma of a track: anchor colours sampled at ``coords``, blended with ``ab`` by ``weight``."""
    sampled = _sample_anchor(track, anchor_ab)
    w = track.weight[..., None]
    return (sampled * w + track.ab * (1.0 - w)).astype(np.float32)


def carry_values(track: Track, anchor_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Any per-pixel array of the anchor frame carried along a track (masks, hints).

    Args:
        track: the track from the anchor to the current frame.
        anchor_values: ``(H, W)`` or ``(H, W, C)`` float array at the anchor.

    Returns:
        ``(values, reliability)``: the anchor's values at each pixel's source
        (bilinear), and ``(H, W)`` how far to trust them: the share that comes
        from the anchor (0 where the pixel was re-coloured on the way) times the
        track's confidence.
    """
    return _sample_anchor(track, anchor_values), (track.weight * track.confidence).astype(np.float32)


def _sample_anchor(track: Track, values: np.ndarray) -> np.ndarray:
    """``values`` of the anchor frame (``(H, W[, C])``) read at each pixel's source, bilinearly."""
    return cv2.remap(
        np.ascontiguousarray(values, dtype=np.float32),
        track.coords[..., 0],
        track.coords[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def recolor_track(track: Track, ab: np.ndarray, replaced: np.ndarray, confidence: float) -> Track:
    """Pixels ``replaced`` (``(H, W)`` bool) now carry ``ab`` directly, with the given confidence."""
    r = replaced.astype(np.float32)
    return Track(
        coords=track.coords,
        weight=track.weight * (1.0 - r),
        ab=np.where(replaced[..., None], ab, track.ab).astype(np.float32),
        confidence=np.where(replaced, confidence, track.confidence).astype(np.float32),
    )


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


def warp_directly(
    flow: FlowEstimator,
    gray: np.ndarray,
    source_gray: np.ndarray,
    source_ab: np.ndarray,
    source_confidence: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A source frame's chroma warped straight onto a frame (one long-range flow, no chain).

    A chain of frame-to-frame flows drifts, and it drops a surface for good
    once the surface is hidden on the way; one flow between the two frames
    does neither, where the motion between them is small enough for it.

    Args:
        flow: the flow estimator.
        gray, source_gray: ``(H, W)`` ``uint8`` gray frames (the frame, the source).
        source_ab: ``(H, W, 2)`` chroma of the source frame.
        source_confidence: ``(H, W)`` confidence of ``source_ab`` (``None``: 1).

    Returns:
        ``(ab, confidence)``: ``(H, W, 2)`` warped chroma and ``(H, W)``
        ``float32`` confidence in ``[0, 1]``: the warp's reliability
        (forward-backward consistency and luminance agreement, see
        :func:`~chromaflow.temporal.reliability.step_reliability`) times the
        warped source confidence.
    """
    f_cur_src, f_src_cur = flow.pair(gray, source_gray)
    rel, _ = step_reliability(f_cur_src, f_src_cur, gray_to_lightness(gray), gray_to_lightness(source_gray))
    if source_confidence is not None:
        rel = rel * np.clip(backward_warp(source_confidence, f_cur_src), 0.0, 1.0)
    return backward_warp(source_ab, f_cur_src).astype(np.float32), rel.astype(np.float32)


def more_reliable(
    ab_a: np.ndarray, conf_a: np.ndarray, ab_b: np.ndarray, conf_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the candidate with the higher confidence (``a`` on ties).

    Args:
        ab_a, ab_b: ``(H, W, 2)`` chroma candidates.
        conf_a, conf_b: ``(H, W)`` their confidences.

    Returns:
        ``(ab, confidence)`` of the chosen candidates.
    """
    use_b = conf_b > conf_a
    ab = np.where(use_b[..., None], ab_b, ab_a).astype(np.float32)
    return ab, np.where(use_b, conf_b, conf_a).astype(np.float32)
