"""Orchestration of a colorization run: source -> colorizer -> sink.

The pipeline only moves frames: it converts them to gray, resizes them to the
colorizer's working size, calls the colorizer on small batches, upsamples the
chroma along the luminance edges, composes RGB that keeps the input's gray,
and streams the result to the sink.  Memory is bounded by the batch size.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from chromaflow.color.lab import compose_rgb, gray_to_lightness, rgb_to_gray
from chromaflow.color.upsample import guided_upsample
from chromaflow.colorizers.base import Colorizer
from chromaflow.colorizers.luminance_lut import LuminanceLUTColorizer
from chromaflow.errors import ChromaflowError, InputError, NotAvailableError
from chromaflow.guidance.conditions import Conditions
from chromaflow.guidance.palette import parse_palette_spec
from chromaflow.guidance.references import load_reference
from chromaflow.io.sink import check_output_path, open_sink
from chromaflow.io.source import Frame, FrameSource, is_probably_color, open_source
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
    return Conditions(references=refs, palette=palette, prompt=prompt, seed=options.seed)


def select_colorizer(conditions: Conditions) -> Colorizer:
    """The colorizer that serves these conditions.

    Raises:
        NotAvailableError: prompt-driven or automatic colorization was asked
            for; both need the colorization model, which is not installed yet.
    """
    if conditions.prompt:
        raise NotAvailableError(
            "--prompt is not available yet: it needs the text-conditioned colorization model; "
            "use --reference or --palette for now"
        )
    if conditions.references or conditions.palette is not None:
        return LuminanceLUTColorizer()
    raise NotAvailableError(
        "automatic colorization is not available yet: no colorization model is installed; "
        "give --reference IMAGE [--reference-frame N] or --palette COLORS"
    )


def colorize_frames(
    source: FrameSource,
    colorizer: Colorizer,
    conditions: Conditions,
    batch_size: int = 8,
) -> Iterator[tuple[Frame, np.ndarray]]:
    """Colorize a source frame by frame.

    Yields:
        ``(frame, rgb)``: the source frame and its colorized ``(H, W, 3)``
        ``uint8`` sRGB version, whose gray equals the source frame's gray.
    """
    warned = False
    batch: list[tuple[Frame, np.ndarray]] = []
    for frame in source:
        if not warned and is_probably_color(frame.rgb):
            log.warning("the input is in color: converting it to grayscale first")
            warned = True
        batch.append((frame, rgb_to_gray(frame.rgb)))
        if len(batch) >= batch_size:
            yield from _colorize_batch(batch, colorizer, conditions)
            batch = []
    if batch:
        yield from _colorize_batch(batch, colorizer, conditions)


def _colorize_batch(
    batch: list[tuple[Frame, np.ndarray]], colorizer: Colorizer, conditions: Conditions
) -> Iterator[tuple[Frame, np.ndarray]]:
    h, w = batch[0][1].shape
    size = _working_size(w, h, colorizer.max_side)
    small = [g if size == (w, h) else cv2.resize(g, size, interpolation=cv2.INTER_AREA) for _, g in batch]
    lightness = np.stack([gray_to_lightness(g) for g in small])
    ab_small = colorizer.colorize(lightness, [f.index for f, _ in batch], conditions)
    for (frame, gray), ab in zip(batch, ab_small):
        if ab.shape[:2] != (h, w):
            ab = guided_upsample(ab, gray)
        yield frame, compose_rgb(gray, ab)


def _working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def colorize(
    input: str | Path,
    output: str | Path,
    options: ColorizeOptions | None = None,
    colorizer: Colorizer | None = None,
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
        colorizer = colorizer or select_colorizer(conditions)
        log.info("colorizing %d frames with %s", source.info.n_frames, colorizer.describe(conditions))
        audio = in_path if source.info.audio_streams else None
        names = source.info.names
        start = time.perf_counter()
        with open_sink(out_path, source.info, options.overwrite, audio_from=audio, crf=options.crf) as sink:
            frames = colorize_frames(source, colorizer, conditions, options.batch_size)
            for frame, rgb in track(frames, source.info.n_frames, "colorizing", options.progress):
                sink.write(rgb, frame.pts, names[frame.index] if frame.index < len(names) else None)
            if sink.frames_written == 0:
                raise InputError(f"{in_path}: no frame could be decoded")
            if sink.frames_written != source.info.n_frames:
                log.warning(
                    "decoded %d of the %d frames the input announces", sink.frames_written, source.info.n_frames
                )
        seconds = time.perf_counter() - start
    return ColorizeResult(out_path, sink.frames_written, seconds, colorizer.name)


__all__ = [
    "ChromaflowError",
    "ColorizeResult",
    "build_conditions",
    "colorize",
    "colorize_frames",
    "select_colorizer",
]
