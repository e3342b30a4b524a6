"""Loading and checking reference images given on the command line."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2

from chromaflow.errors import InputError
from chromaflow.guidance.conditions import Reference
from chromaflow.guidance.palette import is_grayscale_image

log = logging.getLogger("chromaflow")


def load_reference(path: str | Path, frame: int | None, width: int, height: int, n_frames: int) -> Reference:
    """Read a colour reference and fit it to the video.

    Args:
        path: an image file.
        frame: the video frame it is the colour version of, or ``None``.
        width, height: the video's frame size; a frame reference of another
            size is resized to it (with a notice).
        n_frames: the video's length, to check ``frame``.

    Raises:
        InputError: missing or unreadable image, grayscale image, frame index
            outside the video.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"reference image not found: {p}")
    if frame is not None and not 0 <= frame < n_frames:
        raise InputError(f"--reference-frame {frame} is outside the video (frames 0 to {n_frames - 1})")
    from chromaflow.io.source import open_source  # local import: the io package loads PyAV

    with open_source(p) as src:
        if src.info.n_frames != 1:
            raise InputError(f"reference {p} must be a single image")
        rgb = next(iter(src)).rgb
    if is_grayscale_image(rgb):
        raise InputError(f"reference {p} is grayscale: it has no colors to give")
    if frame is not None and rgb.shape[:2] != (height, width):
        log.warning(
            "reference %s is %dx%d, the video %dx%d: resizing it to the video",
            p.name,
            rgb.shape[1],
            rgb.shape[0],
            width,
            height,
        )
        interp = cv2.INTER_AREA if rgb.shape[1] > width else cv2.INTER_CUBIC
        rgb = cv2.resize(rgb, (width, height), interpolation=interp)
    return Reference(rgb=rgb, frame=frame)
