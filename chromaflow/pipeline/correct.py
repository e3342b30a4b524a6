"""Correction: re-colour the unreliable pixels of carried chroma from the reliable ones.

:class:`Corrector` wraps the run's fill step (:class:`~chromaflow.fill.base.ChromaFill`)
with the engine's rules: which pixels are unreliable (confidence under
``correction_threshold``), which still keep their carried colour as a weak
hint (the surface looks the same: luminance agreement), when the fill is
skipped (too little new content), and that reliable pixels stay exactly.
All arrays are at the working resolution: lightness ``(h, w)`` Lab L in
[0, 100], chroma ``(h, w, 2)`` Lab ab, confidence ``(h, w)`` in [0, 1].
"""

from __future__ import annotations

import numpy as np

from chromaflow.fill.base import ChromaFill
from chromaflow.temporal.propagation import Track, recolor_track


class Corrector:
    """Applies the fill step under the engine's options (see the module doc).

    Args:
        fill: the fill step.
        options: :class:`~chromaflow.pipeline.engine.EngineOptions` (``correct``,
            ``correction_threshold``, ``min_correction_fraction``,
            ``weak_hint``, ``fill_confidence``).
    """

    def __init__(self, fill: ChromaFill, options) -> None:
        self.fill = fill
        self.options = options

    def correct(
        self,
        light: np.ndarray,
        ab: np.ndarray,
        conf: np.ndarray,
        extra: tuple[np.ndarray, np.ndarray] | None = None,
        agreement: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Re-colour pixels whose confidence is under the threshold from the reliable ones.

        Args:
            light: ``(h, w)`` L; ``ab``: ``(h, w, 2)`` chroma; ``conf``: ``(h, w)`` confidence.
            extra: optional ``(ab, confidence)`` hints (semantic correspondence,
                a prompt's objects) used where the propagated colours are unreliable.
            agreement: optional ``(h, w)`` luminance agreement of the last
                propagation step; an unreliable pixel whose carried lightness
                still matches keeps its colour as a hint of weight
                ``weak_hint * agreement``.

        Returns:
            ``(ab, replaced)``: the corrected chroma (reliable pixels unchanged)
            and the mask of re-coloured pixels, or ``(ab, None)`` when nothing
            was done.
        """
        opts = self.options
        if not opts.correct:
            return ab, None
        reliable = conf >= opts.correction_threshold
        # An unreliable pixel whose carried lightness still matches (a fast motion
        # or a flow error broke the chain, the surface is the same) keeps its colour
        # as a weak hint; new content (lightness changed) takes it from neighbours.
        if agreement is not None:
            new_content = ~reliable & (agreement < 0.5)
            weak = opts.weak_hint * agreement
        else:
            new_content = ~reliable
            weak = 0.0
        if new_content.mean() < opts.min_correction_fraction and extra is None:
            return ab, None
        hint_ab = ab
        hint_conf = np.where(reliable, conf, weak).astype(np.float32)
        if extra is not None:
            x_ab, x_conf = extra
            use = ~reliable & (x_conf >= opts.correction_threshold)
            hint_ab = np.where(use[..., None], x_ab, ab).astype(np.float32)
            hint_conf = np.where(use, np.maximum(hint_conf, 0.5 * x_conf), hint_conf).astype(np.float32)
        if not hint_conf.any():
            return ab, None
        filled = self.fill.fill(light, hint_ab, hint_conf)
        out = np.where(reliable[..., None], ab, filled).astype(np.float32)  # reliable pixels stay exactly
        return out, ~reliable

    def correct_track(
        self, light: np.ndarray, track: Track, ab: np.ndarray, agreement: np.ndarray | None = None
    ) -> tuple[Track, np.ndarray]:
        """Correct a track's colours; re-coloured pixels carry their new colour from now on."""
        out, replaced = self.correct(light, ab, track.confidence, agreement=agreement)
        if replaced is None:
            return track, ab
        return recolor_track(track, out, replaced, self.options.fill_confidence), out

    def correct_anchor(
        self, light: np.ndarray, ab: np.ndarray, conf: np.ndarray, extra: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """A derived anchor's colours corrected once: ``(ab, confidence)``, re-coloured pixels at ``fill_confidence``."""
        out, replaced = self.correct(light, ab, conf, extra)
        if replaced is None:
            return ab, conf
        return out, np.where(replaced, self.options.fill_confidence, conf).astype(np.float32)

    def complete(self, light: np.ndarray, ab: np.ndarray, hint_conf: np.ndarray) -> np.ndarray:
        """The fill step on hints alone (an anchor coloured by correspondence): ``ab`` where nothing is hinted."""
        return self.fill.fill(light, ab, hint_conf) if hint_conf.any() else ab
