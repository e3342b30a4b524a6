"""chromaflow: temporally consistent colorization of black-and-white video.

Python API::

    import chromaflow
    from chromaflow import ColorizeOptions, ReferenceSpec

    chromaflow.colorize("in.mp4", "out.mp4", ColorizeOptions(
        references=(ReferenceSpec("frame0_color.png", frame=0),)))
"""

from chromaflow.errors import ChromaflowError

_PIPELINE = ("ColorizeOptions", "ColorizeResult", "ReferenceSpec", "colorize")


def __getattr__(name: str):
    # the pipeline (and with it PyAV and the video I/O) is imported on first use, so that parts that need no
    # video, such as training on a machine without PyAV (scripts/gpu_train.sh), import without it
    if name in _PIPELINE:
        from chromaflow import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'chromaflow' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = ["ChromaflowError", "ColorizeOptions", "ColorizeResult", "ReferenceSpec", "__version__", "colorize"]
