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
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.color.lab import lightness_to_gray
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.base import Colorizer
from chromaflow.errors import NotAvailableError
from chromaflow.guidance.conditions import Conditions
from chromaflow.models.chroma_bins import annealed_mean
from chromaflow.models.chroma_unet import AB_SCALE, ChromaUNet
from chromaflow.models.efficientnet import gray_input
from chromaflow.registry import register
from chromaflow.runtime import Runtime, default_runtime
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
            the restrained estimate, the sample the decisive one; 1 (the
            default since the second-generation regression model) = the
            regression alone, and no sample is drawn.
        regression_weights: the regression model for ``blend`` (``None``: the
            shipped one).
        bin_readout: for a regression network with a chroma-bin head, its
            unguided estimate is the annealed mean of the bin distribution
            (:func:`~chromaflow.models.chroma_bins.annealed_mean`) at
            ``bin_temperature``: vivid where the distribution is peaked, near
            gray where it is spread (False: its regression output).
        bin_temperature: temperature of that read-out, in (0, 1].
        bin_prior_power: rebalancing of that read-out towards rare colours
            (the distribution is divided by the training prior to this power; 0: none).
        sampler: DDIM settings (diffusion models only).
    """

    weights: str | None = None
    model_side: int = 256
    max_side: int = 512
    max_group: int = 6
    saturation: float = 1.2
    blend: float = 1.0
    regression_weights: str | None = None
    bin_readout: bool = False
    bin_temperature: float = 0.38
    bin_prior_power: float = 0.0
    sampler: SamplerOptions = field(default_factory=lambda: SamplerOptions(steps=12, temperature=1.0))


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
        runtime: Runtime | None = None,
    ) -> None:
        if kind not in ("diffusion", "regression"):
            raise ValueError(f"unknown model kind {kind!r}")
        self.runtime = runtime or default_runtime()
        device = self.runtime.device
        self.network = network.to(device).eval()
        #: the regression network blended into diffusion samples (``options.blend``), or ``None``
        self.companion = companion.to(device).eval() if companion is not None else None
        self.kind = kind
        self.options = options or ModelOptions()
        self.encoder = (encoder.to(device).eval() if encoder is not None else self.runtime.encoder())
        self.sampler = DDIMSampler(self.options.sampler)

    @classmethod
    def load(cls, options: ModelOptions | None = None, runtime: Runtime | None = None) -> ChromaModel:
        """The model in ``options.weights`` (default: the shipped diffusion model) on ``runtime``'s device.

        The networks are read once per runtime and shared by every
        :class:`ChromaModel` made from the same files (a colorizer and a fill
        step with other sampler settings share one copy).

        Raises:
            NotAvailableError: the shipped weights are not installed.
            InputError: a weights file that cannot be read.
        """
        from chromaflow.models.weights import SHIPPED, load_model

        options = options or ModelOptions()
        runtime = runtime or default_runtime()
        path = Path(options.weights) if options.weights else SHIPPED["diffusion"]
        if not options.weights and not path.is_file():
            raise NotAvailableError(
                f"the colorization model is not installed ({path} is missing); "
                "give --model WEIGHTS, or --reference with --fill levin"
            )
        network, meta = runtime.shared(("chroma-network", str(path.resolve())), lambda: load_model(path))
        kind = meta.get("kind", "diffusion")
        companion = None
        if kind == "diffusion" and options.blend > 0:
            reg_path = Path(options.regression_weights) if options.regression_weights else SHIPPED["regression"]
            if not reg_path.is_file() and not options.regression_weights:
                raise NotAvailableError(f"the regression model is not installed ({reg_path} is missing)")
            companion, _ = runtime.shared(("chroma-network", str(reg_path.resolve())), lambda: load_model(reg_path))
        return cls(network, kind, options, companion=companion, runtime=runtime)

    def with_options(self, options: ModelOptions) -> ChromaModel:
        """The same networks and encoder run with other options (no copy of the weights)."""
        return ChromaModel(self.network, self.kind, options, self.encoder, self.companion, self.runtime)

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
        dev = self.runtime.device
        lightness = np.asarray(lightness, np.float32)
        t_count, h, w = lightness.shape
        mh, mw, ph, pw = self._grid(h, w)
        gh, gw = ph // 4, pw // 4
        # model-scale lightness, padded by reflection
        light_m = np.stack([cv2.resize(x, (mw, mh), interpolation=cv2.INTER_AREA) for x in lightness])
        light_m = np.pad(light_m, ((0, 0), (0, ph - mh), (0, pw - mw)), mode="reflect")
        gray = torch.from_numpy(lightness_to_gray(light_m)).to(dev)
        with self.runtime.autocast():
            feats = tuple(f.float() for f in self.encoder(gray_input(gray))[1:])
        light_g = F.interpolate(torch.from_numpy(light_m)[:, None], size=(gh, gw), mode="area").to(dev)
        hints = torch.zeros(t_count, 2, gh, gw, device=dev)
        mask = torch.zeros(t_count, 1, gh, gw, device=dev)
        if hint_ab is not None and hint_conf is not None:
            hints, mask = (x.to(dev) for x in self._grid_hints(hint_ab, hint_conf, (mh, mw), (gh, gw)))
        pal = _palette_tensor(g.palette_lab, self.network.config.palette_size).to(dev)
        text = torch.zeros(self.network.config.text_dim) if g.text is None else torch.from_numpy(
            np.asarray(g.text, np.float32))
        text = text.to(dev)
        gen = self.runtime.generator(g.seed)
        out = torch.zeros(t_count, 2, gh, gw, device=dev)
        step = max(1, self.options.max_group)
        for start in range(0, t_count, step):
            sl = slice(start, min(t_count, start + step))
            n = sl.stop - sl.start
            fs = tuple(f[sl] for f in feats)
            lg, hg, mg = light_g[sl], hints[sl], mask[sl]

            def denoise(x_t, t, pal_on, txt_on, fs=fs, lg=lg, hg=hg, mg=mg, n=n, net=self.network, readout=False):
                r = x_t.shape[0] // n
                rep = lambda a: a.repeat(r, *([1] * (a.ndim - 1)))  # noqa: E731
                on = lambda a: a.to(dev) if isinstance(a, torch.Tensor) else a  # noqa: E731
                with self.runtime.autocast():
                    y = net(
                        x_t, on(t), rep(lg), rep(hg), rep(mg), tuple(rep(f) for f in fs),
                        pal[None].expand(x_t.shape[0], -1, -1), on(pal_on), text[None].expand(x_t.shape[0], -1),
                        on(txt_on), group=n, return_bins=readout,
                    )
                if readout:  # the annealed mean of the chroma-bin head, scaled like the network's output
                    o = self.options
                    return annealed_mean(y[1], net.config.bins, net.config.bin_step, o.bin_temperature,
                                         net.bin_prior, o.bin_prior_power) / AB_SCALE
                return y.float()

            zeros, ones = torch.zeros(n, 2, gh, gw, device=dev), torch.ones(n, device=dev)

            def unguided_regression(net, n=n, zeros=zeros, ones=ones, denoise=denoise):
                """A regression network's unguided estimate: its bin read-out where it has a bin head."""
                if net.config.bins and self.options.bin_readout:
                    off = torch.zeros(n, dtype=torch.bool, device=dev)
                    return denoise(zeros, ones, off, off, net=net, readout=True)
                return self.sampler.guided(functools.partial(denoise, net=net), zeros, ones, False, False)

            use_pal, use_txt = g.palette_lab is not None, g.text is not None
            # Blend and gain temper the hedging of *unguided* predictions only: with
            # a palette or a text, guidance already commits to colours, and with
            # hints the prediction must match the colours around it (the diffusion
            # sample alone scores best there; see the model card).
            unguided = not (use_pal or use_txt or bool(mg.any()))
            if self.kind == "regression":
                x0 = (unguided_regression(self.network) if unguided else
                      self.sampler.guided(denoise, zeros, ones, use_pal, use_txt))
            elif unguided and self.companion is not None and self.options.blend >= 1:
                x0 = unguided_regression(self.companion)  # the sample would get no weight: not drawn
            else:
                known = (mg >= 0.999).float()
                x0 = self.sampler.sample(
                    denoise, (n, 2, gh, gw), gen, use_pal, use_txt,
                    known=hg / AB_SCALE if known.any() else None, known_mask=known if known.any() else None,
                )
                if self.companion is not None and self.options.blend > 0 and unguided:
                    x0_reg = unguided_regression(self.companion)
                    x0 = (1 - self.options.blend) * x0 + self.options.blend * x0_reg
            if self.options.saturation != 1.0 and unguided:
                x0 = x0 * self.options.saturation
            out[sl] = x0 * AB_SCALE
        ab_grid = out.permute(0, 2, 3, 1).cpu().numpy()
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
    condition); the palette is the conditions' palette; ``known`` colours are
    kept exactly (RePaint-style).  A prompt's objects are grounded and applied
    as hints by the engine (:class:`~chromaflow.guidance.hints.PromptHints`),
    for this colorizer as for any other.

    Args:
        model: the loaded model.
    """

    name = "model"

    def __init__(self, model: ChromaModel) -> None:
        self.model = model
        self._last: tuple[Conditions, Guidance] | None = None

    def guidance_for(self, conditions: Conditions) -> Guidance:
        """The model's guidance for ``conditions`` (the prompt is embedded once per conditions)."""
        if self._last is None or self._last[0] is not conditions:
            text = None
            if conditions.prompt:
                text = self.model.runtime.text_encoder().encode([conditions.prompt])[0]
            palette = conditions.palette.lab if conditions.palette is not None else None
            self._last = (conditions, Guidance(palette_lab=palette, text=text, seed=conditions.seed))
        return self._last[1]

    def colorize(
        self,
        lightness: np.ndarray,
        frame_indices: Sequence[int],
        conditions: Conditions,
        known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Chroma of the frames, guided by the palette and the prompt's text (see :meth:`Colorizer.colorize`)."""
        return self.model.predict(lightness, self.guidance_for(conditions), *(known or (None, None)))


@register("colorizer", "model", options=ModelOptions, licence="Apache-2.0 (trained here; data licences in the model card)",
          description="the embedded model: frozen EfficientNet-Lite0 + 3.6M-parameter chroma diffusion U-Net "
                      "(shipped, CPU-friendly)")
def _make_model_colorizer(options: ModelOptions, runtime: Runtime) -> ModelColorizer:
    return ModelColorizer(ChromaModel.load(options, runtime))
