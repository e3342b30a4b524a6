"""Video and frame input/output: streaming sources and atomic sinks."""

from chromaflow.io.sink import FrameSink, check_output_path, open_sink
from chromaflow.io.source import (
    DEFAULT_FPS,
    ArraySource,
    Frame,
    FrameSource,
    SourceInfo,
    is_probably_color,
    open_source,
)

__all__ = [
    "DEFAULT_FPS",
    "ArraySource",
    "Frame",
    "FrameSink",
    "FrameSource",
    "SourceInfo",
    "check_output_path",
    "is_probably_color",
    "open_source",
    "open_sink",
]
