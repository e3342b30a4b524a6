"""DDIM sampling with classifier-free guidance and RePaint-style known regions.

The sampler is independent of the network: it calls a *denoiser*
``denoise(x_t, t, palette_on, text_on) -> x0`` (all tensors batched, ``t`` of
shape ``(B,)``), so the colorizer decides what the network sees.

- **Steps**: deterministic DDIM (``eta = 0``) on ``steps`` evenly spaced
  levels from ``t = 1`` to ``t = 0`` (Song et al. 2021), for an
  x0-predicting network.
- **Temperature** scales the starting noise (and any ``eta`` noise): below 1
  the samples move toward the network's conditional mean, which is more
  restrained and more often right on ambiguous content.
- **Guidance** (Ho and Salimans 2022), compositional over conditions:
  ``x0 = x0(none) + g_p (x0(palette) - x0(none)) + g_t (x0(text) - x0(none))``;
  a condition that is absent costs no extra pass.
- **Known regions** (Lugmayr et al. 2022, RePaint): after every step the
  known part of the sample is replaced by the known values noised to the new
  level, and the result keeps the known values exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from chromaflow.samplers.schedule import alpha_bar, q_sample

Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SamplerOptions:
    """Settings of :class:`DDIMSampler`.

    Attributes:
        steps: denoising steps (16 or fewer is the intended range).
        eta: DDIM stochasticity (0 = deterministic given the start noise).
        temperature: scale of the start noise, in (0, 1].
        palette_guidance: guidance scale of the palette (1 = plain conditional).
        text_guidance: guidance scale of the text.
    """

    steps: int = 12
    eta: float = 0.0
    temperature: float = 1.0
    palette_guidance: float = 2.0
    text_guidance: float = 2.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError("steps must be at least 1")
        if not 0.0 < self.temperature <= 1.0:
            raise ValueError("temperature must be in (0, 1]")


class DDIMSampler:
    """Samples clean chroma from an x0-predicting denoiser."""

    def __init__(self, options: SamplerOptions | None = None) -> None:
        self.options = options or SamplerOptions()

    def guided(
        self, denoise: Denoiser, x_t: torch.Tensor, t: torch.Tensor, use_palette: bool, use_text: bool
    ) -> torch.Tensor:
        """One guided x0 prediction (batched passes for the needed condition sets)."""
        o = self.options
        b = x_t.shape[0]
        sets = [(False, False)]
        if use_palette:
            sets.append((True, False))
        if use_text:
            sets.append((False, True))
        if len(sets) == 1:
            off = torch.zeros(b, dtype=torch.bool)
            return denoise(x_t, t, off, off)
        pal = torch.cat([torch.full((b,), p, dtype=torch.bool) for p, _ in sets])
        txt = torch.cat([torch.full((b,), q, dtype=torch.bool) for _, q in sets])
        out = denoise(x_t.repeat(len(sets), 1, 1, 1), t.repeat(len(sets)), pal, txt).split(b)
        x0 = out[0].clone()
        k = 1
        if use_palette:
            x0 += o.palette_guidance * (out[k] - out[0])
            k += 1
        if use_text:
            x0 += o.text_guidance * (out[k] - out[0])
        return x0

    @torch.no_grad()
    def sample(
        self,
        denoise: Denoiser,
        shape: tuple[int, ...],
        generator: torch.Generator,
        use_palette: bool = False,
        use_text: bool = False,
        known: torch.Tensor | None = None,
        known_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw one sample.

        Args:
            denoise: the denoiser (see the module docstring).
            shape: ``(B, C, H, W)``.
            generator: torch generator (the seed makes the result reproducible).
            use_palette, use_text: which conditions to guide with.
            known: ``(B, C, H, W)`` clean values to keep, or ``None``.
            known_mask: ``(B, 1, H, W)`` in [0, 1]: 1 keeps ``known`` exactly.

        Returns:
            ``(B, C, H, W)`` clean sample, equal to ``known`` where the mask is 1.
        """
        o = self.options
        x = torch.randn(shape, generator=generator, device=generator.device) * o.temperature
        levels = torch.linspace(1.0, 0.0, o.steps + 1, device=generator.device)
        x0 = x
        for i in range(o.steps):
            t, t_next = levels[i], levels[i + 1]
            tb = torch.full((shape[0],), float(t), device=generator.device)
            x0 = self.guided(denoise, x, tb, use_palette, use_text)
            if i == o.steps - 1:
                break
            a, a_next = alpha_bar(t), alpha_bar(t_next)
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            sigma = o.eta * ((1 - a_next) / (1 - a)).sqrt() * (1 - a / a_next).clamp(min=0).sqrt()
            x = a_next.sqrt() * x0 + (1 - a_next - sigma**2).clamp(min=0).sqrt() * eps
            if o.eta > 0:
                x = x + sigma * o.temperature * torch.randn(shape, generator=generator, device=generator.device)
            if known is not None and known_mask is not None:
                noised = q_sample(known, t_next.expand(shape[0]), torch.randn(shape, generator=generator, device=generator.device))
                x = known_mask * noised + (1 - known_mask) * x
        if known is not None and known_mask is not None:
            x0 = known_mask * known + (1 - known_mask) * x0
        return x0
