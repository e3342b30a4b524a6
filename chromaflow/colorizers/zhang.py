"""Zhang et al.'s networks as keyframe colorizers: ``--colorizer siggraph17`` and ``--colorizer eccv16``.

* **siggraph17** (Real-Time User-Guided Image Colorization, SIGGRAPH 2017)
  takes sparse ab hints with a mask: the engine's ``known`` colours (a
  prompt's grounded objects, colours carried from a reference) are its hints,
  so it colours around them; with none it is an automatic colorizer.  The
  same network is the fill step ``--fill siggraph17``
  (:mod:`chromaflow.fill.siggraph17`).
* **eccv16** (Colorful Image Colorization, ECCV 2016): automatic only.

Both read the publisher's files by model-store name or path and load them
strictly (:mod:`chromaflow.models.zhang`); they run at ``input_size`` square
(the official demos' 256), in float16 on a GPU when asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from chromaflow.colorizers.image import ImageNetworkColorizer, weights_check
from chromaflow.errors import InputError
from chromaflow.models.checkpoint import load_strict, read_state_dict
from chromaflow.models.zhang import ECCV16Net, SIGGRAPH17Net
from chromaflow.registry import register

__all__ = ["ZhangOptions", "SIGGRAPH17Colorizer", "ECCV16Colorizer", "load_zhang"]


@dataclass(frozen=True)
class ZhangOptions:
    """Options of Zhang et al.'s colorizers.

    Attributes:
        weights: a model-store name (siggraph17, eccv16) or the path of the
            official ``.pth``; unset: the backend's own (downloaded when first used
            unless CHROMAFLOW_OFFLINE is set).
        input_size: the square side the network sees (the official demos' 256); a multiple of 8.
        batch: keyframes per forward pass.
    """

    weights: str | None = None
    input_size: int = 256
    batch: int = 4

    def __post_init__(self) -> None:
        if int(self.input_size) < 16 or int(self.input_size) % 8:
            raise ValueError(f"input_size must be a multiple of 8, at least 16; got {self.input_size}")
        if int(self.batch) < 1:
            raise ValueError(f"batch must be at least 1; got {self.batch}")


def load_zhang(path, which: str) -> torch.nn.Module:
    """``SIGGRAPH17Net`` (``which="siggraph17"``) or ``ECCV16Net`` (``"eccv16"``) from an official file, eval mode.

    Raises:
        InputError: missing, unreadable or not that network's checkpoint (one line).
    """
    net = SIGGRAPH17Net() if which == "siggraph17" else ECCV16Net()
    label = "SIGGRAPH17" if which == "siggraph17" else "ECCV16"
    try:
        load_strict(net, read_state_dict(path, f"{label} checkpoint"), f"{path} ({label})")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return net.eval()


class SIGGRAPH17Colorizer(ImageNetworkColorizer):
    """Keyframes coloured by the SIGGRAPH17 network, with the engine's known colours as its hints."""

    name = "siggraph17"
    takes_hints = True

    def _forward(self, lightness, hint_ab, hint_mask) -> torch.Tensor:
        return self.net(lightness, hint_ab, hint_mask)


class ECCV16Colorizer(ImageNetworkColorizer):
    """Keyframes coloured by the ECCV16 network (automatic; known colours are pasted back)."""

    name = "eccv16"

    def _forward(self, lightness, hint_ab, hint_mask) -> torch.Tensor:
        return self.net(lightness)


def zhang_network(options: ZhangOptions, which: str) -> torch.nn.Module:
    """The network ``which`` loaded from ``options.weights`` (or the store's file of that name)."""
    from chromaflow.store import default_store

    path = default_store().resolve(options.weights or which, f"--colorizer {which} weights")
    return load_zhang(path, which)


@register("colorizer", "siggraph17", options=ZhangOptions, packages=("torch",), licence="BSD-2-Clause (weights)",
          check=lambda o: weights_check(o.weights or "siggraph17"),
          description="Zhang et al. 2017 user-guided network: takes the engine's known colours as hints "
                      "(official checkpoint; fetched when first used)")
def _make_siggraph17(options: ZhangOptions, runtime) -> SIGGRAPH17Colorizer:
    return SIGGRAPH17Colorizer(zhang_network(options, "siggraph17"), runtime, options.input_size, options.batch)


@register("colorizer", "eccv16", options=ZhangOptions, packages=("torch",), licence="BSD-2-Clause (weights)",
          check=lambda o: weights_check(o.weights or "eccv16"),
          description="Zhang et al. 2016 automatic network (official checkpoint; fetched when first used)")
def _make_eccv16(options: ZhangOptions, runtime) -> ECCV16Colorizer:
    return ECCV16Colorizer(zhang_network(options, "eccv16"), runtime, options.input_size, options.batch)
