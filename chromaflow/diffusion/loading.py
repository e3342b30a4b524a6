"""Loading a Stable Diffusion model (and a ControlNet) from what the user has.

``model`` may be a local diffusers folder (``model_index.json``, ``unet/``,
``vae/``, ``text_encoder/``, ``tokenizer/``, ``scheduler/``), a single-file
checkpoint (``.safetensors`` / ``.ckpt``, read by diffusers'
``from_single_file``, which needs the model's configuration: in diffusers'
cache or online), or a Hugging Face hub id, downloaded only when downloads are
on (``CHROMAFLOW_OFFLINE`` unset).  Only the parts the sampler needs are read
(no safety checker, no feature extractor).  The scheduler is always DDIM
(deterministic, eta 0), made from the model's own scheduler configuration.
Base and inpainting checkpoints (a UNet of 9 input channels) both load.  On
the CPU the convolutional networks are put in channels-last memory format,
where oneDNN's convolutions run faster (its backward ones, which L_gray runs
through the VAE at every step, several times faster for few channels).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from chromaflow.errors import InputError, NotAvailableError

log = logging.getLogger("chromaflow")

__all__ = ["SDParts", "load_parts", "model_check"]

_SINGLE_FILE = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


@dataclass
class SDParts:
    """The networks of one Stable Diffusion model, on one device, in one dtype.

    Attributes:
        vae: ``AutoencoderKL``; ``unet``: ``UNet2DConditionModel``;
        text_encoder: ``CLIPTextModel``; tokenizer: ``CLIPTokenizer``;
        scheduler: a ``DDIMScheduler``; controlnet: a ``ControlNetModel`` or ``None``.
        device, dtype: where and in what the networks run.
        name: what the model was loaded from (for messages).
    """

    vae: Any
    unet: Any
    text_encoder: Any
    tokenizer: Any
    scheduler: Any
    controlnet: Any
    device: torch.device
    dtype: torch.dtype
    name: str = ""

    @property
    def vae_scale(self) -> int:
        """Pixels per latent cell (8 for Stable Diffusion)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this (the VAE's factor times the UNet's downsampling)."""
        return self.vae_scale * 2 ** (len(self.unet.config.block_out_channels) - 1)

    @property
    def inpainting(self) -> bool:
        """Whether the UNet is an inpainting UNet (latents + mask + masked-image latents: 9 channels)."""
        return int(self.unet.config.in_channels) == 9

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)


def _offline() -> bool:
    return os.environ.get("CHROMAFLOW_OFFLINE", "") not in ("", "0")


def model_check(model: str | None, controlnet: str | None = None) -> str | None:
    """Why ``model`` / ``controlnet`` cannot be loaded here, or ``None`` (a hub id is fine when online)."""
    if not model:
        return "no Stable Diffusion model given (--sd-model FOLDER, FILE or a hub id)"
    for what, spec in (("--sd-model", model), ("--controlnet", controlnet)):
        if spec is None:
            continue
        path = Path(spec).expanduser()
        if path.exists():
            continue
        if _looks_like_hub_id(spec) and not _offline():
            continue
        why = "downloads are off (CHROMAFLOW_OFFLINE)" if _looks_like_hub_id(spec) else "no such folder or file"
        return f"{what} {spec}: {why}"
    return None


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "~"))


def load_parts(model: str, controlnet: str | None, device: torch.device, dtype: torch.dtype) -> SDParts:
    """The parts of ``model`` (plus ``controlnet``) on ``device`` in ``dtype``, in eval mode.

    Raises:
        InputError: nothing loadable there (one line).
        NotAvailableError: the diffusers package is missing.
    """
    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise NotAvailableError("the Stable Diffusion backends need diffusers: pip install 'chromaflow[diffusers]'"
                                ) from None
    why = model_check(model, controlnet)
    if why:
        raise InputError(why)
    try:
        with _quiet_loading():
            parts = _load_model(model, dtype)
            cnet = _load_controlnet(controlnet, dtype) if controlnet else None
    except InputError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"--sd-model {model}: cannot load it ({first})") from None
    from diffusers import DDIMScheduler

    vae, unet, text_encoder, tokenizer, scheduler = parts
    scheduler = DDIMScheduler.from_config(scheduler.config, clip_sample=False)
    nets = [vae, unet, text_encoder] + ([cnet] if cnet is not None else [])
    for net in nets:
        net.to(device).eval().requires_grad_(False)
    if device.type == "cpu":  # oneDNN's convolutions, above all the backward ones of L_gray, run faster channels-last
        for net in nets:
            if net is not text_encoder:
                net.to(memory_format=torch.channels_last)
    result = SDParts(vae, unet, text_encoder, tokenizer, scheduler, cnet, device, dtype, name=str(model))
    if cnet is not None and int(cnet.config.in_channels) != 4:
        raise InputError(f"--controlnet {controlnet}: expects {cnet.config.in_channels} latent channels")
    log.info("Stable Diffusion: %s%s on %s (%s)%s", model, " (inpainting UNet)" if result.inpainting else "",
             device, str(dtype).replace("torch.", ""), f", ControlNet {controlnet}" if cnet is not None else "")
    return result


@contextlib.contextmanager
def _quiet_loading():
    """No per-file progress bars or low-memory notices while the parts load (one log line says what loaded)."""
    from diffusers.utils import logging as d_logging
    from transformers.utils import logging as t_logging

    bars = t_logging.is_progress_bar_enabled()
    level = d_logging.get_verbosity()
    t_logging.disable_progress_bar()
    d_logging.set_verbosity_error()
    try:
        yield
    finally:
        d_logging.set_verbosity(level)
        if bars:
            t_logging.enable_progress_bar()


def _load_model(model: str, dtype: torch.dtype):
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    path = Path(model).expanduser()
    if path.is_file():
        if path.suffix.lower() not in _SINGLE_FILE:
            raise InputError(f"--sd-model {model}: not a checkpoint ({', '.join(_SINGLE_FILE)}) nor a folder")
        from diffusers import StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_single_file(str(path), torch_dtype=dtype, local_files_only=_offline(),
                                                        load_safety_checker=False)
        return pipe.vae, pipe.unet, pipe.text_encoder, pipe.tokenizer, pipe.scheduler
    local = path.is_dir()
    if local and not (path / "unet").is_dir():
        raise InputError(f"--sd-model {model}: a folder without unet/ (not a diffusers Stable Diffusion folder)")
    src = str(path) if local else model
    kw = {"local_files_only": local or _offline()}
    vae = AutoencoderKL.from_pretrained(src, subfolder="vae", torch_dtype=dtype, **kw)
    unet = UNet2DConditionModel.from_pretrained(src, subfolder="unet", torch_dtype=dtype, **kw)
    text_encoder = CLIPTextModel.from_pretrained(src, subfolder="text_encoder", torch_dtype=dtype, **kw)
    tokenizer = CLIPTokenizer.from_pretrained(src, subfolder="tokenizer", **kw)
    scheduler = DDIMScheduler.from_pretrained(src, subfolder="scheduler", **kw)
    return vae, unet, text_encoder, tokenizer, scheduler


def _load_controlnet(spec: str, dtype: torch.dtype):
    from diffusers import ControlNetModel

    path = Path(spec).expanduser()
    if path.is_file():
        return ControlNetModel.from_single_file(str(path), torch_dtype=dtype, local_files_only=_offline())
    return ControlNetModel.from_pretrained(str(path) if path.is_dir() else spec, torch_dtype=dtype,
                                           local_files_only=path.is_dir() or _offline())
