"""Keyframe selection inside a shot, in the spirit of GCG.

The first and the last frame of a shot are keyframes; then, greedily, the
frame that adds the most dissimilarity (farthest, in signature distance, from
every keyframe chosen so far) is added, until every frame is similar enough to
some keyframe and no gap between keyframes is longer than ``max_gap``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from chromaflow.temporal.shots import Signature, signature_distance


def select_keyframes(
    signatures: Sequence[Signature],
    start: int = 0,
    max_gap: int | None = 60,
    min_dissimilarity: float = 0.08,
    max_keyframes: int | None = None,
    forced: Iterable[int] = (),
) -> list[int]:
    """Keyframes of one shot.

    Args:
        signatures: signatures of the shot's frames (frame ``start + i`` is
            ``signatures[i]``).
        start: index of the shot's first frame in the video.
        max_gap: largest allowed distance in frames between two consecutive
            keyframes (``None``: no limit).
        min_dissimilarity: stop adding dissimilarity-driven keyframes once
            every frame is within this distance of a keyframe.
        max_keyframes: cap on dissimilarity-driven keyframes (the gap rule
            still applies).
        forced: video frame indices that must be keyframes (user keyframes,
            reference frames); those outside the shot are ignored.

    Returns:
        Sorted video frame indices.
    """
    n = len(signatures)
    if n == 0:
        return []
    chosen = {0, n - 1} | {f - start for f in forced if 0 <= f - start < n}
    thumbs = np.stack([s.thumb.reshape(-1) for s in signatures])
    hists = np.stack([s.hist for s in signatures])

    def dist_to(k: int) -> np.ndarray:
        return 0.25 * np.abs(hists - hists[k]).sum(axis=1) + np.abs(thumbs - thumbs[k]).mean(axis=1)

    nearest = np.full(n, np.inf)
    for k in chosen:
        nearest = np.minimum(nearest, dist_to(k))
    added = 0
    while max_keyframes is None or added < max_keyframes:
        k = int(np.argmax(nearest))
        if nearest[k] < min_dissimilarity:
            break
        chosen.add(k)
        nearest = np.minimum(nearest, dist_to(k))
        added += 1
    if max_gap is not None and max_gap >= 1:
        ordered = sorted(chosen)
        for a, b in zip(ordered, ordered[1:]):
            gap = b - a
            if gap > max_gap:
                pieces = int(np.ceil(gap / max_gap))
                chosen.update(a + round(i * gap / pieces) for i in range(1, pieces))
    return sorted(start + k for k in chosen)


__all__ = ["select_keyframes", "signature_distance"]
