"""The video pipeline: orchestration only."""

from chromaflow.pipeline.colorize import (
    ColorizeResult,
    build_conditions,
    build_engine,
    colorize,
)
from chromaflow.pipeline.engine import EngineOptions, TemporalEngine
from chromaflow.pipeline.options import Choice, ColorizeOptions, ReferenceSpec, config_to_toml, load_config
from chromaflow.pipeline.plan import Plan, ShotPlan

__all__ = [
    "Choice",
    "ColorizeOptions",
    "ColorizeResult",
    "EngineOptions",
    "Plan",
    "ReferenceSpec",
    "ShotPlan",
    "TemporalEngine",
    "build_conditions",
    "build_engine",
    "colorize",
    "config_to_toml",
    "load_config",
]
