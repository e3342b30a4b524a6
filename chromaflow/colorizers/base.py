"""The interface every colorizer implements.

A colorizer maps gray frames (as Lab lightness) plus :class:`Conditions` to
chroma.  It knows nothing of files or videos: the temporal engine hands it the
keyframes of a shot together (at the engine's working resolution, so a
colorizer can make them agree), then propagates and corrects the rest, and
brings chroma back to full size along the luminance edges.  A prompt's objects
reach it as ``known`` hints from the engine's
:class:`~chromaflow.guidance.hints.PromptHints`, so a colorizer needs no
grounding of its own.  Colorizers are registered backends of kind
``colorizer`` (:mod:`chromaflow.registry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from chromaflow.guidance.conditions import Conditions


@dataclass(frozen=True)
class Carried:
    """How a frame's pixels come from an earlier anchor frame, along the motion.

    Attributes:
        anchor: the anchor's frame index.
        sample: maps an ``(h, w[, C])`` array of the anchor to ``(values,
            reliability)`` at the current frame
            (:func:`~chromaflow.temporal.propagation.carry_values`).
    """

    anchor: int
    sample: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


class Colorizer(ABC):
    """Predicts chroma for gray frames.

    Attributes:
        name: short identifier shown to users and in benchmark tables.
    """

    name: str = "colorizer"
    #: whether :meth:`colorize` also takes ``objects=``: per frame, the prompt's grounded objects
    #: (:class:`~chromaflow.guidance.grounding.GroundedObject`, phrase and mask), applied by the
    #: colorizer itself (regional prompts); otherwise their colours reach it as ``known`` hints
    takes_objects: bool = False

    @abstractmethod
    def colorize(
        self,
        lightness: np.ndarray,
        frame_indices: Sequence[int],
        conditions: Conditions,
        known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Predict chroma for a batch of frames.

        Args:
            lightness: ``(T, h, w)`` ``float32`` Lab L in ``[0, 100]``.
            frame_indices: the position of each frame in the video (``T`` ints),
                so time-aware colorizers can weigh references by distance.
            conditions: references, palette, prompt and seed.
            known: optional ``(ab (T, h, w, 2), confidence (T, h, w))``: colours
                already known (carried along the motion); confidence 1 must be
                kept, the colorizer completes the rest around them.

        Returns:
            ``(T, h, w, 2)`` ``float32`` Lab ab, about ``[-128, 127]``.
        """
