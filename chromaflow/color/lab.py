"""sRGB <-> CIE Lab conversions and the luminance rule.

Conventions used throughout chromaflow:

* RGB images are ``uint8`` arrays of shape ``(H, W, 3)`` in sRGB order, or
  ``float32`` in ``[0, 1]``.
* Lab images are ``float32`` arrays of shape ``(H, W, 3)`` with D65 white:
  ``L`` in ``[0, 100]`` and ``a``, ``b`` in about ``[-128, 127]``.
* Chroma (what colorizers predict) is the ``ab`` pair, shape ``(H, W, 2)``.
* *Gray* is the 8-bit BT.601 luma of sRGB, exactly OpenCV's ``COLOR_RGB2GRAY``
  (``0.299 R + 0.587 G + 0.114 B``).  This is the grayscale our users feed in
  and what benchmarks compare against.

The luminance rule: the output's gray is the input's gray.  Colorizers only
predict chroma; :func:`compose_rgb` turns (gray, ab) into RGB whose gray equals
the input (to within rounding), reducing saturation where the colour would
leave the RGB gamut instead of changing brightness.
"""

from __future__ import annotations

import cv2
import numpy as np

#: BT.601 luma weights (R, G, B), the weights of ``cv2.COLOR_RGB2GRAY``.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert sRGB to Lab.

    Args:
        rgb: ``(..., H, W, 3)`` ``uint8`` in ``[0, 255]`` or float in ``[0, 1]``.

    Returns:
        ``float32`` Lab of the same shape: L in ``[0, 100]``, ab in about
        ``[-128, 127]``.
    """
    arr = _to_float01(rgb)
    if arr.ndim == 3:
        return cv2.cvtColor(arr, cv2.COLOR_RGB2Lab)
    flat = arr.reshape(-1, *arr.shape[-3:])
    out = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2Lab) for f in flat])
    return out.reshape(arr.shape)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Convert Lab to sRGB ``float32`` in ``[0, 1]`` (clipped).

    Args:
        lab: ``(H, W, 3)`` float Lab (L in ``[0, 100]``, ab in about
            ``[-128, 127]``).
    """
    lab = np.ascontiguousarray(lab, dtype=np.float32)
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(rgb, 0.0, 1.0)


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """8-bit BT.601 luma of an ``(H, W, 3)`` ``uint8`` sRGB image (OpenCV RGB2GRAY)."""
    if rgb.ndim == 2:
        return rgb
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def gray_to_lightness(gray: np.ndarray) -> np.ndarray:
    """Lab lightness ``L`` in ``[0, 100]`` of neutral sRGB pixels of value ``gray``.

    Args:
        gray: ``(H, W)`` ``uint8`` gray, or float in ``[0, 1]``.

    Returns:
        ``(H, W)`` ``float32`` L.
    """
    if gray.dtype == np.uint8:
        return _LIGHTNESS_OF_GRAY[gray]
    g = np.ascontiguousarray(gray, dtype=np.float32)
    return cv2.cvtColor(np.repeat(g[..., None], 3, axis=-1), cv2.COLOR_RGB2Lab)[..., 0]


# L of the 256 neutral 8-bit grays, with the same conversion as rgb_to_lab.
_LIGHTNESS_OF_GRAY = cv2.cvtColor(
    np.repeat((np.arange(256, dtype=np.float32) / 255.0).reshape(1, 256, 1), 3, axis=2), cv2.COLOR_RGB2Lab
)[0, :, 0].copy()


def lightness_to_gray(lightness: np.ndarray) -> np.ndarray:
    """Inverse of :func:`gray_to_lightness`: ``(H, W)`` L in [0, 100] -> ``float32`` gray in [0, 1]."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    return np.interp(lightness, _LIGHTNESS_OF_GRAY, levels).astype(np.float32)


def lightness_to_gray8(lightness: np.ndarray) -> np.ndarray:
    """:func:`lightness_to_gray` as ``uint8`` gray in [0, 255] (what detectors and segmenters read)."""
    return np.clip(np.rint(lightness_to_gray(lightness) * 255.0), 0, 255).astype(np.uint8)


def compose_rgb(gray: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """Combine the input gray with predicted chroma into an sRGB frame.

    The result's BT.601 gray equals ``gray`` to within rounding (at most one
    level after OpenCV's RGB2GRAY): the colour of ``(L(gray), a, b)`` is taken
    as an offset from its own luma, and that offset is added to the input gray,
    scaled down per pixel just enough to stay inside ``[0, 255]``.

    Args:
        gray: ``(H, W)`` ``uint8`` input gray.
        ab: ``(H, W, 2)`` float chroma (a, b in about ``[-128, 127]``), same
            size as ``gray``.

    Returns:
        ``(H, W, 3)`` ``uint8`` sRGB.
    """
    if gray.shape != ab.shape[:2]:
        raise ValueError(f"gray {gray.shape} and ab {ab.shape[:2]} differ in size")
    ab = np.asarray(ab, dtype=np.float32)
    lab = cv2.merge([gray_to_lightness(gray), np.ascontiguousarray(ab[..., 0]), np.ascontiguousarray(ab[..., 1])])
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    luma = cv2.transform(rgb, LUMA_WEIGHTS.reshape(1, 3))
    y = gray.astype(np.float32)
    # y + the colour's zero-luma offset (on the 0-255 scale), per channel.
    out = rgb * 255.0
    out += (y - luma * 255.0)[..., None]
    # Pixels that leave [0, 255]: scale their offset by the largest s in [0, 1]
    # that keeps every channel inside (most pixels need no change).
    flat = out.reshape(-1, 3)  # cv2.reduce is ~30x faster than numpy's min over a last axis of 3
    lo = cv2.reduce(flat, 1, cv2.REDUCE_MIN).reshape(gray.shape)
    hi = cv2.reduce(flat, 1, cv2.REDUCE_MAX).reshape(gray.shape)
    bad = (lo < 0.0) | (hi > 255.0)
    if bad.any():
        yb = y[bad][:, None]
        off = out[bad] - yb
        room = np.where(off > 0, 255.0 - yb, -yb)
        limit = np.divide(room, off, out=np.ones_like(off), where=np.abs(off) > 1e-6)
        s = np.clip(limit.min(axis=1, keepdims=True), 0.0, 1.0)
        out[bad] = yb + s * off
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _to_float01(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return np.ascontiguousarray(img, dtype=np.float32)
