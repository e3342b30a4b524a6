"""Luminance-keyed chroma transfer: a weight-free baseline colorizer.

A global version of Welsh et al. (2002), "Transferring color to greyscale
images": from the colour source (reference images or a palette) we learn, for
each lightness level, the mean chroma of source pixels of that lightness; a
gray frame gets, at every pixel, the chroma learned for its lightness.  It has
no notion of objects, so it colours by brightness only.  It is honest about
what it is: a calibration baseline and a fallback, not a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from chromaflow.color.lab import gray_to_lightness, rgb_to_gray, rgb_to_lab
from chromaflow.colorizers.base import Colorizer
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.palette import Palette

N_BINS = 101  # one bin per L unit over [0, 100]


def chroma_lut(lightness: np.ndarray, ab: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean chroma per lightness level.

    Args:
        lightness: ``(N,)`` L values in ``[0, 100]``.
        ab: ``(N, 2)`` chroma of the same samples.
        weights: optional ``(N,)`` sample weights.

    Returns:
        ``(N_BINS, 2)`` ``float32`` table; empty levels are interpolated
        linearly from the nearest filled ones (held constant past the ends),
        then lightly smoothed.
    """
    idx = np.clip(np.rint(lightness).astype(np.int64), 0, N_BINS - 1)
    w = np.ones(len(idx)) if weights is None else np.asarray(weights, np.float64)
    count = np.bincount(idx, weights=w, minlength=N_BINS)
    table = np.zeros((N_BINS, 2), np.float64)
    for c in range(2):
        table[:, c] = np.bincount(idx, weights=w * ab[:, c], minlength=N_BINS)
    filled = count > 0
    if not filled.any():
        return np.zeros((N_BINS, 2), np.float32)
    table[filled] /= count[filled, None]
    levels = np.arange(N_BINS)
    for c in range(2):
        table[:, c] = np.interp(levels, levels[filled], table[filled, c])
    # Light smoothing so a single odd bin does not make a visible band.
    kernel = np.array([1, 2, 3, 2, 1], np.float64) / 9.0
    padded = np.pad(table, ((2, 2), (0, 0)), mode="edge")
    table = np.stack([np.convolve(padded[:, c], kernel, mode="valid") for c in range(2)], axis=1)
    return table.astype(np.float32)


def lut_from_image(rgb: np.ndarray, max_side: int = 256) -> np.ndarray:
    """Chroma table of an ``(H, W, 3)`` ``uint8`` sRGB image (see :func:`chroma_lut`)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    lab = rgb_to_lab(rgb).reshape(-1, 3)
    light = gray_to_lightness(rgb_to_gray(rgb)).reshape(-1)
    return chroma_lut(light, lab[:, 1:])


def lut_from_palette(palette: Palette) -> np.ndarray:
    """Chroma table interpolating the palette's colours by their lightness.

    Like :func:`lut_from_image`, each colour is keyed by the lightness of its
    gray (what a gray frame shows where that colour was), not by its own CIE L.
    """
    light = gray_to_lightness(rgb_to_gray(palette.rgb.reshape(1, -1, 3))).reshape(-1)
    return chroma_lut(light, palette.lab[:, 1:], palette.weights)


def apply_lut(lightness: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Look up chroma for every pixel: ``(..., )`` L -> ``(..., 2)`` ab, linear between levels."""
    x = np.clip(lightness, 0.0, N_BINS - 1.0)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, N_BINS - 1)
    t = (x - lo)[..., None].astype(np.float32)
    return table[lo] * (1.0 - t) + table[hi] * t


class LuminanceLUTColorizer(Colorizer):
    """Chroma by lightness, learned from references or a palette.

    With several references that are frames of the video, each frame uses a
    blend of their tables weighted by ``1 / (1 + |t - frame|)``, so the nearest
    reference dominates.  Related photos (no frame) weigh as much as a
    reference one frame away.  A palette alone gives a table interpolated
    between its colours' lightness levels.
    """

    name = "luminance-lut"

    def __init__(self) -> None:
        self._conditions: Conditions | None = None
        self._tables: list[tuple[int | None, np.ndarray]] = []

    def _tables_for(self, conditions: Conditions) -> list[tuple[int | None, np.ndarray]]:
        if conditions is not self._conditions:
            tables: list[tuple[int | None, np.ndarray]] = [
                (ref.frame, lut_from_image(ref.rgb)) for ref in conditions.references
            ]
            if not tables and conditions.palette is not None:
                tables.append((None, lut_from_palette(conditions.palette)))
            if not tables:
                raise ValueError("LuminanceLUTColorizer needs a reference or a palette")
            self._tables, self._conditions = tables, conditions
        return self._tables

    def colorize(
        self,
        lightness: np.ndarray,
        frame_indices: Sequence[int],
        conditions: Conditions,
    ) -> np.ndarray:
        tables = self._tables_for(conditions)
        out = np.empty(lightness.shape + (2,), np.float32)
        for i, t in enumerate(frame_indices):
            weights = np.array([1.0 / (1.0 + (abs(t - f) if f is not None else 1.0)) for f, _ in tables])
            table = np.tensordot(weights / weights.sum(), np.stack([tb for _, tb in tables]), axes=1)
            out[i] = apply_lut(lightness[i], table.astype(np.float32))
        return out
