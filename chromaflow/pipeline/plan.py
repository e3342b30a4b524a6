"""The plan of a run: shots and keyframes, as plain data that can be written to JSON and read back.

The analysis pass (:func:`make_plan`, from one signature per frame) finds the
scene cuts and, per shot, the keyframes and the anchors known before
propagation.  A :class:`Plan` holds nothing but ints and bools, so it can be
stored beside a run (``plan.to_json()``), read back (``Plan.from_json``) and
handed to a process or a machine that runs one shot of it
(:meth:`TemporalEngine.run <chromaflow.pipeline.engine.TemporalEngine.run>`
with ``shots=``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from chromaflow.progress import plural
from chromaflow.temporal.keyframes import select_keyframes
from chromaflow.temporal.shots import Signature, detect_cuts, shot_ranges

log = logging.getLogger("chromaflow")

#: Version of the plan's JSON layout; a plan of another version is refused.
PLAN_VERSION = 1


@dataclass(frozen=True)
class ShotPlan:
    """One shot ``[start, stop)``.

    Attributes:
        start, stop: its frames.
        keyframes: frames (sorted) whose colours are settled before their
            neighbours': first and last frame, the most dissimilar frames,
            user keyframes and reference frames.
        precomputed: the anchors coloured before propagation (reference
            frames; with a colorizer, its first keyframe, or all keyframes when
            they are not derived).  Empty in an exemplar run where no
            reference frame falls in the shot: the anchor stage then matches a
            keyframe to a reference photo.
        start_pts: the timestamp of frame ``start`` in the source (lets a
            worker seek to the shot instead of decoding what comes before).
        continues: this is a window of a long shot that goes on from the
            previous entry (no cut between): its colours start from that
            window's last frame, carried along the motion.
    """

    start: int
    stop: int
    keyframes: tuple[int, ...]
    precomputed: tuple[int, ...] = ()
    start_pts: int | None = None
    continues: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.stop:
            raise ValueError(f"bad shot range [{self.start}, {self.stop})")
        for k in (*self.keyframes, *self.precomputed):
            if not self.start <= k < self.stop:
                raise ValueError(f"keyframe {k} outside its shot [{self.start}, {self.stop})")

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Plan:
    """The shots of a source.

    Attributes:
        n_frames: frames the analysis pass decoded.
        width, height: the source's frame size.
        shots: consecutive shots covering ``[0, n_frames)``.
        is_color: the source looked like colour (it is converted to gray).
    """

    n_frames: int
    width: int
    height: int
    shots: tuple[ShotPlan, ...]
    is_color: bool = False

    def shot_of(self, frame: int) -> int:
        """Index of the shot that holds ``frame``."""
        for i, s in enumerate(self.shots):
            if s.start <= frame < s.stop:
                return i
        raise IndexError(f"frame {frame} is outside the plan's {self.n_frames} frames")

    def to_dict(self) -> dict:
        return {"version": PLAN_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        """Read a plan written by :meth:`to_dict`.

        Raises:
            ValueError: another version, missing keys, or shots that do not tile the frames.
        """
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')!r}; this chromaflow reads version {PLAN_VERSION}")
        try:
            shots = tuple(
                ShotPlan(int(s["start"]), int(s["stop"]), tuple(int(k) for k in s["keyframes"]),
                         tuple(int(k) for k in s["precomputed"]),
                         None if s.get("start_pts") is None else int(s["start_pts"]), bool(s.get("continues", False)))
                for s in data["shots"]
            )
            plan = cls(int(data["n_frames"]), int(data["width"]), int(data["height"]), shots, bool(data["is_color"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a chromaflow plan (missing or bad {exc})") from None
        stop = 0
        if plan.shots and plan.shots[0].continues:
            raise ValueError("the first shot cannot continue a previous one")
        for s in plan.shots:
            if s.start != stop:
                raise ValueError(f"shots do not tile the frames: a shot starts at {s.start}, expected {stop}")
            stop = s.stop
        if stop != plan.n_frames:
            raise ValueError(f"shots end at frame {stop}, the plan has {plan.n_frames} frames")
        return plan

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))


def make_plan(
    signatures: Sequence[Signature],
    size: tuple[int, int],
    *,
    max_gap: int,
    user_keyframes: Iterable[int] = (),
    reference_frames: Iterable[int] = (),
    exemplar: bool = False,
    derive_keyframes: bool = True,
    backward: bool = True,
    is_color: bool = False,
    pts: Sequence[int | None] | None = None,
    max_shot_frames: int = 0,
) -> Plan:
    """Shots and keyframes from one signature per frame.

    Args:
        signatures: :func:`~chromaflow.temporal.shots.frame_signature` of every frame.
        size: ``(width, height)`` of the source.
        max_gap: largest gap in frames between keyframes.
        user_keyframes: frames that must be keyframes (those outside the video
            are ignored with a warning).
        reference_frames: frames whose colours are given (exemplar mode).
        exemplar: colours come from references (else from a colorizer).
        derive_keyframes, backward: with a colorizer, only the first keyframe
            of a shot is coloured before propagation when both are true.
        is_color: whether the source looked like colour.
        pts: every frame's timestamp, or ``None`` where a seek could not find it
            (stored per shot start, for seeking).
        max_shot_frames: shots longer than this are split into windows at
            keyframes (:func:`split_windows`); 0: never.
    """
    n = len(signatures)
    width, height = size
    if n == 0:
        return Plan(0, width, height, (), is_color)
    cuts = detect_cuts(signatures)
    refs = sorted({int(f) for f in reference_frames if 0 <= int(f) < n})
    user = list(user_keyframes)
    outside = [k for k in user if not 0 <= k < n]
    if outside:
        log.warning("ignoring keyframes outside the video (frames 0 to %d): %s", n - 1, outside)
    forced = set(refs) | {k for k in user if 0 <= k < n}
    shots = []
    for start, stop in shot_ranges(cuts, n):
        kf = tuple(int(k) for k in select_keyframes(signatures[start:stop], start, max_gap=max_gap, forced=forced))
        if exemplar:  # reference frames of the shot; none: a keyframe is matched at the anchor stage
            pre = tuple(f for f in refs if start <= f < stop)
        elif derive_keyframes and backward:
            pre = (kf[0],)  # the colorizer colours the first; the others are derived
        else:
            pre = kf
        # windows hand over at a keyframe that is an anchor of the whole shot: after its first precomputed one
        split = max_shot_frames if pre and (exemplar or derive_keyframes) and backward else 0
        for w, (a, b) in enumerate(split_windows([k for k in kf if not pre or k > min(pre)], start, stop, split)):
            inside = tuple(k for k in kf if a <= k < b)
            if w == 0:
                window_pre = tuple(k for k in pre if a <= k < b)
            else:  # colours come in from the previous window; reference frames stay anchors
                window_pre = tuple(k for k in pre if a <= k < b) if exemplar else ()
            start_pts = int(pts[a]) if pts is not None and pts[a] is not None else None
            shots.append(ShotPlan(a, b, inside, window_pre, start_pts, w > 0))
    windows = sum(s.continues for s in shots)
    cuts_n = len(shots) - windows
    if n > 1:  # an image is no video: nothing to say
        log.info("%s, %s%s, %s", plural(n, "frame"), plural(cuts_n, "shot"),
                 f" ({windows} long-shot windows more)" if windows else "",
                 plural(sum(len(s.keyframes) for s in shots), "keyframe"))
    return Plan(n, width, height, tuple(shots), is_color)


def split_windows(keyframes: Sequence[int], start: int, stop: int, max_frames: int) -> list[tuple[int, int]]:
    """``[(a, b), ...]``: ``[start, stop)`` cut at keyframes into windows of about ``max_frames`` frames.

    A shot no longer than ``max_frames`` (or ``max_frames`` 0) is one window;
    otherwise each cut is the keyframe nearest to the next multiple of
    ``max_frames`` (keyframes are at most ``max_gap`` apart, so windows stay close to that size).
    """
    if max_frames <= 0 or stop - start <= max_frames:
        return [(start, stop)]
    cuts = [start]
    inner = [k for k in keyframes if start < k < stop]
    while stop - cuts[-1] > max_frames:
        target = cuts[-1] + max_frames
        after = [k for k in inner if k > cuts[-1] + max_frames // 2]
        if not after:
            break
        cut = min(after, key=lambda k: abs(k - target))
        if stop - cut < max_frames // 4:  # no tiny last window
            break
        cuts.append(cut)
    return list(zip(cuts, [*cuts[1:], stop]))
