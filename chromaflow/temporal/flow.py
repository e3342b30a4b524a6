"""Dense optical flow with OpenCV's DIS (Kroeger et al. 2016).

Convention (OpenCV's ``calc(prev=src, next=dst)``): the returned flow ``f`` is
a ``float32`` array of shape ``(H, W, 2)`` holding ``(dx, dy)`` in pixels such
that ``src(x) ~ dst(x + f(x))``.  Hence ``backward_warp(dst, f) ~ src``
(see :mod:`chromaflow.temporal.warp`).

A later release adds a ``FlowEstimator`` interface and RAFT; keep this module
free of I/O and state other than the reusable OpenCV object.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Preset name -> OpenCV DIS preset constant.
PRESETS: dict[str, int] = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def _check_gray_pair(src: np.ndarray, dst: np.ndarray) -> None:
    for name, a in (("src", src), ("dst", dst)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 2:
            raise ValueError(f"{name} must be a uint8 (H, W) gray image")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst differ in size: {src.shape} vs {dst.shape}")


class DISFlow:
    """Reusable DIS optical-flow estimator.

    Args:
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        max_side: if given, flow is computed on copies downscaled (``INTER_AREA``)
            so that the longer side is at most ``max_side`` pixels, then resized
            back bilinearly with vectors multiplied by the per-axis scale.

    Calling the object is deterministic for identical inputs.
    """

    def __init__(self, preset: str = "medium", max_side: int | None = None) -> None:
        key = preset.lower()
        if key not in PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose from {sorted(PRESETS)}")
        if max_side is not None and int(max_side) < 8:
            raise ValueError("max_side must be at least 8 pixels")
        self.preset = key
        self.max_side = None if max_side is None else int(max_side)
        self._dis = cv2.DISOpticalFlow_create(PRESETS[key])

    def __call__(self, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
        """Flow from ``src`` to ``dst``.

        Args:
            src, dst: ``uint8`` ``(H, W)`` gray frames of equal size.

        Returns:
            ``float32`` ``(H, W, 2)`` flow ``(dx, dy)`` in pixels of the input
            resolution with ``src(x) ~ dst(x + flow(x))``.
        """
        _check_gray_pair(src, dst)
        h, w = src.shape
        scale = 1.0
        if self.max_side is not None and max(h, w) > self.max_side:
            scale = self.max_side / max(h, w)
        if scale == 1.0:
            flow = self._dis.calc(np.ascontiguousarray(src), np.ascontiguousarray(dst), None)
            return np.ascontiguousarray(flow, dtype=np.float32)
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        s = cv2.resize(src, (sw, sh), interpolation=cv2.INTER_AREA)
        d = cv2.resize(dst, (sw, sh), interpolation=cv2.INTER_AREA)
        small = self._dis.calc(s, d, None)
        flow = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        flow[..., 0] *= w / sw
        flow[..., 1] *= h / sh
        return flow


def dis_flow(
    src_gray: np.ndarray,
    dst_gray: np.ndarray,
    preset: str = "medium",
    max_side: int | None = None,
) -> np.ndarray:
    """One-shot DIS flow from ``src_gray`` to ``dst_gray``.

    Args:
        src_gray, dst_gray: ``uint8`` ``(H, W)`` gray frames of equal size.
        preset: ``"ultrafast"``, ``"fast"`` or ``"medium"``.
        max_side: optional working-resolution cap on the longer side (pixels).

    Returns:
        ``float32`` ``(H, W, 2)`` flow with ``src(x) ~ dst(x + flow(x))``.
        Use :class:`DISFlow` to reuse the OpenCV object across many pairs.
    """
    return DISFlow(preset, max_side)(src_gray, dst_gray)
