"""``--palette tags``: a palette from what the video shows.

The offline stand-in for the palette paper's image tagger plus language
model: the frozen EfficientNet-Lite0 classifier tags gray frames with
ImageNet classes, and a shipped lexicon (``chromaflow/data/tag_lexicon.json``,
built by ``scripts/build_tag_lexicon.py`` from the training photos) gives each
class its typical colours, three Lab colours with their shares.  The colours
of the top classes, weighted by probability and share, are clustered into the
palette.

Where the detectors and segmenters of the model store are at hand
(:mod:`chromaflow.guidance.grounders`), what they find is tagged too: COCO
detections (weighted by score and box area) and Pascal VOC pixels (by their
share of the frame), people included, which ImageNet has no class for.  A
detector class takes its colours from the lexicon classes it stands for
(the same word matching as the prompt grounding: "dog" -> the dog breeds,
"person" -> the classes of clothes).  Classifier and detector tags then
weigh half each.
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


def detector_tags(frames: Sequence[np.ndarray], models=None) -> dict[str, float]:
    """What the detectors and segmenters see in ``frames``: ``{class name: weight}``, weights summing to 1.

    COCO detections count their score times their box's share of the frame,
    VOC classes their pixels' share.  Empty when no detector model is here.
    """
    from chromaflow.guidance import detectors as D
    from chromaflow.guidance.grounders import VOC_AS_COCO, shared_models

    models = models if models is not None else shared_models()
    found: dict[str, float] = {}
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        area = float(g.shape[0] * g.shape[1])
        coco = models.get("coco")
        for d in (coco(g) if coco is not None else []):
            x0, y0, x1, y1 = d.box
            found[d.label] = found.get(d.label, 0.0) + d.score * (x1 - x0) * (y1 - y0) / area
        voc = models.get("voc")
        if voc is not None:
            labels = voc(g).argmax(0)
            for k in range(1, len(D.VOC_CLASSES)):
                share = float((labels == k).mean())
                if share > 0.005:
                    name = VOC_AS_COCO.get(D.VOC_CLASSES[k], D.VOC_CLASSES[k])
                    found[name] = found.get(name, 0.0) + share
    total = sum(found.values())
    return {n: w / total for n, w in sorted(found.items(), key=lambda x: -x[1])} if total > 0 else {}


@lru_cache(maxsize=256)
def _detector_lexicon(name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Typical Lab colours ``(3, 3)`` and shares of a detector class, from the lexicon classes its name stands for."""
    from chromaflow.guidance.grounding import ClassVocabulary, GroundingOptions
    from chromaflow.runtime import default_runtime

    match = ClassVocabulary(default_runtime().text_encoder()).match(name, GroundingOptions())
    lexicon = tag_lexicon()
    classes = [(c, s) for c, s in zip(match.classes, match.similarity) if c in lexicon][:10]
    if not classes:
        return None
    points = np.concatenate([lexicon[c][0] for c, _ in classes])
    weights = np.concatenate([s * lexicon[c][1] for c, s in classes])
    centers, shares = weighted_kmeans(points, weights, 3, 0)
    return centers, shares


def tag_palette(
    frames: Sequence[np.ndarray],
    k: int = PALETTE_SIZE,
    seed: int = 0,
    top: int = 5,
    encoder: torch.nn.Module | None = None,
    detectors: bool = True,
    models=None,
) -> TagPalette:
    """Palette of the colours typical of what the frames show.

    Args:
        frames: a few frames of the video (RGB or gray ``uint8``).
        k: palette size.
        seed: k-means seed.
        top: number of classes (tags) used.
        encoder: the frozen EfficientNet-Lite0 (loaded if ``None``).
        detectors: also tag what the model store's detectors find (when they are here).
        models: the detector sessions (default: the process-wide ones).

    Returns:
        :class:`TagPalette`; its colours are ordered by share; detector tags are
        named ``"dog (detector)"``.
    """
    from chromaflow.guidance.grounding import imagenet_classes

    prob = class_probabilities(frames, encoder)
    lexicon = tag_lexicon()
    ranked = [int(c) for c in np.argsort(-prob) if int(c) in lexicon][:top]
    mass = max(float(sum(prob[c] for c in ranked)), 1e-12)
    names = imagenet_classes().names
    points = [lexicon[c][0] for c in ranked]
    weights = [prob[c] / mass * lexicon[c][1] for c in ranked]
    tags = [(names[c], float(prob[c])) for c in ranked]
    found = detector_tags(frames, models) if detectors else {}
    used = [(n, w, lex) for n, w in list(found.items())[:top] if (lex := _detector_lexicon(n)) is not None]
    if used:
        det_mass = sum(w for _, w, _ in used)
        weights = [0.5 * w for w in weights]
        for n, w, (colors, shares) in used:
            points.append(colors)
            weights.append(0.5 * w / det_mass * shares)
            tags.append((f"{n} (detector)", float(w)))
    centers, shares = weighted_kmeans(np.concatenate(points), np.concatenate(weights), k, seed)
    return TagPalette(palette_from_lab(centers, shares), tuple(tags))
