"""DDColor (Kang et al., ICCV 2023) as a keyframe colorizer: ``--colorizer ddcolor``.

The publisher's checkpoint is read by model-store name (``ddcolor_modelscope``
by default; ``ddcolor_artistic``, ``ddcolor_paper``, ``ddcolor_paper_tiny``)
or from a path, and loaded strictly into :class:`~chromaflow.models.ddcolor.DDColorNet`
(variant read from the file).  As the official pipeline: the gray frame is
resized to ``input_size`` square, given as RGB of ``Lab(L, 0, 0)``, and the
predicted ab (OpenCV's float Lab, the same as ours) is brought back to the
frame's size; the frame's lightness is kept.  float16 is not used
(DDColor overflows in it); on a GPU asked for float16 it runs in bfloat16
where supported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chromaflow.colorizers.image import ImageNetworkColorizer, weights_check
from chromaflow.errors import InputError
from chromaflow.models.checkpoint import load_strict, read_state_dict
from chromaflow.models.ddcolor import IGNORED_KEYS, DDColorNet, ddcolor_config
from chromaflow.registry import register

__all__ = ["DDColorOptions", "DDColorColorizer", "load_ddcolor"]


@dataclass(frozen=True)
class DDColorOptions:
    """Options of the DDColor colorizer.

    Attributes:
        weights: a model-store name (ddcolor_modelscope, ddcolor_artistic,
            ddcolor_paper, ddcolor_paper_tiny) or the path of a DDColor ``.pth``;
            a name not here is downloaded (with progress) unless CHROMAFLOW_OFFLINE is set.
        input_size: the square side the network sees (the official pipeline's 512;
            256 is about 4x faster and a little less detailed); a multiple of 32.
        batch: keyframes per forward pass.
    """

    weights: str = "ddcolor_modelscope"
    input_size: int = 512
    batch: int = 2

    def __post_init__(self) -> None:
        if int(self.input_size) < 64 or int(self.input_size) % 32:
            raise ValueError(f"input_size must be a multiple of 32, at least 64; got {self.input_size}")
        if int(self.batch) < 1:
            raise ValueError(f"batch must be at least 1; got {self.batch}")


def load_ddcolor(path) -> DDColorNet:
    """A :class:`DDColorNet` in eval mode from a publisher's checkpoint file.

    Raises:
        InputError: missing, unreadable or not a DDColor checkpoint (one line).
    """
    try:
        sd = read_state_dict(path, "DDColor checkpoint")
        config = ddcolor_config(sd)
        net = DDColorNet(config)
        load_strict(net, sd, f"{path} ({config.encoder} DDColor)", ignore=IGNORED_KEYS)
    except ValueError as exc:
        raise InputError(f"{exc}") from None
    return net.eval()


class DDColorColorizer(ImageNetworkColorizer):
    """Keyframes coloured by DDColor (see the module doc)."""

    name = "ddcolor"

    def _forward(self, lightness, hint_ab, hint_mask) -> torch.Tensor:
        return self.net(gray_rgb(lightness))


def gray_rgb(lightness: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)`` Lab L in [0, 100] -> ``(N, 3, H, W)`` sRGB in [0, 1] of ``Lab(L, 0, 0)``
    (CIE inverse lightness, then sRGB companding: what OpenCV's float ``COLOR_LAB2RGB`` gives)."""
    fy = (lightness + 16.0) / 116.0
    y = torch.where(lightness > 7.9996, fy ** 3, lightness / 903.3)
    srgb = torch.where(y > 0.0031308, 1.055 * y.clamp(min=1e-12) ** (1 / 2.4) - 0.055, 12.92 * y)
    return srgb.clamp(0.0, 1.0).repeat(1, 3, 1, 1)


@register("colorizer", "ddcolor", options=DDColorOptions, packages=("torch",), licence="Apache-2.0 (weights)",
          check=lambda o: weights_check(o.weights),
          description="DDColor (ICCV 2023), the publisher's checkpoint from the model store or a path "
                      "(not shipped; fetched when first used)")
def _make_ddcolor(options: DDColorOptions, runtime) -> DDColorColorizer:
    from chromaflow.store import default_store

    path = default_store().resolve(options.weights, "--colorizer ddcolor weights")
    return DDColorColorizer(load_ddcolor(path), runtime, options.input_size, options.batch, half_safe=False)
