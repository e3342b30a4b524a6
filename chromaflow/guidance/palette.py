"""Global colour palettes: parsing user specs and extracting them from images.

A palette is a small set of sRGB colours (5 by default, as in the palette
guidance paper) that steers the whole video.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from chromaflow.color.lab import rgb_to_lab
from chromaflow.errors import InputError, NotAvailableError
from chromaflow.io.naming import VIDEO_EXTENSIONS

PALETTE_SIZE = 5
_HEX = re.compile(r"^#?([0-9a-fA-F]{6}|[0-9a-fA-F]{3})$")


@dataclass(frozen=True)
class Palette:
    """A palette of ``K`` colours.

    Attributes:
        rgb: ``(K, 3)`` ``uint8`` sRGB colours.
        weights: ``(K,)`` ``float32`` share of each colour (sums to 1).
    """

    rgb: np.ndarray
    weights: np.ndarray

    @property
    def lab(self) -> np.ndarray:
        """``(K, 3)`` ``float32`` Lab (L in [0, 100], ab in about [-128, 127])."""
        return rgb_to_lab(self.rgb.reshape(1, -1, 3)).reshape(-1, 3)

    def hex(self) -> list[str]:
        return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in self.rgb]


def parse_hex_list(spec: str, max_colors: int = PALETTE_SIZE) -> Palette:
    """Parse ``"#aa3311,#2040ff,..."`` (commas or spaces; ``#`` optional; 3 or 6 digits)."""
    items = [s for s in re.split(r"[,\s]+", spec.strip()) if s]
    if not items:
        raise InputError("empty palette")
    if len(items) > max_colors:
        raise InputError(f"palette has {len(items)} colors; at most {max_colors} are allowed")
    colors = []
    for item in items:
        m = _HEX.match(item)
        if not m:
            raise InputError(f"invalid hex color in palette: {item!r} (expected e.g. #1f6fb2)")
        digits = m.group(1)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        colors.append([int(digits[i : i + 2], 16) for i in (0, 2, 4)])
    rgb = np.array(colors, np.uint8)
    return Palette(rgb, np.full(len(rgb), 1.0 / len(rgb), np.float32))


def palette_from_image(rgb: np.ndarray, k: int = PALETTE_SIZE, seed: int = 0) -> Palette:
    """K-means (in Lab) of an image's colours.

    Args:
        rgb: ``(H, W, 3)`` ``uint8`` sRGB.
        k: number of colours.
        seed: k-means seed (the result is deterministic for a seed).

    Returns:
        The ``k`` cluster centres, ordered from the largest cluster to the smallest.
    """
    h, w = rgb.shape[:2]
    scale = min(1.0, 160.0 / max(h, w))
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    lab = rgb_to_lab(small).reshape(-1, 3).astype(np.float32)
    k = min(k, len(lab))
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 0.1)
    _, labels, centers = cv2.kmeans(lab, k, None, criteria, 4, cv2.KMEANS_PP_CENTERS)
    counts = np.bincount(labels.ravel(), minlength=k).astype(np.float32)
    order = np.argsort(-counts, kind="stable")
    centers_lab = centers[order].reshape(1, k, 3)
    rgb_c = cv2.cvtColor(centers_lab, cv2.COLOR_Lab2RGB)
    rgb_c = np.clip(np.rint(rgb_c.reshape(k, 3) * 255.0), 0, 255).astype(np.uint8)
    return Palette(rgb_c, counts[order] / counts.sum())


def is_grayscale_image(rgb: np.ndarray, chroma: float = 3.0, fraction: float = 0.01) -> bool:
    """True when fewer than ``fraction`` of pixels have a Lab chroma above ``chroma``.

    A gray image saved in colour (or a sepia-free scan) has ``sqrt(a^2+b^2)``
    near 0 everywhere; even a dull colour photo exceeds 3 on many pixels.
    """
    lab = rgb_to_lab(rgb)
    c = np.hypot(lab[..., 1], lab[..., 2])
    return float((c > chroma).mean()) < fraction


def auto_palette(seed: int = 0, k: int = PALETTE_SIZE) -> Palette:
    """A palette sampled from the Gaussian mixture fitted on the training photos' saturated colours.

    The mixture (12 components in Lab, ``chromaflow/data/palette_gmm.json``,
    fitted by ``scripts/fit_palette_gmm.py``) is sampled reproducibly: ``k``
    distinct components drawn by weight, one colour from each, lightness kept
    in ``[20, 90]`` and the colour brought inside the sRGB gamut.

    Args:
        seed: the same seed gives the same palette.
        k: number of colours.
    """
    gmm = _palette_gmm()
    rng = np.random.default_rng(seed)
    weights = gmm["weights"] / gmm["weights"].sum()
    comps = rng.choice(len(weights), size=min(k, len(weights)), replace=False, p=weights)
    lab = np.stack([rng.multivariate_normal(gmm["means"][c], gmm["covariances"][c]) for c in comps])
    lab[:, 0] = np.clip(lab[:, 0], 20.0, 90.0)
    lab = lab[np.argsort(lab[:, 0])].astype(np.float32)
    rgb = cv2.cvtColor(lab.reshape(1, -1, 3), cv2.COLOR_Lab2RGB).reshape(-1, 3)
    rgb = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return Palette(rgb, np.full(len(rgb), 1.0 / len(rgb), np.float32))


@functools.lru_cache(maxsize=1)
def _palette_gmm() -> dict[str, np.ndarray]:
    data = json.loads((resources.files("chromaflow.data") / "palette_gmm.json").read_text())
    return {k: np.asarray(data[k], np.float64) for k in ("weights", "means", "covariances")}


def palette_from_video(path: str | Path, k: int = PALETTE_SIZE, seed: int = 0, samples: int = 8) -> Palette:
    """K-means palette of ``samples`` frames spread over a video (or frame directory)."""
    from chromaflow.io.source import open_source  # local import: io depends on nothing here

    with open_source(path) as src:
        n = src.info.n_frames
        wanted = {round(i * (n - 1) / max(samples - 1, 1)) for i in range(min(samples, n))}
        thumbs = [
            cv2.resize(f.rgb, (96, 96 * f.rgb.shape[0] // f.rgb.shape[1] or 1), interpolation=cv2.INTER_AREA)
            for f in src
            if f.index in wanted
        ]
    mosaic = np.concatenate(thumbs, axis=0)
    if is_grayscale_image(mosaic):
        raise InputError(f"{path} is grayscale: it has no colors to take")
    return palette_from_image(mosaic, k, seed)


def parse_palette_spec(spec: str, seed: int = 0) -> Palette:
    """Turn ``--palette SPEC`` into a :class:`Palette`.

    SPEC is a list of hex colours, ``auto`` (sampled from the shipped colour
    mixture, reproducible by ``seed``), or the path to an image or video
    (k-means of its colours).

    Raises:
        InputError: invalid colours, too many colours, unreadable or gray image.
        NotAvailableError: ``tags`` (it arrives with the classifier lexicon).
    """
    spec = spec.strip()
    if spec == "auto":
        return auto_palette(seed)
    if spec == "tags":
        raise NotAvailableError("--palette tags is not available yet: give hex colors, auto, or an image path")
    path = Path(spec)
    if path.exists() and (path.is_dir() or path.suffix.lower() in VIDEO_EXTENSIONS):
        return palette_from_video(path, seed=seed)
    if path.suffix and path.exists():
        from chromaflow.io.source import open_source  # local import: io depends on nothing here

        with open_source(path) as src:
            rgb = next(iter(src)).rgb
        if is_grayscale_image(rgb):
            raise InputError(f"palette image {path} is grayscale: it has no colors to take")
        return palette_from_image(rgb, seed=seed)
    if path.suffix.lower() in {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}:
        raise InputError(f"palette image not found: {path}")
    return parse_hex_list(spec)


def palette_swatch(palette: Palette, size: int = 120) -> np.ndarray:
    """An ``(size + 28, K * size, 3)`` ``uint8`` picture of the palette with each colour's hex code."""
    k = len(palette.rgb)
    img = np.full((size + 28, k * size, 3), 255, np.uint8)
    for i, (c, code) in enumerate(zip(palette.rgb, palette.hex())):
        img[:size, i * size : (i + 1) * size] = c
        cv2.putText(img, code, (i * size + 8, size + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img
