"""Streaming per-video metric accumulation.

:class:`VideoMetrics` takes predicted and ground-truth frames one at a time and
keeps only the previous frame pair plus per-frame ``(3, 256)`` histograms, so
memory does not grow with video length beyond ``T * 2 * 3 * 256`` floats.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from chromaflow.metrics.image import colorfulness, psnr, ssim
from chromaflow.metrics.lpips import LPIPSAlex
from chromaflow.metrics.temporal import (
    WarpErrorFlow,
    cdc_from_histograms,
    channel_histograms,
    warp_error_pair,
)


class VideoMetrics:
    """Accumulate image and temporal metrics of one predicted video against its GT.

    Args:
        lpips: an LPIPS network (e.g. from
            :func:`~chromaflow.metrics.lpips.load_lpips_alex`) or ``None`` to skip it.
        warp_error: compute the Lai et al. warping error of consecutive
            predicted frames, with DIS flow and occlusion from the GT frames
            converted to gray (``cv2.COLOR_RGB2GRAY``).
        flow_preset, flow_max_side: DIS settings for the warping-error flow.
    """

    def __init__(
        self,
        lpips: LPIPSAlex | None = None,
        warp_error: bool = True,
        flow_preset: str = "medium",
        flow_max_side: int | None = None,
    ) -> None:
        self.lpips = lpips
        self._flow = WarpErrorFlow(flow_preset, flow_max_side) if warp_error else None
        self._per_frame: dict[str, list[float]] = {"psnr": [], "ssim": [], "colorfulness": []}
        if lpips is not None:
            self._per_frame["lpips"] = []
        if warp_error:
            self._per_frame["warp_error"] = []
        self._hists: list[np.ndarray] = []
        self._hists_gt: list[np.ndarray] = []
        self._prev_pred: np.ndarray | None = None
        self._prev_gray: np.ndarray | None = None
        self._shape: tuple[int, ...] | None = None

    def update(self, pred_rgb: np.ndarray, gt_rgb: np.ndarray) -> None:
        """Add frame ``t``.

        Args:
            pred_rgb, gt_rgb: ``uint8`` ``(H, W, 3)`` RGB frames of equal size
                (and equal to earlier frames' size).

        Raises:
            ValueError: on a size, shape or dtype mismatch.
        """
        for name, a in (("pred", pred_rgb), ("gt", gt_rgb)):
            if not isinstance(a, np.ndarray) or a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
                raise ValueError(f"{name} frame must be a uint8 (H, W, 3) RGB array")
        if pred_rgb.shape != gt_rgb.shape:
            raise ValueError(f"pred and gt frames differ in size: {pred_rgb.shape} vs {gt_rgb.shape}")
        if self._shape is not None and pred_rgb.shape != self._shape:
            raise ValueError(f"frame size changed from {self._shape} to {pred_rgb.shape}")
        self._shape = pred_rgb.shape

        pf = self._per_frame
        pf["psnr"].append(psnr(pred_rgb, gt_rgb))
        pf["ssim"].append(ssim(pred_rgb, gt_rgb))
        pf["colorfulness"].append(colorfulness(pred_rgb))
        if self.lpips is not None:
            pf["lpips"].append(float(self.lpips.distance(pred_rgb, gt_rgb)))
        self._hists.append(channel_histograms(pred_rgb))
        self._hists_gt.append(channel_histograms(gt_rgb))

        if self._flow is not None:
            gray = cv2.cvtColor(gt_rgb, cv2.COLOR_RGB2GRAY)
            if self._prev_pred is not None and self._prev_gray is not None:
                flow = self._flow(self._prev_gray, gray)
                pf["warp_error"].append(
                    warp_error_pair(self._prev_pred, pred_rgb, flow.cur_to_prev, flow.noc_mask)
                )
            self._prev_pred = pred_rgb.copy()
            self._prev_gray = gray

    @property
    def num_frames(self) -> int:
        """Number of frames added so far."""
        return len(self._hists)

    def result(self) -> dict[str, dict[str, Any]]:
        """Metrics so far.

        Returns:
            ``{"per_frame": {metric: [float, ...]}, "video": {metric: float}}``.
            Per-frame lists have length ``T`` (``warp_error``: ``T - 1``, one
            per consecutive pair).  ``video`` holds the mean of every per-frame
            list (``nan`` if empty), ``cdc`` of the prediction and ``cdc_gt`` of
            the ground truth (``nan`` for ``T < 2``).
        """
        per_frame = {k: [float(v) for v in vals] for k, vals in self._per_frame.items()}
        video = {k: (float(np.mean(v)) if v else math.nan) for k, v in per_frame.items()}
        video["cdc"] = cdc_from_histograms(np.stack(self._hists)) if self._hists else math.nan
        video["cdc_gt"] = cdc_from_histograms(np.stack(self._hists_gt)) if self._hists_gt else math.nan
        return {"per_frame": per_frame, "video": video}


def mean_over_videos(video_results: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Average each ``"video"`` metric across videos, ignoring ``nan``.

    Args:
        video_results: :meth:`VideoMetrics.result` dicts (a plain
            ``{metric: float}`` mapping is accepted too).

    Returns:
        ``{metric: mean}`` over every key present in any video; ``nan`` where
        a metric has no finite value.
    """
    values: dict[str, list[float]] = {}
    for res in video_results:
        video = res["video"] if "video" in res else res
        for k, v in video.items():
            values.setdefault(k, []).append(float(v))
    out = {}
    for k, vals in values.items():
        finite = [v for v in vals if not math.isnan(v)]
        out[k] = float(np.mean(finite)) if finite else math.nan
    return out
