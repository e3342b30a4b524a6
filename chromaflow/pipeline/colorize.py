"""Orchestration of a colorization run: source -> temporal engine -> sink.

The pipeline turns options into conditions (references, palette), picks the
keyframe colorizer, and streams the engine's frames into the sink with a
progress bar; the engine (:mod:`chromaflow.pipeline.engine`) does the work.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from chromaflow.colorizers.base import Colorizer
from chromaflow.colorizers.chroma_model import ChromaModel, ModelColorizer, ModelOptions
from chromaflow.errors import InputError
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.grounding import GroundingCallback
from chromaflow.guidance.palette import parse_palette_spec
from chromaflow.guidance.prompt import parse_prompt, prompt_problems
from chromaflow.guidance.references import load_reference
from chromaflow.io.inspection import GroundingWriter
from chromaflow.io.sink import check_output_path, open_sink
from chromaflow.io.source import FrameSource, open_source
from chromaflow.pipeline.engine import EngineOptions, TemporalEngine
from chromaflow.pipeline.options import FILLS, ColorizeOptions
from chromaflow.progress import track

log = logging.getLogger("chromaflow")


@dataclass(frozen=True)
class ColorizeResult:
    """What a run produced."""

    output: Path
    frames: int
    seconds: float
    colorizer: str

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
    if refs and options.fill != "model":  # with the model as fill step, palette and prompt guide the fill
        for name, given in (("--palette", palette is not None or per_shot is not None), ("--prompt", bool(prompt))):
            if given:
                log.warning("%s is not used together with --reference (unless --fill model): "
                            "colors come from the references", name)
    return Conditions(references=refs, palette=palette, prompt=prompt, seed=options.seed, palette_per_shot=per_shot)


def _tag_palette_of_frames(frames, seed: int = 0):
    from chromaflow.guidance.tags import tag_palette

    return tag_palette(frames, seed=seed).palette


def select_colorizer(
    conditions: Conditions, model: ChromaModel | None, on_grounding: GroundingCallback | None = None
) -> Colorizer | None:
    """The colorizer that colours keyframes (``None``: the references do).

    Automatic, palette and prompt runs all use the embedded model; the
    palette and the prompt steer it.  ``on_grounding`` receives the prompt's
    masks as they are found (see :class:`ModelColorizer`).
    """
    if conditions.references:
        return None
    if model is None:
        raise ValueError("a model is needed without references")
    return ModelColorizer(model, on_grounding=on_grounding)


def build_engine(
    conditions: Conditions,
    options: EngineOptions | None = None,
    flow: str = "dis",
    model: ModelOptions | None = None,
    fill: str = "levin",
    on_grounding: GroundingCallback | None = None,
) -> TemporalEngine:
    """The temporal engine for these conditions: flow, fill step and keyframe colorizer.

    The embedded model is loaded once and serves as both the keyframe
    colorizer (without references) and, with ``fill="model"``, the fill step,
    guided by the same palette, prompt and seed.

    Args:
        flow: ``"dis"`` (DIS medium), ``"dis:fast"`` ... or the path of a local
            RAFT checkpoint (see :func:`~chromaflow.temporal.flow.load_flow_estimator`).
        model: which model weights and sampler settings to use.
        fill: ``"levin"`` (colorization by optimization) or ``"model"``.
        on_grounding: receives the prompt's object masks as they are found.

    Raises:
        InputError: unknown flow or fill spec, unreadable checkpoint or weights.
        NotAvailableError: the model is needed and its weights are not installed.
    """
    from chromaflow.fill.levin import LevinFill
    from chromaflow.fill.model import ModelFill
    from chromaflow.temporal.flow import load_flow_estimator

    if fill not in FILLS:
        raise InputError(f"unknown fill {fill!r}; use one of {', '.join(FILLS)}")
    try:
        estimator = load_flow_estimator(flow)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    needs_model = fill == "model" or not conditions.references
    chroma_model = ChromaModel.load(model) if needs_model else None
    colorizer = select_colorizer(conditions, chroma_model, on_grounding)
    if fill == "model":
        assert chroma_model is not None
        fill_model = chroma_model.with_options(chroma_model.options.for_fill())
        guide = colorizer if isinstance(colorizer, ModelColorizer) else ModelColorizer(chroma_model)
        fill_step = ModelFill(fill_model, guide.guidance_for(conditions))
    else:
        fill_step = LevinFill(max_pixels=4000)
    return TemporalEngine(fill=fill_step, flow=estimator, colorizer=colorizer, options=options or EngineOptions())


def describe(conditions: Conditions) -> str:
    """One line saying how the colours are chosen."""
    if conditions.references:
        n = len(conditions.references)
        return f"{n} reference{'s' if n > 1 else ''}, propagated along the motion"
    if conditions.palette_per_shot is not None:
        return "the model guided by each shot's own palette, propagated along the motion"
    if conditions.palette is not None and conditions.prompt:
        return "the model guided by the palette and the prompt, propagated along the motion"
    if conditions.palette is not None:
        return "the model guided by the palette, propagated along the motion"
    if conditions.prompt:
        return "the model guided by the prompt, propagated along the motion"
    return "the model (automatic), propagated along the motion"


def colorize(
    input: str | Path,
    output: str | Path,
    options: ColorizeOptions | None = None,
) -> ColorizeResult:
    """Colorize a video file, a frame directory or an image into ``output``.

    The output keeps the input's frame count, timing and audio, and its gray
    equals the input's gray; it appears only when the run succeeds.

    Raises:
        ChromaflowError: bad input, bad options or an unwritable output.
    """
    options = options or ColorizeOptions()
    in_path = Path(input)
    out_path = check_output_path(output, options.overwrite, in_path)
    with open_source(in_path, fps=options.fps) as source:
        conditions = build_conditions(options, source)
        writer = None
        if options.save_masks is not None:
            if not conditions.prompt or conditions.references:
                log.warning("--save-masks writes the masks of a prompt's objects; this run grounds none")
            else:
                writer = GroundingWriter(options.save_masks)
        engine = build_engine(conditions, options.engine, options.flow, options.model, options.fill, writer)
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
    return ColorizeResult(out_path, sink.frames_written, seconds, name)


__all__ = [
    "ColorizeResult",
    "build_conditions",
    "colorize",
    "select_colorizer",
]
