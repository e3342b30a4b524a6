"""Typed options of a colorization run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from chromaflow.colorizers.chroma_model import ModelOptions
from chromaflow.pipeline.engine import EngineOptions

#: Fill steps of the engine: the embedded model, or Levin et al.'s optimisation (no weights).
FILLS = ("model", "levin")


@dataclass(frozen=True)
class ReferenceSpec:
    """``--reference PATH [--reference-frame N]``: a colour image, optionally a frame of the video."""

    path: Path
    frame: int | None = None


@dataclass(frozen=True)
class ColorizeOptions:
    """Options of :func:`chromaflow.colorize`.

    Attributes:
        references: colour references (exemplars).
        palette: ``--palette`` spec (hex colours, ``auto``, ``tags``, an image or
            video path), or ``None``.
        palette_per_shot: with ``palette="tags"``, each shot gets the palette of
            its own content instead of one palette for the whole video.
        prompt: text prompt, or ``None``.
        seed: seed for every random choice (same input + options + seed = same output).
        overwrite: replace an existing output.
        crf: x264 quality for video outputs; 0 is lossless 4:4:4 (the default).
        fps: frame rate of a video written from a frame directory (default 25).
        engine: options of the temporal engine (working size, keyframes, ablations).
        flow: optical flow: ``"dis"`` (default), ``"dis:fast"``, or a local RAFT checkpoint path.
        model: the embedded colorization model (weights, sampler settings).
        fill: the engine's fill step for anchors and corrections: ``"levin"``
            (default: measured better and faster than the model, see the model
            card) or ``"model"``.
        save_masks: folder for the prompt's object masks and hints per grounded
            frame (see :mod:`chromaflow.io.inspection`), or ``None``.
        progress: show a progress bar (only when stderr is a terminal).
    """

    references: tuple[ReferenceSpec, ...] = field(default_factory=tuple)
    palette: str | None = None
    palette_per_shot: bool = False
    prompt: str | None = None
    seed: int = 0
    overwrite: bool = False
    crf: int = 0
    fps: float | None = None
    engine: EngineOptions = field(default_factory=EngineOptions)
    flow: str = "dis"
    model: ModelOptions = field(default_factory=ModelOptions)
    fill: str = "levin"
    save_masks: Path | None = None
    progress: bool = True
