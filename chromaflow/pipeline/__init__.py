"""The video pipeline: orchestration only."""

from chromaflow.pipeline.colorize import (
    ColorizeResult,
    build_conditions,
    colorize,
    colorize_frames,
    select_colorizer,
)
from chromaflow.pipeline.options import ColorizeOptions, ReferenceSpec

__all__ = [
    "ColorizeOptions",
    "ColorizeResult",
    "ReferenceSpec",
    "build_conditions",
    "colorize",
    "colorize_frames",
    "select_colorizer",
]
