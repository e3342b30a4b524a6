"""A prompt's object colours as hints, for any keyframe colorizer (engine level).

:class:`PromptHints` turns the prompt's (colour, object) pairs into chroma
hints in a frame: a registered :class:`~chromaflow.guidance.grounding.Grounder`
finds each object's mask, the named colour goes inside it at the pixel's own
lightness, and masks found at an anchor are tracked along the motion to the
frames where the grounder misses the object.  The temporal engine calls it

* at the keyframes a colorizer colours (:meth:`PromptHints.colorize`): the
  frame is coloured twice, without the prompt's text and with it plus the
  object hints, and the second is kept only around the objects, so a named
  colour changes its object, not the whole frame;
* at derived keyframes (:meth:`PromptHints.at`), where the hints correct the
  carried colours inside the objects.

Every grounding is passed to ``on_grounding`` (``--save-masks`` writes them),
and :meth:`PromptHints.finish` reports, per object, on how many grounded frames
it was found (an object never found is a warning).

Arrays: lightness ``(h, w)`` Lab L in [0, 100]; chroma ``(h, w, 2)`` Lab ab;
confidence ``(h, w)`` in [0, 1].
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace

import cv2
import numpy as np

from chromaflow.color.lab import lightness_to_gray8
from chromaflow.colorizers.base import Carried, Colorizer
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.grounding import Grounder, GroundingCallback, object_phrases
from chromaflow.guidance.prompt import ParsedPrompt, parse_prompt

log = logging.getLogger("chromaflow")

#: grounded frames remembered for tracking (the last few anchors)
_MEMORY = 4


class PromptHints:
    """The prompt's object hints (see the module doc).

    Args:
        grounder: finds the objects.
        on_grounding: called as ``on_grounding(frame_index, gray, grounding)``
            for every grounded frame (``gray``: ``(h, w)`` ``uint8``).
        report: log what each object word stands for when a run begins (a
            worker colouring one shot of a run leaves that to the driver).
    """

    def __init__(self, grounder: Grounder, on_grounding: GroundingCallback | None = None, report: bool = True) -> None:
        self.grounder = grounder
        self.on_grounding = on_grounding
        self.report = report
        self.prompt: ParsedPrompt | None = None
        self._text: str | None = None
        self._recent: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._found: dict[str, int] = {}
        self._by: dict[str, dict[str, int]] = {}
        self._grounded_frames = 0
        #: the grounded objects of the frame :meth:`at` saw last
        self.last_objects: tuple = ()

    def begin(self, conditions: Conditions) -> bool:
        """Start a run: parse the prompt and report what each object word stands for.

        Returns:
            whether the prompt names objects to ground (``False``: no hints;
            a prompt without objects still steers the colorizer as text).
        """
        self._recent.clear()
        self._found, self._by, self._grounded_frames = {}, {}, 0
        parsed = parse_prompt(conditions.prompt) if conditions.prompt else None
        self.prompt = parsed if parsed is not None and parsed.objects else None
        if self.prompt is None:
            return False
        if self.report and self._text != conditions.prompt:  # once per prompt, not once per run of a batch
            matches = self.grounder.matches(self.prompt)
            for match, line in zip(matches, self.grounder.describe(matches)):
                (log.info if match.grounded else log.warning)("prompt object %s", line)
            self._text = conditions.prompt
        self._found = {p.object: 0 for p in object_phrases(self.prompt)}
        return True

    def start_shot(self, memory: dict | None = None) -> None:
        """Forget the tracked hints (a new shot), or restore those :meth:`memory` gave."""
        self._recent = dict(memory or {})

    def memory(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The hints of the last grounded frames, by frame index (to restore with :meth:`start_shot`)."""
        return dict(self._recent)

    def at(
        self, lightness: np.ndarray, frame_index: int, carried: Carried | None = None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The named colours inside the objects' masks in this frame, or ``None`` (nothing found).

        Masks are tracked: the hints given at the anchor ``carried`` comes from
        are carried along the motion, and stand where the frame's own grounding
        finds nothing and the motion is reliable.
        """
        assert self.prompt is not None, "begin() a run with a prompt first"
        gray = lightness_to_gray8(lightness)
        grounding = self.grounder.ground(gray, self.prompt)
        ab, conf = grounding.hint_ab, grounding.hint_conf
        if carried is not None and carried.anchor in self._recent:
            p_ab, p_conf = self._recent[carried.anchor]
            t_ab, reliability = carried.sample(p_ab)
            t_conf = carried.sample(p_conf)[0] * reliability
            use = (conf == 0) & (t_conf >= 0.5 * self.grounder.hint_strength)
            ab = np.where(use[..., None], t_ab, ab).astype(np.float32)
            conf = np.where(use, t_conf, conf).astype(np.float32)
            grounding = replace(grounding, hint_ab=ab, hint_conf=conf)
        self._recent[frame_index] = (ab, conf)
        self.last_objects = grounding.objects
        while len(self._recent) > _MEMORY:
            self._recent.pop(next(iter(self._recent)))
        self._grounded_frames += 1
        for obj in grounding.objects:
            if obj.found:
                self._found[obj.phrase.object] = self._found.get(obj.phrase.object, 0) + 1
                by = self._by.setdefault(obj.phrase.object, {})
                name = obj.grounder or self.grounder.name
                by[name] = by.get(name, 0) + 1
        if self.on_grounding is not None:
            self.on_grounding(frame_index, gray, grounding)
        if not conf.any():
            return None
        return ab, conf

    def colorize(
        self,
        colorizer: Colorizer,
        lightness: np.ndarray,
        frame_indices: Sequence[int],
        conditions: Conditions,
        known: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """``colorizer``'s chroma of the frames, with the prompt's objects as an edit.

        Args:
            lightness: ``(T, h, w)`` Lab L; ``known``: optional carried
                ``(ab (T, h, w, 2), confidence (T, h, w))``, which win over the
                prompt's colours.

        Returns:
            ``(T, h, w, 2)`` ``float32`` Lab ab: the result without the prompt's
            text outside the objects (and wherever none is found), the result
            with the text and the object hints around them; or, for a colorizer
            that :attr:`~chromaflow.colorizers.base.Colorizer.takes_objects`, its
            result given the objects of each frame.
        """
        t_count, h, w = lightness.shape
        obj_ab = np.zeros((t_count, h, w, 2), np.float32)
        obj_conf = np.zeros((t_count, h, w), np.float32)
        objects = []
        for i, f in enumerate(frame_indices):
            found = self.at(lightness[i], int(f))
            objects.append(self.last_objects)
            if found is not None:
                obj_ab[i], obj_conf[i] = found
        if colorizer.takes_objects:  # it applies each object's phrase inside its mask itself
            return colorizer.colorize(lightness, frame_indices, conditions, known, objects=objects)
        base = colorizer.colorize(lightness, frame_indices, replace(conditions, prompt=None), known)
        if not obj_conf.any():
            return base
        region = np.stack([object_region(c > 0) for c in obj_conf])[..., None]  # the objects, not the known colours
        if known is not None:  # carried colours win over the prompt's
            use = known[1] > 0
            obj_ab = np.where(use[..., None], known[0], obj_ab).astype(np.float32)
            obj_conf = np.where(use, known[1], obj_conf).astype(np.float32)
        edited = colorizer.colorize(lightness, frame_indices, conditions, (obj_ab, obj_conf))
        return (region * edited + (1.0 - region) * base).astype(np.float32)

    def finish(self) -> None:
        """Report, per object, on how many grounded frames it was found."""
        if self.prompt is None or not self._grounded_frames:
            return
        for word, count in self._found.items():
            if count:
                by = ", ".join(f"{g} {n}" for g, n in sorted(self._by.get(word, {}).items(), key=lambda x: -x[1]))
                log.info("prompt object '%s': found on %d of %d grounded frames (by %s)",
                         word, count, self._grounded_frames, by or self.grounder.name)
            else:
                log.warning("prompt object '%s' was not found on any of the %d grounded frames: its colour "
                            "was not applied", word, self._grounded_frames)


def object_region(inside: np.ndarray, feather: float = 0.01) -> np.ndarray:
    """Soft weight ``(h, w)`` in ``[0, 1]``: 0 outside ``inside``, rising to 1 within ``feather``
    times the short side of its edge (a named colour never lands outside its object's mask)."""
    h, w = inside.shape
    r = max(1, round(feather * min(h, w)))
    soft = np.clip(cv2.GaussianBlur(inside.astype(np.float32), (0, 0), r / 2.0) * 2.0 - 1.0, 0.0, 1.0)
    return np.where(inside, np.maximum(soft, 0.5), 0.0).astype(np.float32)
