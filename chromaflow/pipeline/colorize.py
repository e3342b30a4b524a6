"""Orchestration of a colorization run: source -> temporal engine -> sink.

The pipeline turns the run configuration (:class:`ColorizeOptions`) into
conditions (references, palette, prompt) and components (built by name from
the registry, :mod:`chromaflow.registry`, on one
:class:`~chromaflow.runtime.Runtime`), streams the engine's frames into the
sink with a progress bar, and stores the resolved configuration beside the
output (``OUTPUT.chromaflow.toml``).  It never names a concrete model: the
engine calls interfaces.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

from chromaflow.errors import ChromaflowError, InputError
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.grounding import GroundingCallback
from chromaflow.guidance.palette import parse_palette_spec
from chromaflow.guidance.prompt import parse_prompt, prompt_problems
from chromaflow.guidance.references import load_reference
from chromaflow.io.inspection import GroundingWriter
from chromaflow.io.sink import check_output_path, open_sink
from chromaflow.io.source import FrameSource, open_source
from chromaflow.pipeline.engine import TemporalEngine
from chromaflow.pipeline.options import ColorizeOptions, config_to_toml
from chromaflow.progress import plural, track
from chromaflow.registry import Components
from chromaflow.runtime import Runtime

log = logging.getLogger("chromaflow")

#: Suffix of the configuration stored beside each output.
CONFIG_SUFFIX = ".chromaflow.toml"


@dataclass(frozen=True)
class ColorizeResult:
    """What a run produced.

    Attributes:
        output: the output path.
        frames: frames written.
        seconds: wall time of the colorization (decode, colour, encode).
        colorizer: the keyframe colorizer's name, or ``"references"``.
        config: the stored configuration beside the output, or ``None`` (it could not be written).
    """

    output: Path
    frames: int
    seconds: float
    colorizer: str
    config: Path | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def build_conditions(options: ColorizeOptions, source: FrameSource, report: bool = True,
                     palette=None) -> Conditions:
    """Load references and the palette named in ``options`` and check them against ``source``.

    Args:
        report: log the palette and the prompt's problems (a worker colouring
            one shot leaves that to the driver).
        palette: the palette already resolved by the driver (a worker does
            not compute it again), or ``None``.
    """
    info = source.info
    refs = tuple(
        load_reference(spec.path, spec.frame, info.width, info.height, info.n_frames)
        for spec in options.references
    )
    resolved, palette, per_shot = palette, None, None
    if options.palette_per_shot:
        if (options.palette or "").strip() != "tags":
            raise InputError("--per-shot-palette works with --palette tags (each shot's palette from its own content)")
        per_shot = functools.partial(_tag_palette_of_frames, seed=options.seed)
    elif resolved is not None:
        palette = resolved
    elif options.palette:
        palette = parse_palette_spec(options.palette, seed=options.seed, video=source)
        if report:
            log.info("palette %s", ",".join(palette.hex()))
    prompt = options.prompt.strip() if options.prompt is not None else None
    if options.prompt is not None and not prompt:
        raise InputError("empty --prompt")
    if prompt and report:
        for message in prompt_problems(parse_prompt(prompt)):
            log.warning("%s", message)
    if refs and report and options.fill.name == "levin":  # a learned fill step is guided by palette and prompt
        for name, given in (("--palette", palette is not None or per_shot is not None), ("--prompt", bool(prompt))):
            if given:
                log.warning("%s is not used together with --reference and the levin fill: "
                            "colors come from the references (a learned --fill uses it)", name)
    return Conditions(references=refs, palette=palette, prompt=prompt, seed=options.seed, palette_per_shot=per_shot)


def _tag_palette_of_frames(frames, seed: int = 0):
    from chromaflow.guidance.tags import tag_palette

    return tag_palette(frames, seed=seed).palette


def build_engine(
    options: ColorizeOptions,
    conditions: Conditions,
    components: Components | None = None,
    on_grounding: GroundingCallback | None = None,
    report: bool = True,
) -> TemporalEngine:
    """The temporal engine of a run: flow, fill step, keyframe colorizer and prompt hints, by name.

    Args:
        options: the run configuration (its ``colorizer``, ``fill``, ``flow``,
            ``grounder``, ``matcher``, ``engine`` and ``runtime``).
        conditions: what the run is guided by; without references a colorizer
            colours the keyframes, with a prompt that names objects a grounder finds them.
        components: where components are built and kept (reuse it across runs
            to load each model once); default: new, on ``options.runtime``.
        on_grounding: receives the prompt's object masks as they are found.
        report: log what the prompt's object words stand for.

    Raises:
        InputError: an unknown backend or bad options.
        NotAvailableError: a backend's packages or weights are not here.
    """
    from chromaflow.guidance.hints import PromptHints

    options = options.resolved()
    components = components or Components(Runtime(options.runtime))
    build = functools.partial(_build, components)
    flow = build("flow", options.flow)
    fill = build("fill", options.fill)
    colorizer = None if conditions.references else build("colorizer", options.colorizer)
    hints = None
    if conditions.prompt and not conditions.references and parse_prompt(conditions.prompt).objects:
        hints = PromptHints(build("grounder", options.grounder), on_grounding, report)
    skin = None
    if not 0.0 <= options.engine.skin_prior <= 1.0:
        raise InputError(f"skin_prior must be between 0 (off) and 1, got {options.engine.skin_prior:g}")
    if options.engine.skin_prior and colorizer is not None:
        skin = _skin_prior(options.engine.skin_prior, components.runtime)
    matcher = functools.partial(options.matcher.build, components.runtime)
    return TemporalEngine(fill=fill, flow=flow, colorizer=colorizer, matcher=matcher, options=options.engine,
                          hints=hints, skin=skin)


def _skin_prior(strength: float, runtime: Runtime):
    """The skin prior at ``strength``, its models loaded now (once per runtime), so a missing one is a
    one-line error before any work."""
    from chromaflow.guidance.skin import FaceSkin, SkinPrior

    threads = int(getattr(runtime.options, "threads", 0) or 0)
    finder = runtime.shared(("face-skin", threads, str(runtime.device)), lambda: FaceSkin(threads, str(runtime.device)))
    finder.load()
    return SkinPrior(strength, finder)


def _build(components: Components, kind: str, choice):
    try:
        return components.build(kind, choice.name, choice.options)
    except ChromaflowError:
        raise
    except ValueError as exc:  # a backend's own check of its options
        raise InputError(f"{kind} {choice.name!r}: {exc}") from None


def describe(conditions: Conditions, moving: bool = True) -> str:
    """One line saying how the colours are chosen (``moving``: a video, whose colours travel along the motion)."""
    along = ", propagated along the motion" if moving else ""
    if conditions.references:
        n = len(conditions.references)
        return f"{n} reference{'s' if n > 1 else ''}{along}"
    if conditions.palette_per_shot is not None:
        return f"the colorizer guided by each shot's own palette{along}"
    if conditions.palette is not None and conditions.prompt:
        return f"the colorizer guided by the palette and the prompt{along}"
    if conditions.palette is not None:
        return f"the colorizer guided by the palette{along}"
    if conditions.prompt:
        return f"the colorizer guided by the prompt{along}"
    return f"the colorizer (automatic){along}"


def stored_config(options: ColorizeOptions, input: Path) -> str:
    """The TOML stored beside an output: the resolved configuration, reference paths made absolute."""
    import chromaflow

    refs = tuple(dataclasses.replace(r, path=Path(os.path.abspath(r.path))) for r in options.references)
    header = (f"chromaflow {chromaflow.__version__}: the configuration of this output, from {input.name}.\n"
              f"Reproduce it with: chromaflow colorize INPUT -o OUTPUT --config THIS_FILE")
    return config_to_toml(dataclasses.replace(options, references=refs), header=header, alternatives=False)


def config_hash(options: ColorizeOptions) -> str:
    """The sha256 of everything that shapes a shot's colours: the configuration (not the output's encoding),
    the contents of the files it names (references, a palette image, weights) and chromaflow's version."""
    import hashlib
    import json

    import chromaflow
    from chromaflow.pipeline.options import config_to_dict
    from chromaflow.pipeline.work import input_fingerprint

    data = config_to_dict(dataclasses.replace(
        options, references=tuple(dataclasses.replace(r, path=Path(os.path.abspath(r.path)))
                                  for r in options.references)))
    data.pop("output", None)
    files = {}  # the contents of every file the configuration names (references, palette image, weights)

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value and os.path.isfile(value):
            files[value] = input_fingerprint(Path(value))

    walk(data)
    data = {"config": data, "files": files, "chromaflow": chromaflow.__version__}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def parse_frame_range(text: str) -> tuple[int, int | None]:
    """``"START:END"`` (either may be empty; END excluded) -> ``(start, end or None)``.

    Raises:
        InputError: not of that form, negative, or empty.
    """
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else None
    except ValueError:
        raise InputError(f"--frames {text!r}: expected START:END (frame numbers, END excluded; e.g. 100:250)") from None
    if start < 0 or (stop is not None and stop <= start):
        raise InputError(f"--frames {text!r}: need 0 <= START < END")
    return start, stop


def colorize(
    input: str | Path,
    output: str | Path,
    options: ColorizeOptions | None = None,
    components: Components | None = None,
    on_event=None,
    cancel=None,
) -> ColorizeResult:
    """Colorize a video file, a frame directory or an image into ``output``.

    The output keeps the input's frame count, timing and audio, and its gray
    equals the input's gray; it appears only when the run succeeds, with the
    resolved configuration beside it (``OUTPUT.chromaflow.toml``).

    The run is planned first (shots and keyframes); then each shot is
    coloured (by ``options.executor``: here, a process pool or Ray) into a
    lossless segment in the work folder (``options.work_dir``, default hidden
    beside the output), and the output is muxed from the segments with the
    input's audio.  A run interrupted (Ctrl-C, SIGTERM, a crash, ``kill -9``)
    keeps its finished segments: the same command again resumes there.  The
    work folder is removed after success.

    Args:
        components: built components to reuse (a server keeps one); default: new.
        on_event: a callback receiving every :class:`~chromaflow.progress.ProgressEvent`.
        cancel: a :class:`threading.Event`; set from another thread, it stops the run at the next frame
            (or the next finished shot with the pool or Ray) with :class:`~chromaflow.errors.Cancelled`:
            no output is written, finished shots stay in the work folder as after an interrupt.

    Raises:
        ChromaflowError: bad input, bad options or an unwritable output.
        Cancelled: ``cancel`` was set.
    """
    from chromaflow.pipeline.engine import analyse
    from chromaflow.pipeline.executors import ShotTask, check_executor, make_executor
    from chromaflow.pipeline.work import WorkDir, default_work_dir, input_fingerprint
    from chromaflow.progress import RunProgress, cancellable, check_cancel
    from chromaflow.runtime import resolve_device

    options = (options or ColorizeOptions()).resolved()
    resolve_device(options.runtime.device)  # a device this machine lacks is an error before any work
    check_executor(options.executor, options.ray_address)
    in_path = Path(input)
    out_path = check_output_path(output, options.overwrite, in_path)
    options.encoding().check_container(out_path)  # a codec the container cannot hold: an error before any work
    remove_stale_outputs(out_path)
    config_text = stored_config(options, in_path)
    executor = None
    with open_source(in_path, fps=options.fps) as source:
        conditions = build_conditions(options, source)
        if options.executor == "inprocess" and not options.ray_address:
            # the components this process will use, built now: a missing model is an error before any work
            components = components or Components(Runtime(options.runtime))
            early = build_engine(options, conditions, components)
            if early.hints is not None:
                early.hints.begin(conditions)  # says once what each prompt object stands for
        if options.frames is not None and options.frames[0] >= source.info.n_frames:
            raise InputError(f"--frames {_range_text(options.frames)}: the input has {source.info.n_frames} frames")
        masks = None
        if options.save_masks is not None:
            if not conditions.prompt or conditions.references:
                log.warning("--save-masks writes the masks of a prompt's objects; this run grounds none")
            else:
                GroundingWriter(options.save_masks)  # checks (and makes) the folder now, before any work
                masks = str(options.save_masks)
        work = WorkDir(default_work_dir(out_path, options.work_dir))
        try:
            plan, reason = work.start(input_fingerprint(in_path), config_hash(options), options.fresh)
            if reason is not None:
                log.warning("starting afresh: %s", reason)
            if plan is None:
                def tracked(items, total, description):
                    return track(cancellable(items, cancel), total, description, options.progress != "none")

                plan = analyse(source, conditions, options.engine, tracked)
                work.set_plan(plan)
            else:
                log.info("%d frames, %d shots (the plan of the interrupted run)", plan.n_frames, len(plan.shots))
            if plan.n_frames == 0:
                raise InputError(f"{in_path}: no frame could be decoded")
            _check_complete(in_path, source, plan.n_frames, options.allow_partial)
            if plan.is_color:
                log.warning("the input is in color: converting it to grayscale first")
            first, stop = options.frames or (0, None)
            stop = plan.n_frames if stop is None else min(stop, plan.n_frames)
            if first >= plan.n_frames:
                raise InputError(f"--frames {_range_text(options.frames)}: the input has {plan.n_frames} frames")
            needed = [i for i, s in enumerate(plan.shots) if s.start < stop and s.stop > first]
            while plan.shots[needed[0]].continues:  # a range inside a long shot starts with its first window
                needed.insert(0, needed[0] - 1)
            done = work.finished(needed)
            for i in needed:  # a finished window whose carry for the next one is gone is done again
                if i in done and i + 1 in needed and i + 1 not in done and plan.shots[i + 1].continues \
                        and not work.carry_path(i).exists():
                    del done[i]
            if done:
                log.info("resuming: %d of %d shots done", len(done), len(needed))
            todo = [i for i in needed if i not in done]
            if plan.n_frames == 1:
                log.info("colorizing the image with %s", describe(conditions, moving=False))
            else:
                log.info("colorizing %s%s with %s", plural(stop - first, "frame"),
                         f" ({first}:{stop} of {plan.n_frames})" if (first, stop) != (0, plan.n_frames) else "",
                         describe(conditions))
            name = "references" if conditions.references else options.colorizer.name
            progress = RunProgress(options.progress, [on_event] if on_event else [], label=in_path.name)
            progress.start(sum(len(plan.shots[i]) for i in needed), len(needed),
                           sum(len(plan.shots[i]) for i in done), len(done),
                           per_frame=options.executor == "inprocess" and not options.ray_address)
            start = time.perf_counter()
            if todo:
                executor = make_executor(options.executor, options.workers, options.ray_address, components)
                per_frame = executor.name == "inprocess"
                task_options = _absolute(_pinned_threads(options) if not per_frame else options)
                plan_data = plan.to_dict()
                where = work.path.absolute()

                def task(i: int) -> ShotTask:
                    nxt = i + 1 < len(plan.shots) and plan.shots[i + 1].continues
                    return ShotTask(str(in_path.absolute()), options.fps, task_options, plan_data, i,
                                    str(where / work.segment_path(i).name), masks and str(Path(masks).absolute()),
                                    conditions.palette,
                                    str(where / work.carry_path(i - 1).name) if plan.shots[i].continues else None,
                                    str(where / work.carry_path(i).name) if nxt else None)

                def finished(segment):
                    work.record(segment)
                    done[segment.shot] = segment
                    progress.shot(segment.frames, counted=per_frame)
                    check_cancel(cancel)

                def frame_done():
                    progress.frame()
                    check_cancel(cancel)

                try:
                    while todo:  # in waves: a window of a long shot waits for the window before it
                        wave = [i for i in todo if not plan.shots[i].continues or i - 1 in done]
                        executor.run([task(i) for i in wave], finished, frame_done if per_frame else None)
                        todo = [i for i in todo if i not in done]
                finally:
                    executor.close()
            check_cancel(cancel)
            progress.mux()
            frames = _mux(out_path, source, plan, [done[i] for i in needed], work, first, stop, options)
            seconds = time.perf_counter() - start
            progress.close()
        except KeyboardInterrupt:
            _stop(locals().get("progress"))
            work.release()
            kept = work.kept()
            if kept:
                log.warning("%d finished shot%s kept in %s: run the same command again to resume", kept,
                            "" if kept == 1 else "s", work.path)
            raise
        except BaseException:
            _stop(locals().get("progress"))
            if work.kept():
                work.release()  # finished shots stay for a resume
            else:
                work.remove()  # nothing to resume: leave nothing behind
            raise
    config = _write_config(out_path, config_text)
    work.remove()
    return ColorizeResult(out_path, frames, seconds, name, config)


def _absolute(options: ColorizeOptions) -> ColorizeOptions:
    """The options with reference paths made absolute (a worker elsewhere has another working folder)."""
    return dataclasses.replace(options, references=tuple(
        dataclasses.replace(r, path=Path(os.path.abspath(r.path))) for r in options.references))


def _pinned_threads(options: ColorizeOptions) -> ColorizeOptions:
    """The options with torch's CPU threads fixed to this process's count, for workers elsewhere.

    Float reductions depend on the thread count, and a pool or Ray worker
    starts with its own (Ray gives each task one); pinning the count makes
    every executor write the same frames as a run here.
    """
    if options.runtime.threads:
        return options
    import torch

    return dataclasses.replace(options, runtime=dataclasses.replace(options.runtime, threads=torch.get_num_threads()))


def _mux(out_path, source, plan, segments, work, first, stop, options) -> int:
    """Write the output from the segments of frames ``[first, stop)``, with the input's audio and timing."""
    from chromaflow.pipeline.work import read_segment

    info = source.info
    names = info.names
    holder = next(seg for seg in segments if plan.shots[seg.shot].start <= first < plan.shots[seg.shot].stop)
    start_pts = holder.pts[first - plan.shots[holder.shot].start]
    ranged = (first, stop) != (0, plan.n_frames)
    out_info = info
    audio = Path(source.info.path) if info.audio_streams and info.path is not None else None
    offset = 0.0
    if ranged:
        out_info = dataclasses.replace(info, n_frames=stop - first, names=names[first:stop] if names else ())
        offset = float((start_pts - info.start_pts) * info.time_base)
    with open_sink(out_path, out_info, options.overwrite, audio_from=audio, encoding=options.encoding(),
                   audio_offset=offset) as sink:
        lumas = _input_luma(source, plan, sink, first, stop)
        for seg in segments:
            shot = plan.shots[seg.shot]
            for k, rgb in enumerate(read_segment(work.path / seg.file)):
                t = shot.start + k
                if t < first or t >= stop:
                    continue
                pts = seg.pts[k] - (start_pts - info.start_pts if ranged else 0)
                sink.write(rgb, pts, names[t] if t < len(names) else None,
                           next(lumas, None) if lumas is not None else None)
        if sink.frames_written != stop - first:
            raise InputError(f"{info.path or 'the input'}: {sink.frames_written} of the {stop - first} frames "
                             "could be coloured")
    return stop - first


def _check_complete(path: Path, source: FrameSource, decoded: int, allow_partial: bool) -> None:
    """A truncated or damaged input is an error, or with ``allow_partial`` a warning saying how many frames
    decode; a header's frame count off by a frame or two (1 %) is only a warning."""
    announced = source.info.n_frames
    damage = getattr(source, "decode_error", None)
    missing = announced - decoded
    if missing <= 0 and damage is None:
        return
    if missing <= max(1, announced // 100):
        log.warning("decoded %d of the %d frames the input announces%s", decoded, announced,
                    f" (decoding stopped: {damage})" if damage else "")
        return
    what = (f"{path}: only {decoded} of its {announced} frames decode"
            f"{f' ({damage})' if damage else ''}: the file is truncated or damaged")
    if not allow_partial:
        raise InputError(f"{what}; --allow-partial colorizes the {decoded} frames that decode")
    log.warning("%s; colorizing those %d frames (--allow-partial)", what, decoded)


def _input_luma(source, plan, sink, first: int, stop: int):
    """The input's own luma for frames ``[first, stop)`` where the sink keeps more than 8 bits of a deeper
    gray input (its gray is the output's gray), else ``None``: the output then carries the 8-bit frames."""
    from chromaflow.io.source import VideoFileSource

    if (isinstance(source, VideoFileSource) and source.info.bit_depth > 8 and sink.bit_depth > 8
            and not plan.is_color):
        return source.luma(first, stop, bits=sink.bit_depth)
    return None


def _stop(progress) -> None:
    """Stop a progress bar on the way out of a failed run (the terminal gets its cursor back)."""
    if progress is not None:
        progress.stop()


def _range_text(frames: tuple[int, int | None]) -> str:
    return f"{frames[0]}:{'' if frames[1] is None else frames[1]}"


def remove_stale_outputs(out_path: Path) -> None:
    """Remove temporary outputs that killed runs left beside ``out_path`` (their process is gone)."""
    import re

    pattern = re.compile(rf"^\.{re.escape(out_path.stem)}\.chromaflow-(\d+)\.tmp{re.escape(out_path.suffix)}$")
    folder = out_path.absolute().parent
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m and not _alive(int(m.group(1))):
            import shutil

            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            log.info("removed %s, left by an interrupted run", p.name)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_config(out_path: Path, text: str) -> Path | None:
    """Write the configuration beside the output, atomically; a failure is a warning, not an error."""
    target = out_path.with_name(out_path.name + CONFIG_SUFFIX)
    tmp = target.with_name(f".{target.name}.tmp.{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning("could not store the configuration beside the output (%s): %s", target, exc.strerror or exc)
        return None
    return target


__all__ = [
    "CONFIG_SUFFIX",
    "config_hash",
    "parse_frame_range",
    "ColorizeResult",
    "build_conditions",
    "build_engine",
    "colorize",
]
