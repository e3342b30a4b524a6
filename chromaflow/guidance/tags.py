"""``--palette tags``: a palette from what the video shows.

The offline stand-in for the palette paper's image tagger plus language
model: the frozen EfficientNet-Lite0 classifier tags gray frames with
ImageNet classes, and a shipped lexicon (``chromaflow/data/tag_lexicon.json``,
built by ``scripts/build_tag_lexicon.py`` from the training photos) gives each
class its typical colours, three Lab colours with their shares.  The colours
of the top classes, weighted by probability and share, are clustered into the
palette.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import torch

from chromaflow.guidance.palette import PALETTE_SIZE, Palette, palette_from_lab, weighted_kmeans


@dataclass(frozen=True)
class TagPalette:
    """A palette from content tags, and the tags behind it.

    Attributes:
        palette: the colours.
        tags: ``(class name, mean probability)`` of the classes used, most probable first.
    """

    palette: Palette
    tags: tuple[tuple[str, float], ...]


@lru_cache(maxsize=1)
def tag_lexicon() -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """``{class index: (Lab colours (3, 3), shares (3,))}`` from the shipped lexicon."""
    data = json.loads((resources.files("chromaflow.data") / "tag_lexicon.json").read_text())
    return {
        int(c): (np.asarray(v["colors"], np.float64), np.asarray(v["shares"], np.float64))
        for c, v in data["classes"].items()
    }


def _classifier() -> torch.nn.Module:
    from chromaflow.runtime import default_runtime

    return default_runtime().encoder()


@torch.no_grad()
def class_probabilities(frames: Sequence[np.ndarray], encoder: torch.nn.Module | None = None) -> np.ndarray:
    """Mean ImageNet class probabilities of gray versions of ``frames``.

    Args:
        frames: ``(H, W, 3)`` RGB or ``(H, W)`` gray ``uint8`` images (colour is
            discarded: the classifier reads gray, as it will at run time).
        encoder: the frozen EfficientNet-Lite0 (loaded if ``None``).

    Returns:
        ``(1000,)`` ``float64`` probabilities.
    """
    from chromaflow.models.efficientnet import gray_input

    encoder = encoder if encoder is not None else _classifier()
    total = np.zeros(1000)
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        h, w = g.shape
        s = 224.0 / min(h, w)
        small = cv2.resize(g, (max(32, round(w * s)), max(32, round(h * s))), interpolation=cv2.INTER_AREA)
        device = next(encoder.parameters()).device
        x = gray_input(torch.from_numpy(small.astype(np.float32) / 255.0)[None].to(device))
        total += torch.softmax(encoder.classify(x), -1)[0].double().cpu().numpy()
    return total / max(1, len(frames))


def tag_palette(
    frames: Sequence[np.ndarray],
    k: int = PALETTE_SIZE,
    seed: int = 0,
    top: int = 5,
    encoder: torch.nn.Module | None = None,
) -> TagPalette:
    """Palette of the colours typical of what the frames show.

    Args:
        frames: a few frames of the video (RGB or gray ``uint8``).
        k: palette size.
        seed: k-means seed.
        top: number of classes (tags) used.
        encoder: the frozen EfficientNet-Lite0 (loaded if ``None``).

    Returns:
        :class:`TagPalette`; its colours are ordered by share.
    """
    from chromaflow.guidance.grounding import imagenet_classes

    prob = class_probabilities(frames, encoder)
    lexicon = tag_lexicon()
    ranked = [int(c) for c in np.argsort(-prob) if int(c) in lexicon][:top]
    points = np.concatenate([lexicon[c][0] for c in ranked])
    weights = np.concatenate([prob[c] * lexicon[c][1] for c in ranked])
    centers, shares = weighted_kmeans(points, weights, k, seed)
    names = imagenet_classes().names
    return TagPalette(palette_from_lab(centers, shares), tuple((names[c], float(prob[c])) for c in ranked))
