"""Global colour palettes: parsing user specs and extracting them from images.

A palette is a small set of sRGB colours (5 by default, as in the palette
guidance paper) that steers the whole video.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from chromaflow.color.lab import rgb_to_lab
from chromaflow.errors import InputError

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
    """Parse ``"#aa3311,#2040ff,..."`` or colour names ``"rust, navy blue, sand"``, or both.

    Commas or spaces separate the colours; hex codes have 3 or 6 digits, ``#``
    optional; names and modifiers (``light``, ``deep``, ...) are the prompts'
    (:func:`chromaflow.guidance.prompt.parse_color_list`, 263 names).
    """
    from chromaflow.guidance.prompt import parse_color_list

    items = [s for s in re.split(r"[,\s]+", spec.strip()) if s]
    if not items:
        raise InputError("empty palette")
    colors = []
    if all(_HEX.match(item) for item in items):
        for item in items:
            digits = _HEX.match(item).group(1)
            if len(digits) == 3:
                digits = "".join(d * 2 for d in digits)
            colors.append([int(digits[i : i + 2], 16) for i in (0, 2, 4)])
    else:
        marked = " ".join(f"#{item}" if _HEX.match(item) and not item.startswith("#") else item
                          for item in re.split(r"(,)|\s+", spec.strip()) if item)  # bare hex codes among names
        for name, rgb in parse_color_list(marked):
            if rgb is None and (name.startswith("#") or re.fullmatch(r"[0-9a-f]{6}|[0-9a-f]{3}", name)):
                raise InputError(f"invalid hex color in palette: {name!r} (expected e.g. #1f6fb2)")
            if rgb is None:
                raise InputError(f"unknown color in palette: {name!r} (give hex codes like #1f6fb2 or color "
                                 "names like rust, navy, sand)")
            colors.append(list(rgb))
    if len(colors) > max_colors:
        raise InputError(f"palette has {len(colors)} colors; at most {max_colors} are allowed")
    rgb = np.array(colors, np.uint8)
    return Palette(rgb, np.full(len(rgb), 1.0 / len(rgb), np.float32))


def weighted_kmeans(
    points: np.ndarray, weights: np.ndarray, k: int, seed: int = 0, iters: int = 30
) -> tuple[np.ndarray, np.ndarray]:
    """K-means of weighted points (Lloyd's algorithm, seeded weighted initialisation).

    Args:
        points: ``(N, D)`` points (e.g. Lab colours).
        weights: ``(N,)`` non-negative weights, not all zero.
        k: number of clusters (at most ``N``).
        seed: the same seed gives the same result.

    Returns:
        ``(centres (k, D), shares (k,))``, largest share first; shares sum to 1.
    """
    x = np.asarray(points, np.float64)
    w = np.asarray(weights, np.float64)
    k = min(k, int((w > 0).sum()))
    rng = np.random.default_rng(seed)
    centers = x[rng.choice(len(x), k, replace=False, p=w / w.sum())].copy()
    for _ in range(iters):
        label = ((x[:, None] - centers[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            m = label == j
            if w[m].sum() > 0:
                centers[j] = (x[m] * w[m, None]).sum(0) / w[m].sum()
    shares = np.array([w[label == j].sum() for j in range(k)]) / w.sum()
    order = np.argsort(-shares, kind="stable")
    return centers[order], shares[order]


def palette_from_lab(lab: np.ndarray, weights: np.ndarray) -> Palette:
    """A :class:`Palette` from ``(K, 3)`` Lab colours (brought into sRGB) and their shares."""
    rgb = cv2.cvtColor(np.asarray(lab, np.float32).reshape(1, -1, 3), cv2.COLOR_Lab2RGB).reshape(-1, 3)
    w = np.asarray(weights, np.float32)
    return Palette(np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8), w / w.sum())


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
    return palette_from_lab(centers[order], counts[order])


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
    return palette_from_lab(lab, np.ones(len(lab)))


@functools.lru_cache(maxsize=1)
def _palette_gmm() -> dict[str, np.ndarray]:
    data = json.loads((resources.files("chromaflow.data") / "palette_gmm.json").read_text())
    return {k: np.asarray(data[k], np.float64) for k in ("weights", "means", "covariances")}


def sample_frames(video, samples: int = 8, width: int = 96) -> list[np.ndarray]:
    """``samples`` frames spread evenly over a video, ``width`` pixels wide, RGB ``uint8``.

    Args:
        video: a path (video file or frame directory) or an open
            :class:`~chromaflow.io.source.FrameSource` (read once more, from the start).
    """
    from chromaflow.io.source import FrameSource, open_source  # local import: io depends on nothing here

    def take(src: FrameSource) -> list[np.ndarray]:
        n = src.info.n_frames
        wanted = {round(i * (n - 1) / max(samples - 1, 1)) for i in range(min(samples, n))}
        out = []
        for f in src:
            if f.index in wanted:
                h, w = f.rgb.shape[:2]
                out.append(cv2.resize(f.rgb, (width, max(1, width * h // w)), interpolation=cv2.INTER_AREA))
            if len(out) == len(wanted):
                break
        return out

    if isinstance(video, FrameSource):
        return take(video)
    with open_source(video) as src:
        return take(src)


def palette_from_video(path: str | Path, k: int = PALETTE_SIZE, seed: int = 0, samples: int = 8) -> Palette:
    """K-means palette of ``samples`` frames spread over a video (or frame directory)."""
    mosaic = np.concatenate(sample_frames(path, samples), axis=0)
    if is_grayscale_image(mosaic):
        raise InputError(f"{path} is grayscale: it has no colors to take")
    return palette_from_image(mosaic, k, seed)


def parse_palette_spec(spec: str, seed: int = 0, video=None) -> Palette:
    """Turn ``--palette SPEC`` into a :class:`Palette`.

    SPEC is a list of hex colours, ``auto`` (sampled from the shipped colour
    mixture, reproducible by ``seed``), ``tags`` (what the classifier sees in
    ``video``, through the shipped tag lexicon: :func:`~chromaflow.guidance.tags.tag_palette`),
    or the path to an image or video (k-means of its colours).  ``video`` is
    a path or an open :class:`~chromaflow.io.source.FrameSource`.

    Raises:
        InputError: invalid colours, too many colours, unreadable or gray
            image, ``tags`` without a video.
    """
    spec = spec.strip()
    if spec == "auto":
        return auto_palette(seed)
    if spec == "tags":
        if video is None:
            raise InputError("--palette tags reads the video's content: give the video too")
        from chromaflow.guidance.tags import tag_palette  # local import: it loads the classifier

        tagged = tag_palette(sample_frames(video, width=320), seed=seed)
        logging.getLogger("chromaflow").info(
            "content tags: %s", ", ".join(f"{name} ({p:.2f})" for name, p in tagged.tags)
        )
        return tagged.palette
    from chromaflow.io.naming import VIDEO_EXTENSIONS  # local import: the io package loads PyAV

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
