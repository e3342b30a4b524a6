"""Progress of long work: a bar on a terminal, periodic log lines otherwise, events for a UI.

:func:`track` wraps one pass over frames (the analysis pass).  :class:`RunProgress`
follows a whole run: frames and shots done, frames per second and the time left.
It draws a rich bar when stderr is a terminal (``mode="bar"``), writes a plain
log line every ``interval`` seconds when it is not (``"log"``), both as
``"auto"`` chooses, or nothing (``"none"``); every change is also sent as a
:class:`ProgressEvent` to the ``on_event`` callbacks (a web UI listens there).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from chromaflow.errors import Cancelled

T = TypeVar("T")
log = logging.getLogger("chromaflow")

PROGRESS_MODES = ("auto", "bar", "log", "none")


def plural(n: int, word: str) -> str:
    """``"1 frame"``, ``"2 frames"``."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def rate(fps: float) -> str:
    """``"10.9 frames/s"``, ``"0.44 frames/s"``: the one way speeds are written (bar, log lines, summary)."""
    return f"{fps:.1f} frames/s" if fps >= 1 else f"{fps:.2f} frames/s"


def track(items: Iterable[T], total: int | None, description: str, enabled: bool = True) -> Iterator[T]:
    """Yield ``items``, drawing a progress bar on stderr when it is a terminal."""
    if not enabled or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(description, total=total, rate="")
        for item in items:
            yield item
            task_obj = progress.tasks[0]
            speed = task_obj.speed
            progress.update(task, advance=1, rate=f"{speed:.1f} fps" if speed else "")


class CancelEvent(Protocol):
    """What cancels a run from another thread: a :class:`threading.Event` (``set()`` it to cancel)."""

    def is_set(self) -> bool: ...


def check_cancel(cancel: CancelEvent | None) -> None:
    """Raise :class:`~chromaflow.errors.Cancelled` if ``cancel`` is set (``None``: never)."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled; no output was written")


def cancellable(items: Iterable[T], cancel: CancelEvent | None) -> Iterator[T]:
    """Yield ``items``, checking ``cancel`` before each (see :func:`check_cancel`)."""
    for item in items:
        check_cancel(cancel)
        yield item


@dataclass(frozen=True)
class ProgressEvent:
    """The state of a run after a change.

    Attributes:
        kind: ``"start"``, ``"frame"``, ``"shot"`` (a shot finished), ``"mux"``
            (writing the output) or ``"done"``.
        frames_done, frames_total: frames coloured (this run and earlier ones resumed).
        shots_done, shots_total: shots finished.
        fps: frames per second coloured by this run so far (its whole time: keyframes, frames
            and, at ``"done"``, writing the output; the figure the summary line gives).
        eta: seconds left at that speed (``None``: not known yet).
        stage: ``"keyframes"`` while a shot's keyframes are coloured (before its first frame;
            runs that count frame by frame), else ``"frames"``.
    """

    kind: str
    frames_done: int
    frames_total: int
    shots_done: int
    shots_total: int
    fps: float
    eta: float | None
    stage: str = "frames"


class RunProgress:
    """Progress of a whole run (see the module doc).

    Args:
        mode: ``auto`` | ``bar`` | ``log`` | ``none``.
        on_event: callbacks receiving every :class:`ProgressEvent`.
        interval: seconds between log lines.
        label: what the bar is called (the input's name).
    """

    def __init__(self, mode: str = "auto", on_event: Sequence[Callable[[ProgressEvent], None]] = (),
                 interval: float = 10.0, label: str = "colorizing") -> None:
        if mode not in PROGRESS_MODES:
            raise ValueError(f"unknown progress mode {mode!r}; use one of {', '.join(PROGRESS_MODES)}")
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "log"
        self.mode = mode
        self.on_event = list(on_event)
        self.interval = interval
        self.label = label
        self.frames_done = self.frames_total = self.shots_done = self.shots_total = 0
        self._base = 0
        self._t0 = time.perf_counter()
        self._last_log = self._t0
        self._bar = None
        self._task = None
        self.stage = "frames"
        self._per_frame = True

    @property
    def fps(self) -> float:
        dt = time.perf_counter() - self._t0
        return (self.frames_done - self._base) / dt if dt > 0 else 0.0

    def _event(self, kind: str) -> ProgressEvent:
        fps = self.fps
        left = self.frames_total - self.frames_done
        eta = left / fps if fps > 0 else None
        return ProgressEvent(kind, self.frames_done, self.frames_total, self.shots_done, self.shots_total, fps, eta,
                             self.stage)

    def _emit(self, kind: str) -> None:
        event = self._event(kind)
        for cb in self.on_event:
            cb(event)
        coloured = event.frames_done > self._base  # no speed before the first frame of this run
        doing = " · keyframes" if event.stage == "keyframes" and kind not in ("mux", "done") else ""
        if self._bar is not None:
            left = format_duration(event.eta) + " left" if event.eta is not None and kind != "done" else ""
            self._bar.update(self._task, completed=event.frames_done,
                             shots=f"shots {event.shots_done}/{event.shots_total}{doing}",
                             rate=rate(event.fps) if coloured else "", eta=left)
        elif self.mode == "log" and self.frames_total > 1:  # an image: the summary line says it all
            now = time.perf_counter()
            if kind in ("start", "done") or now - self._last_log >= self.interval:
                self._last_log = now
                eta = f", {format_duration(event.eta)} left" if event.eta is not None and kind != "done" else ""
                pct = 100.0 * event.frames_done / max(1, event.frames_total)
                speed = f", {rate(event.fps)}" if coloured else ""
                log.info("%s: %d/%d frames (%.0f%%), shots %d/%d%s%s%s", self.label, event.frames_done,
                         event.frames_total, pct, event.shots_done, event.shots_total,
                         doing.replace(" · ", ", colouring "), speed, eta)

    def start(self, frames_total: int, shots_total: int, frames_done: int = 0, shots_done: int = 0,
              per_frame: bool = True) -> None:
        """Begin (``per_frame``: frames are reported one by one, so a shot's keyframe stage shows)."""
        self.frames_total, self.shots_total = frames_total, shots_total
        self.frames_done, self.shots_done = frames_done, shots_done
        self._base = frames_done
        self._per_frame = per_frame
        self.stage = "keyframes" if per_frame and shots_done < shots_total else "frames"
        self._t0 = self._last_log = time.perf_counter()
        if self.mode == "bar" and frames_total > 1:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self._bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[shots]}"), TextColumn("{task.fields[rate]}"),
                                 TextColumn("{task.fields[eta]}"), console=Console(stderr=True))
            self._task = self._bar.add_task(self.label, total=frames_total, completed=frames_done, shots="", rate="",
                                            eta="")
            self._bar.start()
        self._emit("start")

    def frame(self, n: int = 1) -> None:
        self.frames_done += n
        self.stage = "frames"
        self._emit("frame")

    def shot(self, frames: int, counted: bool) -> None:
        """A shot finished (``counted``: its frames were already reported one by one)."""
        self.shots_done += 1
        if not counted:
            self.frames_done += frames
        if counted and self.shots_done < self.shots_total:
            self.stage = "keyframes"  # the next shot begins with its keyframes
        self._emit("shot")

    def mux(self) -> None:
        self._emit("mux")

    def stop(self) -> None:
        """Stop drawing (a failed or interrupted run): no "done" event."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def close(self) -> None:
        """The run is done: the last event (and the bar's last state) has the speed over the whole run."""
        self.stage = "frames"
        self._emit("done")
        self.stop()


def format_duration(seconds: float) -> str:
    """A duration for people: ``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``."""
    s = int(round(seconds))
    if s < 90:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"
