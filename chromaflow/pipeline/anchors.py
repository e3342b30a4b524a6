"""Anchors: the frames of a shot whose colours are settled before (or while) colours are carried.

One strategy per mode:

* :class:`ExemplarAnchors` (references): reference frames keep their given
  colours; a shot no reference frame reaches gets its best-matching keyframe
  coloured from the best-matching reference photo by semantic correspondence
  (completed by the fill step); every later keyframe is *derived*.
* :class:`ColorizerAnchors` (automatic, palette, prompt): the colorizer colours
  the shot's first keyframe (or all, without ``derive_keyframes``) and the
  frames made keyframes where propagation failed; the others are derived.

A derived keyframe takes its propagated colours (the engine has already
merged the direct long-range match), corrected once: with correspondence
hints from the reference, or with a prompt's object colours (which win over
carried colours inside their masks), through the :class:`~chromaflow.pipeline.correct.Corrector`.

All arrays are at the working resolution: gray ``(h, w)`` ``uint8``, lightness
``(h, w)`` Lab L in [0, 100], chroma ``(h, w, 2)`` Lab ab, confidence ``(h, w)`` in [0, 1].
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from chromaflow.color.lab import gray_to_lightness, rgb_to_gray, rgb_to_lab
from chromaflow.colorizers.base import Carried, Colorizer
from chromaflow.guidance.conditions import Conditions, Reference
from chromaflow.pipeline.correct import Corrector
from chromaflow.pipeline.plan import ShotPlan

log = logging.getLogger("chromaflow")

#: frames of a shot its own palette is made from (``Conditions.palette_per_shot``)
PALETTE_SAMPLES = 8

Colors = tuple[np.ndarray, np.ndarray]  # (ab (h, w, 2), confidence (h, w))


@dataclass
class ShotAnchors:
    """What the anchor stage settled for one shot.

    Attributes:
        anchors: every anchor frame (sorted): the precomputed ones, plus the
            derived keyframes after the first of them (with backward fusion).
        colors: ``{frame: (ab, confidence)}`` of the anchors coloured before propagation.
        conditions: the shot's conditions (its own palette, if any).
        reference: the reference photo matched to this shot, if any.
        precomputed: the frames in ``colors`` (the plan's, or the matched keyframe).
        hint_memory: the prompt's object hints found at the precomputed anchors
            (:meth:`PromptHints.memory <chromaflow.guidance.hints.PromptHints.memory>`),
            so derived keyframes can track those objects along the motion.
    """

    anchors: list[int]
    colors: dict[int, Colors]
    conditions: Conditions
    reference: Reference | None = None
    precomputed: tuple[int, ...] = field(default_factory=tuple)
    hint_memory: dict | None = None


def place_anchors(precomputed: Sequence[int], keyframes: Sequence[int], derive: bool, backward: bool) -> list[int]:
    """Anchors = ``precomputed``, plus (``derive``, with backward fusion) the keyframes after the first of them."""
    anchors = set(precomputed)
    if derive and backward:
        first = min(precomputed)
        anchors.update(k for k in keyframes if k > first)
    return sorted(anchors)


def continuing_anchors(shot: ShotPlan) -> list[int]:
    """Anchors of a window that continues a long shot: its first frame (the anchor handed over by the
    window before), its keyframes and its precomputed frames."""
    return sorted({shot.start, *shot.keyframes, *shot.precomputed})


def palette_samples(shot: ShotPlan) -> list[int]:
    """The frames of ``shot`` its own palette is made from (evenly spread)."""
    n = min(PALETTE_SAMPLES, shot.stop - shot.start)
    return sorted({int(f) for f in np.linspace(shot.start, shot.stop - 1, n).round()})


class AnchorStrategy(ABC):
    """How one mode settles the anchors of a shot (see the module doc).

    Args:
        corrector: the run's correction (fill step and its rules).
        options: :class:`~chromaflow.pipeline.engine.EngineOptions`.
    """

    def __init__(self, corrector: Corrector, options) -> None:
        self.corrector = corrector
        self.options = options

    @abstractmethod
    def frames_needed(self, shot: ShotPlan, conditions: Conditions) -> set[int]:
        """Frames whose working gray :meth:`prepare` reads."""

    @abstractmethod
    def prepare(self, shot: ShotPlan, grays: dict[int, np.ndarray], conditions: Conditions,
                index: int = 0) -> ShotAnchors:
        """Colour the precomputed anchors of shot number ``index`` from their working grays."""

    def colours_keyframe(self, t: int, has_fwd: bool, added: bool) -> bool:
        """Whether anchor ``t`` (not precomputed) is coloured afresh rather than derived."""
        return False

    def recolor(self, light: np.ndarray, t: int, fwd: Colors | None, shot: ShotAnchors) -> Colors:
        """Colour anchor ``t`` afresh, keeping its reliably carried pixels (``colours_keyframe`` was true)."""
        raise NotImplementedError

    @abstractmethod
    def derive(self, work: np.ndarray, light: np.ndarray, t: int, fwd: Colors | None, shot: ShotAnchors,
               carried: Carried | None) -> Colors:
        """Colours of the derived anchor ``t`` from its carried colours ``fwd``."""

    def start_shot(self, shot: ShotAnchors) -> None:  # noqa: B027 - optional hook
        """Called before a shot's frames are propagated."""

    def finish(self) -> None:  # noqa: B027 - optional hook
        """Called after the last shot of a run."""


class ExemplarAnchors(AnchorStrategy):
    """Anchors from references (see the module doc).

    Args:
        references: the run's references.
        matcher: the semantic matcher (:class:`~chromaflow.guidance.correspondence.SemanticMatcher`),
            built on first use by ``matcher()``.
    """

    def __init__(self, corrector: Corrector, options, references: Sequence[Reference], matcher) -> None:
        super().__init__(corrector, options)
        self.references = tuple(references)
        self._matcher_factory = matcher
        self._matcher = None

    @property
    def matcher(self):
        if self._matcher is None:
            self._matcher = self._matcher_factory()
        return self._matcher

    def frames_needed(self, shot: ShotPlan, conditions: Conditions) -> set[int]:
        return set() if shot.precomputed or shot.continues else set(shot.keyframes)

    def prepare(self, shot: ShotPlan, grays: dict[int, np.ndarray], conditions: Conditions,
                index: int = 0) -> ShotAnchors:
        colors: dict[int, Colors] = {}
        precomputed, reference = tuple(shot.precomputed), None
        if shot.continues:  # a window of a long shot: colours come in from the previous window
            refs_by_frame = {r.frame: r for r in self.references if r.frame is not None}
            colors = {f: self._reference_colors(refs_by_frame[f]) for f in precomputed if f in refs_by_frame}
            return ShotAnchors(continuing_anchors(shot), colors, conditions, None, precomputed)
        if not precomputed:
            best, reference = self._best_match(shot.keyframes, grays)
            colors[best] = self._correspondence_colors(grays[best], reference)
            precomputed = (best,)
        refs_by_frame = {r.frame: r for r in self.references if r.frame is not None}
        for f in precomputed:
            if f in refs_by_frame:
                colors[f] = self._reference_colors(refs_by_frame[f])
        anchors = place_anchors(precomputed, shot.keyframes, True, self.options.backward)
        return ShotAnchors(anchors, colors, conditions, reference, precomputed)

    def derive(self, work, light, t, fwd, shot, carried):
        ref = self._reference_for(shot, t)
        if fwd is None:
            return self._correspondence_colors(work, ref)
        ab, conf = fwd
        opts = self.options
        extra = None
        if opts.correct and (conf < opts.correction_threshold).mean() >= opts.min_correction_fraction:
            extra = self._correspondence(work, ref)
        return self.corrector.correct_anchor(light, ab, conf, extra)

    def keyframe_colors(self, gray: np.ndarray, frame: int, shot: ShotAnchors) -> np.ndarray:
        """``(h, w, 2)`` chroma of a keyframe coloured straight from its reference by correspondence (a preview)."""
        return self._correspondence_colors(gray, self._reference_for(shot, frame))[0]

    # ----------------------------------------------------------------- helpers
    def _reference_for(self, shot: ShotAnchors, frame: int) -> Reference:
        """The reference that helps correct ``frame``: the shot's matched photo, else the nearest reference frame."""
        if shot.reference is not None:
            return shot.reference
        anchored = [r for r in self.references if r.frame is not None]
        if anchored:
            return min(anchored, key=lambda r: abs(r.frame - frame))
        return self.references[0]

    def _best_match(self, keyframes: Sequence[int], grays: dict[int, np.ndarray]) -> tuple[int, Reference]:
        """The (keyframe, reference) pair whose global EfficientNet descriptors agree best."""
        if len(keyframes) == 1 and len(self.references) == 1:
            return keyframes[0], self.references[0]
        matcher = self.matcher
        frame_desc = [matcher.describe(grays[k], labels=False) for k in keyframes]  # ranking reads global descriptors
        best = (-np.inf, keyframes[0], self.references[0])
        for ref in self.references:
            scores = matcher.rank_frames(frame_desc, matcher.describe(rgb_to_gray(ref.rgb), labels=False))
            i = int(np.argmax(scores))
            if scores[i] > best[0]:
                best = (float(scores[i]), keyframes[i], ref)
        return best[1], best[2]

    def _reference_colors(self, ref: Reference) -> Colors:
        h, w = ref.rgb.shape[:2]
        size = working_size(w, h, self.options.work_max_side)
        small = ref.rgb if size == (w, h) else cv2.resize(ref.rgb, size, interpolation=cv2.INTER_AREA)
        ab = rgb_to_lab(small)[..., 1:]
        return np.ascontiguousarray(ab), np.ones(ab.shape[:2], np.float32)

    def _correspondence(self, gray: np.ndarray, ref: Reference) -> Colors:
        # semantic labels keep a related photo's colours within like regions; a frame of the video shares the scene
        ab, conf = self.matcher.transfer(gray, ref.rgb, labels=ref.frame is None)
        h, w = gray.shape
        if ab.shape[:2] != (h, w):
            ab = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)
            conf = cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR)
        return ab.astype(np.float32), conf.astype(np.float32)

    def _correspondence_colors(self, gray: np.ndarray, ref: Reference) -> Colors:
        ab, conf = self._correspondence(gray, ref)
        light = gray_to_lightness(gray)
        hint_conf = np.where(conf >= self.options.correction_threshold, conf, 0.0).astype(np.float32)
        filled = self.corrector.complete(light, ab, hint_conf)
        return filled.astype(np.float32), np.full(gray.shape, self.options.fill_confidence, np.float32)


class ColorizerAnchors(AnchorStrategy):
    """Anchors from a keyframe colorizer (see the module doc).

    Args:
        colorizer: colours keyframes.
        hints: the prompt's object hints (:class:`~chromaflow.guidance.hints.PromptHints`),
            or ``None`` when the run has no prompt objects.
        skin: the skin prior (:class:`~chromaflow.guidance.skin.SkinPrior`) applied to what the
            colorizer gives, or ``None``.
    """

    def __init__(self, corrector: Corrector, options, colorizer: Colorizer, hints=None, skin=None) -> None:
        super().__init__(corrector, options)
        self.colorizer = colorizer
        self.hints = hints
        self.skin = skin

    def frames_needed(self, shot: ShotPlan, conditions: Conditions) -> set[int]:
        need = set(shot.precomputed)
        if conditions.palette_per_shot is not None:
            need.update(palette_samples(shot))
        return need

    def prepare(self, shot: ShotPlan, grays: dict[int, np.ndarray], conditions: Conditions,
                index: int = 0) -> ShotAnchors:
        if conditions.palette_per_shot is not None:
            palette = conditions.palette_per_shot([grays[f] for f in palette_samples(shot)])
            conditions = replace(conditions, palette=palette)
            log.info("shot %d (frames %d-%d): palette %s", index + 1, shot.start, shot.stop - 1,
                     ",".join(palette.hex()))
        kf = sorted(shot.precomputed)
        if self.hints is not None:
            self.hints.start_shot()
        if not kf:  # a window of a long shot: colours come in from the previous window
            return ShotAnchors(continuing_anchors(shot), {}, conditions, None, ())
        light = np.stack([gray_to_lightness(grays[k]) for k in kf])
        ab = self._colorize(light, kf, conditions)
        colors = {k: (a.astype(np.float32), np.ones(a.shape[:2], np.float32)) for k, a in zip(kf, ab)}
        anchors = place_anchors(kf, shot.keyframes, self.options.derive_keyframes, self.options.backward)
        memory = self.hints.memory() if self.hints is not None else None
        return ShotAnchors(anchors, colors, conditions, None, tuple(kf), memory)

    def _colorize(self, light: np.ndarray, indices: Sequence[int], conditions: Conditions,
                  known: Colors | None = None) -> np.ndarray:
        if self.hints is not None:
            return self.hints.colorize(self.colorizer, light, indices, conditions, known)
        ab = self.colorizer.colorize(light, indices, conditions, known)
        if self.skin is not None:  # carried colours the colorizer had to keep stay as they are
            ab = self.skin.apply(light, ab, None if known is None else (known[1] >= 1.0).astype(np.float32))
        return ab

    def start_shot(self, shot: ShotAnchors) -> None:
        if self.hints is not None:
            self.hints.start_shot(shot.hint_memory)

    def colours_keyframe(self, t: int, has_fwd: bool, added: bool) -> bool:
        return not has_fwd or added or not self.options.derive_keyframes

    def recolor(self, light, t, fwd, shot):
        # A keyframe added where propagation failed: the colorizer colours it,
        # and the pixels still reliably carried keep their colours.
        known = None
        if fwd is not None:
            keep = (fwd[1] >= self.options.correction_threshold).astype(np.float32)
            known = (fwd[0][None], keep[None])
        ab = self._colorize(light[None], [t], shot.conditions, known)[0].astype(np.float32)
        return ab, np.ones(ab.shape[:2], np.float32)

    def derive(self, work, light, t, fwd, shot, carried):
        assert fwd is not None
        ab, conf = fwd
        opts = self.options
        extra = None
        if self.hints is not None and opts.correct:
            # The prompt's objects, wherever they are now: where the grounding is
            # sure, its hints win over the carried colours.
            extra = self.hints.at(light, t, carried)
            if extra is not None:
                conf = np.where(extra[1] >= opts.correction_threshold, 0.0, conf).astype(np.float32)
        return self.corrector.correct_anchor(light, ab, conf, extra)

    def finish(self) -> None:
        if self.hints is not None:
            self.hints.finish()


def working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(w, h)`` with the longer side at most ``max_side`` (the engine's working resolution)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
