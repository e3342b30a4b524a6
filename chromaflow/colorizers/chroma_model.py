"""The embedded colorization model at inference: encoder + denoiser + sampler.

:class:`ChromaModel` turns Lab lightness (any size) and optional hints,
palette and text into chroma:

1. the frame is resized so its short side is ``model_side`` (the scale the
   model was trained at: 224-pixel crops of photos with a 256-pixel short
   side) and padded to a multiple of 32;
2. the frozen EfficientNet-Lite0 reads the gray frame;
3. the denoiser gives ab on the stride-4 grid, by DDIM sampling
   (``kind == "diffusion"``) or in one pass (``kind == "regression"``);
   hints with confidence 1 are kept exactly (RePaint-style);
4. ab is brought back to the input size along the luminance edges (guided
   upsampling), and the given hints are put back where their confidence is 1.

Frames given together can be coloured jointly: their bottleneck tokens attend
to each other (GCG's extended attention), in groups of ``max_group``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.color.lab import lightness_to_gray
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.base import Carried, Colorizer
from chromaflow.errors import NotAvailableError
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.grounding import GroundingCallback, GroundingOptions, PromptGrounder, describe_matches
from chromaflow.guidance.prompt import ParsedPrompt, parse_prompt
from chromaflow.models.chroma_unet import AB_SCALE, ChromaUNet
from chromaflow.models.efficientnet import gray_input
from chromaflow.samplers.ddim import DDIMSampler, SamplerOptions

_PAD = 32

log = logging.getLogger("chromaflow")


@dataclass(frozen=True)
class ModelOptions:
    """How the model is run.

    Attributes:
        weights: path of a ``.safetensors`` file, or ``None`` for the shipped
            diffusion model.
        model_side: short side, in pixels, at which the model reads a frame.
        max_side: cap on the long side at that scale.
        max_group: frames coloured jointly (shared attention) at most.
        saturation: gain on the chroma of unguided predictions (no palette,
            text or hints).  Models trained on ambiguous data under-estimate
            chroma (they hedge towards gray); the default was chosen on
            held-out photos and clip frames (model card).
        blend: share of the regression baseline's prediction mixed into an
            unguided diffusion sample (0 = the sample alone): the regression is
            the restrained estimate, the sample the decisive one.
        regression_weights: the regression model for ``blend`` (``None``: the
            shipped one).
        sampler: DDIM settings (diffusion models only).
        fill_steps: sampling steps when the model is the engine's fill step
            (it may run on many frames, so fewer than for keyframes).
        threads: torch CPU threads (0 leaves torch's default).
    """

    weights: str | None = None
    model_side: int = 256
    max_side: int = 512
    max_group: int = 6
    saturation: float = 1.5
    blend: float = 0.5
    regression_weights: str | None = None
    sampler: SamplerOptions = field(default_factory=lambda: SamplerOptions(steps=12, temperature=1.0))
    fill_steps: int = 6
    threads: int = 0

    def for_fill(self) -> ModelOptions:
        """These options with the fill step's number of sampling steps."""
        return replace(self, sampler=replace(self.sampler, steps=min(self.fill_steps, self.sampler.steps)))


@dataclass(frozen=True)
class Guidance:
    """What steers one call of :meth:`ChromaModel.predict`.

    Attributes:
        palette_lab: ``(K, 3)`` Lab palette (``K <= 5``; repeated to 5) or ``None``.
        text: ``(384,)`` sentence embedding or ``None``.
        seed: sampling seed.
    """

    palette_lab: np.ndarray | None = None
    text: np.ndarray | None = None
    seed: int = 0


def _palette_tensor(palette_lab: np.ndarray | None, size: int) -> torch.Tensor:
    if palette_lab is None or len(palette_lab) == 0:
        return torch.zeros(size, 3)
    reps = np.resize(np.arange(len(palette_lab)), size)
    return torch.from_numpy(np.asarray(palette_lab, np.float32)[reps])


class ChromaModel:
    """Runs a :class:`ChromaUNet` with the frozen encoder on frames of any size."""

    def __init__(
        self,
        network: ChromaUNet,
        kind: str,
        options: ModelOptions | None = None,
        encoder: torch.nn.Module | None = None,
        companion: ChromaUNet | None = None,
    ) -> None:
        from chromaflow.models.efficientnet import load_efficientnet_lite0

        if kind not in ("diffusion", "regression"):
            raise ValueError(f"unknown model kind {kind!r}")
        self.network = network.eval()
        #: the regression network blended into diffusion samples (``options.blend``), or ``None``
        self.companion = companion.eval() if companion is not None else None
        self.kind = kind
        self.options = options or ModelOptions()
        self.encoder = encoder if encoder is not None else load_efficientnet_lite0(pretrained=True)
        self.sampler = DDIMSampler(self.options.sampler)

    @classmethod
    def load(cls, options: ModelOptions | None = None) -> ChromaModel:
        """The model in ``options.weights`` (default: the shipped diffusion model)."""
        from chromaflow.models.weights import SHIPPED, load_model

        options = options or ModelOptions()
        path = Path(options.weights) if options.weights else SHIPPED["diffusion"]
        if not options.weights and not path.is_file():
            raise NotAvailableError(
                f"the colorization model is not installed ({path} is missing); "
                "give --model WEIGHTS, or --reference with --fill levin"
            )
        network, meta = load_model(path)
        kind = meta.get("kind", "diffusion")
        companion = None
        if kind == "diffusion" and options.blend > 0:
            reg_path = Path(options.regression_weights) if options.regression_weights else SHIPPED["regression"]
            if not reg_path.is_file() and not options.regression_weights:
                raise NotAvailableError(f"the regression model is not installed ({reg_path} is missing)")
            companion, _ = load_model(reg_path)
        return cls(network, kind, options, companion=companion)

    def with_options(self, options: ModelOptions) -> ChromaModel:
        """The same networks and encoder run with other options (no copy of the weights)."""
        return ChromaModel(self.network, self.kind, options, self.encoder, self.companion)

    def _grid(self, h: int, w: int) -> tuple[int, int, int, int]:
        """Model-scale size ``(mh, mw)`` and padded size ``(ph, pw)`` for an ``h x w`` frame."""
        o = self.options
        s = o.model_side / min(h, w)
        s = min(s, o.max_side / max(h, w))
        mh, mw = max(32, round(h * s)), max(32, round(w * s))
        ph, pw = -(-mh // _PAD) * _PAD, -(-mw // _PAD) * _PAD
        return mh, mw, ph, pw

    @torch.no_grad()
    def predict(
        self,
        lightness: np.ndarray,
        guidance: Guidance | None = None,
        hint_ab: np.ndarray | None = None,
        hint_conf: np.ndarray | None = None,
    ) -> np.ndarray:
        """Chroma for a batch of frames of one size.

        Args:
            lightness: ``(T, h, w)`` ``float32`` Lab L in [0, 100].
            guidance: palette, text and seed.
            hint_ab: ``(T, h, w, 2)`` hint chroma (Lab units) or ``None``.
            hint_conf: ``(T, h, w)`` confidence in [0, 1] of each hint;
                1 keeps the hint exactly.

        Returns:
            ``(T, h, w, 2)`` ``float32`` Lab ab.
        """
        g = guidance or Guidance()
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        lightness = np.asarray(lightness, np.float32)
        t_count, h, w = lightness.shape
        mh, mw, ph, pw = self._grid(h, w)
        gh, gw = ph // 4, pw // 4
        # model-scale lightness, padded by reflection
        light_m = np.stack([cv2.resize(x, (mw, mh), interpolation=cv2.INTER_AREA) for x in lightness])
        light_m = np.pad(light_m, ((0, 0), (0, ph - mh), (0, pw - mw)), mode="reflect")
        gray = torch.from_numpy(lightness_to_gray(light_m))
        feats = self.encoder(gray_input(gray))[1:]
        light_g = F.interpolate(torch.from_numpy(light_m)[:, None], size=(gh, gw), mode="area")
        hints = torch.zeros(t_count, 2, gh, gw)
        mask = torch.zeros(t_count, 1, gh, gw)
        if hint_ab is not None and hint_conf is not None:
            hints, mask = self._grid_hints(hint_ab, hint_conf, (mh, mw), (gh, gw))
        pal = _palette_tensor(g.palette_lab, self.network.config.palette_size)
        text = torch.zeros(self.network.config.text_dim) if g.text is None else torch.from_numpy(
            np.asarray(g.text, np.float32))
        gen = torch.Generator().manual_seed(int(g.seed))
        out = torch.zeros(t_count, 2, gh, gw)
        step = max(1, self.options.max_group)
        for start in range(0, t_count, step):
            sl = slice(start, min(t_count, start + step))
            n = sl.stop - sl.start
            fs = tuple(f[sl] for f in feats)
            lg, hg, mg = light_g[sl], hints[sl], mask[sl]

            def denoise(x_t, t, pal_on, txt_on, fs=fs, lg=lg, hg=hg, mg=mg, n=n, net=self.network):
                r = x_t.shape[0] // n
                rep = lambda a: a.repeat(r, *([1] * (a.ndim - 1)))  # noqa: E731
                return net(
                    x_t, t, rep(lg), rep(hg), rep(mg), tuple(rep(f) for f in fs),
                    pal[None].expand(x_t.shape[0], -1, -1), pal_on, text[None].expand(x_t.shape[0], -1), txt_on,
                    group=n,
                )

            use_pal, use_txt = g.palette_lab is not None, g.text is not None
            # Blend and gain temper the hedging of *unguided* predictions only: with
            # a palette or a text, guidance already commits to colours, and with
            # hints the prediction must match the colours around it (the diffusion
            # sample alone scores best there; see the model card).
            unguided = not (use_pal or use_txt or bool(mg.any()))
            zeros, ones = torch.zeros(n, 2, gh, gw), torch.ones(n)
            if self.kind == "regression":
                x0 = self.sampler.guided(denoise, zeros, ones, use_pal, use_txt)
            else:
                known = (mg >= 0.999).float()
                x0 = self.sampler.sample(
                    denoise, (n, 2, gh, gw), gen, use_pal, use_txt,
                    known=hg / AB_SCALE if known.any() else None, known_mask=known if known.any() else None,
                )
                if self.companion is not None and self.options.blend > 0 and unguided:
                    reg = functools.partial(denoise, net=self.companion)
                    x0_reg = self.sampler.guided(reg, zeros, ones, False, False)
                    x0 = (1 - self.options.blend) * x0 + self.options.blend * x0_reg
            if self.options.saturation != 1.0 and unguided:
                x0 = x0 * self.options.saturation
            out[sl] = x0 * AB_SCALE
        ab_grid = out.permute(0, 2, 3, 1).numpy()
        # crop the padding, then back to the input size along the luminance edges
        ch, cw = -(-mh // 4), -(-mw // 4)
        result = np.empty((t_count, h, w, 2), np.float32)
        for i in range(t_count):
            low = ab_grid[i, :ch, :cw]
            guide = lightness_to_gray(lightness[i])
            result[i] = guided_upsample(low, guide)
        if hint_ab is not None and hint_conf is not None:
            keep = (hint_conf >= 0.999)[..., None]
            result = np.where(keep, hint_ab, result).astype(np.float32)
        return result

    @staticmethod
    def _grid_hints(
        hint_ab: np.ndarray, hint_conf: np.ndarray, model_size: tuple[int, int], grid: tuple[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hints at full size -> the (padded) grid.

        A cell's hint is the confidence-weighted mean of the hints inside it,
        and its mask the largest confidence there (a single sure hint pixel
        makes a sure cell).
        """
        mh, mw = model_size
        gh, gw = grid
        t_count = len(hint_ab)
        conf = torch.from_numpy(np.asarray(hint_conf, np.float32))[:, None]
        ab = torch.from_numpy(np.asarray(hint_ab, np.float32)).permute(0, 3, 1, 2)
        ch, cw = -(-mh // 4), -(-mw // 4)
        c_g = F.adaptive_avg_pool2d(conf, (ch, cw))
        abc_g = F.adaptive_avg_pool2d(ab * conf, (ch, cw))
        hints = torch.zeros(t_count, 2, gh, gw)
        mask = torch.zeros(t_count, 1, gh, gw)
        hints[:, :, :ch, :cw] = abc_g / c_g.clamp(min=1e-6)
        mask[:, :, :ch, :cw] = F.adaptive_max_pool2d(conf, (ch, cw))
        return hints, mask


class ModelColorizer(Colorizer):
    """Colours keyframes with the embedded model: automatic, palette- or prompt-guided.

    All frames of one call (the keyframes of a shot) are coloured jointly.
    The prompt is embedded with all-MiniLM-L6-v2 (the model's text
    condition), and its (colour, object) pairs are grounded in each frame by
    a :class:`~chromaflow.guidance.grounding.PromptGrounder`: a named colour
    becomes hints inside its object's mask.  The palette is the conditions'
    palette.

    Args:
        model: the loaded model.
        grounding: options of the object grounding.
        on_grounding: called as ``on_grounding(frame_index, gray, grounding)``
            each time a frame's objects are grounded (``gray``: ``(h, w)``
            ``uint8``), e.g. to save the masks for inspection.
    """

    name = "model"

    def __init__(
        self,
        model: ChromaModel,
        grounding: GroundingOptions | None = None,
        on_grounding: GroundingCallback | None = None,
    ) -> None:
        self.model = model
        self.grounding = grounding or GroundingOptions()
        self.on_grounding = on_grounding
        self._grounder: PromptGrounder | None = None
        self._last: tuple[Conditions, Guidance, ParsedPrompt | None] | None = None
        #: the hints of the last few grounded frames, by frame index (for tracking)
        self._recent: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._reported: str | None = None

    def _prepared(self, conditions: Conditions) -> tuple[Guidance, ParsedPrompt | None]:
        if self._last is None or self._last[0] is not conditions:
            self._recent.clear()
            text, parsed = None, None
            if conditions.prompt:
                from chromaflow.models.text import shared_text_encoder

                text = shared_text_encoder().encode([conditions.prompt])[0]
                parsed = parse_prompt(conditions.prompt)
                if not parsed.objects:
                    parsed = None
                elif self._reported != conditions.prompt:  # once per run, not once per shot
                    matches = self.grounder.matches(parsed)
                    for match, line in zip(matches, describe_matches(matches)):
                        (log.info if match.grounded else log.warning)("prompt object %s", line)
                    self._reported = conditions.prompt
            palette = conditions.palette.lab if conditions.palette is not None else None
            self._last = (conditions, Guidance(palette_lab=palette, text=text, seed=conditions.seed), parsed)
        return self._last[1], self._last[2]

    def guidance_for(self, conditions: Conditions) -> Guidance:
        """The model's guidance for ``conditions`` (the prompt is embedded once per conditions)."""
        return self._prepared(conditions)[0]

    @property
    def grounder(self) -> PromptGrounder:
        """The prompt grounder (built on first use; shares the model's encoder)."""
        if self._grounder is None:
            from chromaflow.models.text import shared_text_encoder

            self._grounder = PromptGrounder(self.model.encoder, shared_text_encoder(), self.grounding)
        return self._grounder

    def hints(
        self, lightness: np.ndarray, frame_index: int, conditions: Conditions, carried: Carried | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The prompt's named colours inside its objects' masks in this frame.

        Masks are tracked: the hints this colorizer gave at the anchor
        ``carried`` comes from are carried along the motion, and they stand
        where the frame's own grounding finds nothing and the motion is
        reliable (class activation maps flicker from frame to frame; tracked
        masks keep an object that was found once).
        """
        parsed = self._prepared(conditions)[1]
        if parsed is None:
            return None
        gray = np.clip(np.rint(lightness_to_gray(lightness) * 255.0), 0, 255).astype(np.uint8)
        grounding = self.grounder.ground(gray, parsed)
        ab, conf = grounding.hint_ab, grounding.hint_conf
        if carried is not None and carried.anchor in self._recent:
            p_ab, p_conf = self._recent[carried.anchor]
            t_ab, reliability = carried.sample(p_ab)
            t_conf = carried.sample(p_conf)[0] * reliability
            use = (conf == 0) & (t_conf >= 0.5 * self.grounding.hint_strength)
            ab = np.where(use[..., None], t_ab, ab).astype(np.float32)
            conf = np.where(use, t_conf, conf).astype(np.float32)
            grounding = replace(grounding, hint_ab=ab, hint_conf=conf)
        self._recent[frame_index] = (ab, conf)
        while len(self._recent) > 4:
            self._recent.pop(next(iter(self._recent)))
        if self.on_grounding is not None:
            self.on_grounding(frame_index, gray, grounding)
        if not conf.any():
            return None
        return ab, conf

    def colorize(
        self,
        lightness: np.ndarray,
        frame_indices: Sequence[int],
        conditions: Conditions,
        known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Chroma of the frames; a prompt's objects are an edit of the unprompted result.

        Without objects to ground (automatic, palette, or a prompt that names
        no object) the model's guidance covers the whole frame.  With objects,
        the frame is coloured twice: without the prompt, and with the named
        colours as hints inside the objects' masks (and the prompt's text);
        the second is used only around the objects.  So a named colour changes
        its object, not the whole frame (a text embedding alone floods the
        frame with the colours it names: ``docs/bench/prompt.md``).  A
        frame where none of the objects is found is coloured without the prompt.
        """
        guidance, parsed = self._prepared(conditions)
        if parsed is None:
            return self.model.predict(lightness, guidance, *(known or (None, None)))
        t_count, h, w = lightness.shape
        obj_ab = np.zeros((t_count, h, w, 2), np.float32)
        obj_conf = np.zeros((t_count, h, w), np.float32)
        for i, f in enumerate(frame_indices):
            found = self.hints(lightness[i], int(f), conditions)
            if found is not None:
                obj_ab[i], obj_conf[i] = found
        base = self.model.predict(lightness, replace(guidance, text=None), *(known or (None, None)))
        if not obj_conf.any():
            return base
        region = np.stack([object_region(c > 0) for c in obj_conf])[..., None]  # the objects, not the known colours
        if known is not None:  # carried colours win over the prompt's
            use = known[1] > 0
            obj_ab = np.where(use[..., None], known[0], obj_ab).astype(np.float32)
            obj_conf = np.where(use, known[1], obj_conf).astype(np.float32)
        edited = self.model.predict(lightness, guidance, obj_ab, obj_conf)
        return (region * edited + (1.0 - region) * base).astype(np.float32)


def object_region(inside: np.ndarray, grow: float = 0.02) -> np.ndarray:
    """Soft weight ``(h, w)`` in ``[0, 1]``: 1 on ``inside`` and a margin of ``grow`` times
    the short side around it, fading to 0 over the same distance."""
    h, w = inside.shape
    r = max(1, round(grow * min(h, w)))
    grown = cv2.dilate(inside.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    return np.clip(cv2.GaussianBlur(grown.astype(np.float32), (0, 0), r / 2.0) * 2.0, 0.0, 1.0)
