"""``--preview``: colour only the keyframes and show them, to check the look before a long run.

The run is planned as usual; then every keyframe (at most ``MAX_KEYFRAMES``,
spread over the video) is coloured the way the run colours its anchors: the
colorizer colours a shot's keyframes jointly (so they agree), references give
theirs by correspondence (reference frames keep their own colours).  A contact
sheet ``OUTPUT_STEM.preview.png`` (gray | colour for each keyframe, labelled
with its frame and shot) and, with a palette, ``OUTPUT_STEM.palette.png`` are
written beside the output; the output itself is not.  With a prompt and
``options.save_masks``, the masks and hints of the grounded keyframes are
written there as in a full run (:mod:`chromaflow.io.inspection`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from chromaflow.color.lab import compose_rgb, rgb_to_gray
from chromaflow.errors import InputError, OutputError
from chromaflow.io.inspection import label, write_png
from chromaflow.io.source import open_source
from chromaflow.pipeline.anchors import ExemplarAnchors
from chromaflow.pipeline.options import ColorizeOptions

log = logging.getLogger("chromaflow")

#: keyframes shown at most (spread evenly over the video)
MAX_KEYFRAMES = 48
#: width of one picture in the sheet
TILE_WIDTH = 240
#: keyframes (gray | colour pairs) per row of the sheet
PAIRS_PER_ROW = 3


@dataclass(frozen=True)
class PreviewResult:
    """What ``--preview`` wrote.

    Attributes:
        sheet: the contact sheet.
        palette: the palette swatch, or ``None`` (the run has no palette).
        keyframes: keyframes shown; shots: shots of the video.
        seconds: wall time.
    """

    sheet: Path
    palette: Path | None
    keyframes: int
    shots: int
    seconds: float


def preview_paths(output: Path) -> tuple[Path, Path]:
    """``(sheet, swatch)`` paths beside ``output``."""
    stem = output.stem if output.suffix else output.name
    return output.with_name(f"{stem}.preview.png"), output.with_name(f"{stem}.palette.png")


def preview(input: str | Path, output: str | Path, options: ColorizeOptions | None = None,
            components=None, cancel=None) -> PreviewResult:
    """Colour the keyframes of ``input`` and write the contact sheet beside ``output`` (see the module doc).

    Args:
        components: built components to reuse (a server keeps one), or ``None``.
        cancel: a :class:`threading.Event` that stops the preview (checked at every frame read and shot).

    Raises:
        ChromaflowError: bad input or options, an unwritable folder.
        Cancelled: ``cancel`` was set.
    """
    from chromaflow.guidance.palette import palette_swatch
    from chromaflow.io.inspection import GroundingWriter
    from chromaflow.pipeline.colorize import build_conditions, build_engine
    from chromaflow.pipeline.engine import analyse, work_gray
    from chromaflow.pipeline.plan import ShotPlan
    from chromaflow.progress import cancellable, check_cancel

    t0 = time.perf_counter()
    options = (options or ColorizeOptions()).resolved()
    output = Path(output)
    sheet_path, swatch_path = preview_paths(output)
    folder = sheet_path.absolute().parent
    if not folder.is_dir():
        raise OutputError(f"output folder does not exist: {folder}")
    for p in (sheet_path, swatch_path):
        if p.exists() and not options.overwrite:
            raise OutputError(f"output exists: {p} (pass --overwrite to replace it)")
    with open_source(Path(input), fps=options.fps) as source:
        conditions = build_conditions(options, source)
        plan = analyse(source, conditions, options.engine, lambda items, total, what: cancellable(items, cancel))
        if plan.n_frames == 0:
            raise InputError(f"{input}: no frame could be decoded")
        keyframes = sorted({k for s in plan.shots for k in s.keyframes})
        if len(keyframes) > MAX_KEYFRAMES:
            keep = np.linspace(0, len(keyframes) - 1, MAX_KEYFRAMES).round().astype(int)
            log.info("showing %d of the %d keyframes", MAX_KEYFRAMES, len(keyframes))
            keyframes = [keyframes[i] for i in keep]
        writer = GroundingWriter(options.save_masks) if options.save_masks is not None else None
        engine = build_engine(options, conditions, components, writer)
        strategy = engine.strategy(conditions)
        side = options.engine.work_max_side
        wanted = set(keyframes)
        exemplar = isinstance(strategy, ExemplarAnchors)
        for shot in plan.shots:
            if _shown(shot, keyframes):
                asked = shot if exemplar else dataclasses.replace(shot, precomputed=_shown(shot, keyframes))
                wanted |= strategy.frames_needed(asked, conditions)
        grays = {}
        for frame in cancellable(source.frames(0, max(wanted) + 1), cancel):
            if frame.index in wanted:
                grays[frame.index] = work_gray(rgb_to_gray(frame.rgb), side)
        colors: dict[int, np.ndarray] = {}
        for i, shot in enumerate(plan.shots):
            shown = _shown(shot, keyframes)
            if not shown:
                continue
            check_cancel(cancel)
            if exemplar:
                anchors = strategy.prepare(shot, {f: grays[f] for f in strategy.frames_needed(shot, conditions)},
                                           conditions, i)
                for k in shown:
                    colors[k] = anchors.colors[k][0] if k in anchors.colors else strategy.keyframe_colors(
                        grays[k], k, anchors)
            else:  # the colorizer colours the shown keyframes of the shot jointly
                sub = ShotPlan(shot.start, shot.stop, shown, shown)
                need = strategy.frames_needed(sub, conditions)
                anchors = strategy.prepare(sub, {f: grays[f] for f in need}, conditions, i)
                colors.update({k: anchors.colors[k][0] for k in shown})
        strategy.finish()
    tiles = []
    for k in keyframes:
        gray = grays[k]
        ab = colors[k]
        if ab.shape[:2] != gray.shape:
            ab = cv2.resize(ab, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
        shot = plan.shot_of(k) + 1
        pair = [_tile(np.repeat(gray[..., None], 3, axis=2), f"frame {k} (shot {shot}) gray"),
                _tile(compose_rgb(gray, ab), f"frame {k} color")]
        tiles.append(np.concatenate(pair, axis=1))
    write_png(sheet_path, _grid(tiles))
    swatch = None
    if conditions.palette is not None:
        write_png(swatch_path, palette_swatch(conditions.palette))
        swatch = swatch_path
    return PreviewResult(sheet_path, swatch, len(keyframes), len(plan.shots), time.perf_counter() - t0)


def _shown(shot, keyframes) -> tuple[int, ...]:
    return tuple(k for k in keyframes if shot.start <= k < shot.stop)


def _tile(rgb: np.ndarray, text: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    small = cv2.resize(np.ascontiguousarray(rgb), (TILE_WIDTH, max(1, round(h * TILE_WIDTH / w))),
                       interpolation=cv2.INTER_AREA)
    return label(small, text)


def _grid(tiles: list[np.ndarray]) -> np.ndarray:
    h = max(t.shape[0] for t in tiles)
    w = tiles[0].shape[1]
    rows = []
    for r in range(0, len(tiles), PAIRS_PER_ROW):
        row = [np.pad(t, ((0, h - t.shape[0]), (0, 0), (0, 0)), constant_values=255) for t in tiles[r: r + PAIRS_PER_ROW]]
        row += [np.full((h, w, 3), 255, np.uint8)] * (PAIRS_PER_ROW - len(row))
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0)), constant_values=255) for t in row], axis=1))
    return np.concatenate(rows, axis=0)
