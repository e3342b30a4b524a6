"""Temporal tools, pure functions on arrays: optical flow, warping, reliability,
propagation along chained flow, fusion, shots and keyframes."""

from chromaflow.temporal.flow import (
    PRESETS,
    DISFlow,
    FlowEstimator,
    RAFTFlow,
    dis_flow,
    load_flow_estimator,
)
from chromaflow.temporal.keyframes import select_keyframes
from chromaflow.temporal.propagation import (
    Track,
    carry_track,
    fuse,
    more_reliable,
    recolor_track,
    reliability_gate,
    start_track,
    track_colors,
    warp_directly,
)
from chromaflow.temporal.reliability import fb_consistency, luminance_agreement, step_reliability, warp_reliability
from chromaflow.temporal.shots import Signature, detect_cuts, frame_signature, shot_ranges, signature_distance
from chromaflow.temporal.warp import backward_warp, forward_backward_occlusion, valid_mask

__all__ = [
    "PRESETS",
    "DISFlow",
    "FlowEstimator",
    "RAFTFlow",
    "Signature",
    "Track",
    "backward_warp",
    "carry_track",
    "detect_cuts",
    "dis_flow",
    "fb_consistency",
    "forward_backward_occlusion",
    "frame_signature",
    "fuse",
    "load_flow_estimator",
    "luminance_agreement",
    "more_reliable",
    "recolor_track",
    "reliability_gate",
    "select_keyframes",
    "shot_ranges",
    "signature_distance",
    "start_track",
    "step_reliability",
    "track_colors",
    "valid_mask",
    "warp_directly",
    "warp_reliability",
]
