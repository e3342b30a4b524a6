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
from chromaflow.colorizers.luminance_lut import LuminanceLUTColorizer
from chromaflow.errors import InputError, NotAvailableError
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.palette import parse_palette_spec
from chromaflow.guidance.references import load_reference
from chromaflow.io.sink import check_output_path, open_sink
from chromaflow.io.source import FrameSource, open_source
from chromaflow.pipeline.engine import EngineOptions, TemporalEngine
from chromaflow.pipeline.options import ColorizeOptions
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
    palette = parse_palette_spec(options.palette, seed=options.seed) if options.palette else None
    prompt = options.prompt.strip() if options.prompt is not None else None
    if options.prompt is not None and not prompt:
        raise InputError("empty --prompt")
    if refs and palette is not None:
        log.warning("--palette is not used together with --reference yet: colors come from the references")
    return Conditions(references=refs, palette=palette, prompt=prompt, seed=options.seed)


def select_colorizer(conditions: Conditions) -> Colorizer | None:
    """The colorizer that colours keyframes for these conditions (``None``: references do).

    Raises:
        NotAvailableError: prompt-driven or automatic colorization was asked
            for; both need the colorization model, which is not installed yet.
    """
    if conditions.prompt:
        raise NotAvailableError(
            "--prompt is not available yet: it needs the text-conditioned colorization model; "
            "use --reference or --palette for now"
        )
    if conditions.references:
        return None
    if conditions.palette is not None:
        return LuminanceLUTColorizer()
    raise NotAvailableError(
        "automatic colorization is not available yet: no colorization model is installed; "
        "give --reference IMAGE [--reference-frame N] or --palette COLORS"
    )


def build_engine(
    conditions: Conditions, options: EngineOptions | None = None, flow: str = "dis"
) -> TemporalEngine:
    """The temporal engine for these conditions: Levin fill, the given flow, the keyframe colorizer.

    Args:
        flow: ``"dis"`` (DIS medium), ``"dis:fast"`` ... or the path of a local
            RAFT checkpoint (see :func:`~chromaflow.temporal.flow.load_flow_estimator`).

    Raises:
        InputError: unknown flow spec or unreadable RAFT checkpoint.
    """
    from chromaflow.fill.levin import LevinFill
    from chromaflow.temporal.flow import load_flow_estimator

    try:
        estimator = load_flow_estimator(flow)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return TemporalEngine(
        fill=LevinFill(max_pixels=4000),
        flow=estimator,
        colorizer=select_colorizer(conditions),
        options=options or EngineOptions(),
    )


def describe(conditions: Conditions) -> str:
    """One line saying how the colours are chosen."""
    if conditions.references:
        n = len(conditions.references)
        return f"{n} reference{'s' if n > 1 else ''}, propagated along the motion"
    if conditions.palette is not None:
        return "the palette (luminance-keyed transfer on keyframes), propagated along the motion"
    return "automatic"


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
        engine = build_engine(conditions, options.engine, options.flow)
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
    return ColorizeResult(out_path, sink.frames_written, seconds, "temporal-engine")


__all__ = [
    "ColorizeResult",
    "build_conditions",
    "colorize",
    "select_colorizer",
]
