"""The video pipeline: orchestration only."""

from chromaflow.pipeline.colorize import (
    ColorizeResult,
    build_conditions,
    build_engine,
    colorize,
    select_colorizer,
)
from chromaflow.pipeline.engine import EngineOptions, TemporalEngine
from chromaflow.pipeline.options import ColorizeOptions, ReferenceSpec

__all__ = [
    "ColorizeOptions",
    "ColorizeResult",
    "EngineOptions",
    "TemporalEngine",
    "build_engine",
    "ReferenceSpec",
    "build_conditions",
    "colorize",
    "select_colorizer",
]
