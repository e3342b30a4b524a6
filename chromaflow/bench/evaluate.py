"""``chromaflow eval``: compare predicted videos with their ground truth.

PRED and GT are two video files, two frame directories, or two directories of
clips (video files or frame directories) matched by name.  Metrics are
computed on 8-bit RGB at the ground truth's resolution, per frame, then per
video, then averaged over videos.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2

from chromaflow.errors import InputError
from chromaflow.io.naming import VIDEO_EXTENSIONS, list_images, natural_sorted
from chromaflow.io.source import open_source
from chromaflow.metrics.accumulate import VideoMetrics, mean_over_videos

log = logging.getLogger("chromaflow")


def is_clip(path: Path) -> bool:
    """A video file, or a directory holding image frames directly."""
    if path.is_file():
        return path.suffix.lower() in VIDEO_EXTENSIONS
    return path.is_dir() and bool(list_images(path))


def list_clips(directory: Path) -> list[Path]:
    """Clips (video files and frame directories) inside ``directory``, naturally sorted."""
    items = [p for p in directory.iterdir() if not p.name.startswith(".") and is_clip(p)]
    return natural_sorted(items)


def match_clips(pred: Path, gt: Path) -> list[tuple[str, Path, Path]]:
    """Pair predictions with ground truths: ``[(name, pred_clip, gt_clip), ...]``.

    Raises:
        InputError: a path is missing, the two are of different kinds, or a
            ground-truth clip has no prediction.
    """
    for p in (pred, gt):
        if not p.exists():
            raise InputError(f"not found: {p}")
    if is_clip(gt) and is_clip(pred):
        return [(gt.stem, pred, gt)]
    if not gt.is_dir() or not pred.is_dir():
        raise InputError(f"{pred} and {gt} must both be videos, frame directories or directories of clips")
    gt_clips = list_clips(gt)
    if not gt_clips:
        raise InputError(f"no clips (video files or frame directories) in {gt}")
    by_stem = {p.stem: p for p in list_clips(pred)}
    missing = [g.stem for g in gt_clips if g.stem not in by_stem]
    if missing:
        raise InputError(f"no prediction in {pred} for: {', '.join(missing)}")
    extra = sorted(set(by_stem) - {g.stem for g in gt_clips})
    if extra:
        log.warning("ignoring predictions without ground truth: %s", ", ".join(extra))
    return [(g.stem, by_stem[g.stem], g) for g in gt_clips]


def evaluate_clip(pred: Path, gt: Path, metrics: VideoMetrics) -> dict[str, Any]:
    """Stream both clips through ``metrics``; the prediction is resized to the GT size if needed."""
    with open_source(pred) as ps, open_source(gt) as gs:
        if ps.info.n_frames != gs.info.n_frames:
            raise InputError(
                f"{pred.name} has {ps.info.n_frames} frames but {gt.name} has {gs.info.n_frames}"
            )
        size = (gs.info.width, gs.info.height)
        if (ps.info.width, ps.info.height) != size:
            log.warning(
                "%s is %dx%d, the ground truth %dx%d: resizing the prediction",
                pred.name,
                ps.info.width,
                ps.info.height,
                *size,
            )
        n = 0
        for pf, gf in zip(ps, gs):
            rgb = pf.rgb
            if rgb.shape[:2] != gf.rgb.shape[:2]:
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            metrics.update(rgb, gf.rgb)
            n += 1
        if n != gs.info.n_frames:
            raise InputError(f"decoded only {n} of {gs.info.n_frames} frames of {pred.name} / {gt.name}")
    return metrics.result()


def evaluate_paths(pred: str | Path, gt: str | Path, lpips: bool = False) -> dict[str, Any]:
    """Evaluate PRED against GT.

    Returns:
        ``{"mean": {metric: float}, "videos": {name: {"video": {...},
        "per_frame": {...}}}}``; ``mean`` averages the per-video values.
    """
    pairs = match_clips(Path(pred), Path(gt))
    net = None
    if lpips:
        from chromaflow.metrics.lpips import load_lpips_alex

        try:
            net = load_lpips_alex()
        except RuntimeError as exc:
            raise InputError(f"LPIPS unavailable: {exc}") from None
    videos = {}
    for name, p, g in pairs:
        videos[name] = evaluate_clip(p, g, VideoMetrics(lpips=net))
    return {"mean": mean_over_videos(list(videos.values())), "videos": videos}


__all__ = ["evaluate_clip", "evaluate_paths", "is_clip", "list_clips", "match_clips"]
