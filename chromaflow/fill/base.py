"""The fill step: complete a chroma map from reliable hints.

The temporal engine keeps the colours it trusts (propagated along the flow,
taken from references) as hints with a per-pixel confidence, and asks a
:class:`ChromaFill` to colour the rest.  Implementations: classical
colorization by optimization (:mod:`chromaflow.fill.levin`) and the
embedded model (masked diffusion sampling, :mod:`chromaflow.fill.model`);
more are registered backends of kind ``fill`` (:mod:`chromaflow.registry`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class ChromaFill(ABC):
    """Completes chroma where hints are missing or unreliable."""

    name: str = "fill"

    @abstractmethod
    def fill(self, lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Complete a chroma map.

        Args:
            lightness: ``(H, W)`` ``float32`` Lab L in ``[0, 100]``.
            ab: ``(H, W, 2)`` ``float32`` chroma hints (about ``[-128, 127]``);
                values where ``confidence`` is 0 are ignored.
            confidence: ``(H, W)`` ``float32`` in ``[0, 1]``: how much each
                hint is trusted (0 = unknown, 1 = keep as is).

        Returns:
            ``(H, W, 2)`` ``float32`` chroma: close to ``ab`` where confidence
            is high, completed along luminance elsewhere.
        """

    def for_conditions(self, conditions) -> ChromaFill:
        """This fill step for a run with ``conditions`` (a fill guided by the palette or the
        prompt returns a guided copy; the default ignores them and returns itself)."""
        return self
