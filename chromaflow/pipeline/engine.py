"""The temporal consistency engine: colour a few frames well, carry their colours along the motion.

One path serves every mode:

1. **Analysis** (a first pass over the frames, tiny memory): frame signatures,
   scene cuts, and the keyframes of every shot (first and last frame, the
   frames that add most dissimilarity, no gap longer than ``max_gap``).
2. **Anchors**: frames whose colours are known before propagation: reference
   frames (their colours are given), or keyframes coloured by the colorizer
   (jointly, per shot) or, for shots no reference frame reaches, by semantic
   correspondence with the reference photo.  The remaining keyframes become
   *derived* anchors (with a colorizer too, unless ``derive_keyframes`` is
   off): their colours are the propagated ones or, where more reliable, the
   shot's anchor coloured before propagation warped straight onto them (one
   long-range flow: no drift, and surfaces hidden on the way come back),
   corrected once (with correspondence hints, or the colorizer's hints),
   then carried both ways.
3. **Propagation** (a second pass): chroma is carried forward from the
   previous anchor and backward from the next one along the optical flow
   (DIS by default) as chained-flow tracks, each step keeping the smaller of
   the carried confidence and the warp's reliability; the two candidates are
   fused by confidence and temporal distance; where confidence stays low the
   fill step re-colours from the reliable pixels, and where most of a frame
   is unreliable that frame becomes a keyframe on the way.

Frames between two anchors wait in a :class:`~chromaflow.pipeline.buffer.SpillList`
that spills to disk past a budget, so memory does not grow with the video.
Everything runs at a working resolution; chroma is brought back to full size
along the luminance edges and composed with the input gray.

The jobs live in their own modules: the plan (:mod:`~chromaflow.pipeline.plan`,
plain data, JSON), the anchors of each mode (:mod:`~chromaflow.pipeline.anchors`),
correction (:mod:`~chromaflow.pipeline.correct`), the per-shot propagation and
the composition (:mod:`~chromaflow.pipeline.propagate`).  This class only
orchestrates them; given a plan, any subset of its shots can be run on its own
(``run(..., plan=plan, shots=[i])``) and gives the frames a whole run gives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from chromaflow.color.lab import gray_to_lightness, rgb_to_gray
from chromaflow.colorizers.base import Colorizer
from chromaflow.fill.base import ChromaFill
from chromaflow.guidance.conditions import Conditions
from chromaflow.io.source import Frame, FrameSource, is_probably_color
from chromaflow.pipeline.anchors import AnchorStrategy, ColorizerAnchors, ExemplarAnchors, ShotAnchors, working_size
from chromaflow.pipeline.correct import Corrector
from chromaflow.pipeline.plan import Plan, make_plan
from chromaflow.pipeline.propagate import Carry, FrameState, ShotPropagation, compose_frame
from chromaflow.temporal.shots import Signature, frame_signature

log = logging.getLogger("chromaflow")


@dataclass(frozen=True)
class EngineOptions:
    """Options of the temporal engine.

    Attributes:
        work_max_side: longer side of the working resolution (flow, chroma).
        backward: also carry colours backward from the next anchor and fuse
            (``False``: forward only, an ablation).
        correct: re-colour unreliable pixels with the fill step (``False``:
            plain warping, an ablation).
        max_gap: largest gap in frames between keyframes.
        correction_threshold: confidence under which a pixel is re-coloured.
        min_correction_fraction: skip the fill when fewer pixels than this
            fraction show new content (unreliable, and lightness changed).
        fill_confidence: confidence given to re-coloured pixels.
        weak_hint: weight, as a hint to the fill, of an unreliable pixel's own
            propagated colour where its lightness still agrees.
        keyframes: user-given keyframe indices.
        memory_budget_mb: frames held in memory between anchors before spilling to disk.
        reanchor_fraction: when more than this fraction of a frame's propagated
            colours are unreliable, the frame becomes a keyframe on the way
            (coloured by the colorizer, or derived with correspondence hints).
        min_reanchor_gap: frames at least between such a keyframe and the previous anchor.
        direct_match: at a keyframe derived from propagation, also warp the
            shot's last anchor coloured before propagation (a reference frame,
            or the colorizer's keyframe) straight onto it (one long-range flow)
            and keep, per pixel, the more reliable of the direct and the
            chained colours (``False``: chained colours only).
        derive_keyframes: with a colorizer (no references), it colours only the
            first keyframe of each shot (and frames where propagation fails);
            the other keyframes are derived from propagation, as in exemplar
            mode, so that they cannot disagree (``False``: it colours them all).
        max_shot_frames: a shot longer than this is split, at keyframes, into
            windows of about this many frames, units of work of their own (a
            resume or another worker takes them up); each window starts from
            the previous one's last coloured frame, carried along the motion,
            so the join shows no seam (0: never split).
        skin_prior: at the keyframes a colorizer colours, faces' skin is pulled this
            share of the way to a plausible skin chroma (:mod:`chromaflow.guidance.skin`;
            0.5 measured in the model card; needs ``chromaflow[grounding]`` and three
            model files); not with a prompt that names objects, whose colours win (0: off).
    """

    work_max_side: int = 384
    backward: bool = True
    correct: bool = True
    max_gap: int = 48
    correction_threshold: float = 0.3
    min_correction_fraction: float = 0.02
    fill_confidence: float = 0.6
    weak_hint: float = 1.0
    keyframes: tuple[int, ...] = ()
    memory_budget_mb: int = 384
    reanchor_fraction: float = 0.35
    min_reanchor_gap: int = 8
    direct_match: bool = True
    derive_keyframes: bool = True
    max_shot_frames: int = 1500
    skin_prior: float = 0.0


class TemporalEngine:
    """Colours a whole source (or some shots of it) with temporal consistency.

    Args:
        fill: the fill step used for correction.
        flow: a flow estimator ``(src_gray, dst_gray) -> (H, W, 2)`` with a
            ``pair(a, b)`` method (see :mod:`chromaflow.temporal.flow`).
        colorizer: colours keyframes when no reference is given.
        matcher: semantic matcher for references that are not frames of the
            video, or a zero-argument factory of one (called when first needed).
        options: :class:`EngineOptions`.
        hints: the prompt's object hints for any colorizer
            (:class:`~chromaflow.guidance.hints.PromptHints`), or ``None``.
        skin: the skin prior of colorizer keyframes
            (:class:`~chromaflow.guidance.skin.SkinPrior`), or ``None``.
    """

    def __init__(
        self,
        fill: ChromaFill,
        flow,
        colorizer: Colorizer | None = None,
        matcher=None,
        options: EngineOptions | None = None,
        hints=None,
        skin=None,
    ) -> None:
        self.fill = fill
        self.skin = skin
        self.flow = flow
        self.colorizer = colorizer
        self.hints = hints
        self.options = options or EngineOptions()
        if matcher is None:
            from chromaflow.guidance.correspondence import MatcherOptions

            matcher = MatcherOptions().build
        if hasattr(matcher, "transfer") and not isinstance(matcher, type):  # an instance, not a factory
            matcher = (lambda m=matcher: m)
        self._matcher = matcher
        #: Frames made keyframes during the last run because propagation failed there.
        self.added_keyframes: list[int] = []
        #: After a run whose last shot is followed by a window of the same long shot: the hand-over.
        self.carry: Carry | None = None
        #: ``(frames, total, description) -> frames``: wraps every pass over the
        #: source (the pipeline sets a progress bar here); identity by default.
        self.progress: Callable[[Iterable[Frame], int, str], Iterable[Frame]] = lambda frames, total, desc: frames

    def _frames(self, source: FrameSource, description: str, total: int | None = None,
                start: int = 0, start_pts: int | None = None) -> Iterable[Frame]:
        frames = iter(source) if start == 0 else source.frames(start, None, start_pts)
        return self.progress(frames, source.info.n_frames if total is None else total, description)

    # ------------------------------------------------------------------ plan
    def plan(self, source: FrameSource, conditions: Conditions) -> Plan:
        """The analysis pass: signatures, shots, keyframes and precomputed anchors (plain data)."""
        return analyse(source, conditions, self.options, self.progress)

    analyse = plan

    def strategy(self, conditions: Conditions) -> AnchorStrategy:
        """The anchor strategy of the mode ``conditions`` select."""
        corrector = Corrector(self.fill.for_conditions(conditions), self.options)
        if conditions.references:
            return ExemplarAnchors(corrector, self.options, conditions.references, self._matcher)
        if self.colorizer is None:
            raise ValueError("a colorizer is needed without references")
        hints = self.hints if self.hints is not None and self.hints.begin(conditions) else None
        if hints is not None and self.skin is not None and hints.report:
            log.info("the skin prior is not applied: the prompt names objects, and their colours win")
        return ColorizerAnchors(corrector, self.options, self.colorizer, hints, None if hints is not None else self.skin)

    # --------------------------------------------------------------- anchors
    def color_anchors(
        self, source: FrameSource, plan: Plan, conditions: Conditions, strategy: AnchorStrategy,
        shots: Collection[int] | None = None,
    ) -> dict[int, ShotAnchors]:
        """The anchor stage of the chosen shots (all by default): ``{shot index: ShotAnchors}``."""
        chosen = range(len(plan.shots)) if shots is None else sorted(shots)
        need = {i: strategy.frames_needed(plan.shots[i], conditions) for i in chosen}
        wanted = set().union(*need.values()) if need else set()
        grays: dict[int, np.ndarray] = {}
        if wanted:
            first, last = min(wanted), max(wanted)
            shot = plan.shots[plan.shot_of(first)]
            start_pts = shot.start_pts if shots is not None else None  # a subset: seek to its first shot
            begin = shot.start if start_pts is not None else 0
            for frame in self._frames(source, "keyframes", last + 1 - begin, begin, start_pts):
                if frame.index in wanted:
                    grays[frame.index] = self._work_gray(rgb_to_gray(frame.rgb))
                if frame.index >= last:
                    break
        return {i: strategy.prepare(plan.shots[i], {f: grays[f] for f in need[i]}, conditions, i) for i in chosen}

    # ----------------------------------------------------------- propagation
    def run(
        self,
        source: FrameSource,
        conditions: Conditions,
        plan: Plan | None = None,
        shots: Collection[int] | None = None,
        carry: Carry | None = None,
    ) -> Iterator[tuple[Frame, np.ndarray]]:
        """Colour the frames of ``source``; yields ``(frame, rgb)`` in order.

        Args:
            source: the gray (or colour: converted) frames.
            conditions: references, palette, prompt, seed.
            plan: the plan of ``source`` (default: made by :meth:`plan`).
            shots: indices of the plan's shots to colour (default: all); the
                frames of the other shots are skipped (a video is seeked to the
                first).  Each shot gives the same frames as in a whole run.
            carry: the hand-over of the window before the first chosen shot,
                when that shot continues a long shot (a worker colouring one
                window); within one call, windows hand over to each other, and
                after the call :attr:`carry` holds the last window's hand-over
                to the window after it (``None`` if it has none).
        """
        if plan is None:
            plan = self.plan(source, conditions)
            if plan.is_color:
                log.warning("the input is in color: converting it to grayscale first")
        self.added_keyframes = []
        self.carry = None
        if plan.n_frames == 0:
            return
        chosen = set(range(len(plan.shots)) if shots is None else shots)
        bad = sorted(i for i in chosen if not 0 <= i < len(plan.shots))
        if bad:
            raise ValueError(f"the plan has {len(plan.shots)} shots; no shot {bad[0]}")
        strategy = self.strategy(conditions)
        anchors = self.color_anchors(source, plan, conditions, strategy, chosen)
        last = max(plan.shots[i].stop for i in chosen)
        total = sum(len(plan.shots[i]) for i in chosen)
        first = plan.shots[min(chosen)]
        begin = first.start if shots is not None and first.start_pts is not None else 0
        frames = iter(self._frames(source, "colorizing", total if shots is not None else None, begin,
                                   first.start_pts if begin else None))
        handed: FrameState | None = None  # the hand-over frame, read by the window before
        for i in sorted(chosen):
            shot = plan.shots[i]
            if not shot.continues:
                carry = None
            elif carry is None or carry.index != shot.start:
                raise ValueError(f"shot {i} continues a long shot: give the hand-over of the window before (carry)")
            nxt = plan.shots[i + 1] if i + 1 < len(plan.shots) else None
            carry_out = nxt.start if nxt is not None and nxt.continues else None
            propagation = ShotPropagation(self.flow, strategy.corrector, strategy, self.options)
            states = self._states(frames, shot.start, shot.stop if carry_out is None else carry_out + 1,
                                  handed if handed is not None and handed.index == shot.start else None)
            seen: list[FrameState] = []

            def remember(states=states, seen=seen):
                for state in states:
                    seen[:] = [state]
                    yield state

            for state, ab in propagation.run(remember(), anchors[i], carry, carry_out):
                yield compose_frame(state, ab)
            carry = propagation.carry
            handed = seen[0] if seen and carry_out is not None and seen[0].index == carry_out else None
            self.added_keyframes.extend(propagation.added_keyframes)
            self.carry = carry
            if shot.stop >= last:
                break
        strategy.finish()
        if self.added_keyframes:
            where = "" if shots is None else f" (shot{'s' if len(chosen) > 1 else ''} {', '.join(str(i + 1) for i in sorted(chosen))})"
            log.info("%d keyframes added where propagation failed%s", len(self.added_keyframes), where)

    def _states(self, frames: Iterator[Frame], start: int, stop: int,
                first: FrameState | None = None) -> Iterator[FrameState]:
        """The frames ``[start, stop)`` of ``frames`` as fresh states (earlier frames are skipped);
        ``first``: frame ``start`` already read (handed over between windows)."""
        if first is not None:
            yield FrameState(first.index, first.pts, first.gray, first.work, first.light)
            if first.index >= stop - 1:
                return
        for frame in frames:
            if frame.index < start:
                continue
            gray = rgb_to_gray(frame.rgb)
            work = self._work_gray(gray)
            yield FrameState(frame.index, frame.pts, gray, work, gray_to_lightness(work))
            if frame.index >= stop - 1:
                return

    def _work_gray(self, gray: np.ndarray) -> np.ndarray:
        return work_gray(gray, self.options.work_max_side)


def work_gray(gray: np.ndarray, max_side: int) -> np.ndarray:
    """``(H, W)`` ``uint8`` gray at the working resolution (longer side at most ``max_side``, ``INTER_AREA``)."""
    h, w = gray.shape
    size = working_size(w, h, max_side)
    return gray if size == (w, h) else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def analyse(
    source: FrameSource,
    conditions: Conditions,
    options: EngineOptions | None = None,
    progress: Callable[[Iterable[Frame], int, str], Iterable[Frame]] | None = None,
) -> Plan:
    """The analysis pass over ``source``: one signature per frame, then :func:`~chromaflow.pipeline.plan.make_plan`.

    Needs no model: a driver plans a run before any component is loaded.
    """
    o = options or EngineOptions()
    sigs: list[Signature] = []
    pts: list[int | None] = []
    exact = True  # every timestamp so far is the file's own: a seek to one finds its frame
    is_color = False
    frames = iter(source) if progress is None else progress(iter(source), source.info.n_frames, "analysing")
    for frame in frames:
        if not is_color and frame.index < 3 and is_probably_color(frame.rgb):
            is_color = True
        sigs.append(frame_signature(work_gray(rgb_to_gray(frame.rgb), o.work_max_side)))
        exact = exact and frame.pts_exact
        pts.append(int(frame.pts) if exact else None)
    return make_plan(
        sigs, (source.info.width, source.info.height), max_gap=o.max_gap, user_keyframes=o.keyframes,
        reference_frames=[r.frame for r in conditions.references if r.frame is not None],
        exemplar=bool(conditions.references), derive_keyframes=o.derive_keyframes, backward=o.backward,
        is_color=is_color, pts=pts, max_shot_frames=o.max_shot_frames,
    )
