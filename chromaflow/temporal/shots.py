"""Scene-cut detection on small frame signatures.

A cut is a frame whose signature differs from the previous one far more than
frame-to-frame differences usually do in the current shot.  Signatures are
tiny (a 32-bin luminance histogram and a 16x9 thumbnail), so a whole video's
signatures fit in memory whatever its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

THUMB_SIZE = (16, 9)
HIST_BINS = 32


@dataclass(frozen=True)
class Signature:
    """A frame's summary.

    Attributes:
        hist: ``(HIST_BINS,)`` ``float32`` luminance histogram summing to 1.
        thumb: ``(9, 16)`` ``float32`` gray thumbnail in ``[0, 1]``.
    """

    hist: np.ndarray
    thumb: np.ndarray


def frame_signature(gray: np.ndarray) -> Signature:
    """Signature of an ``(H, W)`` ``uint8`` gray frame."""
    hist = np.bincount((gray.reshape(-1) >> 3).astype(np.int64), minlength=HIST_BINS).astype(np.float32)
    hist /= max(hist.sum(), 1.0)
    thumb = cv2.resize(gray, THUMB_SIZE, interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return Signature(hist, thumb)


def signature_distance(a: Signature, b: Signature) -> float:
    """Dissimilarity in about ``[0, 1.5]``: a quarter of the histogram L1 distance plus the
    thumbnail's mean absolute difference (the same measure :func:`keyframes.select_keyframes` uses)."""
    return 0.25 * float(np.abs(a.hist - b.hist).sum()) + float(np.abs(a.thumb - b.thumb).mean())


def detect_cuts(
    signatures: Sequence[Signature],
    threshold: float = 0.25,
    ratio: float = 4.0,
    window: int = 12,
    min_shot: int = 4,
) -> list[int]:
    """Indices of the first frame of every shot (always starting with 0).

    A frame ``t`` starts a new shot when its distance to frame ``t - 1`` is at
    least ``threshold`` and at least ``ratio`` times the median distance of the
    previous ``window`` frame pairs of the shot (so fast camera motion, which
    raises every distance, is not taken for a cut), and the current shot has
    at least ``min_shot`` frames.

    Args:
        signatures: one :class:`Signature` per frame.
    """
    if not signatures:
        return []
    starts = [0]
    recent: list[float] = []
    for t in range(1, len(signatures)):
        d = signature_distance(signatures[t - 1], signatures[t])
        base = float(np.median(recent[-window:])) if recent else 0.0
        if d >= threshold and d >= ratio * base and t - starts[-1] >= min_shot:
            starts.append(t)
            recent = []
            continue
        recent.append(d)
    return starts


def shot_ranges(cuts: Sequence[int], n_frames: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` half-open frame ranges of the shots given their first frames."""
    bounds = list(cuts) + [n_frames]
    return [(bounds[i], bounds[i + 1]) for i in range(len(cuts)) if bounds[i + 1] > bounds[i]]
