"""Stable Diffusion keyframes (GCG's joint keyframes, prompt-guided colour): ``--colorizer sd``.

Needs ``pip install 'chromaflow[diffusers]'`` and a Stable Diffusion 1.x / 2.x
model the user has (``--sd-model``: a diffusers folder, a single-file
checkpoint, or a hub id when online; :mod:`chromaflow.diffusion.loading`).
The keyframes of one call (the engine hands a shot's keyframes together) are
coloured jointly:

1. each keyframe's lightness is resized so its short side is ``resolution``
   (sides rounded to the model's multiple, 64 for Stable Diffusion);
2. the gray is kept by conditioning on it: through the ControlNet the user
   gives (``--controlnet``: a luminance / brightness ControlNet, fed the gray
   frame as RGB), or, without one, by image-to-image from the gray frame's
   latent at ``strength``; in both cases with the gray loss L_gray
   (``gray_steps``, :mod:`chromaflow.diffusion.sampling`);
3. self-attention is extended across the keyframes (``joint``, in groups of
   ``max_group``), and a colour source joins that attention as one more image
   of the group, its latent re-imposed at every step (the reference-guided
   stage of GCG): the conditions' first reference, or, when the engine
   re-colours a keyframe inside a shot (it then gives the colours carried
   there as ``known``), the last keyframe this colorizer coloured
   (``memory``);
4. the prompt goes to the model's text encoder: the user's prompt, or in
   automatic mode the generic ``prompt``; each grounded object's phrase
   (``"a red car"``) steers the cross-attention inside its mask (regional
   cross-attention, :mod:`chromaflow.diffusion.attention`), the rest of the
   frame keeps the frame's prompt; ``negative_prompt`` is the unconditional
   half of classifier-free guidance;
5. ``known`` colours of confidence 1 are kept: their latents re-imposed at
   every step (RePaint), their pixels pasted back;
6. only ab leaves: the decoded colour image's Lab ab at the model's size,
   brought back to the frame along its luminance edges; the frame's own
   lightness is never changed.

The Stable Diffusion parts are loaded once per runtime (a colorizer and a
fill step on the same model share them), in float16 on a CUDA GPU (``half``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.color.lab import lab_to_rgb, lightness_to_gray, rgb_to_lab
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.base import Colorizer
from chromaflow.guidance.conditions import Conditions
from chromaflow.registry import register

log = logging.getLogger("chromaflow")

__all__ = ["SDModelOptions", "SDColorizerOptions", "SDColorizer", "SDRunner", "GENERIC_PROMPT"]

#: the generic prompt of automatic mode (the prompt-based paper's automatic colorization)
GENERIC_PROMPT = "a colorful, realistic photo, natural colors"
#: what the unconditional half of classifier-free guidance steers away from
NEGATIVE_PROMPT = "black and white, grayscale, monochrome, sepia, desaturated"


@dataclass(frozen=True)
class SDModelOptions:
    """Options every Stable Diffusion backend shares.

    Attributes:
        model: the Stable Diffusion model: a diffusers folder, a single-file
            checkpoint (.safetensors / .ckpt), or a hub id (downloaded only
            when online); ``--sd-model``.
        controlnet: a ControlNet conditioned on the gray frame (folder, file or
            hub id; a luminance / brightness ControlNet); ``--controlnet``.
        steps: DDIM sampling steps.
        guidance: classifier-free guidance scale (1: none).
        gray_steps: L_gray optimisation steps per sampling step (0: off).
        gray_weight: the fraction of the linearised gray error each L_gray step removes.
        resolution: short side, in pixels, at which the model sees a frame.
        prompt: the generic prompt where the run has none.
        negative_prompt: the prompt guidance steers away from.
        control_scale: the ControlNet's conditioning scale.
        half: float16 on a CUDA GPU (float32 elsewhere).
    """

    model: str | None = None
    controlnet: str | None = None
    steps: int = 30
    guidance: float = 7.5
    gray_steps: int = 1
    gray_weight: float = 0.5
    resolution: int = 512
    prompt: str = GENERIC_PROMPT
    negative_prompt: str = NEGATIVE_PROMPT
    control_scale: float = 1.0
    half: bool = True

    def __post_init__(self) -> None:
        if int(self.steps) < 1:
            raise ValueError(f"steps must be at least 1; got {self.steps}")
        if int(self.gray_steps) < 0:
            raise ValueError(f"gray_steps must be 0 or more; got {self.gray_steps}")
        if not 0.0 < float(self.gray_weight) <= 1.0:
            raise ValueError(f"gray_weight must be in (0, 1]; got {self.gray_weight}")
        if int(self.resolution) < 64:
            raise ValueError(f"resolution must be at least 64; got {self.resolution}")
        if float(self.guidance) < 1.0:
            raise ValueError(f"guidance must be at least 1; got {self.guidance}")


@dataclass(frozen=True)
class SDColorizerOptions(SDModelOptions):
    """Options of the Stable Diffusion keyframe colorizer (besides :class:`SDModelOptions`).

    Attributes:
        strength: without a ControlNet, the share of the schedule run from the
            gray frame's latent (1: from noise); with one, sampling starts from noise.
        joint: the keyframes of a call attend to one another (GCG's extended self-attention).
        max_group: keyframes coloured jointly at most.
        memory: a keyframe re-coloured inside a shot takes the last coloured keyframe as its colour source.
    """

    strength: float = 0.8
    joint: bool = True
    max_group: int = 4
    memory: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < float(self.strength) <= 1.0:
            raise ValueError(f"strength must be in (0, 1]; got {self.strength}")
        if int(self.max_group) < 1:
            raise ValueError(f"max_group must be at least 1; got {self.max_group}")


def load_sd(options: SDModelOptions, runtime):
    """The :class:`~chromaflow.diffusion.loading.SDParts` of ``options`` on ``runtime``'s device (loaded once)."""
    from chromaflow.diffusion.loading import load_parts

    device = runtime.device
    dtype = torch.float16 if device.type == "cuda" and options.half else torch.float32
    key = ("stable-diffusion", options.model, options.controlnet, str(device), str(dtype))
    return runtime.shared(key, lambda: load_parts(options.model, options.controlnet, device, dtype))


class SDRunner:
    """What both backends do around the sampler: sizes, gray, prompts, colours in and chroma out.

    Args:
        parts: the loaded model; options: :class:`SDModelOptions`; runtime: device and generators.
    """

    def __init__(self, parts, options: SDModelOptions, runtime) -> None:
        self.parts = parts
        self.options = options
        self.runtime = runtime
        self._texts: dict[str, torch.Tensor] = {}

    def size(self, h: int, w: int) -> tuple[int, int]:
        """``(H, W)`` the model sees an ``h x w`` frame at: short side ``resolution``, multiples of the model's."""
        m = self.parts.multiple
        s = self.options.resolution / min(h, w)
        return max(m, round(h * s / m) * m), max(m, round(w * s / m) * m)

    def text(self, prompt: str) -> torch.Tensor:
        """``(1, S, D)`` text states of ``prompt`` (encoded once)."""
        if prompt not in self._texts:
            from chromaflow.diffusion.sampling import encode_prompts

            self._texts[prompt] = encode_prompts(self.parts, [prompt])
        return self._texts[prompt]

    def uncond(self) -> torch.Tensor | None:
        return self.text(self.options.negative_prompt) if self.options.guidance > 1.0 else None

    def tensor(self, images: np.ndarray, size: tuple[int, int], nearest: bool = False) -> torch.Tensor:
        """``(T, h, w[, C])`` float images -> ``(T, C, H, W)`` on the device (area / bilinear, or nearest)."""
        H, W = size
        out = []
        for x in np.asarray(images, np.float32):
            shrink = x.shape[0] > H or x.shape[1] > W
            interp = cv2.INTER_NEAREST if nearest else (cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
            y = cv2.resize(x, (W, H), interpolation=interp)
            out.append(y[..., None] if y.ndim == 2 else y)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(self.parts.device)

    def colour_rgb(self, lightness: np.ndarray, ab: np.ndarray) -> np.ndarray:
        """``(T, h, w)`` L and ``(T, h, w, 2)`` ab -> ``(T, h, w, 3)`` sRGB in [0, 1]."""
        return np.stack([lab_to_rgb(np.concatenate([L[..., None], a], -1)) for L, a in zip(lightness, ab)])

    def known_latents(self, rgb: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latents of ``rgb`` ``(T, 3, H, W)`` and the ``(T, 1, h, w)`` mask of latent cells whose pixels are
        all ``known`` (``(T, 1, H, W)`` in {0, 1}).  Only the images with a known cell are encoded (the
        sampler reads the latents nowhere else); the others' latents are zeros."""
        from chromaflow.diffusion.sampling import encode_images

        f = self.parts.vae_scale
        keep = (-F.max_pool2d(-known.float(), f, f) >= 0.5).to(self.parts.dtype)
        rows = keep.flatten(1).amax(1) > 0
        if bool(rows.all()):
            return encode_images(self.parts, rgb), keep
        shape = (len(rgb), self.parts.latent_channels, *keep.shape[-2:])
        latents = torch.zeros(shape, device=self.parts.device, dtype=self.parts.dtype)
        if bool(rows.any()):
            latents[rows] = encode_images(self.parts, rgb[rows]).to(latents.dtype)
        return latents, keep

    def chroma(self, latents: torch.Tensor, lightness: np.ndarray) -> np.ndarray:
        """Decoded latents -> ``(T, h, w, 2)`` Lab ab of the colour image, brought to the frames' size."""
        from chromaflow.diffusion.sampling import decode_latents

        with torch.no_grad():
            rgb = decode_latents(self.parts, latents).permute(0, 2, 3, 1).cpu().numpy()
        out = np.empty((*lightness.shape, 2), np.float32)
        for i, L in enumerate(lightness):
            h, w = L.shape
            ab = rgb_to_lab(np.ascontiguousarray(rgb[i]))[..., 1:]
            low = cv2.resize(ab, (min(w, ab.shape[1]), min(h, ab.shape[0])), interpolation=cv2.INTER_AREA)
            out[i] = guided_upsample(low, lightness_to_gray(L))
        return out

    def strength_and_init(self, strength: float, gray_rgb: torch.Tensor) -> tuple[float, torch.Tensor | None]:
        """Image-to-image from the gray frame without a ControlNet; from noise with one."""
        from chromaflow.diffusion.sampling import encode_images

        if self.parts.controlnet is not None or strength >= 1.0:
            return 1.0, None
        return strength, encode_images(self.parts, gray_rgb)


def phrase_text(phrase) -> str:
    """A grounded object's phrase as a prompt: ``"a red car"``."""
    return f"a {phrase.name} {phrase.object}".strip()


def regions_of(runner: SDRunner, objects, count: int, size: tuple[int, int]):
    """:class:`~chromaflow.diffusion.attention.Regions` of per-frame grounded objects (``None``: none found).

    ``objects[i]``: the :class:`~chromaflow.guidance.grounding.GroundedObject` of frame ``i``; rows for
    ``count`` batch images (frames past ``len(objects)``, a colour source, get zero masks)."""
    from chromaflow.diffusion.attention import Regions

    texts: list[str] = []
    for frame in objects or ():
        for obj in frame:
            if obj.found and phrase_text(obj.phrase) not in texts:
                texts.append(phrase_text(obj.phrase))
    if not texts:
        return None
    f = runner.parts.vae_scale
    masks = torch.zeros(count, len(texts), size[0] // f, size[1] // f)
    for i, frame in enumerate(objects):
        for obj in frame:
            if obj.found:
                m = runner.tensor(obj.mask[None], size)[0, 0].cpu()
                k = texts.index(phrase_text(obj.phrase))
                masks[i, k] = torch.maximum(masks[i, k], F.adaptive_avg_pool2d(m[None], masks.shape[-2:])[0])
    masks = masks / masks.sum(1, keepdim=True).clamp(min=1.0)
    embeds = torch.cat([runner.text(t) for t in texts])
    return Regions(embeds, masks.to(runner.parts.device, runner.parts.dtype), slice(0, count))


class SDColorizer(Colorizer):
    """Keyframes coloured jointly by Stable Diffusion (see the module doc)."""

    name = "sd"
    takes_objects = True

    def __init__(self, parts, options: SDColorizerOptions, runtime) -> None:
        self.runner = SDRunner(parts, options, runtime)
        self.options = options
        self._last: tuple[np.ndarray, np.ndarray] | None = None  # (L (h, w), ab (h, w, 2)) of the last keyframe

    def colorize(self, lightness: np.ndarray, frame_indices: Sequence[int], conditions: Conditions,
                 known: tuple[np.ndarray, np.ndarray] | None = None, objects=None) -> np.ndarray:
        """Chroma of the keyframes (see :meth:`Colorizer.colorize`); ``objects``: per frame, the prompt's
        grounded objects, whose phrases steer the model inside their masks."""
        lightness = np.asarray(lightness, np.float32)
        t_count = len(lightness)
        source = self._source(conditions, known is not None)
        result = np.empty((*lightness.shape, 2), np.float32)
        step = max(1, int(self.options.max_group)) if self.options.joint else 1
        for start in range(0, t_count, step):
            sl = slice(start, min(t_count, start + step))
            k = None if known is None else (known[0][sl], known[1][sl])
            objs = None if objects is None else list(objects[sl])
            result[sl] = self._group(lightness[sl], conditions, k, objs, source)
        if known is not None:
            keep = (np.asarray(known[1]) >= 0.999)[..., None]
            result = np.where(keep, np.asarray(known[0], np.float32), result).astype(np.float32)
        self._last = (lightness[-1].copy(), result[-1].copy())
        return result

    def _source(self, conditions: Conditions, within_shot: bool) -> np.ndarray | None:
        """The colour source: ``(h, w, 3)`` sRGB in [0, 1], or ``None``."""
        if conditions.references:
            return np.asarray(conditions.references[0].rgb, np.float32) / 255.0
        if within_shot and self.options.memory and self._last is not None:
            return self.runner.colour_rgb(self._last[0][None], self._last[1][None])[0]
        return None

    def _group(self, lightness, conditions, known, objects, source) -> np.ndarray:
        from chromaflow.diffusion.sampling import inpaint_inputs, luma, sample

        r, o = self.runner, self.options
        n, h, w = lightness.shape
        size = r.size(h, w)
        gray = r.tensor(np.stack([lightness_to_gray(L) for L in lightness]), size)  # (n, 1, H, W)
        known_px = torch.zeros_like(gray)
        rgb = gray.repeat(1, 3, 1, 1)
        if known is not None:
            sure = (np.asarray(known[1]) >= 0.999).astype(np.float32)
            known_px = r.tensor(sure, size, nearest=True)
            rgb = torch.where(known_px > 0.5, r.tensor(r.colour_rgb(lightness, np.asarray(known[0], np.float32)),
                                                        size), rgb)
        gray_mask = 1.0 - known_px
        if source is not None:  # one more image of the group: the colour source, fully known
            src = r.tensor(source[None], size)
            rgb = torch.cat([rgb, src])
            gray = torch.cat([gray, luma(src)])
            known_px = torch.cat([known_px, torch.ones_like(known_px[:1])])
            gray_mask = torch.cat([gray_mask, torch.zeros_like(gray_mask[:1])])
        count = len(rgb)
        dtype = r.parts.dtype
        z_known, keep = r.known_latents(rgb.to(dtype), known_px)
        strength, init = r.strength_and_init(o.strength, gray.repeat(1, 3, 1, 1).to(dtype))
        control = gray.repeat(1, 3, 1, 1).to(dtype) if r.parts.controlnet is not None else None
        inpaint = inpaint_inputs(r.parts, rgb.to(dtype), 1.0 - known_px) if r.parts.inpainting else None
        prompt = conditions.prompt or o.prompt
        regions = regions_of(r, objects, count, size) if objects else None
        latents = sample(
            r.parts, r.text(prompt), r.uncond(), tuple(z_known.shape), r.runtime.generator(conditions.seed),
            steps=o.steps, guidance=o.guidance, known=z_known if bool(keep.any()) else None,
            known_mask=keep if bool(keep.any()) else None, gray=gray, gray_mask=gray_mask, gray_steps=o.gray_steps,
            gray_weight=o.gray_weight, init=init, strength=strength, control=control,
            control_scale=o.control_scale, inpaint=inpaint, joint=o.joint and count > 1, regions=regions,
        )
        return r.chroma(latents[:n], lightness)


def sd_check(options: SDModelOptions) -> str | None:
    """Why the Stable Diffusion backends cannot run with ``options`` here, or ``None``."""
    from chromaflow.diffusion.loading import model_check

    return model_check(options.model, options.controlnet)


@register("colorizer", "sd", options=SDColorizerOptions, packages=("diffusers", "transformers"), check=sd_check,
          licence="the model's own (not shipped)",
          description="Stable Diffusion keyframes (GCG joint attention, ControlNet or img2img + L_gray, regional "
                      "prompts): --sd-model FOLDER|FILE|HUB_ID")
def _make_sd_colorizer(options: SDColorizerOptions, runtime) -> SDColorizer:
    return SDColorizer(load_sd(options, runtime), options, runtime)

