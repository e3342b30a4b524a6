"""Temporal tools: optical flow, warping and occlusion masks."""

from chromaflow.temporal.flow import (
    PRESETS,
    DISFlow,
    FlowEstimator,
    RAFTFlow,
    dis_flow,
    load_flow_estimator,
)
from chromaflow.temporal.warp import backward_warp, forward_backward_occlusion, valid_mask

__all__ = [
    "PRESETS",
    "DISFlow",
    "FlowEstimator",
    "RAFTFlow",
    "backward_warp",
    "dis_flow",
    "forward_backward_occlusion",
    "load_flow_estimator",
    "valid_mask",
]
