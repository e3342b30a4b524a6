"""Propagation through one shot: carry the anchors' colours forward and backward, correct, fuse.

:func:`propagate_shot` walks the frames of one shot in order, holding a typed
:class:`FrameState` per frame.  Colours travel from the previous anchor
forward as a chained-flow track (each step keeping the smaller of the carried
confidence and the warp's reliability) and, for the frames waiting between two
anchors, backward from the next anchor; the two candidates are fused by
confidence and temporal distance.  Where the track fails over most of a frame,
that frame becomes an anchor on the way.  Anchors get their colours from the
mode's :class:`~chromaflow.pipeline.anchors.AnchorStrategy`; derived ones first
take, per pixel, the more reliable of the chained colours and the shot's last
precomputed anchor warped straight onto them (one long-range flow).

Everything is at the working resolution; :func:`compose_frame` brings the
chroma back to the frame's size along the luminance edges.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from chromaflow.color.lab import compose_rgb
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.base import Carried
from chromaflow.io.source import Frame
from chromaflow.pipeline.anchors import AnchorStrategy, ShotAnchors
from chromaflow.pipeline.buffer import SpillList
from chromaflow.pipeline.correct import Corrector
from chromaflow.temporal.propagation import (
    Track,
    carry_track,
    carry_values,
    fuse,
    more_reliable,
    start_track,
    track_colors,
    warp_directly,
)
from chromaflow.temporal.reliability import step_reliability


@dataclass
class FrameState:
    """One frame on its way through the propagation.

    Attributes:
        index, pts: position and timestamp in the source.
        gray: ``(H, W)`` ``uint8`` full-size gray (the output keeps it exactly).
        work: ``(h, w)`` ``uint8`` gray at the working resolution.
        light: ``(h, w)`` ``float32`` Lab L of ``work``, in [0, 100].
        flow_to_prev, flow_from_prev: ``(h, w, 2)`` flows to and from the
            previous frame (``None`` at a shot's first frame).
        ab_fwd, conf_fwd: the forward candidate (chroma, confidence).
        ab_bwd, conf_bwd: the backward candidate.
    """

    index: int
    pts: int
    gray: np.ndarray
    work: np.ndarray
    light: np.ndarray
    flow_to_prev: np.ndarray | None = None
    flow_from_prev: np.ndarray | None = None
    ab_fwd: np.ndarray | None = None
    conf_fwd: np.ndarray | None = None
    ab_bwd: np.ndarray | None = None
    conf_bwd: np.ndarray | None = None


@dataclass(frozen=True)
class Carry:
    """Where a window of a long shot hands over to the next: the anchor at the next window's first frame.

    The window before colours one frame more than it emits, the first frame of
    the next window, as the anchor it is in the whole shot; the next window
    starts from that anchor with the same state a whole-shot run would have.

    Attributes:
        index: the frame (the next window's first).
        ab: ``(h, w, 2)`` ``float32`` its anchor chroma (Lab ab) at the working resolution.
        conf: ``(h, w)`` ``float32`` its confidence.
        origin: the shot's last anchor coloured before propagation, ``(gray (h, w) uint8,
            ab (h, w, 2), conf (h, w))``, for the direct match (``None``: none yet).
    """

    index: int
    ab: np.ndarray
    conf: np.ndarray
    origin: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


def compose_frame(state: FrameState, ab: np.ndarray) -> tuple[Frame, np.ndarray]:
    """``(frame, rgb)``: the working chroma ``ab`` brought to full size and composed with the gray.

    ``rgb`` is ``(H, W, 3)`` ``uint8`` whose gray equals ``state.gray``; the
    frame's pixels are a view of the gray (no per-frame copy).
    """
    gray = state.gray
    if ab.shape[:2] != gray.shape:
        ab = guided_upsample(ab, gray)
    rgb = compose_rgb(gray, ab)
    gray3 = np.broadcast_to(gray[..., None], gray.shape + (3,))
    return Frame(int(state.index), gray3, int(state.pts)), rgb


class ShotPropagation:
    """Propagates one shot (see the module doc).

    Args:
        flow: the flow estimator (``pair(a, b)``).
        corrector: correction of unreliable pixels.
        strategy: the mode's anchors.
        options: :class:`~chromaflow.pipeline.engine.EngineOptions`.

    Attributes:
        added_keyframes: frames made anchors because propagation failed there.
        carry: after a run with ``carry_out``, the hand-over to the next window.
    """

    def __init__(self, flow, corrector: Corrector, strategy: AnchorStrategy, options) -> None:
        self.flow = flow
        self.corrector = corrector
        self.strategy = strategy
        self.options = options
        self.added_keyframes: list[int] = []
        self.carry: Carry | None = None

    def run(self, states: Iterable[FrameState], shot: ShotAnchors, carry_in: Carry | None = None,
            carry_out: int | None = None) -> Iterator[tuple[FrameState, np.ndarray]]:
        """Yield ``(state, ab)`` for every frame of the shot, in order (``ab``: working-size chroma).

        Args:
            carry_in: the anchor this window starts from (a window continuing a
                long shot: its first frame, coloured by the window before).
            carry_out: the first frame of the next window of a long shot: it is
                coloured as the anchor it is, not yielded, and left in
                :attr:`carry` (``states`` must include it).
        """
        opts = self.options
        anchors = list(shot.anchors)
        colors = dict(shot.colors)
        if carry_in is not None:
            colors[carry_in.index] = (carry_in.ab, carry_in.conf)
            anchors = sorted({*anchors, carry_in.index})
        if carry_out is not None:
            anchors = sorted({*anchors, carry_out})
        self.carry = None
        pending: SpillList[FrameState] = SpillList(opts.memory_budget_mb * 2**20)
        track: Track | None = None  # forward chain from the last anchor
        track_anchor: np.ndarray | None = None  # that anchor's chroma
        prev: FrameState | None = None
        last_anchor: int | None = None
        # the shot's last anchor coloured before propagation (gray, ab, conf), for the direct match
        origin = carry_in.origin if carry_in is not None else None
        self.strategy.start_shot(shot)
        for item in states:
            t = item.index
            fwd: tuple[np.ndarray, np.ndarray] | None = None
            lum = None
            if track is not None and prev is not None:
                f_cur_prev, f_prev_cur = self.flow.pair(item.work, prev.work)
                item.flow_to_prev, item.flow_from_prev = f_cur_prev, f_prev_cur
                rel, lum = step_reliability(f_cur_prev, f_prev_cur, item.light, prev.light)
                track = carry_track(track, f_cur_prev, rel)
                ab = track_colors(track, track_anchor)
                failing = (
                    opts.correct
                    and last_anchor is not None
                    and t - last_anchor >= opts.min_reanchor_gap
                    and float((track.confidence < opts.correction_threshold).mean()) > opts.reanchor_fraction
                )
                if failing and t not in anchors:
                    anchors = sorted([*anchors, t])  # propagation is failing here: a keyframe on the way
                    self.added_keyframes.append(t)
                if t not in anchors:
                    track, ab = self.corrector.correct_track(item.light, track, ab, lum)
                fwd = (ab, track.confidence)
            if t in anchors:
                if t in colors:
                    ab_t, conf_t = colors[t]
                    if carry_in is None or t != carry_in.index:  # a carried anchor keeps the shot's origin
                        origin = (item.work, ab_t, conf_t)
                elif self.strategy.colours_keyframe(t, fwd is not None, t in self.added_keyframes):
                    ab_t, conf_t = self.strategy.recolor(item.light, t, fwd, shot)
                else:  # derived anchor: propagated colours (or the direct match), corrected
                    carried = None
                    if track is not None and last_anchor is not None:
                        carried = Carried(last_anchor, functools.partial(carry_values, track))
                    if fwd is not None and origin is not None and opts.direct_match:
                        fwd = more_reliable(*fwd, *warp_directly(self.flow, item.work, *origin))
                    ab_t, conf_t = self.strategy.derive(item.work, item.light, t, fwd, shot, carried)
                if len(pending):
                    yield from self._flush(pending, (ab_t, conf_t), item, last_anchor, t)
                    pending.clear()
                if t == carry_out:  # the next window's first frame: hand over, do not yield
                    self.carry = Carry(t, ab_t, conf_t, origin)
                    return
                track, track_anchor = start_track(ab_t, conf_t), ab_t
                last_anchor = t
                yield item, ab_t
            elif any(a > t for a in anchors) and (opts.backward or last_anchor is None):
                if fwd is not None:
                    item.ab_fwd, item.conf_fwd = fwd
                pending.append(item)
            else:
                yield item, (fwd[0] if fwd is not None else np.zeros(item.light.shape + (2,), np.float32))
            prev = FrameState(item.index, item.pts, item.gray, item.work, item.light)
        # The source ended before the anchor these frames waited for (it decoded fewer
        # frames than the analysis pass saw): emit them with what they have.
        for i in range(len(pending)):
            item = pending[i]
            yield item, (item.ab_fwd if item.ab_fwd is not None else np.zeros(item.light.shape + (2,), np.float32))
        pending.clear()

    def _flush(
        self,
        pending: SpillList[FrameState],
        anchor: tuple[np.ndarray, np.ndarray],
        anchor_item: FrameState,
        last_anchor: int | None,
        anchor_index: int,
    ) -> Iterator[tuple[FrameState, np.ndarray]]:
        """Carry the anchor's colours backward through the pending frames, fuse, yield in order.

        Where a forward candidate exists it was corrected already; the backward
        candidate is then only carried (its unreliable pixels weigh nothing in
        the fusion), which halves the fill work.
        """
        anchor_ab = anchor[0]
        track = start_track(*anchor)
        nxt = anchor_item
        for i in range(len(pending) - 1, -1, -1):
            item = pending[i]
            if nxt.flow_to_prev is not None and nxt.index == item.index + 1:
                f_item_nxt, f_nxt_item = nxt.flow_from_prev, nxt.flow_to_prev
            else:
                f_item_nxt, f_nxt_item = self.flow.pair(item.work, nxt.work)
            rel, lum = step_reliability(f_item_nxt, f_nxt_item, item.light, nxt.light)
            track = carry_track(track, f_item_nxt, rel)
            ab = track_colors(track, anchor_ab)
            if item.ab_fwd is None:  # backward only: this chain must correct itself
                track, ab = self.corrector.correct_track(item.light, track, ab, lum)
            pending.set(i, "ab_bwd", ab)
            pending.set(i, "conf_bwd", track.confidence)
            nxt = item
        for i in range(len(pending)):
            item = pending[i]
            t = item.index
            if item.ab_fwd is not None and last_anchor is not None:
                ab_t, _ = fuse(item.ab_fwd, item.conf_fwd, t - last_anchor, item.ab_bwd, item.conf_bwd, anchor_index - t)
            else:
                ab_t = item.ab_bwd
            yield item, ab_t
