"""Masked latent sampling for Stable Diffusion: RePaint-style known regions, the gray loss, ControlNet.

:func:`sample` runs DDIM (eta 0, deterministic) on a batch of latents with
any of:

* **known latents** (OmniFusion's intra-frame inpainting, RePaint's masking):
  where ``known_mask`` is 1 the latent is replaced, after every step, by the
  known latent noised to the step just reached (with one fixed noise draw);
  after the last step by the known latent itself.  The reference image of a
  joint call is a batch entry whose mask is all ones;
* **the gray loss** ``L_gray`` (OmniFusion): at every step the clean latent
  predicted from the current one is decoded, its BT.601 luma compared with the
  input gray inside ``gray_mask``, and the current latent moved by
  ``gray_steps`` gradient steps with the noise prediction held fixed
  (``x_t`` moves by ``sqrt(alpha_bar_t)`` times the change of the predicted
  clean latent, so the scheduler's step starts from the corrected
  prediction).  Each step is a Polyak step: it removes the fraction
  ``gray_weight`` of the linearised gray error.  ``gray_steps=0`` is plain
  sampling, bit for bit.  Only the images whose ``gray_mask`` is not all zero
  are decoded (a colour source of a joint call, fully known, is not: its step
  would be zero);
* **image-to-image** from ``init`` latents at ``strength`` (the gray frame,
  when no ControlNet conditions on it);
* **a ControlNet** conditioned on ``control`` images (the gray frame as RGB;
  its conditioning encoder, which sees them at full resolution, runs once per
  call, not once per step: the images do not change), and an inpainting
  UNet's extra inputs (``inpaint``: mask and masked-image latents);
* **joint attention** across the batch and **regional prompts**
  (:mod:`chromaflow.diffusion.attention`).

Classifier-free guidance puts the unconditional half first.  Shapes: images
``(B, 3, H, W)`` sRGB in ``[0, 1]``; gray ``(B, 1, H, W)`` in ``[0, 1]``;
latents ``(B, C, H/f, W/f)`` scaled by the VAE's scaling factor (``f``: 8
for Stable Diffusion).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import torch

from chromaflow.diffusion.attention import Regions, processors
from chromaflow.diffusion.loading import SDParts

__all__ = ["encode_prompts", "encode_images", "decode_latents", "luma", "gray_step", "sample", "inpaint_inputs"]

_LUMA = (0.299, 0.587, 0.114)


def encode_prompts(parts: SDParts, texts: Sequence[str]) -> torch.Tensor:
    """``(len(texts), S, D)`` text-encoder states (padded to the tokenizer's length, as Stable Diffusion)."""
    tok = parts.tokenizer(list(texts), padding="max_length", max_length=parts.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt")
    with torch.no_grad():
        return parts.text_encoder(tok.input_ids.to(parts.device))[0].to(parts.dtype)


def encode_images(parts: SDParts, rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` sRGB in [0, 1] -> scaled latents (the posterior's mean: deterministic)."""
    with torch.no_grad():
        dist = parts.vae.encode((rgb * 2.0 - 1.0).to(parts.device, parts.dtype)).latent_dist
    return dist.mean * parts.vae.config.scaling_factor


def decode_latents(parts: SDParts, latents: torch.Tensor) -> torch.Tensor:
    """Scaled latents -> ``(B, 3, H, W)`` sRGB in [0, 1] (differentiable: no ``no_grad`` here)."""
    out = parts.vae.decode(latents / parts.vae.config.scaling_factor).sample
    return ((out.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def luma(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` sRGB -> ``(B, 1, H, W)`` BT.601 luma (what a gray video holds)."""
    r, g, b = rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]
    return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def gray_error(parts: SDParts, clean: torch.Tensor, gray: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` mean squared luma error of the decoded ``clean`` latents against ``gray`` inside ``mask``."""
    diff = (luma(decode_latents(parts, clean)) - gray.float()) ** 2 * mask.float()
    return diff.flatten(1).sum(1) / mask.float().flatten(1).sum(1).clamp(min=1.0)


def gray_step(parts: SDParts, latents: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor,
              gray: torch.Tensor, mask: torch.Tensor, weight: float) -> torch.Tensor:
    """One L_gray step on ``x_t`` with the noise prediction ``eps`` held fixed (see the module doc).

    The predicted clean latent ``z0 = (x_t - sqrt(1 - a) eps) / sqrt(a)`` is
    decoded, its luma error ``E`` inside ``mask`` taken, and ``x_t`` moved
    against the gradient by the Polyak step ``weight * E / |grad E|^2`` per image.

    Returns:
        the moved ``x_t`` (same shape and dtype).
    """
    a = alpha_bar.to(torch.float32)
    with torch.enable_grad():
        x = latents.detach().float().requires_grad_(True)
        z0 = (x - (1.0 - a).sqrt() * eps.float()) / a.sqrt()
        err = gray_error(parts, z0.to(parts.dtype), gray, mask)
        (grad,) = torch.autograd.grad(err.sum(), x)
    norm2 = grad.flatten(1).pow(2).sum(1).clamp(min=1e-20)
    step = (weight * err.detach() / norm2).view(-1, *([1] * (grad.ndim - 1)))
    return (x.detach() - step * grad).to(latents.dtype)


def _gray_steps(parts: SDParts, latents: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor,
                gray: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None, steps: int,
                weight: float) -> torch.Tensor:
    """``steps`` :func:`gray_step` calls on the batch images ``rows`` (``None``: all of them)."""
    if rows is None:
        for _ in range(steps):
            latents = gray_step(parts, latents, eps, alpha_bar, gray, mask, weight)
        return latents
    sub, sub_eps, sub_gray, sub_mask = latents[rows], eps[rows], gray[rows], mask[rows]
    for _ in range(steps):
        sub = gray_step(parts, sub, sub_eps, alpha_bar, sub_gray, sub_mask, weight)
    return latents.index_copy(0, rows, sub)


class _Reused(torch.nn.Module):
    """A module whose output for one input tensor (that very object) is computed once and reused."""

    def __init__(self, module: torch.nn.Module, x: torch.Tensor) -> None:
        super().__init__()
        self.module, self.x, self.out = module, x, module(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out if x is self.x else self.module(x)


@contextlib.contextmanager
def _control_encoded_once(controlnet, control: torch.Tensor | None) -> Iterator[None]:
    """Inside the block ``controlnet`` encodes the ``control`` images (the same tensor at every step) once."""
    encoder = getattr(controlnet, "controlnet_cond_embedding", None)
    if control is None or not isinstance(encoder, torch.nn.Module):
        yield
        return
    controlnet.controlnet_cond_embedding = _Reused(encoder, control)
    try:
        yield
    finally:
        controlnet.controlnet_cond_embedding = encoder


def inpaint_inputs(parts: SDParts, rgb: torch.Tensor, unknown: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An inpainting UNet's extra inputs: ``(mask (B, 1, h, w), masked-image latents (B, C, h, w))``.

    Args:
        rgb: ``(B, 3, H, W)`` the image in [0, 1]; unknown: ``(B, 1, H, W)`` 1 where it is to be generated.
    """
    # as diffusers' inpainting pipeline: the hole is 0 in [-1, 1] units (mid gray)
    masked = torch.where(unknown < 0.5, rgb, torch.full_like(rgb, 0.5))
    size = (rgb.shape[-2] // parts.vae_scale, rgb.shape[-1] // parts.vae_scale)
    mask = torch.nn.functional.interpolate(unknown.float(), size=size, mode="nearest")
    return mask.to(parts.device, parts.dtype), encode_images(parts, masked)


@torch.no_grad()
def sample(
    parts: SDParts,
    cond: torch.Tensor,
    uncond: torch.Tensor | None,
    shape: tuple[int, ...],
    generator: torch.Generator,
    steps: int = 50,
    guidance: float = 7.5,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    gray: torch.Tensor | None = None,
    gray_mask: torch.Tensor | None = None,
    gray_steps: int = 0,
    gray_weight: float = 0.5,
    init: torch.Tensor | None = None,
    strength: float = 1.0,
    control: torch.Tensor | None = None,
    control_scale: float = 1.0,
    inpaint: tuple[torch.Tensor, torch.Tensor] | None = None,
    joint: bool = False,
    regions: Regions | None = None,
    noise: torch.Tensor | None = None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """DDIM sampling with the module's options; returns ``shape`` latents.

    Args:
        cond: ``(1 or B, S, D)`` text states of the prompt; ``uncond``: of the
            empty prompt (``None``, or ``guidance <= 1``: no classifier-free guidance).
        shape: ``(B, C, h, w)`` latent shape.
        generator: the noise's generator (on ``parts.device``).
        known, known_mask: ``(B, C, h, w)`` clean latents and ``(B, 1, h, w)``
            ``{0, 1}`` mask (1: known, re-imposed every step).
        gray, gray_mask: ``(B, 1, H, W)`` target luma in [0, 1] and where L_gray applies.
        gray_steps, gray_weight: L_gray steps per sampling step and the Polyak fraction.
        init, strength: start from ``init`` latents noised to ``strength`` of the schedule.
        control, control_scale: ``(B, 3, H, W)`` ControlNet images in [0, 1].
        inpaint: an inpainting UNet's ``(mask, masked latents)`` (:func:`inpaint_inputs`).
        joint: the batch's images attend to one another (one group).
        regions: regional prompts of the conditional half.
        noise: the initial noise (drawn from ``generator`` when ``None``), also
            the noise that known latents are noised with.
        on_step: ``on_step(i, t, latents)`` after step ``i``, at timestep ``t``
            (``-1`` after the last), with the known region already re-imposed.
    """
    sched = parts.scheduler
    dev, dtype = parts.device, parts.dtype
    sched.set_timesteps(int(steps), device=dev)
    timesteps = sched.timesteps
    if noise is None:
        noise = torch.randn(shape, generator=generator, device=dev, dtype=torch.float32).to(dtype)
    if init is not None and strength < 1.0:
        start = len(timesteps) - max(1, min(len(timesteps), round(len(timesteps) * float(strength))))
        timesteps = timesteps[start:]
        latents = sched.add_noise(init.to(dtype), noise, timesteps[:1])
    else:
        latents = noise * sched.init_noise_sigma
    keep = known_mask.to(dev) >= 0.5 if known is not None and known_mask is not None else None
    if keep is not None:
        latents = torch.where(keep, sched.add_noise(known.to(dtype), noise, timesteps[:1]), latents)
    cfg = uncond is not None and guidance > 1.0
    b = shape[0]
    text = cond.expand(b, -1, -1) if cond.shape[0] == 1 else cond
    if cfg:
        text = torch.cat([uncond.expand(b, -1, -1), text])
    twice = (lambda x: torch.cat([x, x])) if cfg else (lambda x: x)  # noqa: E731
    control_in = twice(control.to(dev, dtype)) if control is not None and parts.controlnet is not None else None
    extra = tuple(twice(x) for x in inpaint) if inpaint is not None and parts.inpainting else None
    if regions is not None and cfg:
        regions = Regions(regions.embeds, regions.masks, slice(b, 2 * b))
    rows = None
    if gray is not None and gray_steps > 0:
        gray = gray.to(dev)
        gray_mask = (gray_mask if gray_mask is not None else torch.ones_like(gray)).to(dev)
        some = gray_mask.flatten(1).amax(1) > 0
        rows = None if bool(some.all()) else some.nonzero().flatten()
    with processors(parts.unet, parts.controlnet, group=b if joint else 1, regions=regions), \
            _control_encoded_once(parts.controlnet, control_in):
        for i, t in enumerate(timesteps):
            x_in = twice(latents)
            residuals = {}
            if control_in is not None:
                down, mid = parts.controlnet(x_in, t, encoder_hidden_states=text, controlnet_cond=control_in,
                                             conditioning_scale=float(control_scale), return_dict=False)
                residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            unet_in = torch.cat([x_in, *extra], dim=1) if extra is not None else x_in
            eps = parts.unet(unet_in, t, encoder_hidden_states=text, return_dict=False, **residuals)[0]
            if cfg:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            if gray is not None and gray_steps > 0 and (rows is None or len(rows)):
                latents = _gray_steps(parts, latents, eps, sched.alphas_cumprod[int(t)].to(dev), gray, gray_mask,
                                      rows, int(gray_steps), gray_weight)
            latents = sched.step(eps, t, latents, eta=0.0, return_dict=False)[0]
            nxt = int(timesteps[i + 1]) if i + 1 < len(timesteps) else -1
            if keep is not None:
                target = known.to(dtype) if nxt < 0 else sched.add_noise(known.to(dtype), noise, timesteps[i + 1:i + 2])
                latents = torch.where(keep, target, latents)
            if on_step is not None:
                on_step(i, nxt, latents)
    return latents
