"""OmniFusion's intra-frame inpainting with Stable Diffusion as the fill step: ``--fill sd``.

Where the engine's propagation could not colour a frame, the frame is
inpainted by a Stable Diffusion model (``--sd-model``; a base checkpoint, as
the paper's SD 1.5 / 2.0, or an inpainting one) the paper's way:

* the reliable colours (confidence at least ``threshold``) make the known
  image (the frame's lightness with their ab), encoded once; RePaint-style
  masked sampling re-imposes its latents, noised to the current step, on the
  latent cells whose pixels are all known, at every step
  (:func:`~chromaflow.diffusion.sampling.sample`); an inpainting UNet also
  gets its mask and masked-image inputs;
* the gray loss L_gray keeps the generated region's gray the frame's: at every
  step the predicted clean latent is decoded and the latent moved by
  ``gray_steps`` gradient steps (the paper's ablation: 50 steps, one
  optimisation per step);
* a ControlNet, when given, is conditioned on the gray frame as well.

The known pixels are kept exactly; only ab leaves, brought back to the frame
along its luminance edges.  The run's prompt (or the generic prompt) is the
text, and its seed the noise's (the same noise for every frame of a run).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from chromaflow.color.lab import lightness_to_gray
from chromaflow.colorizers.sd import SDModelOptions, SDRunner, load_sd, sd_check
from chromaflow.fill.base import ChromaFill
from chromaflow.registry import register

__all__ = ["SDFillOptions", "SDFill"]


@dataclass(frozen=True)
class SDFillOptions(SDModelOptions):
    """Options of the Stable Diffusion fill step (besides :class:`~chromaflow.colorizers.sd.SDModelOptions`).

    Attributes:
        steps: DDIM sampling steps (the paper's 50).
        threshold: colours at or above this confidence are known (kept, re-imposed every step).
        strength: the share of the schedule run from the known image's latent (1: from noise, as the paper).
    """

    steps: int = 50
    threshold: float = 0.5
    strength: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in (0, 1]; got {self.threshold}")
        if not 0.0 < float(self.strength) <= 1.0:
            raise ValueError(f"strength must be in (0, 1]; got {self.strength}")


class SDFill(ChromaFill):
    """RePaint + L_gray inpainting of the unreliable chroma (see the module doc).

    Args:
        parts: the loaded model; options: :class:`SDFillOptions`; runtime: device and generators.
        prompt: the text (``None``: the generic prompt); seed: the noise's seed.
    """

    name = "sd"

    def __init__(self, parts, options: SDFillOptions, runtime, prompt: str | None = None, seed: int = 0) -> None:
        self.runner = SDRunner(parts, options, runtime)
        self.options = options
        self.prompt = prompt
        self.seed = int(seed)

    def for_conditions(self, conditions) -> SDFill:
        """This fill with the run's prompt and seed."""
        copy = SDFill(self.runner.parts, self.options, self.runner.runtime, conditions.prompt, conditions.seed)
        copy.runner._texts = self.runner._texts  # encoded prompts are shared
        return copy

    def fill(self, lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Complete ``ab`` (see :meth:`ChromaFill.fill`): known colours kept exactly, the rest inpainted."""
        from chromaflow.diffusion.sampling import inpaint_inputs, sample

        r, o = self.runner, self.options
        lightness = np.asarray(lightness, np.float32)
        ab = np.asarray(ab, np.float32)
        known = np.asarray(confidence, np.float32) >= o.threshold
        if known.all():
            return ab.copy()
        size = r.size(*lightness.shape)
        dtype = r.parts.dtype
        gray = r.tensor(lightness_to_gray(lightness)[None], size)
        known_px = r.tensor(known[None].astype(np.float32), size, nearest=True)
        hint = np.where(known[..., None], ab, 0.0).astype(np.float32)
        rgb = torch.where(known_px > 0.5, r.tensor(r.colour_rgb(lightness[None], hint[None]), size),
                          gray.repeat(1, 3, 1, 1)).to(dtype)
        z_known, keep = r.known_latents(rgb, known_px)
        strength, init = (o.strength, z_known) if o.strength < 1.0 else (1.0, None)
        control = gray.repeat(1, 3, 1, 1).to(dtype) if r.parts.controlnet is not None else None
        inpaint = inpaint_inputs(r.parts, rgb, 1.0 - known_px) if r.parts.inpainting else None
        any_known = bool(keep.any())
        latents = sample(
            r.parts, r.text(self.prompt or o.prompt), r.uncond(), tuple(z_known.shape), r.runtime.generator(self.seed),
            steps=o.steps, guidance=o.guidance, known=z_known if any_known else None,
            known_mask=keep if any_known else None, gray=gray, gray_mask=1.0 - known_px, gray_steps=o.gray_steps,
            gray_weight=o.gray_weight, init=init, strength=strength, control=control, control_scale=o.control_scale,
            inpaint=inpaint,
        )
        pred = r.chroma(latents, lightness[None])[0]
        return np.where(known[..., None], ab, pred).astype(np.float32)


@register("fill", "sd", options=SDFillOptions, packages=("diffusers", "transformers"), check=sd_check,
          licence="the model's own (not shipped)",
          description="OmniFusion inpainting with Stable Diffusion: RePaint masked sampling + the gray loss "
                      "(--sd-model FOLDER|FILE|HUB_ID)")
def _make_sd_fill(options: SDFillOptions, runtime) -> SDFill:
    return SDFill(load_sd(options, runtime), options, runtime)

