"""Data shipped with the package: a short sample clip and its reference frame."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _path(name: str) -> Path:
    return Path(str(resources.files(__package__) / name))


def sample_clip() -> Path:
    """The gray sample clip (8 s, 384x288, 10 fps, with audio); see ``README.md`` here."""
    return _path("sample_pedestrians.mp4")


def sample_reference() -> tuple[Path, int]:
    """The color version of the sample's frame 0, and that frame index."""
    return _path("sample_pedestrians_ref0.png"), 0
