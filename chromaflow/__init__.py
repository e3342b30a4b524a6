"""chromaflow: temporally consistent colorization of black-and-white video.

Python API::

    import chromaflow
    from chromaflow import ColorizeOptions, ReferenceSpec

    chromaflow.colorize("in.mp4", "out.mp4", ColorizeOptions(
        references=(ReferenceSpec("frame0_color.png", frame=0),)))
"""

from chromaflow.errors import ChromaflowError
from chromaflow.pipeline import ColorizeOptions, ColorizeResult, ReferenceSpec, colorize

__version__ = "0.1.0"

__all__ = ["ChromaflowError", "ColorizeOptions", "ColorizeResult", "ReferenceSpec", "__version__", "colorize"]
