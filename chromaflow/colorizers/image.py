"""Image colorization networks as keyframe colorizers: the part every such backend shares.

A publisher's image network (DDColor, Zhang et al.'s) sees one gray frame at
its own input size and returns chroma.  :class:`ImageNetworkColorizer` does
the rest the engine expects of a colorizer: batches the keyframes, resizes
them to the network's input (square, as the official pipelines do), runs the
network on the runtime's device, brings the chroma back to the frame's size
along its luminance edges (:func:`~chromaflow.color.upsample.guided_upsample`)
and keeps ``known`` colours of confidence 1 exactly.  The frame's own
lightness is never changed: only ab leaves this module.

Such networks take no palette and no text: a palette given with one of them
is reported once and otherwise unused; a prompt reaches them only through
the engine's grounded hints (``known``), which every colorizer keeps.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from chromaflow.color.lab import lightness_to_gray
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.base import Colorizer
from chromaflow.guidance.conditions import Conditions

log = logging.getLogger("chromaflow")

__all__ = ["ImageNetworkColorizer", "resize_lightness", "network_dtype", "run_in", "weights_check"]


def weights_check(spec: str | None) -> str | None:
    """Why weights ``spec`` (a model-store name or a path) cannot be used here now, or ``None``.

    A named file that is not here yet but can be downloaded is usable (it is
    fetched on first use); offline it is not.
    """
    from pathlib import Path

    from chromaflow.store import default_store

    store = default_store()
    if spec in store.manifest:
        if store.find(spec) is not None:
            return None
        if store.offline:
            return f"weights {spec} not here and downloads are off (chromaflow models fetch {spec} on a machine online)"
        return None
    if spec and Path(spec).expanduser().is_file():
        return None
    return f"weights {spec!r}: no such file or model name"


def resize_lightness(lightness: np.ndarray, size: int) -> np.ndarray:
    """``(T, h, w)`` Lab L -> ``(T, size, size)`` (area-averaged when shrinking, bilinear otherwise)."""
    out = np.empty((len(lightness), size, size), np.float32)
    for i, frame in enumerate(lightness):
        shrink = frame.shape[0] > size or frame.shape[1] > size
        out[i] = cv2.resize(frame.astype(np.float32), (size, size),
                            interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out


def network_dtype(runtime, half_safe: bool) -> torch.dtype:
    """The dtype a network runs in: float32 on the CPU; the runtime's precision on a GPU, except
    float16 for a network where it is not safe (then bfloat16 where the GPU has it, else float32)."""
    dtype = runtime.dtype
    if dtype == torch.float16 and not half_safe:
        if runtime.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return dtype


def run_in(dtype: torch.dtype, device: torch.device, fn, *args):
    """``fn(*args)`` under autocast to ``dtype`` on ``device`` (plainly when ``dtype`` is float32)."""
    if dtype == torch.float32:
        return fn(*args)
    with torch.autocast(device.type, dtype=dtype):
        return fn(*args)


class ImageNetworkColorizer(Colorizer):
    """Base of keyframe colorizers built on a single-image network (see the module doc).

    Args:
        net: the network in eval mode (moved to ``runtime.device`` here).
        runtime: device and precision.
        input_size: the square side the network sees.
        batch: keyframes per forward pass.
        half_safe: whether float16 autocast is safe for this network.
    """

    name = "image"
    #: does the network use ``known`` colours as input (otherwise they are only pasted back)
    takes_hints = False

    def __init__(self, net: torch.nn.Module, runtime, input_size: int, batch: int, half_safe: bool = True) -> None:
        self.runtime = runtime
        self.dtype = network_dtype(runtime, half_safe)
        self.net = net.to(runtime.device).eval()
        self.input_size = int(input_size)
        self.batch = max(1, int(batch))
        self._warned_palette = False

    @abstractmethod
    def _forward(self, lightness: torch.Tensor, hint_ab: torch.Tensor | None, hint_mask: torch.Tensor | None
                 ) -> torch.Tensor:
        """``(N, 1, S, S)`` L in [0, 100] (+ hints ``(N, 2, S, S)`` ab and ``(N, 1, S, S)`` mask in [0, 1],
        or ``None``) on the device -> ``(N, 2, S, S)`` Lab ab."""

    def network_ab(self, lightness: np.ndarray, known: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """The network's own chroma at its input size: ``(T, h, w)`` L -> ``(T, S, S, 2)`` ab (float32)."""
        small = resize_lightness(lightness, self.input_size)
        hints = None
        if known is not None and self.takes_hints:
            hints = _resize_hints(known[0], known[1], self.input_size)
        out = np.empty((len(small), self.input_size, self.input_size, 2), np.float32)
        device = self.runtime.device
        with torch.inference_mode():
            for start in range(0, len(small), self.batch):
                sl = slice(start, start + self.batch)
                L = torch.from_numpy(small[sl])[:, None].to(device)
                hab = hm = None
                if hints is not None:
                    hab = torch.from_numpy(hints[0][sl]).permute(0, 3, 1, 2).to(device)
                    hm = torch.from_numpy(hints[1][sl])[:, None].to(device)
                ab = run_in(self.dtype, device, self._forward, L, hab, hm)
                out[sl] = ab.float().permute(0, 2, 3, 1).cpu().numpy()
        return out

    def colorize(
        self,
        lightness: np.ndarray,
        frame_indices: Sequence[int],
        conditions: Conditions,
        known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Chroma of the keyframes (see :meth:`Colorizer.colorize`); the palette is not used (reported once)."""
        if conditions.palette is not None and not self._warned_palette:
            self._warned_palette = True
            log.warning("colorizer %s takes no palette: its keyframes are coloured without it (use the "
                        "embedded model, --colorizer model, for palette-guided keyframes)", self.name)
        lightness = np.asarray(lightness, np.float32)
        net_ab = self.network_ab(lightness, known)
        result = np.empty((*lightness.shape, 2), np.float32)
        for i, frame in enumerate(lightness):
            h, w = frame.shape
            low = cv2.resize(net_ab[i], (min(w, self.input_size), min(h, self.input_size)), interpolation=cv2.INTER_AREA)
            result[i] = guided_upsample(low, lightness_to_gray(frame))
        if known is not None:
            keep = (np.asarray(known[1]) >= 0.999)[..., None]
            result = np.where(keep, np.asarray(known[0], np.float32), result).astype(np.float32)
        return result


def _resize_hints(ab: np.ndarray, confidence: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Hints ``(T, h, w, 2)`` + confidence ``(T, h, w)`` -> ``(T, S, S, 2)`` ab and ``(T, S, S)`` mask in {0, 1}.

    A cell's hint is the confidence-weighted mean of the hints inside it; it is
    a hint (mask 1) where the cell's mean confidence reaches 0.5.
    """
    t = len(ab)
    out_ab = np.zeros((t, size, size, 2), np.float32)
    out_mask = np.zeros((t, size, size), np.float32)
    for i in range(t):
        c = np.asarray(confidence[i], np.float32)
        c_s = cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA)
        abc = cv2.resize(np.asarray(ab[i], np.float32) * c[..., None], (size, size), interpolation=cv2.INTER_AREA)
        out_ab[i] = abc / np.maximum(c_s, 1e-6)[..., None]
        out_mask[i] = (c_s >= 0.5).astype(np.float32)
        out_ab[i] *= out_mask[i][..., None]
    return out_ab, out_mask
