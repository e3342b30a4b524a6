"""Zhang et al.'s SIGGRAPH 2017 user-guided network as the fill step: ``--fill siggraph17``.

The engine's reliable colours (propagated along the motion, taken from
references, a prompt's grounded objects) are the network's sparse hints:
pixels whose confidence reaches ``threshold`` are given as hints (mask 1) and
kept exactly in the output; every other pixel is the network's prediction
from the gray frame and those hints.  The network runs on the frame at its
own aspect (padded to a multiple of 8, shrunk to ``max_side`` first when
larger; the chroma is then brought back along the luminance edges).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from chromaflow.color.lab import lightness_to_gray
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.image import network_dtype, run_in, weights_check
from chromaflow.fill.base import ChromaFill
from chromaflow.registry import register

__all__ = ["SIGGRAPH17FillOptions", "SIGGRAPH17Fill"]


@dataclass(frozen=True)
class SIGGRAPH17FillOptions:
    """Options of the SIGGRAPH17 fill step.

    Attributes:
        weights: a model-store name (siggraph17) or the path of the official
            ``siggraph17-df00044c.pth``; fetched when first used unless CHROMAFLOW_OFFLINE is set.
        threshold: hints at or above this confidence are given to the network and kept exactly.
        max_side: the network sees the frame with its longer side at most this (pixels).
    """

    weights: str = "siggraph17"
    threshold: float = 0.5
    max_side: int = 512

    def __post_init__(self) -> None:
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in (0, 1]; got {self.threshold}")
        if int(self.max_side) < 16:
            raise ValueError(f"max_side must be at least 16; got {self.max_side}")


class SIGGRAPH17Fill(ChromaFill):
    """Hint completion by the SIGGRAPH17 network (see the module doc).

    Args:
        net: a loaded :class:`~chromaflow.models.zhang.SIGGRAPH17Net`.
        runtime: device and precision.
        threshold: confidence from which a hint is given and kept.
        max_side: longest side the network sees.
    """

    name = "siggraph17"

    def __init__(self, net: torch.nn.Module, runtime, threshold: float = 0.5, max_side: int = 512) -> None:
        self.runtime = runtime
        self.net = net.to(runtime.device).eval()
        self.dtype = network_dtype(runtime, half_safe=True)
        self.threshold = float(threshold)
        self.max_side = int(max_side)

    def fill(self, lightness: np.ndarray, ab: np.ndarray, confidence: np.ndarray) -> np.ndarray:
        """Complete ``ab`` (see :meth:`ChromaFill.fill`): hints kept exactly, the rest predicted."""
        lightness = np.asarray(lightness, np.float32)
        known = np.asarray(confidence, np.float32) >= self.threshold
        hints = np.where(known[..., None], np.asarray(ab, np.float32), 0.0).astype(np.float32)
        h, w = lightness.shape
        scale = min(1.0, self.max_side / max(h, w))
        sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
        if (sh, sw) != (h, w):
            L_s = cv2.resize(lightness, (sw, sh), interpolation=cv2.INTER_AREA)
            k_s = cv2.resize(known.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
            hab_s = cv2.resize(hints, (sw, sh), interpolation=cv2.INTER_AREA) / np.maximum(k_s, 1e-6)[..., None]
            mask_s = (k_s >= 0.5).astype(np.float32)
        else:
            L_s, hab_s, mask_s = lightness, hints, known.astype(np.float32)
        hab_s = hab_s * mask_s[..., None]
        pad_h, pad_w = -sh % 8, -sw % 8
        device = self.runtime.device
        L_t = F.pad(torch.from_numpy(np.ascontiguousarray(L_s))[None, None], (0, pad_w, 0, pad_h), mode="replicate")
        ab_t = F.pad(torch.from_numpy(np.ascontiguousarray(hab_s)).permute(2, 0, 1)[None], (0, pad_w, 0, pad_h))
        m_t = F.pad(torch.from_numpy(np.ascontiguousarray(mask_s))[None, None], (0, pad_w, 0, pad_h))
        with torch.inference_mode():
            out = run_in(self.dtype, device, self.net, L_t.to(device), ab_t.to(device), m_t.to(device))
        pred = out.float()[0, :, :sh, :sw].permute(1, 2, 0).cpu().numpy()
        if (sh, sw) != (h, w):
            pred = guided_upsample(pred, lightness_to_gray(lightness))
        return np.where(known[..., None], np.asarray(ab, np.float32), pred).astype(np.float32)


@register("fill", "siggraph17", options=SIGGRAPH17FillOptions, packages=("torch",), licence="BSD-2-Clause (weights)",
          check=lambda o: weights_check(o.weights),
          description="Zhang et al. 2017 user-guided network: the reliable colours are its hints, the rest its "
                      "output (official checkpoint; fetched when first used)")
def _make_siggraph17_fill(options: SIGGRAPH17FillOptions, runtime) -> SIGGRAPH17Fill:
    from chromaflow.colorizers.zhang import load_zhang
    from chromaflow.store import default_store

    path = default_store().resolve(options.weights, "--fill siggraph17 weights")
    return SIGGRAPH17Fill(load_zhang(path, "siggraph17"), runtime, options.threshold, options.max_side)
