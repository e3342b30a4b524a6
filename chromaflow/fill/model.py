"""The embedded model as the fill step (OmniFusion's inpainting).

Hints whose confidence reaches ``threshold`` are given to the model as known
chroma (the model was trained with binary hint masks) and kept exactly
through RePaint-style masked sampling; the rest is coloured by the model from
the frame's content and those hints, guided by the run's palette, prompt text
and seed (:meth:`ModelFill.for_conditions`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chromaflow.colorizers.chroma_model import ChromaModel, Guidance, ModelColorizer, ModelOptions
from chromaflow.fill.base import ChromaFill
from chromaflow.registry import register
from chromaflow.samplers.ddim import SamplerOptions


@dataclass(frozen=True)
class ModelFillOptions:
    """Options of the model fill step.

    Attributes:
        model: the embedded model's options; the sampler takes fewer steps
            than for keyframes (6), since the fill may run on many frames.
        threshold: hints at or above this confidence are known colours; the others are ignored.
    """

    model: ModelOptions = field(default_factory=lambda: ModelOptions(sampler=SamplerOptions(steps=6, temperature=1.0)))
    threshold: float = 0.5


class ModelFill(ChromaFill):
    """Hint completion by the embedded colorization model.

    Args:
        model: the loaded model.
        guidance: palette/text/seed to use while filling (default: none, seed 0).
        threshold: hints at or above this confidence are known; the others are ignored.
    """

    name = "model"

    def __init__(self, model: ChromaModel, guidance: Guidance | None = None, threshold: float = 0.5) -> None:
        self.model = model
        self.guidance = guidance or Guidance()
        self.threshold = threshold

    def for_conditions(self, conditions) -> ModelFill:
        """This fill guided by the run's palette, prompt text and seed."""
        return ModelFill(self.model, ModelColorizer(self.model).guidance_for(conditions), self.threshold)

    def fill(self, lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        known = (np.asarray(confidence) >= self.threshold).astype(np.float32)
        out = self.model.predict(lightness[None], self.guidance, hint_ab=ab[None], hint_conf=known[None])[0]
        return out.astype(np.float32)


@register("fill", "model", options=ModelFillOptions,
          description="the embedded model: RePaint-style masked diffusion sampling around the reliable colours")
def _make_model_fill(options: ModelFillOptions, runtime) -> ModelFill:
    return ModelFill(ChromaModel.load(options.model, runtime), threshold=options.threshold)
