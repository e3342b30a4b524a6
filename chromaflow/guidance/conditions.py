"""The conditions a colorizer receives besides the frames."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from chromaflow.guidance.palette import Palette


@dataclass(frozen=True)
class Reference:
    """A colour image that tells the colorizer what colours to use.

    Attributes:
        rgb: ``(H, W, 3)`` ``uint8`` sRGB, already resized to the video's size
            when it is a frame of the video.
        frame: index of the video frame this image is the colour version of,
            or ``None`` for a related photo that is not a frame of the video.
    """

    rgb: np.ndarray
    frame: int | None = None


@dataclass(frozen=True)
class Conditions:
    """Everything that steers colours, beyond the gray frames themselves.

    Attributes:
        references: colour references (exemplars).
        palette: a global palette, or ``None``.
        prompt: free text, or ``None``.
        seed: seed for every random choice a colorizer makes.
        palette_per_shot: gives each shot its own palette from a few of its
            frames (``(h, w)`` ``uint8`` gray), e.g. from their content tags;
            ``None``: ``palette`` serves the whole video.
    """

    references: tuple[Reference, ...] = field(default_factory=tuple)
    palette: Palette | None = None
    prompt: str | None = None
    seed: int = 0
    palette_per_shot: Callable[[Sequence[np.ndarray]], Palette] | None = None

    @property
    def is_empty(self) -> bool:
        return (not self.references and self.palette is None and not self.prompt
                and self.palette_per_shot is None)
