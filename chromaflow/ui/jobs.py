"""The jobs of the web app (``chromaflow ui``): uploads checked, one temporary folder each, one at a time.

Nothing here imports Gradio: the app (:mod:`chromaflow.ui.app`) only turns
widgets into a :class:`JobRequest` and shows what a :class:`Job` reports.

* An upload is accepted only as a file the web framework stored itself
  (:func:`accept_upload`: a regular file inside its upload folder, within
  :attr:`Limits.max_upload_mb`); a path a user types is never read.
* Each job gets its own folder under the server's root
  (``chromaflow-ui-*`` in the system temporary folder): the input is copied
  (or a zip of frames unpacked, :func:`unpack_frames`) into it, the outputs
  are written there, and the folder is removed when the job fails or is
  cancelled, when the same browser session starts another job of its kind or
  closes, :attr:`Limits.keep_minutes` after the job ended, and with the root
  when the server stops.
* :class:`JobQueue` runs jobs one at a time on one worker thread with one
  :class:`~chromaflow.registry.Components` (models load once per server);
  others wait in order and report how many jobs are ahead.  A job is
  cancelled through the pipeline's ``cancel`` event
  (:class:`~chromaflow.errors.Cancelled`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chromaflow.errors import Cancelled, ChromaflowError, InputError
from chromaflow.io.naming import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS
from chromaflow.pipeline.options import ColorizeOptions, ReferenceSpec
from chromaflow.progress import ProgressEvent

log = logging.getLogger("chromaflow")

#: the colouring modes the app offers
MODES = ("automatic", "references", "palette", "prompt")


@dataclass(frozen=True)
class Limits:
    """What the server accepts (``chromaflow ui --max-upload-mb ... --max-seconds ...``).

    Attributes:
        max_upload_mb: largest upload (a video, a zip, an image, a reference), in MB (10^6 bytes).
        max_seconds: longest input, in seconds of video (frames / frame rate).
        max_unpacked_mb: largest total of the frames a zip unpacks to, in MB.
        keep_minutes: how long a finished job's files stay for download.
    """

    max_upload_mb: float = 500.0
    max_seconds: float = 600.0
    max_unpacked_mb: float = 4000.0
    keep_minutes: float = 60.0

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_seconds", "max_unpacked_mb", "keep_minutes"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")


def _safe_name(name: str, default: str = "input") -> str:
    """A file name made of ``[A-Za-z0-9._-]`` (the last part of ``name``; never hidden, never empty)."""
    base = re.split(r"[\\/]", name)[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    return base or default


def accept_upload(path: str | os.PathLike, roots: tuple[Path, ...], limits: Limits) -> Path:
    """The uploaded file at ``path``, checked.

    Args:
        path: where the web framework stored an upload.
        roots: the folders uploads are stored in; anything elsewhere is refused.
        limits: :attr:`Limits.max_upload_mb` is applied.

    Raises:
        InputError: not a regular file inside ``roots`` (a link, a folder, a path outside), or too large.
    """
    p = Path(path)
    resolved = Path(os.path.realpath(p))
    inside = any(resolved.is_relative_to(Path(os.path.realpath(r))) for r in roots)
    if not inside or p.is_symlink() or not resolved.is_file():
        raise InputError(f"{p.name}: not an uploaded file")
    size = resolved.stat().st_size
    if size > limits.max_upload_mb * 1e6:
        raise InputError(f"{p.name}: {size / 1e6:.1f} MB is over the upload limit of {limits.max_upload_mb:g} MB")
    return resolved


def unpack_frames(archive: Path, folder: Path, limits: Limits) -> Path:
    """Unpack the images of a zip into ``folder`` (made here), flat, and return it.

    Only image files are taken (by extension; folders inside the zip are
    flattened, hidden files and others skipped); names are reduced to safe
    characters, so nothing lands outside ``folder``.  The bytes written are
    counted as they are written, against :attr:`Limits.max_unpacked_mb`.

    Raises:
        InputError: not a zip, no image in it, two images of the same name, or too large unpacked.
    """
    if not zipfile.is_zipfile(archive):
        raise InputError(f"{archive.name}: not a zip file")
    folder.mkdir(parents=True)
    budget = int(limits.max_unpacked_mb * 1e6)
    names: set[str] = set()
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            raw = info.filename.replace("\\", "/")
            leaf = raw.rsplit("/", 1)[-1]
            if info.is_dir() or not leaf or leaf.startswith(".") or "__MACOSX" in raw.split("/"):
                continue
            if Path(leaf).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            name = _safe_name(leaf)
            if name in names:
                raise InputError(f"{archive.name}: two images named {name} (in different folders of the zip)")
            names.add(name)
            with zf.open(info) as src, open(folder / name, "wb") as dst:
                while chunk := src.read(1 << 20):
                    budget -= len(chunk)
                    if budget < 0:
                        raise InputError(f"{archive.name}: unpacks to more than {limits.max_unpacked_mb:g} MB")
                    dst.write(chunk)
    if not names:
        raise InputError(f"{archive.name}: no image files (png, jpg, tif, bmp, webp) in the zip")
    return folder


def stage_input(upload: Path, folder: Path, limits: Limits, fps: float | None = None) -> Path:
    """Copy (or unpack) an accepted upload into the job ``folder`` and check its duration.

    A video is copied under a safe name, an image too, a ``.zip`` is unpacked
    into ``folder/frames`` (:func:`unpack_frames`).

    Returns:
        the input path inside ``folder``.

    Raises:
        InputError: an unknown kind of file, an unreadable one, or longer than :attr:`Limits.max_seconds`.
    """
    from chromaflow.io.source import open_source

    ext = upload.suffix.lower()
    if ext == ".zip":
        target = unpack_frames(upload, folder / "frames", limits)
    elif ext in VIDEO_EXTENSIONS or ext in IMAGE_EXTENSIONS:
        target = folder / _safe_name(upload.name)
        shutil.copyfile(upload, target)
    else:
        raise InputError(f"{upload.name}: upload a video, an image, or a zip of frames")
    with open_source(target, fps=fps) as source:
        info = source.info
    seconds = info.n_frames / float(info.fps) if info.fps else 0.0
    if seconds > limits.max_seconds:
        raise InputError(f"{upload.name}: {seconds:.0f} s ({info.n_frames} frames) is over the limit of "
                         f"{limits.max_seconds:g} s")
    return target


def output_name(input: Path) -> str:
    """The result's file name: an image stays an image, a video keeps a container chromaflow writes, else .mp4."""
    ext = input.suffix.lower()
    stem = _safe_name(input.stem if input.is_file() else "frames")
    if input.is_file() and ext in IMAGE_EXTENSIONS:
        return f"{stem}_color.png"
    if input.is_file() and ext in VIDEO_OUTPUT_EXTENSIONS:
        return f"{stem}_color{ext}"
    return f"{stem}_color.mp4"


def parse_frame_numbers(text: str, count: int) -> tuple[int | None, ...]:
    """The frame numbers typed for ``count`` references: ``"0, 120"`` (in upload order), or empty.

    An empty text (or all entries empty) means the references are related
    photos, not frames of the video.

    Raises:
        InputError: not numbers, negative, or not one per reference.
    """
    parts = [p.strip() for p in re.split(r"[,;\s]+", text or "") if p.strip()]
    if not parts:
        return (None,) * count
    if len(parts) != count:
        raise InputError(f"{count} reference image{'s' if count != 1 else ''} but {len(parts)} frame number"
                         f"{'s' if len(parts) != 1 else ''}: give one per image (in upload order) or none")
    try:
        numbers = tuple(int(p) for p in parts)
    except ValueError:
        raise InputError(f"frame numbers {text!r}: expected whole numbers such as '0, 120'") from None
    if any(n < 0 for n in numbers):
        raise InputError(f"frame numbers {text!r}: frames count from 0")
    return numbers


@dataclass(frozen=True)
class JobRequest:
    """What a user asked for, from the widgets (files already accepted and staged in the job's folder).

    Attributes:
        mode: one of :data:`MODES`.
        references: ``(image, frame or None)`` pairs (mode ``references``).
        palette: palette spec, hex colours (mode ``palette``).
        prompt: the text prompt (mode ``prompt``).
        seed: the run's seed.
        work_size: longer side of the working resolution.
        fps: frame rate of a zip of frames.
    """

    mode: str = "automatic"
    references: tuple[tuple[Path, int | None], ...] = ()
    palette: str | None = None
    prompt: str | None = None
    seed: int = 0
    work_size: int | None = None
    fps: float | None = None


def job_options(base: ColorizeOptions, request: JobRequest, folder: Path) -> ColorizeOptions:
    """The run configuration of a job: the server's ``base`` with the request's mode and settings.

    Only the chosen mode's guidance is kept; the prompt's masks go to
    ``folder/masks``; the job never resumes an earlier run.  The output's
    encoding is the server's (``[output]`` of ``chromaflow ui --config``).

    Raises:
        InputError: an unknown mode, or the chosen mode without what it needs.
    """
    if request.mode not in MODES:
        raise InputError(f"unknown mode {request.mode!r}; modes: {', '.join(MODES)}")
    refs: tuple[ReferenceSpec, ...] = ()
    palette = prompt = None
    if request.mode == "references":
        if not request.references:
            raise InputError("reference mode: upload at least one color image")
        refs = tuple(ReferenceSpec(Path(p), f) for p, f in request.references)
    elif request.mode == "palette":
        palette = (request.palette or "").strip()
        if not palette:
            raise InputError("palette mode: pick at least one color")
    elif request.mode == "prompt":
        prompt = (request.prompt or "").strip()
        if not prompt:
            raise InputError("prompt mode: describe the colors (e.g. 'a red car on a gray street')")
    engine = base.engine if request.work_size is None else dataclasses.replace(
        base.engine, work_max_side=int(request.work_size))
    return dataclasses.replace(
        base, references=refs, palette=palette, palette_per_shot=False, prompt=prompt, seed=int(request.seed),
        engine=engine, fps=request.fps or base.fps, overwrite=True,
        save_masks=folder / "masks" if prompt else None, progress="none", frames=None, work_dir=folder,
        fresh=True, executor="inprocess", workers=None, ray_address=None,
    )


@dataclass
class Job:
    """One queued piece of work and what it reports (read by the app while it runs).

    Attributes:
        id: a random id.
        kind: ``"preview"`` or ``"colorize"``.
        folder: its temporary folder.
        state: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        phase: what it is doing now, in words.
        event: the run's last :class:`~chromaflow.progress.ProgressEvent` (a full run), or ``None``.
        result: what the work returned (``done``).
        error: the one-line error (``failed``).
        cancel: set to cancel (see :meth:`JobQueue.cancel`).
        finished: set when it ended, whatever the end.
        ended: ``time.monotonic()`` of the end.
        warnings: the warnings the pipeline logged while it ran (shown to the user: nothing is lost silently).
    """

    kind: str
    folder: Path
    work: Callable[[Job], Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"
    phase: str = "queued"
    event: ProgressEvent | None = None
    result: Any = None
    error: str | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    ended: float | None = None
    warnings: list[str] = field(default_factory=list)

    def on_event(self, event: ProgressEvent) -> None:
        """The pipeline's progress callback."""
        self.event = event
        self.phase = {"start": "colorizing", "frame": "colorizing", "shot": "colorizing",
                      "mux": "writing the output", "done": "done"}.get(event.kind, self.phase)


class JobQueue:
    """Runs jobs one at a time (see the module doc).

    Args:
        components: the server's :class:`~chromaflow.registry.Components`
            (built lazily, reused by every job).
        limits: what the server accepts.
        parent: where the root folder is made (default: the system temporary folder).
    """

    def __init__(self, components, limits: Limits | None = None, parent: Path | None = None) -> None:
        self.components = components
        self.limits = limits or Limits()
        self.root = Path(tempfile.mkdtemp(prefix="chromaflow-ui-", dir=parent))
        self._lock = threading.Lock()
        self._waiting: list[Job] = []
        self._jobs: dict[str, Job] = {}
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="chromaflow-ui-jobs", daemon=True)
        self._worker.start()

    def new_folder(self, kind: str) -> Path:
        """A fresh folder for a job, inside the root."""
        return Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=self.root))

    def submit(self, kind: str, folder: Path, work: Callable[[Job], Any]) -> Job:
        """Queue ``work(job)``, run later on the worker thread in ``folder`` (made by :meth:`new_folder`)."""
        if self._closed:
            raise InputError("the server is stopping")
        self.sweep()
        job = Job(kind, folder, work)
        with self._lock:
            self._jobs[job.id] = job
            self._waiting.append(job)
        self._queue.put(job)
        return job

    def ahead(self, job: Job) -> int:
        """Jobs that run before ``job`` (the running one included); 0 once it runs."""
        with self._lock:
            if job not in self._waiting:
                return 0
            running = any(j.state == "running" for j in self._jobs.values())
            return self._waiting.index(job) + int(running)

    def get(self, job_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def cancel(self, job_id: str | None) -> bool:
        """Cancel a queued or running job (it ends as ``cancelled``); ``False``: no such job running."""
        job = self.get(job_id)
        if job is None or job.finished.is_set():
            return False
        job.cancel.set()
        return True

    def discard(self, job_id: str | None) -> None:
        """Cancel the job if it runs and remove its folder (now, or as soon as it ends)."""
        job = self.get(job_id)
        if job is None:
            return
        job.cancel.set()
        with self._lock:
            self._jobs.pop(job.id, None)
        if job.finished.is_set():
            _remove(job.folder)
        # else the worker removes it: a cancelled job's folder goes when it ends

    def sweep(self) -> None:
        """Remove the folders of jobs that ended more than :attr:`Limits.keep_minutes` ago."""
        now = time.monotonic()
        with self._lock:
            old = [j for j in self._jobs.values()
                   if j.ended is not None and now - j.ended > self.limits.keep_minutes * 60]
            for j in old:
                self._jobs.pop(j.id)
        for j in old:
            _remove(j.folder)

    def close(self) -> None:
        """Cancel everything, stop the worker and remove the root with every job's folder."""
        self._closed = True
        with self._lock:
            jobs = list(self._jobs.values())
        for j in jobs:
            j.cancel.set()
        self._queue.put(None)
        self._worker.join(timeout=30)
        _remove(self.root)

    def _run(self) -> None:
        catcher = _WarningCatcher()
        logger = logging.getLogger("chromaflow")
        logger.addHandler(catcher)
        try:
            while (job := self._queue.get()) is not None:
                catcher.job = job
                self._run_one(job)
                catcher.job = None
        finally:
            logger.removeHandler(catcher)

    def _run_one(self, job: Job) -> None:
        with self._lock:
            self._waiting.remove(job)
            if not job.cancel.is_set():
                job.state = "running"
        try:
            if job.cancel.is_set():
                raise Cancelled("cancelled before it started")
            job.phase = "starting"
            job.result = job.work(job)
            job.state, job.phase = "done", "done"
        except Cancelled:
            job.state, job.phase = "cancelled", "cancelled"
        except ChromaflowError as exc:
            job.state, job.phase, job.error = "failed", "failed", str(exc)
        except Exception as exc:  # noqa: BLE001 - a server outlives a bad job; the log has the trace
            log.exception("job %s failed", job.id)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            job.state, job.phase, job.error = "failed", "failed", f"internal error: {type(exc).__name__}: {first}"
        finally:
            job.ended = time.monotonic()
            if not (job.state == "done" and self.get(job.id) is job):  # failed, cancelled or discarded
                _remove(job.folder)
            job.finished.set()


class _WarningCatcher(logging.Handler):
    """Keeps the warnings logged on the worker thread for the job it runs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.job: Job | None = None
        self._thread = threading.get_ident()  # made on the worker thread

    def emit(self, record: logging.LogRecord) -> None:
        if self.job is not None and record.thread == self._thread:
            self.job.warnings.append(record.getMessage())


def _remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class PreviewOutcome:
    """What a preview job made, in its folder.

    Attributes:
        sheet: the contact sheet (gray | colour per keyframe).
        swatch: the palette swatch, or ``None``.
        masks: the folder of the prompt's masks and hints, or ``None``.
        keyframes, shots, seconds: as :class:`~chromaflow.pipeline.preview.PreviewResult`.
    """

    sheet: Path
    swatch: Path | None
    masks: Path | None
    keyframes: int
    shots: int
    seconds: float


def preview_work(input: Path, options: ColorizeOptions, components) -> Callable[[Job], PreviewOutcome]:
    """The work of a preview job: colour the keyframes of ``input`` (in the job's folder)."""

    def work(job: Job) -> PreviewOutcome:
        from chromaflow.pipeline.preview import preview

        job.phase = "coloring the keyframes"
        r = preview(input, job.folder / output_name(input), options, components=components, cancel=job.cancel)
        return PreviewOutcome(r.sheet, r.palette, options.save_masks, r.keyframes, r.shots, r.seconds)

    return work


def colorize_work(input: Path, options: ColorizeOptions, components) -> Callable[[Job], Any]:
    """The work of a full run: colorize ``input`` into the job's folder
    (returns the :class:`~chromaflow.pipeline.colorize.ColorizeResult`)."""

    def work(job: Job):
        from chromaflow.pipeline.colorize import colorize

        job.phase = "analysing the shots"
        return colorize(input, job.folder / output_name(input), options, components=components,
                        on_event=job.on_event, cancel=job.cancel)

    return work
