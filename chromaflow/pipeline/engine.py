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
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray, rgb_to_lab
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.base import Carried, Colorizer
from chromaflow.fill.base import ChromaFill
from chromaflow.guidance.conditions import Conditions, Reference
from chromaflow.io.source import Frame, FrameSource, is_probably_color
from chromaflow.pipeline.buffer import SpillList
from chromaflow.temporal.keyframes import select_keyframes
from chromaflow.temporal.propagation import (
    Track,
    carry_track,
    carry_values,
    fuse,
    more_reliable,
    recolor_track,
    start_track,
    track_colors,
    warp_directly,
)
from chromaflow.temporal.reliability import step_reliability
from chromaflow.temporal.shots import Signature, detect_cuts, frame_signature, shot_ranges

log = logging.getLogger("chromaflow")

#: frames of a shot its own palette is made from (``Conditions.palette_per_shot``)
PALETTE_SAMPLES = 8


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


@dataclass
class ShotPlan:
    """The anchors of one shot ``[start, stop)``."""

    start: int
    stop: int
    keyframes: list[int]
    anchors: list[int] = field(default_factory=list)
    precomputed: set[int] = field(default_factory=set)
    reference: Reference | None = None  # the reference photo that colours this shot by correspondence
    conditions: Conditions | None = None  # the shot's own conditions (its own palette), if any


@dataclass
class Plan:
    n_frames: int
    shots: list[ShotPlan]
    is_color: bool


class TemporalEngine:
    """Colours a whole source with temporal consistency.

    Args:
        fill: the fill step used for correction.
        flow: a flow estimator ``(src_gray, dst_gray) -> (H, W, 2)`` with a
            ``pair(a, b)`` method (see :mod:`chromaflow.temporal.flow`).
        colorizer: colours keyframes when no reference is given.
        matcher: semantic matcher for references that are not frames of the
            video (built lazily when needed).
        options: :class:`EngineOptions`.
    """

    def __init__(
        self,
        fill: ChromaFill,
        flow,
        colorizer: Colorizer | None = None,
        matcher=None,
        options: EngineOptions | None = None,
    ) -> None:
        self.fill = fill
        self.flow = flow
        self.colorizer = colorizer
        self._matcher = matcher
        self.options = options or EngineOptions()
        #: Frames made keyframes during the last run because propagation failed there.
        self.added_keyframes: list[int] = []
        #: ``(frames, total, description) -> frames``: wraps every pass over the
        #: source (the pipeline sets a progress bar here); identity by default.
        self.progress: Callable[[Iterable[Frame], int, str], Iterable[Frame]] = lambda frames, total, desc: frames

    def _frames(self, source: FrameSource, description: str) -> Iterable[Frame]:
        return self.progress(iter(source), source.info.n_frames, description)

    # ------------------------------------------------------------------ plan
    def analyse(self, source: FrameSource, conditions: Conditions) -> Plan:
        """First pass: signatures, shots, keyframes and anchor positions."""
        sigs: list[Signature] = []
        is_color = False
        for frame in self._frames(source, "analysing"):
            if not is_color and frame.index < 3 and is_probably_color(frame.rgb):
                is_color = True
            sigs.append(frame_signature(self._work_gray(rgb_to_gray(frame.rgb))))
        n = len(sigs)
        if n == 0:
            return Plan(0, [], is_color)
        cuts = detect_cuts(sigs)
        ref_frames = sorted({r.frame for r in conditions.references if r.frame is not None and r.frame < n})
        outside = [k for k in self.options.keyframes if not 0 <= k < n]
        if outside:
            log.warning("ignoring keyframes outside the video (frames 0 to %d): %s", n - 1, outside)
        forced = set(ref_frames) | {k for k in self.options.keyframes if 0 <= k < n}
        exemplar = bool(conditions.references)
        shots = []
        for start, stop in shot_ranges(cuts, n):
            kf = select_keyframes(sigs[start:stop], start, max_gap=self.options.max_gap, forced=forced)
            shot = ShotPlan(start, stop, kf)
            if exemplar:  # reference frames of the shot; none: a keyframe chosen in color_anchors
                shot.precomputed = {f for f in ref_frames if start <= f < stop}
            elif self.options.derive_keyframes and self.options.backward:
                shot.precomputed = {kf[0]}  # the colorizer colours the first; the others are derived
            else:
                shot.precomputed = set(kf)
            shots.append(shot)
        log.info(
            "%d frames, %d shot%s, %d keyframes",
            n,
            len(shots),
            "" if len(shots) == 1 else "s",
            sum(len(s.keyframes) for s in shots),
        )
        return Plan(n, shots, is_color)

    # --------------------------------------------------------------- anchors
    def color_anchors(
        self, source: FrameSource, plan: Plan, conditions: Conditions
    ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Colours of the precomputed anchors: ``{frame: (ab, confidence)}`` at working resolution."""
        need: set[int] = set()
        for shot in plan.shots:
            if not conditions.references:  # the colorizer's keyframes
                need.update(shot.precomputed)
            elif not shot.precomputed:  # a keyframe is matched to a reference photo
                need.update(shot.keyframes)
        per_shot = conditions.palette_per_shot if not conditions.references else None
        sample_of: dict[int, int] = {}  # frame -> shot, the frames each shot's palette is made from
        if per_shot is not None:
            for i, shot in enumerate(plan.shots):
                n = min(PALETTE_SAMPLES, shot.stop - shot.start)
                sample_of.update({int(f): i for f in np.linspace(shot.start, shot.stop - 1, n).round()})
        grays: dict[int, np.ndarray] = {}
        samples: dict[int, list[np.ndarray]] = {}
        if need or sample_of:
            wanted = need | set(sample_of)
            for frame in self._frames(source, "keyframes"):
                if frame.index in wanted:
                    work = self._work_gray(rgb_to_gray(frame.rgb))
                    if frame.index in need:
                        grays[frame.index] = work
                    if frame.index in sample_of:
                        samples.setdefault(sample_of[frame.index], []).append(work)
                    wanted.discard(frame.index)
                    if not wanted:
                        break
        if per_shot is not None:
            for i, shot in enumerate(plan.shots):
                shot.conditions = replace(conditions, palette=per_shot(samples[i]))
                log.info("shot %d (frames %d-%d): palette %s", i + 1, shot.start, shot.stop - 1,
                         ",".join(shot.conditions.palette.hex()))
        anchors: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        refs_by_frame = {r.frame: r for r in conditions.references if r.frame is not None}
        for shot in plan.shots:
            if conditions.references:
                if not shot.precomputed:
                    best, shot.reference = self._best_match(shot.keyframes, grays, conditions.references)
                    anchors[best] = self._correspondence_colors(grays[best], shot.reference)
                    shot.precomputed = {best}
                for f in shot.precomputed:
                    if f in refs_by_frame:
                        anchors[f] = self._reference_colors(refs_by_frame[f])
            else:
                assert self.colorizer is not None
                kf = sorted(shot.precomputed)
                light = np.stack([gray_to_lightness(grays[k]) for k in kf])
                ab = self.colorizer.colorize(light, kf, shot.conditions or conditions)
                for k, a in zip(kf, ab):
                    anchors[k] = (a.astype(np.float32), np.ones(a.shape[:2], np.float32))
            self._place_anchors(shot, bool(conditions.references) or self.options.derive_keyframes)
        return anchors

    def _place_anchors(self, shot: ShotPlan, derive: bool) -> None:
        """Anchors = precomputed ones, plus (``derive``, with backward fusion) the
        keyframes after the first precomputed anchor, derived from propagation."""
        anchors = set(shot.precomputed)
        if derive and self.options.backward:
            first = min(shot.precomputed)
            anchors.update(k for k in shot.keyframes if k > first)
        shot.anchors = sorted(anchors)

    def _reference_colors(self, ref: Reference) -> tuple[np.ndarray, np.ndarray]:
        h, w = ref.rgb.shape[:2]
        size = _working_size(w, h, self.options.work_max_side)
        small = ref.rgb if size == (w, h) else cv2.resize(ref.rgb, size, interpolation=cv2.INTER_AREA)
        ab = rgb_to_lab(small)[..., 1:]
        return np.ascontiguousarray(ab), np.ones(ab.shape[:2], np.float32)

    @property
    def matcher(self):
        if self._matcher is None:
            from chromaflow.guidance.correspondence import SemanticMatcher

            self._matcher = SemanticMatcher()
        return self._matcher

    def _correspondence(self, gray: np.ndarray, ref: Reference) -> tuple[np.ndarray, np.ndarray]:
        ab, conf = self.matcher.transfer(gray, ref.rgb)
        h, w = gray.shape
        if ab.shape[:2] != (h, w):
            ab = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)
            conf = cv2.resize(conf, (w, h), interpolation=cv2.INTER_LINEAR)
        return ab.astype(np.float32), np.clip(conf, 0.0, 1.0).astype(np.float32)

    def _correspondence_colors(self, gray: np.ndarray, ref: Reference) -> tuple[np.ndarray, np.ndarray]:
        ab, conf = self._correspondence(gray, ref)
        light = gray_to_lightness(gray)
        hint_conf = np.where(conf >= self.options.correction_threshold, conf, 0.0).astype(np.float32)
        filled = self.fill.fill(light, ab, hint_conf) if hint_conf.any() else ab
        return filled.astype(np.float32), np.full(gray.shape, self.options.fill_confidence, np.float32)

    def _best_match(
        self, keyframes: Sequence[int], grays: dict[int, np.ndarray], refs: Sequence[Reference]
    ) -> tuple[int, Reference]:
        """The (keyframe, reference) pair whose global EfficientNet descriptors agree best."""
        if len(keyframes) == 1 and len(refs) == 1:
            return keyframes[0], refs[0]
        matcher = self.matcher
        frame_desc = [matcher.describe(grays[k]) for k in keyframes]
        best = (-np.inf, keyframes[0], refs[0])
        for ref in refs:
            scores = matcher.rank_frames(frame_desc, matcher.describe(rgb_to_gray(ref.rgb)))
            i = int(np.argmax(scores))
            if scores[i] > best[0]:
                best = (float(scores[i]), keyframes[i], ref)
        return best[1], best[2]

    @staticmethod
    def _reference_for(shot: ShotPlan, refs: Sequence[Reference], frame: int) -> Reference:
        """The reference that helps correct frame ``frame``: the shot's matched photo, else the
        nearest reference frame in time."""
        if shot.reference is not None:
            return shot.reference
        anchored = [r for r in refs if r.frame is not None]
        if anchored:
            return min(anchored, key=lambda r: abs(r.frame - frame))
        return refs[0]

    # ----------------------------------------------------------- propagation
    def run(self, source: FrameSource, conditions: Conditions) -> Iterator[tuple[Frame, np.ndarray]]:
        """Colour every frame of ``source``; yields ``(frame, rgb)`` in order."""
        plan = self.analyse(source, conditions)
        if plan.is_color:
            log.warning("the input is in color: converting it to grayscale first")
        if plan.n_frames == 0:
            return
        anchors = self.color_anchors(source, plan, conditions)
        self.added_keyframes = []
        yield from self._propagate(source, plan, anchors, conditions)
        if self.added_keyframes:
            log.info("%d keyframes added where propagation failed", len(self.added_keyframes))

    def _propagate(
        self,
        source: FrameSource,
        plan: Plan,
        anchors: dict[int, tuple[np.ndarray, np.ndarray]],
        conditions: Conditions,
    ) -> Iterator[tuple[Frame, np.ndarray]]:
        opts = self.options
        shot_of = np.zeros(plan.n_frames, np.int64)
        for i, s in enumerate(plan.shots):
            shot_of[s.start : s.stop] = i
        pending = SpillList(opts.memory_budget_mb * 2**20)
        track: Track | None = None  # forward chain from the last anchor
        track_anchor: np.ndarray | None = None  # that anchor's chroma
        prev: dict | None = None
        last_anchor: int | None = None
        origin: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        for frame in self._frames(source, "colorizing"):
            t = frame.index
            if t >= plan.n_frames:
                break
            shot = plan.shots[shot_of[t]]
            gray = rgb_to_gray(frame.rgb)
            item = {"index": t, "pts": frame.pts, "gray": gray}
            item["work"] = self._work_gray(gray)
            item["light"] = gray_to_lightness(item["work"])
            if t == shot.start:
                track, track_anchor, prev, last_anchor = None, None, None, None
                origin = None  # the shot's last anchor coloured before propagation: (gray, ab, confidence)
            fwd: tuple[np.ndarray, np.ndarray] | None = None
            if track is not None and prev is not None:
                f_cur_prev, f_prev_cur = self.flow.pair(item["work"], prev["work"])
                item["flow_to_prev"], item["flow_from_prev"] = f_cur_prev, f_prev_cur
                rel, lum = step_reliability(f_cur_prev, f_prev_cur, item["light"], prev["light"])
                track = carry_track(track, f_cur_prev, rel)
                ab = track_colors(track, track_anchor)
                failing = (
                    opts.correct
                    and last_anchor is not None
                    and t - last_anchor >= opts.min_reanchor_gap
                    and float((track.confidence < opts.correction_threshold).mean()) > opts.reanchor_fraction
                )
                if failing and t not in shot.anchors:
                    # Propagation is failing here: this frame becomes a keyframe.
                    shot.anchors = sorted([*shot.anchors, t])
                    self.added_keyframes.append(t)
                if t not in shot.anchors:
                    track, ab = self._correct_track(item["light"], track, ab, lum)
                fwd = (ab, track.confidence)
            if t in shot.anchors:
                if t in anchors:
                    ab_t, conf_t = anchors[t]
                    origin = (item["work"], ab_t, conf_t)
                elif self.colorizer is not None and (
                    fwd is None or t in self.added_keyframes or not opts.derive_keyframes
                ):
                    # A keyframe added where propagation failed: the colorizer colours it,
                    # and the pixels still reliably carried keep their colours.
                    known = None
                    if fwd is not None:
                        keep = (fwd[1] >= opts.correction_threshold).astype(np.float32)
                        known = (fwd[0][None], keep[None])
                    ab_t = self.colorizer.colorize(item["light"][None], [t], shot.conditions or conditions, known)
                    ab_t = ab_t[0].astype(np.float32)
                    conf_t = np.ones(ab_t.shape[:2], np.float32)
                else:  # derived anchor: propagated colours, corrected (with correspondence hints)
                    ref = self._reference_for(shot, conditions.references, t) if conditions.references else None
                    carried = None
                    if track is not None and last_anchor is not None:
                        carried = Carried(last_anchor, functools.partial(carry_values, track))
                    if fwd is not None and origin is not None and opts.direct_match:
                        fwd = more_reliable(*fwd, *warp_directly(self.flow, item["work"], *origin))
                    ab_t, conf_t = self._derive_anchor(item, fwd, ref, shot.conditions or conditions, carried)
                if len(pending):
                    yield from self._flush(pending, (ab_t, conf_t), item, last_anchor, t)
                    pending.clear()
                track, track_anchor = start_track(ab_t, conf_t), ab_t
                last_anchor = t
                yield self._emit(item, ab_t)
            elif any(a > t for a in shot.anchors) and (opts.backward or last_anchor is None):
                if fwd is not None:
                    item["ab_fwd"], item["conf_fwd"] = fwd
                pending.append(item)
            else:
                ab = fwd[0] if fwd is not None else np.zeros(item["light"].shape + (2,), np.float32)
                yield self._emit(item, ab)
            prev = {"work": item["work"], "light": item["light"]}
        # The source ended before the anchor these frames waited for (it decoded fewer
        # frames than the analysis pass saw): emit them with what they have.
        for i in range(len(pending)):
            item = pending[i]
            yield self._emit(item, item.get("ab_fwd", np.zeros(item["light"].shape + (2,), np.float32)))
        pending.clear()

    def _flush(
        self,
        pending: SpillList,
        anchor: tuple[np.ndarray, np.ndarray],
        anchor_item: dict,
        last_anchor: int | None,
        anchor_index: int,
    ) -> Iterator[tuple[Frame, np.ndarray]]:
        """Carry the anchor's colours backward through the pending frames, fuse, emit in order.

        Where a forward candidate exists it was corrected already; the backward
        candidate is then only carried (its unreliable pixels weigh nothing in
        the fusion), which halves the fill work.
        """
        anchor_ab = anchor[0]
        track = start_track(*anchor)
        nxt = anchor_item
        for i in range(len(pending) - 1, -1, -1):
            item = pending[i]
            if "flow_to_prev" in nxt and nxt["index"] == item["index"] + 1:
                f_item_nxt, f_nxt_item = nxt["flow_from_prev"], nxt["flow_to_prev"]
            else:
                f_item_nxt, f_nxt_item = self.flow.pair(item["work"], nxt["work"])
            rel, lum = step_reliability(f_item_nxt, f_nxt_item, item["light"], nxt["light"])
            track = carry_track(track, f_item_nxt, rel)
            ab = track_colors(track, anchor_ab)
            if "ab_fwd" not in item:  # backward only: this chain must correct itself
                track, ab = self._correct_track(item["light"], track, ab, lum)
            pending.set(i, "ab_bwd", ab)
            pending.set(i, "conf_bwd", track.confidence)
            nxt = item
        for i in range(len(pending)):
            item = pending[i]
            t = item["index"]
            if "ab_fwd" in item and last_anchor is not None:
                ab_t, _ = fuse(
                    item["ab_fwd"], item["conf_fwd"], t - last_anchor, item["ab_bwd"], item["conf_bwd"], anchor_index - t
                )
            else:
                ab_t = item["ab_bwd"]
            yield self._emit(item, ab_t)

    def _correct_track(
        self, light: np.ndarray, track: Track, ab: np.ndarray, agreement: np.ndarray | None = None
    ) -> tuple[Track, np.ndarray]:
        """Correct a track's colours; re-coloured pixels carry their new colour from now on."""
        out, replaced = self._correct(light, ab, track.confidence, agreement=agreement)
        if replaced is None:
            return track, ab
        return recolor_track(track, out, replaced, self.options.fill_confidence), out

    def _derive_anchor(
        self,
        item: dict,
        fwd: tuple[np.ndarray, np.ndarray] | None,
        ref: Reference | None,
        conditions: Conditions,
        carried: Carried | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        if fwd is None:
            assert ref is not None
            return self._correspondence_colors(item["work"], ref)
        ab, conf = fwd
        opts = self.options
        extra = None
        if ref is None and self.colorizer is not None and opts.correct:
            # What the colorizer asks for here (a prompt's objects, wherever they are
            # now): where it is sure, its hints win over the carried colours.
            extra = self.colorizer.hints(item["light"], int(item["index"]), conditions, carried)
            if extra is not None:
                conf = np.where(extra[1] >= opts.correction_threshold, 0.0, conf).astype(np.float32)
        elif ref is not None and opts.correct and (conf < opts.correction_threshold).mean() >= opts.min_correction_fraction:
            extra = self._correspondence(item["work"], ref)
        out, replaced = self._correct(item["light"], ab, conf, extra)
        if replaced is None:
            return ab, conf
        return out, np.where(replaced, self.options.fill_confidence, conf).astype(np.float32)

    def _correct(
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
            extra: optional ``(ab, confidence)`` hints (semantic correspondence)
                used where the propagated colours are unreliable.
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

    def _emit(self, item: dict, ab: np.ndarray) -> tuple[Frame, np.ndarray]:
        gray = item["gray"]
        if ab.shape[:2] != gray.shape:
            ab = guided_upsample(ab, gray)
        rgb = compose_rgb(gray, ab)
        gray3 = np.broadcast_to(gray[..., None], gray.shape + (3,))  # a view: no per-frame copy
        return Frame(int(item["index"]), gray3, int(item["pts"])), rgb

    def _work_gray(self, gray: np.ndarray) -> np.ndarray:
        h, w = gray.shape
        size = _working_size(w, h, self.options.work_max_side)
        return gray if size == (w, h) else cv2.resize(gray, size, interpolation=cv2.INTER_AREA)


def _working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
