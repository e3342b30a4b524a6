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
from chromaflow.progress import track
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


def build_conditions(options: ColorizeOptions, source: FrameSource) -> Conditions:
    """Load references and the palette named in ``options`` and check them against ``source``."""
    info = source.info
    refs = tuple(
        load_reference(spec.path, spec.frame, info.width, info.height, info.n_frames)
        for spec in options.references
    )
    palette, per_shot = None, None
    if options.palette_per_shot:
        if (options.palette or "").strip() != "tags":
            raise InputError("--per-shot-palette works with --palette tags (each shot's palette from its own content)")
        per_shot = functools.partial(_tag_palette_of_frames, seed=options.seed)
    elif options.palette:
        palette = parse_palette_spec(options.palette, seed=options.seed, video=source)
        log.info("palette %s", ",".join(palette.hex()))
    prompt = options.prompt.strip() if options.prompt is not None else None
    if options.prompt is not None and not prompt:
        raise InputError("empty --prompt")
    if prompt:
        for message in prompt_problems(parse_prompt(prompt)):
            log.warning("%s", message)
    if refs and options.fill.name == "levin":  # a learned fill step is guided by palette and prompt
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
        hints = PromptHints(build("grounder", options.grounder), on_grounding)
    matcher = functools.partial(options.matcher.build, components.runtime)
    return TemporalEngine(fill=fill, flow=flow, colorizer=colorizer, matcher=matcher, options=options.engine,
                          hints=hints)


def _build(components: Components, kind: str, choice):
    try:
        return components.build(kind, choice.name, choice.options)
    except ChromaflowError:
        raise
    except ValueError as exc:  # a backend's own check of its options
        raise InputError(f"{kind} {choice.name!r}: {exc}") from None


def describe(conditions: Conditions) -> str:
    """One line saying how the colours are chosen."""
    if conditions.references:
        n = len(conditions.references)
        return f"{n} reference{'s' if n > 1 else ''}, propagated along the motion"
    if conditions.palette_per_shot is not None:
        return "the colorizer guided by each shot's own palette, propagated along the motion"
    if conditions.palette is not None and conditions.prompt:
        return "the colorizer guided by the palette and the prompt, propagated along the motion"
    if conditions.palette is not None:
        return "the colorizer guided by the palette, propagated along the motion"
    if conditions.prompt:
        return "the colorizer guided by the prompt, propagated along the motion"
    return "the colorizer (automatic), propagated along the motion"


def stored_config(options: ColorizeOptions, input: Path) -> str:
    """The TOML stored beside an output: the resolved configuration, reference paths made absolute."""
    import chromaflow

    refs = tuple(dataclasses.replace(r, path=Path(os.path.abspath(r.path))) for r in options.references)
    header = (f"chromaflow {chromaflow.__version__}: the configuration of this output, from {input.name}.\n"
              f"Reproduce it with: chromaflow colorize INPUT -o OUTPUT --config THIS_FILE")
    return config_to_toml(dataclasses.replace(options, references=refs), header=header, alternatives=False)


def colorize(
    input: str | Path,
    output: str | Path,
    options: ColorizeOptions | None = None,
    components: Components | None = None,
) -> ColorizeResult:
    """Colorize a video file, a frame directory or an image into ``output``.

    The output keeps the input's frame count, timing and audio, and its gray
    equals the input's gray; it appears only when the run succeeds, with the
    resolved configuration beside it (``OUTPUT.chromaflow.toml``).

    Args:
        components: built components to reuse (a server keeps one); default: new.

    Raises:
        ChromaflowError: bad input, bad options or an unwritable output.
    """
    options = (options or ColorizeOptions()).resolved()
    in_path = Path(input)
    out_path = check_output_path(output, options.overwrite, in_path)
    config_text = stored_config(options, in_path)
    with open_source(in_path, fps=options.fps) as source:
        conditions = build_conditions(options, source)
        writer = None
        if options.save_masks is not None:
            if not conditions.prompt or conditions.references:
                log.warning("--save-masks writes the masks of a prompt's objects; this run grounds none")
            else:
                writer = GroundingWriter(options.save_masks)
        engine = build_engine(options, conditions, components, writer)
        log.info("colorizing %d frames from %s", source.info.n_frames, describe(conditions))
        audio = in_path if source.info.audio_streams else None
        names = source.info.names
        start = time.perf_counter()
        with open_sink(out_path, source.info, options.overwrite, audio_from=audio, crf=options.crf) as sink:
            engine.progress = functools.partial(track, enabled=options.progress)
            for frame, rgb in engine.run(source, conditions):
                sink.write(rgb, frame.pts, names[frame.index] if frame.index < len(names) else None)
            if sink.frames_written == 0:
                raise InputError(f"{in_path}: no frame could be decoded")
            if sink.frames_written != source.info.n_frames:
                log.warning(
                    "decoded %d of the %d frames the input announces", sink.frames_written, source.info.n_frames
                )
        seconds = time.perf_counter() - start
    name = engine.colorizer.name if engine.colorizer is not None else "references"
    return ColorizeResult(out_path, sink.frames_written, seconds, name, _write_config(out_path, config_text))


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
    "ColorizeResult",
    "build_conditions",
    "build_engine",
    "colorize",
]
