"""Temporal tools: optical flow, warping and occlusion masks."""

from chromaflow.temporal.flow import PRESETS, DISFlow, dis_flow
from chromaflow.temporal.warp import backward_warp, forward_backward_occlusion, valid_mask

__all__ = [
    "PRESETS",
    "DISFlow",
    "backward_warp",
    "dis_flow",
    "forward_backward_occlusion",
    "valid_mask",
]
