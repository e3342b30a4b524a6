"""The embedded model as the fill step (OmniFusion's inpainting).

Reliable chroma is given to the model as hints with their confidence; hints
of confidence 1 are kept exactly through RePaint-style masked sampling, the
rest is coloured by the model from the frame's content and the hints.
"""

from __future__ import annotations

import numpy as np

from chromaflow.colorizers.chroma_model import ChromaModel, Guidance
from chromaflow.fill.base import ChromaFill


class ModelFill(ChromaFill):
    """Hint completion by the embedded colorization model.

    Args:
        model: the loaded model.
        guidance: palette/text/seed to use while filling (default: none, seed 0).
    """

    name = "model"

    def __init__(self, model: ChromaModel, guidance: Guidance | None = None) -> None:
        self.model = model
        self.guidance = guidance or Guidance()

    def fill(self, lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        conf = np.clip(np.asarray(confidence, np.float32), 0.0, 1.0)
        out = self.model.predict(lightness[None], self.guidance, hint_ab=ab[None], hint_conf=conf[None])[0]
        return out.astype(np.float32)
