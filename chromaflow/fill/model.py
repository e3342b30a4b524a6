"""The embedded model as the fill step (OmniFusion's inpainting).

Hints whose confidence reaches ``threshold`` are given to the model as known
chroma (the model was trained with binary hint masks) and kept exactly
through RePaint-style masked sampling; the rest is coloured by the model from
the frame's content and those hints.
"""

from __future__ import annotations

import numpy as np

from chromaflow.colorizers.chroma_model import ChromaModel, Guidance
from chromaflow.fill.base import ChromaFill


class ModelFill(ChromaFill):
    """Hint completion by the embedded colorization model.

    Args:
        model: the loaded model (see :meth:`ChromaModel.with_options` for a
            lighter sampler than the keyframes').
        guidance: palette/text/seed to use while filling (default: none, seed 0).
        threshold: hints at or above this confidence are known; the others are ignored.
    """

    name = "model"

    def __init__(self, model: ChromaModel, guidance: Guidance | None = None, threshold: float = 0.5) -> None:
        self.model = model
        self.guidance = guidance or Guidance()
        self.threshold = threshold

    def fill(self, lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        known = (np.asarray(confidence) >= self.threshold).astype(np.float32)
        out = self.model.predict(lightness[None], self.guidance, hint_ab=ab[None], hint_conf=known[None])[0]
        return out.astype(np.float32)
