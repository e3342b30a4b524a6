"""Backward warping and occlusion masks for dense flow.

Flow arrays are ``float32`` ``(H, W, 2)`` holding ``(dx, dy)`` in pixels, in
the convention of :mod:`chromaflow.temporal.flow`: with ``flow`` computed from
``src`` to ``dst``, ``backward_warp(dst, flow)`` approximates ``src``.
"""

from __future__ import annotations

import cv2
import numpy as np

# cv2.remap handles at most 4 channels at a time.
_MAX_REMAP_CHANNELS = 4


def _check_flow(flow: np.ndarray) -> None:
    if not isinstance(flow, np.ndarray) or flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError("flow must be an (H, W, 2) array")


def _sample_maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + flow[..., 0].astype(np.float32), gy + flow[..., 1].astype(np.float32)


def backward_warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Sample ``image`` at ``x + flow(x)`` (bilinear, border replicate).

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` ``uint8`` or float array (values
            are not rescaled: uint8 stays in ``[0, 255]``).
        flow: ``(H, W, 2)`` flow ``(dx, dy)`` in pixels, same ``H, W``.

    Returns:
        ``float32`` array of ``image``'s shape: ``out(x) = image(x + flow(x))``.
        Samples outside the frame take the nearest border value; OpenCV's
        bilinear remap quantises sub-pixel positions to 1/32 px.
    """
    _check_flow(flow)
    if image.ndim not in (2, 3) or image.shape[:2] != flow.shape[:2]:
        raise ValueError(
            f"image {image.shape} must be (H, W) or (H, W, C) matching flow {flow.shape[:2]}"
        )
    map_x, map_y = _sample_maps(flow)
    img = np.ascontiguousarray(image, dtype=np.float32)

    def remap(a: np.ndarray) -> np.ndarray:
        return cv2.remap(
            np.ascontiguousarray(a), map_x, map_y,
            interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE,
        )

    if img.ndim == 2:
        return remap(img)
    chunks = [
        remap(img[..., c : c + _MAX_REMAP_CHANNELS]).reshape(*img.shape[:2], -1)
        for c in range(0, img.shape[2], _MAX_REMAP_CHANNELS)
    ]
    return np.concatenate(chunks, axis=2)


def valid_mask(flow: np.ndarray) -> np.ndarray:
    """``bool`` ``(H, W)``: True where ``x + flow(x)`` lies inside the frame.

    "Inside" means ``0 <= x + dx <= W - 1`` and ``0 <= y + dy <= H - 1``
    (pixel-centre coordinates).
    """
    _check_flow(flow)
    h, w = flow.shape[:2]
    tx, ty = _sample_maps(flow)
    return (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)


def forward_backward_occlusion(flow_fw: np.ndarray, flow_bw: np.ndarray) -> np.ndarray:
    """Forward-backward consistency occlusion test (Ruder et al. 2016).

    Args:
        flow_fw: ``(H, W, 2)`` flow from frame A to frame B.
        flow_bw: ``(H, W, 2)`` flow from frame B to frame A.

    Returns:
        ``bool`` ``(H, W)`` mask on frame A, True where occluded: with
        ``wb = backward_warp(flow_bw, flow_fw)``, a pixel is occluded if
        ``|fw + wb|^2 > 0.01 (|fw|^2 + |wb|^2) + 0.5`` or if ``x + fw(x)``
        leaves the frame.
    """
    _check_flow(flow_fw)
    _check_flow(flow_bw)
    if flow_fw.shape != flow_bw.shape:
        raise ValueError(f"flow shapes differ: {flow_fw.shape} vs {flow_bw.shape}")
    fw = flow_fw.astype(np.float32)
    wb = backward_warp(flow_bw, fw)
    lhs = np.sum((fw + wb) ** 2, axis=2)
    rhs = 0.01 * (np.sum(fw**2, axis=2) + np.sum(wb**2, axis=2)) + 0.5
    return (lhs > rhs) | ~valid_mask(fw)
